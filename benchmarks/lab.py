#!/usr/bin/env python
"""The lab benchmark: full-size lab model training time on this machine, then accuracy on the
world's *new* people (never seen in pretraining) closed-book, with RAG top-1 and top-3 from a real
knowledge base (not oracle), with the oracle passage, and on *known* people closed-book.

    .venv/bin/python benchmarks/lab.py [--lang en|ja] [--retrain]

The model is cached by configuration (``~/.cache/infuse/lab``); training time is read from its
manifest, so ``--retrain`` measures it afresh. Writes ``benchmarks/results/lab-<lang>.{json,md}``.
Targets (issue 4): training < 5 min on 2 cores; base near chance; RAG top-1 >= 90%; known >= 95%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from infuse.lab.evaluate import evaluate_lab_model, summary
from infuse.lab.train import LabTrainConfig, read_manifest, train_lab_model
from infuse.models.transformers_backend import TransformersModel
from infuse.progress import PrintProgress

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", choices=["en", "ja"], default="en")
    parser.add_argument("--retrain", action="store_true", help="train even if the model is cached")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    config = LabTrainConfig.for_lang(args.lang)
    folder = train_lab_model(config, force=args.retrain, progress=PrintProgress())
    manifest = read_manifest(folder)
    started = time.perf_counter()
    model = TransformersModel.load(str(folder))
    report = evaluate_lab_model(
        model,
        config.world(),
        tempfile.mkdtemp(prefix="infuse-lab-bench-"),
        qa_person_ids=manifest["data"]["qa_person_ids"],
    )
    accuracies = summary(report)
    result = {
        "lang": args.lang,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "model": {
            k: manifest[k] for k in ("parameters", "vocab_size", "final_loss", "wall_seconds", "tokens_per_second")
        },
        "config": manifest["config"],
        "chance": report["chance"],
        "accuracy": accuracies,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "report": report,
        "targets": {
            "training under 5 minutes": manifest["wall_seconds"] < 300,
            "base closed-book near chance (< 2x chance + 5 points)": accuracies["closed_book_new"]
            < 2 * report["chance"] + 0.05,
            "RAG top-1 >= 90%": accuracies["rag_top1_new"] >= 0.90,
            "known people closed-book >= 95%": accuracies["closed_book_known"] >= 0.95,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"lab-{args.lang}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    rows = [
        ("base, closed book, new people", "closed_book_new"),
        ("RAG top-1 (knowledge base), new people", "rag_top1_new"),
        ("RAG top-3 (knowledge base), new people", "rag_top3_new"),
        ("oracle passage, new people", "oracle_open_book_new"),
        ("closed book, known people", "closed_book_known"),
        ("  known, with QA lines in training", "closed_book_known_qa"),
        ("  known, from bios only", "closed_book_known_bio_only"),
    ]
    lines = [
        f"# Lab benchmark ({args.lang})",
        "",
        f"{result['date']} · {result['machine']} · {manifest['parameters']:,} parameters, vocabulary {manifest['vocab_size']}, "
        f"trained in {manifest['wall_seconds']:.0f}s ({manifest['tokens_per_second']:,.0f} tokens/s), final loss {manifest['final_loss']:.3f}",
        "",
        "| set | accuracy | questions |",
        "|---|---|---|",
        *(f"| {label} | {accuracies[key]:.1%} | {report[key]['total']} |" for label, key in rows if key in accuracies),
        f"| chance | {report['chance']:.1%} | |",
        "",
        "| target | met |",
        "|---|---|",
        *(f"| {name} | {'yes' if met else 'NO'} |" for name, met in result["targets"].items()),
        "",
    ]
    markdown = "\n".join(lines)
    (args.out / f"lab-{args.lang}.md").write_text(markdown, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    main()
