"""Long jobs leave a record in the workspace, so ``infuse status`` (and the web UI) can say what is
running, how far it is and when it should end, from another process.

A job (an ingest, a compare, a dataset build, a fine-tuning run) is one JSON file,
``WS/jobs/ID.json``, written atomically (:func:`infuse.files.write_json_atomic`) by
:class:`JobProgress`, a :class:`infuse.progress.Progress` that the CLI puts beside its own display.
The file holds the kind, the current stage with ``done``/``total``/``eta_s``, the times, the pid
and host, and the ``state``: ``running``, then ``finished`` or ``failed`` (with the error). A
process that is killed cannot write its end, so readers check the pid: a ``running`` job whose
process is gone on this host reads as ``interrupted``.

Writes are throttled (a stage start, the end, and at most one per `every_seconds` in between), so
a fine-tuning step is not slowed by the disk. The newest :data:`KEEP_JOBS` records are kept.

>>> with JobProgress(ws.path, "tune") as job:            # doctest: +SKIP
...     tune(ws, "cpt", model, config, progress=job)
>>> running_jobs(ws.path)                                 # doctest: +SKIP
[Job(kind='tune', state='running', stage='tune', done=40, total=200, eta_s=95.0, ...)]
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from infuse.files import utc_now, write_json_atomic
from infuse.progress import StageTracker

JOBS_DIR = "jobs"
KEEP_JOBS = 50  # job records kept per workspace (older ones that are no longer running are removed)
# A process started for a known job (the web UI's background jobs) records under this id, so the
# page that started it can follow it before the process has written anything.
JOB_ID_ENV = "INFUSE_JOB_ID"


class JobState:
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process is gone (killed, crashed) or was stopped with Ctrl-C


@dataclass(frozen=True)
class Job:
    """One job's record as readers see it (``state`` already says ``interrupted`` for a dead pid)."""

    id: str
    kind: str
    state: str
    stage: str
    done: int
    total: int | None
    eta_s: float | None
    note: str
    started: str
    updated: str
    finished: str | None
    pid: int
    host: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        fields: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


def jobs_dir(workspace_path: Path) -> Path:
    return Path(workspace_path) / JOBS_DIR


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one owned by another user counts). On Windows,
    where ``os.kill(pid, 0)`` would send Ctrl-C, a job is taken to be alive."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> Job | None:
    """The job in `path`, its state corrected for a dead pid; None for an unreadable file (a record
    is written atomically, so that is someone else's file, not a half-written one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        job = Job.from_dict(data)
    except (OSError, ValueError, TypeError):
        return None
    if job.state == JobState.RUNNING and job.host == socket.gethostname() and not pid_alive(job.pid):
        return Job.from_dict({**job.to_dict(), "state": JobState.INTERRUPTED, "eta_s": None})
    return job


def list_jobs(workspace_path: Path, limit: int | None = None) -> list[Job]:
    """The workspace's job records, newest first (at most `limit`)."""
    folder = jobs_dir(workspace_path)
    if not folder.is_dir():
        return []
    paths = sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")), reverse=True)
    jobs = [job for job in map(_read, paths) if job is not None]
    return jobs[:limit] if limit is not None else jobs


def running_jobs(workspace_path: Path) -> list[Job]:
    """The jobs running now in the workspace, newest first."""
    return [job for job in list_jobs(workspace_path) if job.state == JobState.RUNNING]


class JobProgress:
    """A :class:`~infuse.progress.Progress` that keeps ``WS/jobs/ID.json`` up to date; use it as a
    context manager so the record says how the job ended (an exception marks it ``failed``, Ctrl-C
    ``interrupted``; the exception is not swallowed)."""

    def __init__(
        self,
        workspace_path: Path,
        kind: str,
        *,
        every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        job_id: str | None = None,
    ) -> None:
        self.kind = kind
        self.every_seconds = every_seconds
        self.tracker = StageTracker(clock)
        self.pid = os.getpid()
        self.id = job_id or new_job_id(kind, self.pid)
        self.path = jobs_dir(workspace_path) / f"{self.id}.json"
        self.started = utc_now()
        self.state = JobState.RUNNING
        self.error: str | None = None
        self.finished: str | None = None
        self._last_write = float("-inf")

    # --- the job's life ---------------------------------------------------------------------

    def __enter__(self) -> JobProgress:
        _remove_old(self.path.parent)
        self._write()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.state = JobState.FINISHED
        elif isinstance(exc, KeyboardInterrupt):
            self.state, self.error = JobState.INTERRUPTED, "stopped (Ctrl-C)"
        else:
            self.state, self.error = JobState.FAILED, str(exc) or type(exc).__name__
        self.finished = utc_now()
        self._write()

    # --- Progress ---------------------------------------------------------------------------

    def start(self, stage: str, total: int | None) -> None:
        self.tracker.start(stage, total)
        self._write()

    def advance(self, n: int = 1) -> None:
        self.tracker.advance(n)
        self._maybe_write()

    def note(self, text: str) -> None:
        self.tracker.note = text
        self._maybe_write()

    # --- the record -------------------------------------------------------------------------

    def record(self) -> Job:
        snapshot = self.tracker.snapshot()
        return Job(
            id=self.id,
            kind=self.kind,
            state=self.state,
            stage=snapshot["stage"],
            done=snapshot["done"],
            total=snapshot["total"],
            eta_s=snapshot["eta_s"] if self.state == JobState.RUNNING else None,
            note=snapshot["note"],
            started=self.started,
            updated=utc_now(),
            finished=self.finished,
            pid=self.pid,
            host=socket.gethostname(),
            error=self.error,
        )

    def _maybe_write(self) -> None:
        if self.tracker.clock() - self._last_write >= self.every_seconds:
            self._write()

    def _write(self) -> None:
        self._last_write = self.tracker.clock()
        try:
            write_json_atomic(self.path, self.record().to_dict())
        except OSError:
            pass  # a full or read-only disk must not fail the job itself; status just lacks it


def new_job_id(kind: str, pid: int) -> str:
    """``20261202-170512.345-4242-tune``: sorts by start time (to the millisecond), unique per process."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}.{now.microsecond // 1000:03d}-{pid}-{kind.replace(' ', '-')}"


def _remove_old(folder: Path) -> None:
    """Keep the newest KEEP_JOBS records; a running one is never removed."""
    if not folder.is_dir():
        return
    paths = sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")), reverse=True)
    for path in paths[KEEP_JOBS - 1 :]:
        job = _read(path)
        if job is None or job.state != JobState.RUNNING:
            path.unlink(missing_ok=True)


def describe(job: Job) -> str:
    """One line for a terminal: ``tune running: tune 40/200 (20%), eta 1m35s; pid 4242, since ...``."""
    from infuse.progress import format_seconds

    if not job.stage:
        where = "starting (loading)"
    elif job.total is None:
        where = f"{job.stage} {job.done}" if job.done else job.stage
    else:
        where = f"{job.stage} {job.done}/{job.total}" + (
            f" ({min(1.0, job.done / job.total):.0%})" if job.total else ""
        )
    line = f"{job.kind} {job.state}: {where}"
    if job.state == JobState.RUNNING and job.eta_s is not None:
        line += f", eta {format_seconds(job.eta_s)}"
    line += f"; pid {job.pid}, started {job.started}"
    if job.finished:
        line += f", ended {job.finished}"
    elif job.state == JobState.INTERRUPTED:
        line += f", last heard {job.updated}"
    if job.error:
        line += f"; {job.error}"
    return line


__all__ = [
    "JOB_ID_ENV",
    "Job",
    "JobProgress",
    "new_job_id",
    "JobState",
    "describe",
    "list_jobs",
    "pid_alive",
    "running_jobs",
]
