"""Writing training text chunk by chunk: concurrently, and resumable after a kill.

Model-written datasets (``paraphrase``, ``qa``, ``raft`` questions) take one or more model calls
per chunk: hours for a real corpus against a local model, and a server such as vLLM only goes fast
when several requests are in flight. So :func:`write_chunks`

* runs the per-chunk work in a thread pool of ``concurrency`` workers (1: one request at a time,
  right for a local model; 8-32 against an OpenAI-compatible server), in windows so that results
  are kept in chunk order;
* appends each finished chunk's record (the texts written, the rejections by reason) to
  ``chunks.jsonl`` in the dataset's hidden staging folder ``WS/datasets/.NAME.partial/`` and
  fsyncs it, next to ``state.json`` (what is being built: kind, writer, parameters, seed, the
  knowledge base's digest). A build killed with ``kill -9`` and run again with the same request
  reads the records back (a torn last line is dropped) and writes only the chunks not done yet;
  a different request starts over. The folder is removed once the dataset is saved.

>>> partial = PartialBuild(datasets_dir / ".qa.partial", {"kind": "qa", ...})       # doctest: +SKIP
>>> records = write_chunks(chunks, work, partial, concurrency=8)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from infuse.documents.models import Chunk
from infuse.files import read_json, write_json_atomic, write_text_atomic
from infuse.progress import NullProgress, Progress

Record = dict[str, Any]
STATE_FILE = "state.json"
RECORDS_FILE = "chunks.jsonl"


class PartialBuild:
    """The staging folder of one dataset build: its fingerprint and the records of finished chunks."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.folder = folder
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Record]:
        """The records of chunks finished by an earlier, interrupted build of the same request (by
        chunk id); an empty dict when there is none or it was a different request (then it is
        cleared). The records file is rewritten without a torn last line, so appends stay whole."""
        state = read_json(self.folder / STATE_FILE)
        if state != {"fingerprint": self.fingerprint}:
            self.discard()
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.folder / STATE_FILE, {"fingerprint": self.fingerprint})
            return {}
        records: dict[str, Record] = {}
        path = self.folder / RECORDS_FILE
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line being written when the build was killed
                if isinstance(record, dict) and isinstance(record.get("chunk_id"), str):
                    records[record["chunk_id"]] = record
            write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()))
        return records

    def append(self, records: Sequence[Record]) -> None:
        """Add finished chunks' records, on disk before this returns."""
        with (self.folder / RECORDS_FILE).open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def write_chunks(
    chunks: Sequence[Chunk],
    work: Callable[[Chunk], Record],
    partial: PartialBuild | None,
    *,
    concurrency: int = 1,
    progress: Progress = NullProgress(),
) -> tuple[list[Record], int]:
    """(one record per chunk, in chunk order; how many came from an interrupted build).

    `work(chunk)` writes one chunk's record in a worker thread; each finished record is
    checkpointed to `partial` as soon as it is done (at most ``2 x concurrency`` chunks are queued
    or in flight at a time)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    done = partial.load() if partial is not None else {}
    wanted = {c.chunk_id for c in chunks}
    done = {cid: r for cid, r in done.items() if cid in wanted}
    if done:
        progress.advance(len(done))
    fresh = [c for c in chunks if c.chunk_id not in done]
    todo = iter(fresh)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="infuse-writer") as pool:
        in_flight: dict[Future[Record], Chunk] = {}

        def submit() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                in_flight[pool.submit(work, chunk)] = chunk

        for _ in range(concurrency * 2):  # a little queued work per worker: no idle gaps between chunks
            submit()
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            records = []
            for future in finished:
                chunk = in_flight.pop(future)
                records.append({**future.result(), "chunk_id": chunk.chunk_id})
                submit()
            if partial is not None:
                partial.append(records)  # on disk, in whatever order they finished
            done.update((r["chunk_id"], r) for r in records)
            progress.advance(len(records))
    resumed = len(chunks) - len(fresh)
    return [done[c.chunk_id] for c in chunks], resumed


__all__ = ["PartialBuild", "Record", "write_chunks"]
