"""Background jobs the web UI starts: an ingest, a compare, a report, each an ``infuse`` command in
its own process, followed through its job record (:mod:`infuse.jobs`).

Why a process per job, not a thread in the server: the job is exactly the CLI command a user could
type (one tested path, its ``--json`` result kept), it survives the browser closing and even a
restart of the server, a CPU-heavy compare does not hold the server's interpreter, and the
workspace's write lock orders it against other ingests as it does for the CLI.

How a page follows a job it started: the launcher picks the job id and passes it in
``INFUSE_JOB_ID``; the command's own progress (``cli.common.progress_bar``) records under that id.
Until the command writes its first record (it takes a few seconds to start), the launcher's
placeholder says ``starting``. A waiter thread reaps the process; a command that ended without
writing its end (a bad option, a crash before its progress began) gets its record marked
``failed`` with the last line it printed.

Beside the record: ``WS/jobs/output/ID.out`` (the command's stdout: its ``--json`` result),
``ID.err`` (stderr: progress events and errors) and ``ID.meta.json`` (who started it, the command
line as words). Members see only the jobs they started; admins see all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuse.files import read_json, utc_now, write_json_atomic
from infuse.jobs import JOB_ID_ENV, Job, JobState, jobs_dir, list_jobs, new_job_id

OUTPUT_DIR = "output"
BOX_DRAWING = "│╭╮╰╯─ "


@dataclass(frozen=True)
class BackgroundJob:
    """A job record with what the launcher kept beside it."""

    job: Job
    user: str | None
    argv: list[str]
    output: Any | None  # the command's --json result, once it finished

    def to_dict(self) -> dict[str, Any]:
        return {**self.job.to_dict(), "user": self.user, "argv": self.argv, "output": self.output}


class JobLauncher:
    """Starts ``infuse -w WS ...`` commands as background jobs of one workspace."""

    def __init__(self, workspace_path: Path, python: str | None = None) -> None:
        self.workspace_path = Path(workspace_path)
        self.python = python or sys.executable
        self.output_dir = jobs_dir(self.workspace_path) / OUTPUT_DIR

    def start(self, kind: str, args: list[str], user: str) -> str:
        """Run ``infuse -w WS <args> --json`` in the background; returns the job id at once."""
        job_id = new_job_id(kind, os.getpid())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        argv = ["-w", str(self.workspace_path), *args, "--json"]
        write_json_atomic(self.output_dir / f"{job_id}.meta.json", {"user": user, "argv": args})
        # Wide, plain output: an error must fit on one line of the .err file.
        env = {**os.environ, JOB_ID_ENV: job_id, "PYTHONUNBUFFERED": "1", "COLUMNS": "400", "NO_COLOR": "1"}
        out = (self.output_dir / f"{job_id}.out").open("wb")
        err = (self.output_dir / f"{job_id}.err").open("wb")
        try:
            process = subprocess.Popen(
                [self.python, "-m", "infuse", *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workspace_path,
                start_new_session=True,  # Ctrl-C on the server does not stop the job
            )
        finally:
            out.close()
            err.close()
        self._write_placeholder(job_id, kind, process.pid)
        threading.Thread(target=self._reap, args=(process, job_id), daemon=True, name=f"job-{job_id}").start()
        return job_id

    def _record_path(self, job_id: str) -> Path:
        return jobs_dir(self.workspace_path) / f"{job_id}.json"

    def _write_placeholder(self, job_id: str, kind: str, pid: int) -> None:
        path = self._record_path(job_id)
        if path.exists():  # the command was quicker
            return
        now = utc_now()
        placeholder = Job(
            job_id, kind, JobState.RUNNING, "", 0, None, None, "starting", now, now, None, pid, socket.gethostname()
        )
        write_json_atomic(path, placeholder.to_dict())

    def _reap(self, process: subprocess.Popen[bytes], job_id: str) -> None:
        code = process.wait()
        record = read_json(self._record_path(job_id)) or {}
        if record.get("state", JobState.RUNNING) != JobState.RUNNING:
            return  # the command recorded how it ended
        last = self._last_line(job_id) or f"the command exited with status {code}"
        now = utc_now()
        failed = {**record, "state": JobState.FAILED, "error": last, "finished": now, "updated": now, "eta_s": None}
        write_json_atomic(self._record_path(job_id), failed)

    def _last_line(self, job_id: str) -> str | None:
        """The command's error: its last stderr line that is not a progress event."""
        try:
            lines = (self.output_dir / f"{job_id}.err").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            text = line.strip().strip(BOX_DRAWING).strip()  # typer frames its usage errors in a box
            if text and not text.startswith("{"):
                return text[:500]
        return None

    def get(self, job_id: str) -> BackgroundJob | None:
        found = next((j for j in list_jobs(self.workspace_path) if j.id == job_id), None)
        return self._with_output(found) if found is not None else None

    def list(self, user: str | None = None, limit: int = 20) -> list[BackgroundJob]:
        """Recent jobs, newest first: all of them (``user`` None, for admins) or the ones ``user`` started."""
        jobs = [self._with_output(j) for j in list_jobs(self.workspace_path)]
        if user is not None:
            jobs = [j for j in jobs if j.user == user]
        return jobs[:limit]

    def _with_output(self, job: Job) -> BackgroundJob:
        meta = read_json(self.output_dir / f"{job.id}.meta.json") if self.output_dir.is_dir() else None
        output = None
        if job.state == JobState.FINISHED and meta is not None:
            try:
                output = json.loads((self.output_dir / f"{job.id}.out").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                output = None
        meta = meta or {}
        return BackgroundJob(job, meta.get("user"), list(meta.get("argv", [])), output)


__all__ = ["BackgroundJob", "JobLauncher"]
