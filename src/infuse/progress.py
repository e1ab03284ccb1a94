"""How long-running library calls report progress: one small protocol, so the library never draws.

Ingest, reindex, dataset building, fine-tuning and lab pretraining all take a ``progress:
Progress | None`` argument and call :meth:`Progress.start` when a stage begins,
:meth:`Progress.advance` as work is done and :meth:`Progress.note` with a short live status
("step 40/200 loss 2.3100 2,900 tok/s"). What to make of it is the caller's business: the CLI
draws Rich bars, a server could stream events, a test records the calls; ``None`` means
:class:`NullProgress` (silent). :class:`PrintProgress` is the plain-text choice for scripts
(benchmarks, the demo): one line on stderr per stage start and per note, no terminal tricks.

>>> train(model, data, config, progress=PrintProgress())   # doctest: +SKIP
lab model: 0/2400
lab model: step 120/2400 loss 3.1416 41,000 tok/s 12s
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    """Receives a library call's progress; implementations must be cheap (called once per step)."""

    def start(self, stage: str, total: int | None) -> None:
        """A stage begins; `total` units of work are expected (None: unknown)."""

    def advance(self, n: int = 1) -> None:
        """`n` more units of the current stage are done."""

    def note(self, text: str) -> None:
        """A short live status of the current stage (losses, throughput); replaces the previous one."""


class NullProgress:
    """Reports nowhere: what library calls use when given no progress."""

    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class PrintProgress:
    """A line per stage start and per note, ``STAGE: TEXT``, on `stream` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.stage = ""

    def start(self, stage: str, total: int | None) -> None:
        self.stage = stage
        self._print(f"0/{total}" if total is not None else "started")

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        print(f"{self.stage}: {text}" if self.stage else text, file=self.stream or sys.stderr, flush=True)


def or_null(progress: Progress | None) -> Progress:
    """`progress`, or a :class:`NullProgress` when there is none."""
    return progress if progress is not None else NullProgress()


__all__ = ["NullProgress", "PrintProgress", "Progress", "or_null"]
