#!/usr/bin/env python
"""How much do deleted points skew Qdrant's keyword scores, and do the vacuum thresholds fix it?

Qdrant's sparse ``modifier: idf`` counts a segment's deleted points in the IDF until the
optimizer vacuums the segment (qdrant/qdrant#6735). This runs the real Qdrant engine in-process
(qdrant-edge-py) on the SQuAD 2.0 dev chunks of the cached retrieval workspace (the points the
Qdrant store writes, through ``infuse.store.qdrant_edge.EdgeEngine``), deletes a share of the documents, and compares the
keyword top-10 and scores of sample questions with exact BM25 over the kept chunks (infuse's
``bm25``), before and after the optimizer ran, for two vacuum settings: Qdrant's defaults
(deleted_threshold 0.2, vacuum_min_vector_number 1000) and infuse's (0.05, 100).

Usage::

    nice -n 10 .venv/bin/python benchmarks/qdrant_idf_deletes.py   # needs benchmarks/qdrant_parity.py's cache

Results: benchmarks/results/qdrant_idf_deletes.{json,md}.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval as rb  # noqa: E402
from infuse.config import QdrantSettings  # noqa: E402
from infuse.store.base import IndexedChunk, ScoredChunk, best_first, bm25  # noqa: E402
from infuse.store.filters import AnyOf  # noqa: E402
from infuse.store.qdrant_edge import EdgeEngine  # noqa: E402
from infuse.store.terms import TermStatistics  # noqa: E402

SHARES = [0.02, 0.1, 0.3]
VACUUM = {"qdrant defaults (0.2, 1000)": (0.2, 1000), "infuse defaults (0.05, 100)": (0.05, 100)}
QUESTIONS = 300


class FixedAverage:
    """Exact BM25 over the kept chunks, with the average keyword count the weights were written with."""

    def __init__(self, kept: list[IndexedChunk], average: float) -> None:
        self.kept, self.average = kept, average

    def lexical_search(self, tokens: list[str], k: int) -> list[ScoredChunk]:
        chunks = self.kept
        terms = list(dict.fromkeys(tokens))
        stats = TermStatistics.from_token_lists(c.tokens for c in chunks)
        tf = np.array([[c.tokens.count(t) for t in terms] for c in chunks], dtype=np.float64)
        lengths = np.array([len(c.tokens) for c in chunks], dtype=np.float64)
        scores = bm25(tf, lengths, np.array([stats.idf(t) for t in terms]), self.average)
        return best_first([ScoredChunk(c.chunk, float(s)) for c, s in zip(chunks, scores) if s > 0], k)


def compare(engine: EdgeEngine, exact: FixedAverage, queries: list[list[str]]) -> dict[str, float]:
    same, overlap, errors = 0, [], []
    for tokens in queries:
        got = {h.chunk.chunk_id: h.score for h in engine.lexical_search(tokens, 10)}
        expected = {h.chunk.chunk_id: h.score for h in exact.lexical_search(tokens, 10)}
        same += list(got) == list(expected)
        overlap.append(len(set(got) & set(expected)) / max(len(expected), 1))
        errors += [abs(got[c] - s) / s for c, s in expected.items() if c in got and s > 0]
    return {
        "same_top10_share": round(same / len(queries), 4),
        "mean_top10_overlap": round(float(np.mean(overlap)), 4),
        "mean_relative_score_error": round(float(np.mean(errors)), 5) if errors else 0.0,
    }


def main() -> int:
    squad = rb.load_datasets(rb.DEFAULT_DATA)[0]
    corpus, sha = rb.write_corpus(squad)
    ws, _ = rb.prepare_workspace(squad, "morphological", corpus, sha, rb.library_fingerprint(), fresh=False)
    store = ws.store()
    assert store is not None
    items: list[IndexedChunk] = list(store.iter_indexed())
    dimension = len(items[0].vector)
    average = float(np.mean([len(i.tokens) for i in items]))
    questions = rb.limit_questions(squad.questions, QUESTIONS)
    queries = [ws.tokenizer.tokenize(question.text) for question in questions]
    doc_ids = sorted({i.chunk.doc_id for i in items})
    results: dict[str, Any] = {
        "command": "benchmarks/qdrant_idf_deletes.py",
        "engine": "qdrant-edge-py (Qdrant's engine in-process), one shard",
        "chunks": len(items),
        "questions": len(queries),
        "load_avg_1min_before": round(os.getloadavg()[0], 2),
        "runs": [],
    }
    for share in SHARES:
        gone = set(random.Random(0).sample(doc_ids, int(len(doc_ids) * share)))
        kept = [i for i in items if i.chunk.doc_id not in gone]
        # Exact BM25 with the weights' average as written (the store's optimize would rewrite them):
        # what differs below is the IDF only.
        exact_written = FixedAverage(kept, average)
        for name, (threshold, minimum) in VACUUM.items():
            folder = rb.CACHE / "qdrant-edge-idf"
            shutil.rmtree(folder, ignore_errors=True)
            settings = QdrantSettings(vacuum_deleted_threshold=threshold, vacuum_min_vector_number=minimum)
            engine = EdgeEngine(folder, settings, dimension)
            engine.write(items, average)
            engine.shard.optimize()
            engine.delete(AnyOf("doc_id", sorted(gone)))
            before = compare(engine, exact_written, queries)
            vacuumed = engine.shard.optimize()
            after = compare(engine, exact_written, queries)
            run = {
                "deleted_share": share,
                "deleted_chunks": len(items) - len(kept),
                "vacuum": name,
                "before_optimize": before,
                "optimizer_vacuumed": vacuumed,
                "after_optimize": after,
            }
            results["runs"].append(run)
            rb.log(json.dumps(run))
            engine.shard.close()
    results["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    out = rb.DEFAULT_OUT
    (out / "qdrant_idf_deletes.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Qdrant: keyword scores after deletes (IDF counts deleted points until vacuum)",
        "",
        f"Engine: {results['engine']}; {results['chunks']} SQuAD chunks, {results['questions']} questions; "
        "compared with exact BM25 over the kept chunks.",
        "",
        "| deleted | vacuum settings | same top-10 before | score error before | vacuumed | same top-10 after | score error after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        b, a = r["before_optimize"], r["after_optimize"]
        lines.append(
            f"| {r['deleted_share']:.0%} ({r['deleted_chunks']} chunks) | {r['vacuum']} | {b['same_top10_share']:.1%} "
            f"| {b['mean_relative_score_error']:.3%} | {'yes' if r['optimizer_vacuumed'] else 'no'} "
            f"| {a['same_top10_share']:.1%} | {a['mean_relative_score_error']:.3%} |"
        )
    (out / "qdrant_idf_deletes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
