#!/usr/bin/env python
"""What retrieval costs per answer: retrieval, prompt building and generation timed separately,
with and without RAG, for the same model and questions.

The default model is a random-weight Llama (about 25M parameters, built from a config) so the
script runs offline; pass ``--model`` for a real one. Generation length is fixed per question
(the same ``max_new_tokens`` for both variants, and the per-token time is reported), so the
difference is what retrieval and the longer prompt add.

    .venv/bin/python benchmarks/answer_latency.py [--model ID_OR_FOLDER] [--max-new-tokens 32] [--repeats 3]

Writes ``benchmarks/results/answer_latency.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from infuse.config import ModelSettings  # noqa: E402
from infuse.demo import DEMO_QUERIES, SAMPLE_CORPUS  # noqa: E402
from infuse.models import GenerationConfig, load_model  # noqa: E402
from infuse.rag import RagAnswer  # noqa: E402
from infuse.testing import build_random_llama  # noqa: E402
from infuse.workspace import Workspace  # noqa: E402

QUESTIONS = DEMO_QUERIES + [
    "How long are backups kept?",
    "When are invoices issued?",
    "Which regions does Acme Cloud run in?",
    "What changed in release 4.2?",
    "How long are messages retained in Acme Queue?",
    "Is SMS accepted for production access?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(answers: list[RagAnswer]) -> dict:
    def column(get) -> dict:
        values = [get(a) for a in answers]
        return {"mean": statistics.fmean(values), "median": statistics.median(values), "p95": percentile(values, 0.95)}

    return {
        "answers": len(answers),
        "retrieval_ms": column(lambda a: a.timings.retrieval_ms),
        "prompt_ms": column(lambda a: a.timings.prompt_ms),
        "generation_ms": column(lambda a: a.timings.generation_ms),
        "total_ms": column(lambda a: a.timings.total_ms),
        "prompt_tokens": column(lambda a: a.prompt_tokens),
        "completion_tokens": column(lambda a: a.completion_tokens),
        "ms_per_completion_token": column(lambda a: a.timings.generation_ms / max(1, a.completion_tokens)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model id or folder (default: a random-weight Llama built here)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="infuse-latency-"))
    model_path = args.model or build_random_llama(
        scratch / "model",
        chat_template=True,
        hidden_size=512,
        layers=8,
        heads=8,
        vocab_size=2000,
        max_positions=2048,
        training_text=[p.read_text(encoding="utf-8", errors="ignore") for p in SAMPLE_CORPUS.rglob("*") if p.is_file()],
    )
    ws = Workspace.open(scratch / "ws", create=True)
    ws.ingest([SAMPLE_CORPUS], id_field="id")
    model = load_model(ModelSettings(name=model_path))
    parameters = sum(p.numel() for p in model.model.parameters()) if hasattr(model, "model") else None
    # A fixed length: the model may not stop on its own, and both variants must generate as much.
    pipeline = ws.rag_pipeline(model, GenerationConfig(max_new_tokens=args.max_new_tokens))
    pipeline.answer(QUESTIONS[0])  # warm-up: loads the embedder, fills caches
    pipeline.answer(QUESTIONS[0], use_retrieval=False)

    runs: dict[str, list[RagAnswer]] = {"rag": [], "closed_book": []}
    for _ in range(args.repeats):
        for question in QUESTIONS:
            runs["rag"].append(pipeline.answer(question))
            runs["closed_book"].append(pipeline.answer(question, use_retrieval=False))
    summary = {name: summarise(answers) for name, answers in runs.items()}
    rag, closed = summary["rag"], summary["closed_book"]
    result = {
        "model": model.name if args.model else f"random-weight Llama ({parameters / 1e6:.1f}M parameters)",
        "parameters": parameters,
        "questions": len(QUESTIONS),
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, CPU",
        "date": time.strftime("%Y-%m-%d"),
        "variants": summary,
        "rag_overhead_ratio": rag["total_ms"]["mean"] / closed["total_ms"]["mean"],
        "extra_prompt_tokens_per_question": rag["prompt_tokens"]["mean"] - closed["prompt_tokens"]["mean"],
        "not_found_answers": sum(1 for a in runs["rag"] if not a.found_relevant),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answer_latency.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    rows = [
        "| variant | retrieval ms | prompt ms | generation ms | total ms (mean / p95) | prompt tokens | completion tokens | ms / completion token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        rows.append(
            f"| {name} | {s['retrieval_ms']['mean']:.1f} | {s['prompt_ms']['mean']:.2f} | {s['generation_ms']['mean']:.0f} | "
            f"{s['total_ms']['mean']:.0f} / {s['total_ms']['p95']:.0f} | {s['prompt_tokens']['mean']:.0f} | "
            f"{s['completion_tokens']['mean']:.0f} | {s['ms_per_completion_token']['mean']:.1f} |"
        )
    markdown = "\n".join(
        [
            "# Answer latency: RAG vs closed-book",
            "",
            f"{result['date']} · {result['machine']} · model: {result['model']} · {len(QUESTIONS)} questions (EN + JA) x "
            f"{args.repeats} · max_new_tokens {args.max_new_tokens}",
            "",
            *rows,
            "",
            f"RAG end-to-end time is **{result['rag_overhead_ratio']:.2f}x** the closed-book time; it adds "
            f"**{result['extra_prompt_tokens_per_question']:.0f} prompt tokens** per question "
            f"({result['not_found_answers']} of {len(runs['rag'])} RAG answers found nothing relevant and skipped generation).",
            "",
        ]
    )
    (args.out / "answer_latency.md").write_text(markdown, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    main()
