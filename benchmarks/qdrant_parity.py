#!/usr/bin/env python
"""Do the Qdrant store and the LanceDB store rank alike? SQuAD 2.0 dev and JaQuAD dev.

For each dataset the cached LanceDB workspace of benchmarks/retrieval.py (built here when missing)
is copied into a Qdrant store with ``infuse.store.migrate.copy_store`` (vectors reused), then
every answerable question is searched on both stores with the same embedder, tokenizer and
settings (dense, keyword and hybrid modes). Reported per dataset and mode:

- the share of queries whose top-10 chunks are the same list in the same order; the others are
  split into "ties only" (wherever the lists differ, the chunks swapped have equal scores, to 4
  decimals, in LanceDB's list: only equally scored chunks are ordered differently) and real
  differences (shown);
- nDCG@10 of the gold paragraph (documents, as in retrieval.py) on each store and the difference;
- the same for **Qdrant's engine** in-process (qdrant-edge-py, one shard with its default index
  settings, fed the very points and queries the store sends: ``infuse.store.qdrant_edge``). At
  these sizes (under 4,000 chunks) Qdrant keeps the segment unindexed and searches it exactly:
  HNSW's approximation is not part of these numbers;
- per-query latency of the ranked lists (dense + keyword, one query, vectors and tokens computed
  beforehand): LanceDB embedded (Rust), **qdrant-client local mode** (pure Python and numpy, exact
  search: not representative of anything but itself) and qdrant-edge (Qdrant's Rust engine, in
  the same process: no network, no server; a server adds a round trip).

Usage::

    nice -n 10 .venv/bin/python benchmarks/qdrant_parity.py                        # every question
    nice -n 10 .venv/bin/python benchmarks/qdrant_parity.py --limit-questions 300  # quick run
    ... --reuse   # keep the cached LanceDB workspaces although library sources changed since

Results: benchmarks/results/qdrant_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval as rb  # noqa: E402  (the retrieval benchmark's data, workspaces and metrics)
from infuse.config import QdrantSettings, SearchMode  # noqa: E402
from infuse.embedders.base import Embedder  # noqa: E402
from infuse.retrieval.search import HybridSearcher, SearchHit  # noqa: E402
from infuse.store.base import KnowledgeStore  # noqa: E402
from infuse.store.migrate import copy_store  # noqa: E402
from infuse.store.qdrant import QdrantStore  # noqa: E402
from infuse.store.qdrant_edge import EdgeEngine  # noqa: E402
from infuse.workspace import Workspace  # noqa: E402

TOP = 10
MODES = [SearchMode.DENSE, SearchMode.LEXICAL, SearchMode.HYBRID]


class FixedQueries:
    """The workspace's embedder with every query embedded once beforehand (both stores get the
    very same vectors, and the embedding time is not part of either store's numbers)."""

    def __init__(self, embedder: Embedder, queries: list[str]) -> None:
        self._vectors = dict(zip(queries, embedder.embed_queries(queries)))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])


def searcher(ws: Workspace, store: KnowledgeStore, embedder: FixedQueries) -> HybridSearcher:
    return HybridSearcher(store, embedder, ws.tokenizer, ws.settings.search)


def compare_top(a: list[SearchHit], b: list[SearchHit]) -> str:
    """identical; ties_only: wherever the lists differ, ``b``'s chunk has the score there that
    ``a`` gave it too (both lists score it alike, only equal scores are ordered differently);
    different otherwise."""
    if [h.chunk.chunk_id for h in a] == [h.chunk.chunk_id for h in b]:
        return "identical"
    scores_a = {h.chunk.chunk_id: round(h.score, 4) for h in a}
    for x, y in zip(a, b):
        if x.chunk.chunk_id != y.chunk.chunk_id and scores_a.get(y.chunk.chunk_id) != round(x.score, 4):
            return "different"
    return "ties_only" if len(a) == len(b) else "different"


def doc_rank(hits: list[SearchHit], gold: str) -> int | None:
    docs: list[str] = []
    for hit in hits:
        if hit.chunk.doc_id not in docs:
            docs.append(hit.chunk.doc_id)
    docs = docs[: rb.CUTOFF]
    return docs.index(gold) + 1 if gold in docs else None


def latency(store: KnowledgeStore, vectors: list[np.ndarray], tokens: list[list[str]], depth: int) -> dict[str, float]:
    for v, t in list(zip(vectors, tokens))[:10]:
        store.ranked_lists(v, t, depth)
    times = []
    for v, t in zip(vectors, tokens):
        clock = time.perf_counter()
        store.ranked_lists(v, t, depth)
        times.append((time.perf_counter() - clock) * 1000)
    return {
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "queries": len(times),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }


def library_fingerprint(dataset: rb.Dataset, reuse: bool) -> str:
    """The library fingerprint the cached workspace must have: the current one, or with ``reuse``
    the one it was built with (a change outside ingest, e.g. a Qdrant setting, need not rebuild it)."""
    marker = rb.CACHE / "workspaces" / f"{dataset.name}--morphological.json"
    if reuse and marker.exists():
        built: str = json.loads(marker.read_text())["library"]
        return built
    return rb.library_fingerprint()


def run_dataset(dataset: rb.Dataset, limit: int | None, latency_queries: int, reuse: bool) -> dict[str, Any]:
    corpus, sha = rb.write_corpus(dataset)
    fingerprint = library_fingerprint(dataset, reuse)
    ws, _ = rb.prepare_workspace(dataset, "morphological", corpus, sha, fingerprint, fresh=False)
    manifest = ws.manifest()
    assert manifest is not None
    lance = ws._snapshot(manifest)
    folder = rb.CACHE / "qdrant" / dataset.name
    shutil.rmtree(folder, ignore_errors=True)
    qdrant = QdrantStore(QdrantSettings(exact=True), "chunks", manifest.embedder.dimension, local_path=folder)
    clock = time.perf_counter()
    copied = copy_store(ws.store(), qdrant)
    rb.log(f"{dataset.name}: copied {copied.chunks} chunks into Qdrant local mode in {copied.seconds:.1f}s")
    shutil.rmtree(folder.with_name(folder.name + "-edge"), ignore_errors=True)
    engine = EdgeEngine(folder.with_name(folder.name + "-edge"), QdrantSettings(), manifest.embedder.dimension)
    average = qdrant._average_length()
    assert average is not None
    engine.write(list(lance.iter_indexed()), average)
    engine.shard.optimize()  # what a server's optimizer does in the background
    stores: dict[str, Any] = {"lancedb": lance, "qdrant-local": qdrant, "qdrant-edge": engine}
    questions = rb.limit_questions(dataset.questions, limit)
    texts = [q.text for q in questions]
    embedder = FixedQueries(ws.embedder, texts)
    k_chunks = rb.DEFAULT_K_CHUNKS
    result: dict[str, Any] = {
        "chunks": copied.chunks,
        "documents": copied.documents,
        "questions": len(questions),
        "workspace_library_fingerprint": fingerprint,
        "migration_seconds": round(time.perf_counter() - clock, 2),
        "modes": {},
    }
    for mode in MODES:
        per_store = {
            name: searcher(ws, store, embedder).search_many(texts, k_chunks, mode=mode)
            for name, store in stores.items()
        }
        ranks = {
            name: [doc_rank(hits, q.gold) for q, hits in zip(questions, lists)] for name, lists in per_store.items()
        }
        ndcg = {name: rb.metrics(r)["ndcg@10"] for name, r in ranks.items()}
        result["modes"][mode.value] = {"ndcg@10": {name: round(v, 5) for name, v in ndcg.items()}}
        for name in ("qdrant-local", "qdrant-edge"):
            outcomes = {"identical": 0, "ties_only": 0, "different": 0}
            examples: list[dict[str, Any]] = []
            for question, a, b in zip(questions, per_store["lancedb"], per_store[name]):
                outcome = compare_top(a[:TOP], b[:TOP])
                outcomes[outcome] += 1
                if outcome == "different" and len(examples) < 5:
                    examples.append(
                        {
                            "question": question.text,
                            "lancedb": [(h.chunk.chunk_id.rsplit("-", 1)[-1], round(h.score, 5)) for h in a[:TOP]],
                            name: [(h.chunk.chunk_id.rsplit("-", 1)[-1], round(h.score, 5)) for h in b[:TOP]],
                        }
                    )
            n = len(questions)
            result["modes"][mode.value][name] = {
                "same_top10_share": round(outcomes["identical"] / n, 4),
                "ties_only_share": round(outcomes["ties_only"] / n, 4),
                "different_share": round(outcomes["different"] / n, 4),
                "counts": outcomes,
                "ndcg@10_difference": round(ndcg[name] - ndcg["lancedb"], 5),
                "different_examples": examples,
            }
            rb.log(f"{dataset.name} {mode.value} {name}: {outcomes}, nDCG@10 {ndcg}")
    sample = texts[:latency_queries]
    vectors = [embedder.embed_queries([t])[0] for t in sample]
    tokens = [ws.tokenizer.tokenize(t) for t in sample]
    depth = max(k_chunks, ws.settings.search.candidates)
    result["latency_ranked_lists"] = {
        "lancedb (embedded LanceDB engine)": latency(lance, vectors, tokens, depth),
        "qdrant-local (qdrant-client local mode: pure Python, not the Qdrant engine)": latency(
            qdrant, vectors, tokens, depth
        ),
        "qdrant-edge (Qdrant's engine in-process, one shard, no network)": latency(engine, vectors, tokens, depth),
        "depth": depth,
    }
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Qdrant store vs LanceDB store: the same rankings?",
        "",
        f"Command: `{results['command']}`; machine: {results['machine']['cpu_model']}, {os.cpu_count()} cores, load {results['load_avg_1min_before']} before.",
        "",
        "Top-10 chunks per query compared with LanceDB's as ordered lists; *ties only*: they differ only "
        "in the order of chunks LanceDB scores equally (4 decimals). "
        "qdrant-local: qdrant-client's local mode (exact search); qdrant-edge: Qdrant's engine in-process "
        "(default index settings: at these sizes it searches exactly, HNSW is not built).",
        "",
        "| dataset | mode | Qdrant engine | queries | same top-10 | ties only | different "
        "| nDCG@10 LanceDB | nDCG@10 Qdrant | difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in results["datasets"].items():
        for mode, m in data["modes"].items():
            for engine in ("qdrant-local", "qdrant-edge"):
                e = m[engine]
                lines.append(
                    f"| {name} | {mode} | {engine} | {data['questions']} | {e['same_top10_share']:.2%} "
                    f"| {e['ties_only_share']:.2%} | {e['different_share']:.2%} | {m['ndcg@10']['lancedb']:.4f} "
                    f"| {m['ndcg@10'][engine]:.4f} | {e['ndcg@10_difference']:+.5f} |"
                )
    lines += ["", "## Latency of one query's ranked lists (dense + keyword, depth shown)", ""]
    lines += ["| dataset | engine | median ms | p95 ms | queries | load after |", "|---|---|---|---|---|---|"]
    for name, data in results["datasets"].items():
        lat = data["latency_ranked_lists"]
        for engine, v in lat.items():
            if engine != "depth":
                lines.append(
                    f"| {name} | {engine} | {v['median_ms']} | {v['p95_ms']} | {v['queries']} | {v['load_avg_1min_after']} |"
                )
    lines += ["", "Migration (copy LanceDB -> Qdrant local mode, vectors reused, verified):", ""]
    for name, data in results["datasets"].items():
        lines.append(
            f"- {name}: {data['chunks']} chunks, {data['documents']} documents in {data['migration_seconds']} s"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=rb.DEFAULT_DATA)
    parser.add_argument("--limit-questions", type=int, default=None)
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=rb.DEFAULT_OUT)
    parser.add_argument(
        "--reuse", action="store_true", help="use the cached LanceDB workspaces even if library sources changed since"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "command": " ".join(["benchmarks/qdrant_parity.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": rb.machine(),
        "load_avg_1min_before": round(os.getloadavg()[0], 2),
        "datasets": {},
    }
    for dataset in rb.load_datasets(args.data):
        results["datasets"][dataset.name] = run_dataset(dataset, args.limit_questions, args.latency_queries, args.reuse)
    results["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "qdrant_parity.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.out / "qdrant_parity.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
