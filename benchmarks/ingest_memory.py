#!/usr/bin/env python
"""Peak RSS of ``infuse ingest`` for corpora 1x, 4x and 16x larger: bounded by the batch, not the corpus.

Each corpus is one JSONL file of real English paragraphs (SQuAD 2.0 dev from ``../shared/data``,
repeated with a record number so every record is a new document), written under
``~/.cache/infuse-bench/ingest-memory`` (outside the repository). Each size is ingested into a
fresh workspace by its own ``infuse ingest`` process (hashing embedder, so the embedder's model
does not dominate; ``[ingest] commit_every`` 256 chunks, ``max_file_mb`` 1 so the files are
streamed record by record); the child's peak RSS (``ru_maxrss``) is reported with the corpus size,
chunks written and time. Results: ``benchmarks/results/ingest_memory.json``.

Usage::

    nice -n 10 .venv/bin/python benchmarks/ingest_memory.py            # 2k, 8k, 32k records
    nice -n 10 .venv/bin/python benchmarks/ingest_memory.py --base 500  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
CACHE = Path.home() / ".cache" / "infuse-bench" / "ingest-memory"


def corpus(data: Path, cache: Path, records: int) -> Path:
    path = cache / f"corpus-{records}.jsonl"
    if path.exists():
        return path
    squad = json.loads((data / "squad-v2-dev" / "dev-v2.0.json").read_text(encoding="utf-8"))
    paragraphs = [p["context"] for article in squad["data"] for p in article["paragraphs"]]
    cache.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(records):
            text = f"Record {i}. " + paragraphs[i % len(paragraphs)]
            handle.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    return path


def ingest(path: Path, workspace: Path) -> dict[str, float]:
    shutil.rmtree(workspace, ignore_errors=True)
    env = {
        **os.environ,
        "INFUSE_EMBEDDER__BACKEND": "hashing",
        "INFUSE_EMBEDDER__MODEL": "hashing-384",
        "INFUSE_INGEST__COMMIT_EVERY": "256",
        "INFUSE_INGEST__MAX_FILE_MB": "1",
    }
    command = [sys.executable, "-m", "infuse", "-w", str(workspace), "ingest", str(path), "--id-field", "id", "--json"]
    clock = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - clock
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest child so far: sizes run smallest first
    report = json.loads(done.stdout)
    return {
        "chunks": report["chunks_written"],
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=2000, help="records of the smallest corpus (then 4x, 16x)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ingest_memory.json")
    args = parser.parse_args()
    load = os.getloadavg()
    sizes = {}
    for factor in (1, 4, 16):
        records = args.base * factor
        path = corpus(args.data, args.cache, records)
        result = {"records": records, "file_mb": round(path.stat().st_size / 2**20, 1)}
        result.update(ingest(path, args.cache / "workspace"))
        sizes[str(records)] = result
        print(json.dumps(result), flush=True)
    smallest, largest = sizes[str(args.base)], sizes[str(args.base * 16)]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU, {platform.platform()}",
        "load_before": load,
        "command": " ".join(sys.argv),
        "commit_every": 256,
        "sizes": sizes,
        "corpus_growth": round(largest["file_mb"] / smallest["file_mb"], 1),
        "peak_rss_growth": round(largest["peak_rss_mb"] / smallest["peak_rss_mb"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("corpus_growth", "peak_rss_growth")}))


if __name__ == "__main__":
    main()
