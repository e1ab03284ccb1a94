"""A deterministic stand-in for a model that writes training text, for dataset-build tests.

:class:`EchoWriterModel` answers infuse's paraphrase and QA prompts (``tuning.generators``) from
the passage in the prompt, so the writer, the quality gate, concurrency and checkpointing run for
real without weights. ``garbage=True`` makes it also write what a weak model writes (a rewrite
that drops the facts, an answer that is not in the passage), which the gate must reject.
``delay`` makes each call slow, to see calls overlap and to kill a build mid-way. Every call is
logged (``calls``; ``log_path`` appends the passage's first line, across processes).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from infuse.models.base import FinishReason, Generation, GenerationConfig

LEADS = ["Put another way: ", "In other words, ", "To restate it: ", "Said differently, ", "Rephrased: "]


def passage_of(prompt: str) -> str:
    for marker in ("\n\nPassage:\n", "\n\n文章:\n"):
        if marker in prompt:
            return prompt.split(marker, 1)[1]
    raise AssertionError(f"not a writer prompt: {prompt[:80]!r}")


class EchoWriterModel:
    def __init__(self, *, garbage: bool = False, delay: float = 0.0, log_path: Path | None = None) -> None:
        self.name = "echo-writer"
        self.garbage = garbage
        self.delay = delay
        self.log_path = log_path
        self.calls: list[GenerationConfig] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompt, config: GenerationConfig = GenerationConfig()) -> Generation:
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        passage = passage_of(text)
        with self._lock:
            self.calls.append(config)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            reply = self._qa(passage) if '"question"' in text else self._paraphrase(passage, config.seed or 0)
        finally:
            with self._lock:
                self.active -= 1
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(passage.splitlines()[0][:60] + "\n")
        return Generation(reply, FinishReason.STOP, self.count_tokens(text), self.count_tokens(reply), self.delay)

    def _paraphrase(self, passage: str, seed: int) -> str:
        if self.garbage and seed % 2 == 1:
            return "This passage is about a person and some events."
        return LEADS[seed % len(LEADS)] + passage

    def _qa(self, passage: str) -> str:
        first = passage.strip().split(".")[0].strip()
        pairs = [{"question": f"What does the record say first ({len(first)})?", "answer": first}]
        if self.garbage:
            pairs.append({"question": "What is the capital of Mars?", "answer": "Olympus City"})
        return "\n".join(json.dumps(p) for p in pairs)
