"""How long-running library calls report progress: one small protocol, so the library never draws.

Ingest, reindex, dataset building, fine-tuning and lab pretraining all take a ``progress:
Progress | None`` argument and call :meth:`Progress.start` when a stage begins,
:meth:`Progress.advance` as work is done and :meth:`Progress.note` with a short live status
("step 40/200 loss 2.3100 2,900 tok/s"). What to make of it is the caller's business: the CLI
draws Rich bars, a server could stream events, a test records the calls; ``None`` means
:class:`NullProgress` (silent). :class:`PrintProgress` is the plain-text choice for scripts
(benchmarks, the demo): one line on stderr per stage start and per note, no terminal tricks.

Where no terminal draws a bar (logs, CI, a pipe), :class:`LineProgress` prints ``STAGE: DONE/TOTAL
(PCT) eta ...`` lines, at most one per 5% of the stage (and a second apart) or per 10 seconds, and :class:`JsonProgress`
prints the same as one JSON object per line for programs (``{"event": "progress", "stage": ...,
"done": ..., "total": ..., "eta_s": ...}``). Both count through :class:`StageTracker`, which the job
records of :mod:`infuse.jobs` use too, so a bar, a log line and ``infuse status`` agree on the ETA.
:class:`Tee` hands each report to several receivers (the CLI's display and the job record).

>>> train(model, data, config, progress=PrintProgress())   # doctest: +SKIP
lab model: 0/2400
lab model: step 120/2400 loss 3.1416 41,000 tok/s 12s
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO


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


class StageTracker:
    """The current stage's counts, and an ETA from the rate since its first advance.

    The rate starts at the first :meth:`advance` rather than at :meth:`start`, so work done before
    this process began (a resumed run's ``advance(start_step)``) does not make the ETA optimistic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stage = ""
        self.total: int | None = None
        self.done = 0
        self.note = ""
        self.started = clock()
        self._base: tuple[float, int] | None = None

    def start(self, stage: str, total: int | None) -> None:
        self.stage, self.total, self.done, self.note = stage, total, 0, ""
        self.started, self._base = self.clock(), None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._base is None:
            self._base = (self.clock(), self.done)

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def fraction(self) -> float | None:
        """Share of the stage done (None: no total)."""
        return min(1.0, self.done / self.total) if self.total else None

    def eta_s(self) -> float | None:
        """Seconds left at the rate measured so far (None: no total, or no rate yet)."""
        if self.total is None or self._base is None:
            return None
        if self.done >= self.total:
            return 0.0
        since, base_done = self._base
        seconds, units = self.clock() - since, self.done - base_done
        if units <= 0 or seconds <= 0:
            return None
        return (self.total - self.done) * seconds / units

    def snapshot(self) -> dict[str, Any]:
        """``stage``, ``done``, ``total``, ``eta_s`` (one decimal) and ``note``, for JSON."""
        eta = self.eta_s()
        return {
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "eta_s": round(eta, 1) if eta is not None else None,
            "note": self.note,
        }


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h10m``: short enough for a progress line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Throttled:
    """The reporting rhythm shared by the line and JSON forms: a report when a stage starts, then
    one per `every_fraction` of the stage (at least `min_seconds` apart) or per `every_seconds`,
    whichever comes first, and one when it completes.
    A stage without a total reports its notes (rare: "loading", "done") and the time-based ticks."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_fraction: float = 0.05,
        every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        min_seconds: float = 1.0,
    ) -> None:
        self.stream = stream
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.min_seconds = min_seconds
        self.tracker = StageTracker(clock)
        self._last_time = 0.0
        self._last_done = 0
        self._last_note_time = 0.0
        self._completed = False

    def start(self, stage: str, total: int | None) -> None:
        self.tracker.start(stage, total)
        self._last_time, self._last_done, self._completed = self.tracker.clock(), 0, False
        self._last_note_time = self._last_time
        self._report_start()

    def advance(self, n: int = 1) -> None:
        tracker = self.tracker
        tracker.advance(n)
        if self._completed:
            return  # the completion was reported already
        now, total = tracker.clock(), tracker.total
        since = now - self._last_time
        step = max(1, math.ceil(total * self.every_fraction)) if total else None
        due = since >= self.every_seconds or (
            since >= self.min_seconds and step is not None and tracker.done - self._last_done >= step
        )
        self._completed = total is not None and tracker.done >= total
        if self._completed or due:
            self._last_time, self._last_done = now, tracker.done
            self._report_progress()

    def note(self, text: str) -> None:
        """A note is printed as it comes for a stage without a total; otherwise when it describes
        the progress just reported (callers note after they advance) or `every_seconds` after the
        last printed note, so a note per step does not flood the log."""
        tracker = self.tracker
        tracker.note = text
        now = tracker.clock()
        if (
            tracker.total is None
            or (tracker.done == self._last_done and tracker.done > 0)
            or now - self._last_note_time >= self.every_seconds
        ):
            self._last_note_time = now
            self._report_note(text)

    def _write(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def _report_start(self) -> None:
        raise NotImplementedError

    def _report_progress(self) -> None:
        raise NotImplementedError

    def _report_note(self, text: str) -> None:
        raise NotImplementedError


class LineProgress(_Throttled):
    """Progress as plain lines for logs and pipes (stderr by default)::

    embedding: 0/1200
    embedding: 120/1200 (10%) eta 1m05s
    tune: 40/200 (20%) eta 3m10s
    tune: step 40/200 loss 2.3100 2,900 tok/s
    """

    def _report_start(self) -> None:
        t = self.tracker
        self._write(f"{t.stage}: 0/{t.total}" if t.total is not None else f"{t.stage}: started")

    def _report_progress(self) -> None:
        t = self.tracker
        if t.total is None:
            line = f"{t.stage}: {t.done} done, {format_seconds(t.elapsed_s())}"
        else:
            eta = t.eta_s()
            line = f"{t.stage}: {t.done}/{t.total} ({t.fraction() or 0:.0%})"
            line += " done in " + format_seconds(t.elapsed_s()) if t.done >= t.total else ""
            line += f" eta {format_seconds(eta)}" if eta is not None and t.done < t.total else ""
        self._write(line)

    def _report_note(self, text: str) -> None:
        self._write(f"{self.tracker.stage}: {text}")


class JsonProgress(_Throttled):
    """Progress as JSON lines for programs (stderr by default), in the rhythm of
    :class:`LineProgress`: ``{"event": "start", "stage", "total"}``, then ``{"event": "progress",
    "stage", "done", "total", "eta_s", "elapsed_s"}``, and ``{"event": "note", "stage", "text"}``."""

    def _event(self, event: str, **fields: Any) -> None:
        self._write(json.dumps({"event": event, "stage": self.tracker.stage, **fields}, ensure_ascii=False))

    def _report_start(self) -> None:
        self._event("start", total=self.tracker.total)

    def _report_progress(self) -> None:
        snapshot = self.tracker.snapshot()
        del snapshot["stage"], snapshot["note"]
        self._event("progress", **snapshot, elapsed_s=round(self.tracker.elapsed_s(), 1))

    def _report_note(self, text: str) -> None:
        self._event("note", text=text)


class Tee:
    """Every report goes to each of `targets`, in order (the CLI's display and a job record)."""

    def __init__(self, *targets: Progress) -> None:
        self.targets = targets

    def start(self, stage: str, total: int | None) -> None:
        for target in self.targets:
            target.start(stage, total)

    def advance(self, n: int = 1) -> None:
        for target in self.targets:
            target.advance(n)

    def note(self, text: str) -> None:
        for target in self.targets:
            target.note(text)


def or_null(progress: Progress | None) -> Progress:
    """`progress`, or a :class:`NullProgress` when there is none."""
    return progress if progress is not None else NullProgress()


__all__ = [
    "JsonProgress",
    "LineProgress",
    "NullProgress",
    "PrintProgress",
    "Progress",
    "StageTracker",
    "Tee",
    "format_seconds",
    "or_null",
]
