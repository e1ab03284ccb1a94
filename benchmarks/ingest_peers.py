#!/usr/bin/env python
"""First-ingest throughput of infuse against LlamaIndex and Haystack: the same corpus, the same
embedder (the bundled all-MiniLM-L6-v2 folder), in one run on one machine.

What is timed, for each system: turning the corpus (SQuAD 2.0 dev paragraphs, one document
each) into a searchable index, with the embedding model already loaded (a warm-up embedding
runs before the clock starts, as in ``benchmarks/retrieval.py``):

- ``infuse (default)``: ``Workspace.ingest`` into a fresh workspace as a new English workspace
  gets it: MiniLM on ONNX Runtime with int8 weights (``quantize = true``), each text run alone:
  chunking, keyword tokens, embedding, LanceDB on disk;
- ``infuse (fp32)``: ONNX with ``quantize = false``, batches of 32 (the default before int8,
  and what a workspace whose infuse.toml does not name ``quantize`` keeps);
- ``infuse (torch)``: the same with ``[embedder] runtime = "torch"`` (infuse before ONNX);
- ``llamaindex``: ``VectorStoreIndex.from_documents`` with ``HuggingFaceEmbedding`` on the
  same folder, its default ``SentenceSplitter`` and in-memory vector store;
- ``haystack``: a ``DocumentSplitter`` -> ``SentenceTransformersDocumentEmbedder`` ->
  ``DocumentWriter`` pipeline into an ``InMemoryDocumentStore``.

Each peer keeps its own defaults (chunking, batch size: LlamaIndex embeds 10 texts per batch,
Haystack and infuse 32), as its users would get them; the chunk counts are reported. The peers
store vectors in memory only, infuse writes a knowledge base to disk (and keyword tokens for
BM25), so infuse does more work per chunk.

The peers are not infuse dependencies: they run in a scratch virtual environment
(``--peers-python``, default ``/work/scratch-peers/bin/python``; create it with
``python -m venv /work/scratch-peers && /work/scratch-peers/bin/pip install torch==2.13.0
llama-index-core llama-index-embeddings-huggingface haystack-ai sentence-transformers-haystack``). When
it does not exist the peers are reported as not measured, and why. This file is also the worker
the scratch environment runs (``--worker NAME``; it imports nothing from infuse there).

The systems run ``--rounds`` times in turn (round-robin), so a change of the machine's load
hits all of them; the report gives each one's median and every round.

Usage::

    .venv/bin/python benchmarks/ingest_peers.py               # timed: run at normal priority, say the load
    .venv/bin/python benchmarks/ingest_peers.py --rounds 1 --systems infuse-default,infuse-torch

Results: ``benchmarks/results/ingest_peers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PEERS_PYTHON = Path("/work/scratch-peers/bin/python")
INFUSE_SYSTEMS = {
    "infuse-default": {},
    "infuse-fp32": {"runtime": "onnx", "quantize": False},
    "infuse-torch": {"runtime": "torch"},
}
PEER_SYSTEMS = ("llamaindex", "haystack")
BASELINE = "infuse-torch"


def read_corpus(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- the workers (run in the scratch venv: nothing from infuse) -----------------------------------


def run_llamaindex(corpus: Path, model: str) -> dict[str, Any]:
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=model, device="cpu")
    embed.get_text_embedding("warm-up: load the model")
    Settings.embed_model = embed
    Settings.llm = None
    docs = [Document(text=p["text"], doc_id=p["id"], metadata={"title": p["title"]}) for p in read_corpus(corpus)]
    cpu, clock = time.process_time(), time.perf_counter()
    index = VectorStoreIndex.from_documents(docs)
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    chunks = len(index.index_struct.nodes_dict)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "documents": len(docs),
        "chunks": chunks,
        "batch_size": embed.embed_batch_size,
    }


def run_haystack(corpus: Path, model: str) -> dict[str, Any]:
    from haystack import Document, Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.embedders.sentence_transformers import SentenceTransformersDocumentEmbedder

    store = InMemoryDocumentStore()
    embedder = SentenceTransformersDocumentEmbedder(model=model, device=ComponentDevice.from_str("cpu"))
    embedder.warm_up()
    embedder.run([Document(content="warm-up: load the model")])
    pipeline = Pipeline()
    pipeline.add_component("split", DocumentSplitter())
    pipeline.add_component("embed", embedder)
    pipeline.add_component("write", DocumentWriter(document_store=store))
    pipeline.connect("split", "embed")
    pipeline.connect("embed", "write")
    docs = [Document(id=p["id"], content=p["text"], meta={"title": p["title"]}) for p in read_corpus(corpus)]
    cpu, clock = time.process_time(), time.perf_counter()
    pipeline.run({"split": {"documents": docs}})
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "documents": len(docs),
        "chunks": store.count_documents(),
        "batch_size": embedder.batch_size,
    }


def worker(name: str, corpus: Path, model: str) -> int:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    import importlib.metadata as md

    result = {"llamaindex": run_llamaindex, "haystack": run_haystack}[name](corpus, model)
    package = {"llamaindex": "llama-index-core", "haystack": "haystack-ai"}[name]
    result["version"] = md.version(package)
    print("RESULT " + json.dumps(result))
    return 0


# --- the driver (the project's venv) ------------------------------------------------------------


def run_infuse(name: str, corpus: Path, cache: Path) -> dict[str, Any]:
    from infuse.workspace import Workspace
    from retrieval import timed_first_ingest

    path = cache / name
    shutil.rmtree(path, ignore_errors=True)
    ws = Workspace.open(path, create=True, embedder=dict(INFUSE_SYSTEMS[name]))
    _, info = timed_first_ingest(ws, corpus, name)
    return {
        "seconds": info["seconds"],
        "cpu_seconds": info["process_cpu_seconds"],
        "documents": info["documents_added"],
        "chunks": info["chunks_written"],
        "batch_size": ws.settings.embedder.batch_size,
        "embedder": type(ws.embedder).__name__,
    }


def run_peer(name: str, corpus: Path, model: str, python: Path) -> dict[str, Any]:
    env = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the scratch venv sees its own packages only
    done = subprocess.run(
        [str(python), __file__, "--worker", name, "--corpus", str(corpus), "--model", model],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    base = results["summary"].get(BASELINE, {}).get("median_seconds")
    base_cpu = results["summary"].get(BASELINE, {}).get("median_cpu_seconds")
    lines = [
        "# First ingest: infuse vs LlamaIndex vs Haystack (same corpus, same embedder, one run)",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['cpu_cores']} cores · {m['memory_gb']} GB · commit {m['git_commit']} · "
        f"corpus {results['corpus']} ({results['documents']} documents) · embedder {results['model']} · "
        f"{results['rounds']} round(s), systems in turn",
        "",
        f"Command: `{results['command']}`",
        "",
        "| system | chunks | median seconds | documents/s | chunks/s | vs infuse (torch), medians | vs infuse (torch), each round | CPU seconds (median) | CPU vs infuse (torch) | every round (s) | load avg before each round |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results["summary"].items():
        ratio = f"{base / s['median_seconds']:.2f}x" if base else "–"
        cpu_ratio = f"{base_cpu / s['median_cpu_seconds']:.2f}x" if base_cpu else "–"
        lines.append(
            f"| {name} | {s['chunks']} | {s['median_seconds']:.1f} | {results['documents'] / s['median_seconds']:.2f} | "
            f"{s['chunks'] / s['median_seconds']:.2f} | {ratio} | {', '.join(f'{x:.2f}x' for x in s['round_ratios'])} | "
            f"{s['median_cpu_seconds']:.1f} | {cpu_ratio} | {', '.join(f'{x:.1f}' for x in s['seconds'])} | "
            f"{', '.join(f'{x:.1f}' for x in s['load'])} |"
        )
    for name, why in results["not_measured"].items():
        lines.append(f"| {name} | – | not measured: {why} | | | | | | | | |")
    lines += [
        "",
        "CPU seconds: this process's (and for the peers, the worker's) CPU time during the ingest; less "
        "sensitive than wall time to other processes competing for the cores.",
        "",
        "Peers: their own defaults (chunking, batch size), in-memory stores; infuse writes LanceDB to disk "
        "plus BM25 keyword tokens. Peer versions: "
        + ", ".join(f"{k} {v}" for k, v in results["peer_versions"].items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=PEER_SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", default=",".join([*INFUSE_SYSTEMS, *PEER_SYSTEMS]))
    parser.add_argument("--peers-python", type=Path, default=PEERS_PYTHON)
    parser.add_argument("--name", default="ingest_peers")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.corpus, args.model)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from infuse.embedders.sentence_transformers import resolve_model_path
    from retrieval import CACHE, DEFAULT_DATA, DEFAULT_OUT, load_datasets, log, machine, write_corpus

    squad = next(d for d in load_datasets(DEFAULT_DATA.resolve()) if d.name == "squad-v2-dev")
    corpus, _ = write_corpus(squad)
    model = resolve_model_path("all-MiniLM-L6-v2")
    systems = [s for s in args.systems.split(",") if s]
    not_measured: dict[str, str] = {}
    if not args.peers_python.exists():
        for name in [s for s in systems if s in PEER_SYSTEMS]:
            not_measured[name] = f"no scratch venv at {args.peers_python} (see this script's docstring)"
            log(f"{name}: not measured, {not_measured[name]}")
        systems = [s for s in systems if s not in PEER_SYSTEMS]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    versions: dict[str, str] = {}
    for round_ in range(args.rounds):
        for name in systems:
            load = os.getloadavg()[0]
            if name in INFUSE_SYSTEMS:
                result = run_infuse(name, corpus, CACHE / "ingest_peers")
            else:
                result = run_peer(name, corpus, model, args.peers_python)
                versions[name] = result.pop("version")
            result["load_before"] = round(load, 2)
            runs[name].append(result)
            # every run as it is measured: a crash later keeps what was measured
            CACHE.mkdir(parents=True, exist_ok=True)
            (CACHE / f"{args.name}-runs.json").write_text(json.dumps(runs, indent=2) + "\n")
            log(f"round {round_ + 1} {name}: {result['chunks']} chunks in {result['seconds']:.1f}s (load {load:.1f})")
    summary = {
        name: {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
            "seconds": [r["seconds"] for r in rs],
            # this system's time over the baseline's in the same round (run minutes apart)
            "round_ratios": [runs[BASELINE][i]["seconds"] / r["seconds"] for i, r in enumerate(rs) if BASELINE in runs],
            "load": [r["load_before"] for r in rs],
            "chunks": rs[0]["chunks"],
            "batch_size": rs[0]["batch_size"],
        }
        for name, rs in runs.items()
    }
    results = {
        "machine": machine(),
        "command": "python benchmarks/ingest_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "corpus": squad.name,
        "documents": len(squad.paragraphs),
        "model": model,
        "rounds": args.rounds,
        "runs": runs,
        "summary": summary,
        "not_measured": not_measured,
        "peer_versions": versions,
        "load_average_after": os.getloadavg(),
    }
    DEFAULT_OUT.mkdir(parents=True, exist_ok=True)
    (DEFAULT_OUT / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (DEFAULT_OUT / f"{args.name}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
