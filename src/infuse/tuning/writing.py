"""Writing training text chunk by chunk: concurrently, and resumable after a kill.

Model-written datasets (``paraphrase``, ``qa``, ``raft`` questions) take one or more model calls
per chunk: hours for a real corpus against a local model, and a server such as vLLM only goes fast
when several requests are in flight. So :func:`write_chunks`

* runs the per-chunk work in a thread pool of ``concurrency`` workers (1: one request at a time;
  8-32 against an OpenAI-compatible server, which batches what is in flight itself). For a local
  transformers model, :class:`BatchedModel` gathers the workers' simultaneous requests into one
  batched decode (``generate_batch``), so ``concurrency`` is the batch size there;
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
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from infuse.documents.models import Chunk
from infuse.files import read_json, write_json_atomic, write_text_atomic
from infuse.models.base import (
    Generation,
    GenerationConfig,
    GenerationStream,
    LanguageModel,
    Loglikelihood,
    LoglikelihoodRequest,
    Prompt,
)
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


class BatchGenerator(LanguageModel, Protocol):
    """A language model that also decodes several prompts at once (the transformers backend)."""

    def generate_batch(self, prompts: Sequence[Prompt], configs: Sequence[GenerationConfig]) -> list[Generation]: ...


class BatchedModel:
    """A model whose ``generate`` calls, made at once from the writer's threads, run as one batch
    (``generate_batch`` of the local transformers backend): with ``concurrency`` N, up to N
    chunks' requests share each forward pass. One worker thread collects what is waiting (up to
    `max_batch`, after at most `gather_seconds` for more to arrive) and decodes it together.

    >>> with BatchedModel(transformers_model, max_batch=8) as model:      # doctest: +SKIP
    ...     ModelWriter(model).paraphrases(chunk, 3, seed=0)
    """

    def __init__(self, model: BatchGenerator, *, max_batch: int, gather_seconds: float = 0.01) -> None:
        self.model = model
        self.name = model.name
        self.context_length = model.context_length
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.batch_sizes: list[int] = []  # every batch decoded (for tests and the curious)
        self._queue: queue.Queue[tuple[Prompt, GenerationConfig, Future[Generation]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="infuse-batcher", daemon=True)
        self._worker.start()

    def generate(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> Generation:
        if not self._worker.is_alive():  # closed: nobody would answer
            raise RuntimeError("BatchedModel is closed; generate() after close() has no worker to answer it")
        future: Future[Generation] = Future()
        self._queue.put((prompt, config, future))
        return future.result()

    def stream(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> GenerationStream:
        return self.model.stream(prompt, config)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        return self.model.loglikelihood(requests)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.gather_seconds
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self.batch_sizes.append(len(batch))
            try:
                results = self.model.generate_batch([p for p, _, _ in batch], [c for _, c, _ in batch])
            except BaseException as exc:  # the callers see the model's error
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            if len(results) != len(batch):  # a caller must never wait forever for a missing answer
                error = RuntimeError(f"generate_batch returned {len(results)} results for {len(batch)} prompts")
                for _, _, future in batch:
                    future.set_exception(error)
                continue
            for (_, _, future), result in zip(batch, results):
                future.set_result(result)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()

    def __enter__(self) -> BatchedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


__all__ = ["BatchedModel", "PartialBuild", "Record", "write_chunks"]
