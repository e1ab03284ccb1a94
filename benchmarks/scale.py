#!/usr/bin/env python
"""Scale benchmark of the LanceDB knowledge store: 10k, 100k and 1M chunks on one machine.

Not a test: it measures, writes ``benchmarks/results/scale.json`` and prints a table. What it
measures is the *store* (writes, indexes, dense / keyword / hybrid search), so the expensive and
irrelevant part, embedding a million chunks, is done once and cached:

- **Text**: real English sentences from the shared data (SQuAD 2.0 dev paragraphs and the
  RealTimeQA news articles in ``../shared/data``), split into a pool of sentences; chunk ``i`` is
  3-6 sentences drawn with a fixed seed, so every corpus is the first N chunks of the same
  million. The text is real, the combinations are not (a chunk mixes sentences of unrelated
  articles), which makes keyword statistics realistic and neighbours less clustered than in a
  real corpus.
- **Vectors**: infuse's hashing embedder (``hashing-384``; 384 dimensions like the default
  MiniLM). Its counts of joined texts are the sum of theirs, so a chunk's vector is the
  normalised sum of its sentences' counts: exact, and computed once into
  ``~/.cache/infuse-bench/scale/`` (outside the repository; ``--cache``), with the stores built
  there too. No neural model is needed (none may be downloaded here); hashing vectors are less
  clustered than MiniLM's, which makes approximate search *harder*, not easier.
- **Queries**: SQuAD 2.0 dev questions (the first ``--queries``), embedded and tokenised as
  infuse does for a search.

Per size, one process builds the store (``replace_documents`` in 10k-chunk commits, as ingest
does; one document per 10 chunks; four access groups), brings the keyword index up to date and
builds the vector index when the size reaches ``[store.index] min_rows``; a second, fresh
process opens it and measures searches, so its peak RSS is what a serving process needs. It
reports p50/p95 latency of dense, keyword and hybrid searches (dense 50 + keyword 50 fused by
RRF, top 10) one at a time and 8 at once, the same as a restricted caller (access prefilter,
keyword scores over what they may read), ANN recall@10 against exact search (numpy over the
cached vectors), build times, disk size and peak RSS, and how each grows from the smallest to
the largest size.

Before timing, the search process reads the store's files once (a server that has been up a
while has them in memory; the time it took is reported). After the searches, a third process
times re-ingesting 1,000 existing chunks into the full store (``upsert``; ``--no-upsert`` skips it)
and brings the indexes up to date again.

Usage (builds run at ``nice -n 19`` by themselves; the timed searches and upserts at the
caller's priority, so run it un-niced and report the load; the 1M build takes minutes)::

    .venv/bin/python benchmarks/scale.py                          # 10k, 100k, 1M
    .venv/bin/python benchmarks/scale.py --sizes 10000 100000     # quicker
    .venv/bin/python benchmarks/scale.py --reuse                  # reuse built stores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from infuse.access import Caller, DefaultPolicy
from infuse.config import EmbedderBackend, EmbedderSettings, IndexSettings, VectorIndexKind
from infuse.documents.models import Chunk, Document, FileType
from infuse.embedders.hashing import HashingEmbedder
from infuse.language import Language
from infuse.retrieval.fusion import reciprocal_rank_fusion
from infuse.retrieval.lexical import EnglishTokenizer
from infuse.store.base import DocumentRecord, IndexedChunk
from infuse.store.filters import Filter, access_filter
from infuse.store.lancedb import LanceDBStore

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
CACHE = Path.home() / ".cache" / "infuse-bench" / "scale"
DIMENSION = 384
MAX_SENTENCES = 6
CHUNKS_PER_DOCUMENT = 10
COMMIT_CHUNKS = 10_000
GROUPS = ("g0", "g1", "g2", "g3")
K, CANDIDATES, CONCURRENCY = 10, 50, 8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def embedder() -> HashingEmbedder:
    return HashingEmbedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model=f"hashing-{DIMENSION}"))


# --- the cached corpus ------------------------------------------------------------------------


def sentence_pool(data: Path, cache: Path) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Sentences (40-400 characters) of the shared data, their hashing counts and their keyword
    tokens; computed once into ``cache``."""
    texts_file, counts_file, tokens_file = cache / "sentences.json", cache / "counts.npy", cache / "tokens.json"
    if texts_file.exists() and counts_file.exists() and tokens_file.exists():
        sentences = json.loads(texts_file.read_text(encoding="utf-8"))
        return sentences, np.load(counts_file), json.loads(tokens_file.read_text(encoding="utf-8"))
    paragraphs: list[str] = []
    squad = json.loads((data / "squad-v2-dev" / "dev-v2.0.json").read_text(encoding="utf-8"))
    paragraphs += [p["context"] for article in squad["data"] for p in article["paragraphs"]]
    for path in sorted((data / "realtimeqa").glob("*_gcs.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            paragraphs += [r.get("text") or "" for r in json.loads(line).get("search_result", [])]
    seen: set[str] = set()
    sentences = []
    for paragraph in paragraphs:
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            if 40 <= len(sentence) <= 400 and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
    hashing, tokenizer = embedder(), EnglishTokenizer()
    counts = np.stack([hashing.feature_counts(s) for s in sentences]).astype(np.float32)
    tokens = [tokenizer.tokenize(s) for s in sentences]
    cache.mkdir(parents=True, exist_ok=True)
    texts_file.write_text(json.dumps(sentences), encoding="utf-8")
    np.save(counts_file, counts)
    tokens_file.write_text(json.dumps(tokens), encoding="utf-8")
    return sentences, counts, tokens


def plan(n_chunks: int, n_sentences: int) -> tuple[np.ndarray, np.ndarray]:
    """Which sentences make chunk ``i`` (row ``i``, the first ``lengths[i]`` of it): the first N
    rows are the same for every N."""
    picks = np.random.default_rng(0).integers(0, n_sentences, size=(n_chunks, MAX_SENTENCES), dtype=np.int64)
    lengths = np.random.default_rng(1).integers(3, MAX_SENTENCES + 1, size=n_chunks)
    return picks, lengths


def chunk_vectors(cache: Path, counts: np.ndarray, n_chunks: int) -> np.ndarray:
    """The normalised chunk vectors (a memory map), computed once for the largest size asked."""
    path = cache / "vectors.npy"
    if path.exists():
        vectors: np.ndarray = np.load(path, mmap_mode="r")
        if len(vectors) >= n_chunks:
            return vectors
    picks, lengths = plan(n_chunks, len(counts))
    out = np.lib.format.open_memmap(
        path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n_chunks, DIMENSION)
    )
    mask = np.arange(MAX_SENTENCES)[None, :] < lengths[:, None]
    for start in range(0, n_chunks, 50_000):
        stop = min(start + 50_000, n_chunks)
        summed = (counts[picks[start:stop]] * mask[start:stop, :, None]).sum(axis=1)
        out[start:stop] = summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-9)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)
    written: np.ndarray = np.load(path, mmap_mode="r")
    return written


def batches(
    sentences: list[str], tokens: list[list[str]], vectors: np.ndarray, n_chunks: int
) -> Iterator[tuple[list[DocumentRecord], list[IndexedChunk]]]:
    """The corpus in commits of :data:`COMMIT_CHUNKS` chunks (whole documents)."""
    picks, lengths = plan(n_chunks, len(sentences))
    for start in range(0, n_chunks, COMMIT_CHUNKS):
        documents, rows = [], []
        for first in range(start, min(start + COMMIT_CHUNKS, n_chunks), CHUNKS_PER_DOCUMENT):
            number = first // CHUNKS_PER_DOCUMENT
            members = range(first, min(first + CHUNKS_PER_DOCUMENT, n_chunks))
            texts = [" ".join(sentences[s] for s in picks[i, : lengths[i]]) for i in members]
            access = (f"group:{GROUPS[number % len(GROUPS)]}",)
            doc = Document(
                doc_id=f"d{number}",
                source_path=f"/corpus/d{number}.txt",
                file_type=FileType.TEXT,
                text="\n\n".join(texts),
                content_hash=f"h{number}",
                title=f"d{number}",
                access=access,
            )
            documents.append(DocumentRecord(doc, "scale-1", len(texts), "2026-01-01T00:00:00+00:00"))
            offset = 0
            for index, (i, text) in enumerate(zip(members, texts)):
                chunk = Chunk(
                    chunk_id=f"c{i}",
                    doc_id=doc.doc_id,
                    source_path=doc.source_path,
                    file_type=doc.file_type,
                    index=index,
                    text=text,
                    start=offset,
                    end=offset + len(text),
                    lang=Language.EN,
                    n_tokens=len(text.split()),
                    content_hash=doc.content_hash,
                    access=access,
                )
                offset += len(text) + 2
                words = tuple(t for s in picks[i, : lengths[i]] for t in tokens[s])
                rows.append(IndexedChunk(chunk, words, np.asarray(vectors[i])))
        yield documents, rows


def queries(data: Path, count: int) -> tuple[list[str], np.ndarray, list[list[str]]]:
    squad = json.loads((data / "squad-v2-dev" / "dev-v2.0.json").read_text(encoding="utf-8"))
    questions = [
        q["question"]
        for article in squad["data"]
        for p in article["paragraphs"]
        for q in p["qas"]
        if not q.get("is_impossible")
    ][:count]
    tokenizer = EnglishTokenizer()
    return questions, embedder().embed_queries(questions), [tokenizer.tokenize(q) for q in questions]


# --- one size: build, then search (separate processes) -----------------------------------------


def index_settings(kind: VectorIndexKind, nprobes: int, refine: int) -> IndexSettings:
    return IndexSettings(vector=kind, nprobes=nprobes, refine_factor=refine)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def build(args: argparse.Namespace) -> dict[str, Any]:
    sentences, counts, tokens = sentence_pool(args.data, args.cache)
    vectors = chunk_vectors(args.cache, counts, args.size)
    path = store_path(args)
    shutil.rmtree(path, ignore_errors=True)
    settings = index_settings(VectorIndexKind(args.index), args.nprobes, args.refine)
    writer = LanceDBStore(path, "chunks", DIMENSION, index=settings.model_copy(update={"min_rows": 10**12}))
    clock = time.perf_counter()
    for documents, rows in batches(sentences, tokens, vectors, args.size):
        writer.replace_documents(documents, rows)
    written = time.perf_counter() - clock
    clock = time.perf_counter()
    writer.optimize()  # compaction and the keyword index (the vector index waits: min_rows above)
    keyword_index = time.perf_counter() - clock
    store = LanceDBStore(path, "chunks", DIMENSION, index=settings)
    clock = time.perf_counter()
    store.optimize()  # builds the vector index when the size reaches min_rows
    vector_index = time.perf_counter() - clock
    return {
        "write_s": round(written, 1),
        "write_chunks_per_s": round(args.size / written),
        "keyword_index_s": round(keyword_index, 1),
        "vector_index_s": round(vector_index, 1),
        "indexes": [s.to_dict() for s in store.index_states()],
        "disk_mb": round(disk_mb(path)),
        "build_peak_rss_mb": round(peak_rss_mb()),
    }


def store_path(args: argparse.Namespace) -> Path:
    cache: Path = args.cache
    return cache / f"store-{args.size}-{args.index}"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def measure(run: Callable[[int], Any], n: int, concurrency: int) -> tuple[dict[str, float], list[Any]]:
    """Latency of ``run(i)`` for every query, one at a time or ``concurrency`` at once."""
    for i in range(min(5, n)):
        run(i)  # warm-up: caches, index pages

    def timed(i: int) -> tuple[float, Any]:
        clock = time.perf_counter()
        result = run(i)
        return time.perf_counter() - clock, result

    clock = time.perf_counter()
    if concurrency == 1:
        done = [timed(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            done = list(pool.map(timed, range(n)))
    wall = time.perf_counter() - clock
    return {**percentiles([d[0] for d in done]), "queries_per_s": round(n / wall, 1)}, [d[1] for d in done]


def exact_top(vectors: np.ndarray, query_vectors: np.ndarray, n_chunks: int) -> list[list[int]]:
    scores = np.full((len(query_vectors), K), -np.inf, dtype=np.float32)
    ids = np.zeros((len(query_vectors), K), dtype=np.int64)
    for start in range(0, n_chunks, 100_000):
        block = np.asarray(vectors[start : min(start + 100_000, n_chunks)])
        sims = query_vectors @ block.T
        both = np.concatenate([scores, sims], axis=1)
        both_ids = np.concatenate([ids, np.arange(start, start + len(block))[None, :].repeat(len(sims), 0)], axis=1)
        best = np.argsort(-both, axis=1)[:, :K]
        scores, ids = np.take_along_axis(both, best, 1), np.take_along_axis(both_ids, best, 1)
    return ids.tolist()


def warm_page_cache(path: Path) -> float:
    """Read every file of the store once (seconds taken), so that timing starts as on a server
    that has been answering for a while, not on whichever pages an earlier job left in memory."""
    clock = time.perf_counter()
    for file in sorted(f for f in path.rglob("*") if f.is_file()):
        with file.open("rb") as handle:
            while handle.read(1 << 24):
                pass
    return time.perf_counter() - clock


def search(args: argparse.Namespace) -> dict[str, Any]:
    _, query_vectors, query_tokens = queries(args.data, args.queries)
    warmed = warm_page_cache(store_path(args))
    settings = index_settings(VectorIndexKind(args.index), args.nprobes, args.refine)
    store = LanceDBStore(store_path(args), "chunks", DIMENSION, index=settings).snapshot()
    n = len(query_vectors)
    bob = access_filter(Caller("bob", groups=("g1",)), DefaultPolicy.ADMINS)

    def dense(i: int, filters: Filter | None = None, k: int = K) -> list[str]:
        return [h.chunk.chunk_id for h in store.dense_search(query_vectors[i], k, filters)]

    def keyword(i: int, filters: Filter | None = None, k: int = K) -> list[str]:
        return [h.chunk.chunk_id for h in store.lexical_search(query_tokens[i], k, filters)]

    def hybrid(i: int, filters: Filter | None = None) -> list[str]:
        # Both lists in one call, as HybridSearcher asks for them (the store may run them at once).
        lists = store.ranked_lists(query_vectors[i], query_tokens[i], CANDIDATES, filters)
        fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in hits] for hits in lists])
        return [chunk_id for chunk_id, _ in fused[:K]]

    modes: dict[str, Callable[[int], list[str]]] = {
        "dense": dense,
        "keyword": keyword,
        "hybrid": hybrid,
        "hybrid_restricted": lambda i: hybrid(i, bob),
    }
    results: dict[str, Any] = {}
    found: list[list[str]] = []
    for name, run in modes.items():
        count = min(n, args.restricted_queries) if name == "hybrid_restricted" else n
        single, lists = measure(run, count, 1)
        concurrent, _ = measure(run, count, CONCURRENCY)
        results[name] = {"single": single, f"concurrent_{CONCURRENCY}": concurrent}
        if name == "dense":
            found = lists
    vectors = np.load(args.cache / "vectors.npy", mmap_mode="r")
    exact = exact_top(vectors, query_vectors, args.size)
    recall = np.mean([len({f"c{j}" for j in e} & set(f)) / K for e, f in zip(exact, found)])
    results["dense_recall_at_10"] = round(float(recall), 4)
    results["search_peak_rss_mb"] = round(peak_rss_mb())
    results["page_cache_warm_s"] = round(warmed, 1)
    return results


UPSERT_CHUNKS, UPSERT_REPEATS = 1_000, 3


def upsert(args: argparse.Namespace) -> dict[str, Any]:
    """Re-ingest one batch of existing documents (identical chunks, :data:`UPSERT_CHUNKS` of them)
    into the full store, as a re-ingest of changed files does, then delete and restore 10 of those
    documents: what one ingest batch costs once the table is large. The measurement runs at the
    caller's priority; the ``optimize`` that brings the indexes back up to date after it at nice 19."""
    sentences, counts, tokens = sentence_pool(args.data, args.cache)
    vectors = chunk_vectors(args.cache, counts, args.size)
    documents, rows = next(batches(sentences, tokens, vectors, UPSERT_CHUNKS))
    store = LanceDBStore(
        store_path(args),
        "chunks",
        DIMENSION,
        index=index_settings(VectorIndexKind(args.index), args.nprobes, args.refine),
    )
    seconds = []
    for _ in range(UPSERT_REPEATS):
        clock = time.perf_counter()
        store.replace_documents(documents, rows)
        seconds.append(time.perf_counter() - clock)
    clock = time.perf_counter()
    store.delete_documents([d.doc_id for d in documents[:10]])
    deleted = time.perf_counter() - clock
    store.replace_documents(documents, rows)
    os.nice(19)
    store.optimize()
    return {
        "upsert_chunks_per_s": round(UPSERT_CHUNKS / float(np.median(seconds))),
        "upsert_s": [round(x, 2) for x in seconds],
        "delete_10_documents_s": round(deleted, 3),
        "scalar_indexes": sorted(
            i.name for i in store._chunks.list_indices() if i.index_type in ("BTree", "LabelList")
        ),
    }


# --- the driver ---------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, size: int, step: str) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        f"--{step}",
        str(size),
        *("--data", str(args.data), "--cache", str(args.cache), "--index", args.index),
        *("--queries", str(args.queries), "--restricted-queries", str(args.restricted_queries)),
        *("--nprobes", str(args.nprobes), "--refine", str(args.refine)),
    ]
    if step == "build":
        command = ["nice", "-n", "19", *command]  # bulk work; only the timed searches run at normal priority
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    return {
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "os": platform.platform(),
        "python": platform.python_version(),
        "lancedb": __import__("lancedb").__version__,
    }


def growth(by_size: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted(by_size, key=int)
    small, large = by_size[sizes[0]], by_size[sizes[-1]]
    ratios: dict[str, Any] = {"from": int(sizes[0]), "to": int(sizes[-1])}
    for mode in ("dense", "keyword", "hybrid", "hybrid_restricted"):
        ratios[f"{mode}_p95"] = round(large[mode]["single"]["p95_ms"] / max(small[mode]["single"]["p95_ms"], 1e-3), 2)
    for key in ("disk_mb", "build_peak_rss_mb", "search_peak_rss_mb"):
        ratios[key] = round(large[key] / max(small[key], 1e-3), 2)
    return ratios


def targets(by_size: dict[str, Any], ratios: dict[str, Any]) -> dict[str, Any]:
    largest = by_size[max(by_size, key=int)]
    return {
        "hybrid_p95_ms_at_largest<=100": largest["hybrid"]["single"]["p95_ms"] <= 100,
        "dense_recall_at_10_at_largest>=0.95": largest["dense_recall_at_10"] >= 0.95,
        "hybrid_p95_growth<=3": ratios["hybrid_p95"] <= 3,
        "peak_rss_mb<=4096": max(max(r["build_peak_rss_mb"], r["search_peak_rss_mb"]) for r in by_size.values())
        <= 4096,
    }


def table(report: dict[str, Any]) -> str:
    """The results as the Markdown table docs/scale.md shows."""
    sizes = sorted(report["sizes"], key=int)
    lines = ["| | " + " | ".join(f"{int(n):,}" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]

    def row(label: str, value: Callable[[dict[str, Any]], Any]) -> None:
        lines.append(f"| {label} | " + " | ".join(str(value(report["sizes"][n])) for n in sizes) + " |")

    def latency(mode: str, how: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: (
            "{p50_ms} / {p95_ms}".format(**r[mode][how])
            + (f", {r[mode][how]['queries_per_s']}" if how != "single" else "")
        )

    for mode in ("dense", "keyword", "hybrid", "hybrid_restricted"):
        name = "hybrid, restricted caller" if mode == "hybrid_restricted" else mode
        row(f"{name} p50 / p95 ms", latency(mode, "single"))
        row(f"{name}, {CONCURRENCY} at once: p50 / p95 ms, queries/s", latency(mode, f"concurrent_{CONCURRENCY}"))
    row("dense recall@10 vs exact", lambda r: r["dense_recall_at_10"])
    row("vector index", lambda r: next((i["kind"] or "none (exact)") for i in r["indexes"] if i["column"] == "vector"))
    row("write s (chunks/s)", lambda r: f"{r['write_s']} ({r['write_chunks_per_s']:,})")
    row("keyword index s / vector index s", lambda r: f"{r['keyword_index_s']} / {r['vector_index_s']}")
    row(
        "upsert of 1,000 chunks into the store: chunks/s",
        lambda r: f"{r['upsert_chunks_per_s']:,}" if "upsert_chunks_per_s" in r else "-",
    )
    row("disk MB", lambda r: r["disk_mb"])
    row("peak RSS MB: build / search", lambda r: f"{r['build_peak_rss_mb']} / {r['search_peak_rss_mb']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--restricted-queries", type=int, default=50, help="of them, as a restricted caller")
    parser.add_argument("--index", default=IndexSettings().vector.value, choices=[k.value for k in VectorIndexKind])
    parser.add_argument("--nprobes", type=int, default=IndexSettings().nprobes)
    parser.add_argument("--refine", type=int, default=IndexSettings().refine_factor)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE, help="vectors and stores (outside the repository)")
    parser.add_argument("--reuse", action="store_true", help="search stores built by an earlier run")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "scale.json")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # child: build one size
    parser.add_argument("--search", type=int, help=argparse.SUPPRESS)  # child: search one size
    parser.add_argument("--upsert", type=int, help=argparse.SUPPRESS)  # child: time upserts into one size
    parser.add_argument("--no-upsert", action="store_true", help="skip timing upserts into each built store")
    parser.add_argument("--table", action="store_true", help="print --out as a Markdown table and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text(encoding="utf-8"))))
        return
    if args.build or args.search or args.upsert:
        args.size = args.build or args.search or args.upsert
        step = build if args.build else search if args.search else upsert
        print(json.dumps(step(args)))
        return
    load = os.getloadavg()
    sentences, counts, _ = sentence_pool(args.data, args.cache)
    chunk_vectors(args.cache, counts, max(args.sizes))
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    by_size: dict[str, Any] = {}
    for size in sorted(args.sizes):
        args.size = size
        if args.reuse and store_path(args).exists() and str(size) in previous.get("sizes", {}):
            built = {k: v for k, v in previous["sizes"][str(size)].items() if k in BUILD_KEYS}
        else:
            built = run_child(args, size, "build")
        by_size[str(size)] = {**built, **run_child(args, size, "search")}
        if not args.no_upsert:
            by_size[str(size)].update(run_child(args, size, "upsert"))
        print(f"{size:>9,} chunks: {json.dumps(by_size[str(size)])}", flush=True)
    ratios = growth(by_size)
    report = {
        "machine": machine(),
        "load_before": load,
        "command": " ".join(sys.argv),
        "corpus": {"sentences": len(sentences), "dimension": DIMENSION, "embedder": f"hashing-{DIMENSION}"},
        "index": {"vector": args.index, "nprobes": args.nprobes, "refine_factor": args.refine},
        "queries": args.queries,
        "restricted_queries": min(args.queries, args.restricted_queries),
        "sizes": by_size,
        "growth": ratios,
        "targets_met": targets(by_size, ratios),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(report))
    print(json.dumps({"growth": ratios, "targets_met": report["targets_met"]}, indent=2))


BUILD_KEYS = (
    "write_s",
    "write_chunks_per_s",
    "keyword_index_s",
    "vector_index_s",
    "indexes",
    "disk_mb",
    "build_peak_rss_mb",
)

if __name__ == "__main__":
    main()
