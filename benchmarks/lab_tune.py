#!/usr/bin/env python
"""Knowledge injection by fine-tuning, on the lab: closed-book accuracy on the world's *new*
people after fine-tuning the pretrained lab model on their documents, with 1 variant per person
(the document itself: a `cpt` dataset) vs 5 variants (the document + 4 template paraphrases: a
`paraphrase` dataset), at matched compute (same steps, batch and sequence length), LoRA vs full;
and 5 variants with half the rows replayed from the known people's bios (to limit forgetting).

    .venv/bin/python benchmarks/lab_tune.py [--lang en|ja] [--steps 150]

Everything goes through the user-facing library: `build_dataset`, `registry.tune`, and closed-book
answers through `RagPipeline` with the adapter loaded by the transformers backend. Writes
``benchmarks/results/lab_tune-<lang>.{json,md}``. Ovadia et al. (2023) found that fine-tuning
injects new facts poorly from one rendering and better as the number of paraphrases grows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from infuse.lab.evaluate import GENERATION, chance, closed_book, lab_workspace
from infuse.lab.train import LabTrainConfig, train_lab_model
from infuse.lab.world import KNOWN, NEW
from infuse.models.transformers_backend import TransformersModel
from infuse.progress import PrintProgress
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig, TuneMethod

REPO = Path(__file__).resolve().parents[1]
LEARNING_RATES = {TuneMethod.LORA: 3e-3, TuneMethod.FULL: 1e-3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", choices=["en", "ja"], default="en")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run (the matched compute)")
    parser.add_argument("--batch", type=int, default=8, help="packed rows of 256 tokens per step")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    config = LabTrainConfig.for_lang(args.lang)
    base_folder = str(train_lab_model(config, progress=PrintProgress()))
    world = config.world()
    workspace = lab_workspace(world, tempfile.mkdtemp(prefix="infuse-lab-tune-"))
    # Replay: bios of the known people (what the model was pretrained on), to limit forgetting.
    replay = Path(workspace.path) / "known_bios.jsonl"
    replay.write_text(
        "".join(json.dumps({"text": b.text}, ensure_ascii=False) + "\n" for b in world.known_bios()), encoding="utf-8"
    )
    datasets = {
        "1 variant": build_dataset(workspace, BuildRequest(DatasetKind.CPT, name="variants-1", tokenizer=base_folder)),
        "5 variants": build_dataset(
            workspace, BuildRequest(DatasetKind.PARAPHRASE, name="variants-5", paraphrases=4, tokenizer=base_folder)
        ),
        "5 variants + 50% replay": build_dataset(
            workspace,
            BuildRequest(
                DatasetKind.PARAPHRASE,
                name="variants-5-replay",
                paraphrases=4,
                tokenizer=base_folder,
                replay=replay,
                replay_share=0.5,
            ),
        ),
    }
    new_questions, known_questions = world.short_questions(NEW), world.short_questions(KNOWN)[:250]
    base = TransformersModel.load(base_folder, device="cpu")
    pipeline = workspace.rag_pipeline(base, GENERATION)
    rows = [
        {
            "variant": "base (no fine-tuning)",
            "method": "-",
            "data": "-",
            "new": closed_book(pipeline, new_questions).accuracy,
            "known": closed_book(pipeline, known_questions).accuracy,
        }
    ]
    for method in (TuneMethod(m) for m in args.methods.split(",")):
        for variants, dataset in datasets.items():
            tune_config = TuneConfig(
                method=method,
                max_steps=args.steps,
                lr=LEARNING_RATES[method],
                micro_batch_size=args.batch,
                seq_len=256,
                eval_fraction=0,
                lora_dropout=0.0,
                device="cpu",
            )
            run = tune(workspace, dataset.manifest.name, base_folder, tune_config)
            if method is TuneMethod.FULL:
                model = TransformersModel.load(str(run.output_dir), device="cpu")
            else:
                model = TransformersModel.load(base_folder, adapters=[str(run.output_dir)], device="cpu")
            tuned = workspace.rag_pipeline(model, GENERATION)
            rows.append(
                {
                    "variant": f"{method} on {variants}",
                    "method": str(method),
                    "data": variants,
                    "dataset_rows": dataset.manifest.rows,
                    "dataset_tokens": dataset.manifest.tokens,
                    "epochs": round(
                        run.manifest["steps"] * run.manifest["global_batch_rows"] / run.manifest["train_rows"], 1
                    ),
                    "new": closed_book(tuned, new_questions).accuracy,
                    "known": closed_book(tuned, known_questions).accuracy,
                    "final_train_loss": run.manifest["final_train_loss"],
                    "train_seconds": run.manifest["wall_seconds"],
                    "tokens_per_second": run.manifest["tokens_per_second"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "lang": args.lang,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "base_model": base_folder,
        "steps": args.steps,
        "batch_rows": args.batch,
        "seq_len": 256,
        "learning_rates": {str(k): v for k, v in LEARNING_RATES.items()},
        "chance": round(chance(world), 4),
        "questions": {"new": len(new_questions), "known": len(known_questions)},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"lab_tune-{args.lang}.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    lines = [
        f"# Lab fine-tuning benchmark ({args.lang})",
        "",
        f"{result['date']} · {result['machine']} · {args.steps} steps x {args.batch} rows x 256 tokens per run "
        f"(matched compute); chance {result['chance']:.1%}",
        "",
        "| model | epochs | closed-book, new people | closed-book, known people | train s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row.get('epochs', '-')} | {row['new']:.1%} | {row['known']:.1%} | "
            f"{row.get('train_seconds', '-')} |"
        )
    (args.out / f"lab_tune-{args.lang}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
