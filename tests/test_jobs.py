"""Long jobs you can see: job records in the workspace, `status` reading them, and the CLI's
progress when stderr is a log (lines) or a program (JSON events)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from infuse.cli import app
from infuse.jobs import Job, JobProgress, JobState, describe, list_jobs, running_jobs
from infuse.workspace import Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_running_job_shows_in_status_with_done_total_and_eta(workspace: Workspace) -> None:
    clock = Clock()
    with JobProgress(workspace.path, "tune", clock=clock, every_seconds=0) as job:
        job.start("tune", 200)
        for _ in range(40):
            clock.now += 2.0
            job.advance()
        job.note("step 40/200 loss 2.3100")
        [running] = running_jobs(workspace.path)
        assert (running.kind, running.state, running.stage, running.done, running.total) == (
            "tune",
            "running",
            "tune",
            40,
            200,
        )
        assert running.eta_s == 320.0 and running.pid == os.getpid() and running.note == "step 40/200 loss 2.3100"

        runner = CliRunner()
        shown = runner.invoke(app, ["-w", str(workspace.path), "status", "--json"])
        assert shown.exit_code == 0, shown.output
        [listed] = json.loads(shown.stdout)["jobs"]
        assert listed["state"] == "running" and listed["done"] == 40 and listed["eta_s"] == 320.0
        table = runner.invoke(app, ["-w", str(workspace.path), "status"])
        assert "tune running: tune 40/200 (20%), eta 5m20s" in " ".join(table.stdout.split())
    [ended] = list_jobs(workspace.path)
    assert ended.state == JobState.FINISHED and ended.finished and ended.eta_s is None
    assert running_jobs(workspace.path) == []


def test_a_job_that_raises_is_recorded_as_failed_with_the_error(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), JobProgress(workspace.path, "dataset build") as job:
        job.start("qa", 10)
        job.advance(3)
        raise RuntimeError("the writer model answered nothing")
    [failed] = list_jobs(workspace.path)
    assert failed.state == JobState.FAILED and failed.error == "the writer model answered nothing"
    assert (failed.kind, failed.done, failed.total) == ("dataset build", 3, 10)


def test_a_job_whose_process_died_shows_as_interrupted(workspace: Workspace) -> None:
    pid = os.fork()
    if pid == 0:  # the child starts a job and dies without a word (as under kill -9)
        job = JobProgress(workspace.path, "compare").__enter__()
        job.start("rag@1", 50)
        job.advance(7)
        job._write()
        os._exit(0)
    os.waitpid(pid, 0)
    [job] = list_jobs(workspace.path)
    assert job.state == JobState.INTERRUPTED and job.pid == pid and job.done == 7 and job.eta_s is None
    assert running_jobs(workspace.path) == []
    status = CliRunner().invoke(app, ["-w", str(workspace.path), "status"])
    assert "compare interrupted: rag@1 7/50 (14%)" in " ".join(status.stdout.split())


def test_old_job_records_are_removed_but_never_a_running_one(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infuse.jobs

    monkeypatch.setattr(infuse.jobs, "KEEP_JOBS", 3)
    running = JobProgress(workspace.path, "tune").__enter__()  # the oldest, still running
    ingests = []
    for _ in range(4):
        with JobProgress(workspace.path, "ingest") as job:
            ingests.append(job.id)
    kept = {job.id for job in list_jobs(workspace.path)}
    assert kept == {running.id, *ingests[-3:]}  # the 3 newest, and the running one however old


def test_ingest_without_a_terminal_prints_line_progress_and_records_the_job(corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["-w", str(ws), "ingest", str(corpus)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    n = len(CORPUS)
    assert lines[0] == f"ingesting: 0/{n}" and f"ingesting: {n}/{n} (100%) done in" in result.stderr
    assert any(line.startswith("ingesting: ") and "chunks written" in line for line in lines), lines
    [job] = list_jobs(ws)
    assert (job.kind, job.state, job.stage) == ("ingest", "finished", "ingesting") and job.done == job.total


def test_json_commands_print_json_progress_events_on_stderr(corpus: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "ingest", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == len(CORPUS)  # stdout stays the one JSON document
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {e["event"] for e in events} == {"start", "progress", "note"}  # notes: chunks written so far
    done = [e for e in events if e["event"] == "progress" and e["stage"] == "ingesting"][-1]
    assert done["done"] == done["total"] == len(CORPUS) and done["eta_s"] == 0.0


def test_tune_records_its_job_though_it_opens_the_workspace_inside_the_progress_block(
    workspace: Workspace, tmp_path: Path, tiny_llama_dir: str
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"Fact {i}: the sky is blue."}) + "\n" for i in range(8)))
    command = ["-w", str(workspace.path), "tune", "--dataset", str(data), "--model", tiny_llama_dir]
    result = CliRunner().invoke(app, [*command, "--max-steps", "3", "--seq-len", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tune: 3/3 (100%) done in" in result.stderr
    [job] = list_jobs(workspace.path)
    assert (job.kind, job.state, job.stage, job.done, job.total) == ("tune", "finished", "tune", 3, 3)


def test_describe_reads_well_before_the_first_stage_and_without_a_total() -> None:
    base = {"id": "x", "kind": "tune", "state": "interrupted", "note": "", "started": "t0", "updated": "t1"}
    base |= {"finished": None, "pid": 7, "host": "h", "eta_s": None, "done": 0, "total": None}
    assert describe(Job.from_dict({**base, "stage": ""})).startswith("tune interrupted: starting (loading); pid 7")
    assert describe(Job.from_dict({**base, "stage": "loading model"})).startswith("tune interrupted: loading model;")
