#!/usr/bin/env python
"""Fine-tuning throughput: infuse's packed trainer vs a plain transformers ``Trainer`` + PEFT
baseline with (dynamic) padding, on the same model, data, LoRA settings and examples per step.

    .venv/bin/python benchmarks/tune_throughput.py [--hidden 256 --layers 4] [--examples 646]

Data: SQuAD 2.0 dev paragraphs from ``../shared/data`` (real text of varied length), one text
example each, truncated to 512 tokens. Model: a random-weight Llama built from a config with a
BPE tokenizer trained on the paragraphs (throughput does not depend on the weights). Each side
runs in its own subprocess (so peak RSS is its own) for one epoch over the same examples:

* infuse: examples packed into 512-token rows with per-document positions and a block-diagonal
  mask; ``micro_batch_size`` rows per step chosen so a step holds about as many examples as the
  baseline's batch;
* baseline: ``Trainer`` with ``DataCollatorForLanguageModeling`` (pads each batch to its longest
  example), ``per_device_train_batch_size`` examples per step.

Reported: useful (non-padding) tokens per second, the share of padding, wall time, peak memory,
and the ratio infuse / baseline measured in the same run. Writes
``benchmarks/results/tune_throughput.{json,md}`` (``--tag`` names another file, e.g. for a GPU run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "squad-v2-dev" / "dev-v2.0.json"
MAX_TOKENS = 512


def paragraphs(limit: int) -> list[str]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    texts = [p["context"] for article in data["data"] for p in article["paragraphs"]]
    return texts[:limit]


def peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_infuse(model_dir: str, rows_file: Path, rows_per_step: int, device: str, work: Path) -> dict:
    from infuse.tuning.datasets import load_dataset
    from infuse.tuning.trainer import TuneConfig, train

    dataset = load_dataset(work, str(rows_file))
    config = TuneConfig(
        epochs=1,
        micro_batch_size=rows_per_step,
        seq_len=MAX_TOKENS,
        eval_fraction=0,
        lora_dropout=0.0,
        device=device,
        warmup_ratio=0.0,
    )
    started = time.perf_counter()
    result = train(model_dir, dataset, work / "infuse-run", config)
    wall = time.perf_counter() - started
    from infuse.tuning.trainer import read_log

    log = read_log(work / "infuse-run")
    return {
        "wall_seconds": result.wall_seconds,
        "total_seconds": wall,
        "steps": result.steps,
        "tokens_in_batches": result.tokens,
        "mean_loss": sum(e["loss"] for e in log) / len(log),
        "peak_memory_mb": peak_mb(device),
    }


def run_baseline(model_dir: str, texts: list[str], batch: int, device: str, work: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    encoded = [
        tokenizer(t, truncation=True, max_length=MAX_TOKENS - 1)["input_ids"] + [tokenizer.eos_token_id] for t in texts
    ]
    dataset = [{"input_ids": ids} for ids in encoded]  # a list is a map-style dataset for Trainer
    args = TrainingArguments(
        output_dir=str(work / "baseline"),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=not device.startswith("cuda"),
        bf16=device.startswith("cuda"),
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    padded = 0
    for begin in range(0, len(encoded), batch):  # what the collator pads to (batches are shuffled; estimate in order)
        chunk = encoded[begin : begin + batch]
        padded += max(len(e) for e in chunk) * len(chunk)
    started = time.perf_counter()
    output = trainer.train()
    wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "steps": output.global_step,
        "tokens_in_batches_estimate": padded,
        "mean_loss": output.training_loss,
        "peak_memory_mb": peak_mb(device),
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    texts = [json.loads(line)["text"] for line in (work / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    if args.worker == "infuse":
        result = run_infuse(args.model_dir, work / "rows.jsonl", args.rows_per_step, args.device, work)
    else:
        result = run_baseline(args.model_dir, texts, args.batch, args.device, work)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=646)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=8, help="baseline examples per step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. -h200")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--worker", choices=["infuse", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--rows-per-step", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from transformers import AutoTokenizer

    from infuse.testing import build_random_llama

    work = Path(tempfile.mkdtemp(prefix="infuse-tune-throughput-"))
    texts = paragraphs(args.examples)
    model_dir = build_random_llama(
        work / "model",
        hidden_size=args.hidden,
        layers=args.layers,
        heads=args.heads,
        vocab_size=args.vocab,
        training_text=texts,
        max_positions=MAX_TOKENS,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [min(len(tokenizer(t)["input_ids"]) + 1, MAX_TOKENS) for t in texts]
    useful = sum(lengths)
    # infuse rows hold ~MAX_TOKENS / mean-length examples: match the baseline's examples per step.
    rows_per_step = max(1, round(args.batch * (useful / len(lengths)) / MAX_TOKENS))
    with (work / "rows.jsonl").open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}) + "\n")
    results = {}
    for side in ("baseline", "infuse"):
        command = [
            sys.executable,
            __file__,
            "--worker",
            side,
            "--work",
            str(work),
            "--model-dir",
            model_dir,
            "--rows-per-step",
            str(rows_per_step),
            "--batch",
            str(args.batch),
            "--device",
            args.device,
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{side} failed:\n{done.stderr[-4000:]}")
        results[side] = json.loads(line[len("RESULT ") :])
        results[side]["useful_tokens_per_second"] = useful / results[side]["wall_seconds"]
        print(side, json.dumps(results[side]), flush=True)
    baseline, ours = results["baseline"], results["infuse"]
    import torch
    import transformers

    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores"
            + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ", CPU only")
        ),
        "model": {
            "architecture": "LlamaForCausalLM (random weights)",
            "hidden": args.hidden,
            "layers": args.layers,
            "heads": args.heads,
            "vocab": len(tokenizer),
        },
        "data": {
            "examples": len(texts),
            "useful_tokens": useful,
            "mean_tokens": round(useful / len(texts), 1),
            "max_tokens": MAX_TOKENS,
        },
        "lora": {"r": 16, "alpha": 32, "targets": "all-linear"},
        "baseline_examples_per_step": args.batch,
        "infuse_rows_per_step": rows_per_step,
        "padding_share_baseline": round(1 - useful / baseline["tokens_in_batches_estimate"], 3),
        "padding_share_infuse": round(1 - useful / ours["tokens_in_batches"], 3),
        "results": results,
        "ratio_useful_tokens_per_second": round(
            ours["useful_tokens_per_second"] / baseline["useful_tokens_per_second"], 2
        ),
        "ratio_peak_memory": round(ours["peak_memory_mb"] / baseline["peak_memory_mb"], 2),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"tune_throughput{args.tag}"
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md = [
        f"# Fine-tuning throughput{args.tag}",
        "",
        f"{summary['date']} · {summary['machine']} · Llama {args.hidden}d x {args.layers} layers (random), LoRA r16 all-linear, "
        f"{len(texts)} SQuAD paragraphs (mean {summary['data']['mean_tokens']} tokens), one epoch",
        "",
        "| trainer | useful tokens/s | padding | wall s | peak memory MB | mean train loss |",
        "|---|---|---|---|---|---|",
        f"| transformers Trainer + PEFT, padded batches of {args.batch} | {baseline['useful_tokens_per_second']:,.0f} | "
        f"{summary['padding_share_baseline']:.0%} | {baseline['wall_seconds']:.1f} | {baseline['peak_memory_mb']:,.0f} | {baseline['mean_loss']:.3f} |",
        f"| infuse, packed rows of {MAX_TOKENS} x {rows_per_step} | {ours['useful_tokens_per_second']:,.0f} | "
        f"{summary['padding_share_infuse']:.0%} | {ours['wall_seconds']:.1f} | {ours['peak_memory_mb']:,.0f} | {ours['mean_loss']:.3f} |",
        "",
        f"infuse / baseline: **{summary['ratio_useful_tokens_per_second']}x** useful tokens/s, "
        f"{summary['ratio_peak_memory']}x peak memory.",
    ]
    (args.out / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
