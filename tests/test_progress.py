"""Library calls report through infuse.progress.Progress and never draw."""

from __future__ import annotations

import io
import json

import pytest

from infuse.lab.model import build_model, build_tokenizer
from infuse.lab.train import LabData, train
from infuse.progress import JsonProgress, LineProgress, NullProgress, PrintProgress, Progress, Tee
from infuse.testing import tiny_lab_config
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig
from infuse.workspace import Workspace


class Recorder:
    """A Progress that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, stage: str, total: int | None) -> None:
        self.calls.append(("start", stage, total))

    def advance(self, n: int = 1) -> None:
        self.calls.append(("advance", n))

    def note(self, text: str) -> None:
        self.calls.append(("note", text))

    def advanced(self) -> int:
        return sum(c[1] for c in self.calls if c[0] == "advance")

    def notes(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "note"]


def test_the_implementations_satisfy_the_protocol() -> None:
    def takes(progress: Progress) -> Progress:
        return progress

    for progress in (NullProgress(), PrintProgress(), Recorder()):
        assert takes(progress) is progress


def test_print_progress_prints_stage_starts_and_notes() -> None:
    stream = io.StringIO()
    progress = PrintProgress(stream)
    progress.start("tune", 10)
    progress.advance(3)
    progress.note("step 3/10 loss 1.2345")
    progress.start("index", None)
    assert stream.getvalue() == "tune: 0/10\ntune: step 3/10 loss 1.2345\nindex: started\n"


def test_fine_tuning_reports_every_step_and_notes_the_loss(
    lab_ws: Workspace, tiny_lab_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build_dataset(lab_ws, BuildRequest(DatasetKind.CPT, tokenizer=tiny_lab_model_dir))
    config = TuneConfig(max_steps=4, save_every=2, seq_len=128, micro_batch_size=4, threads=1, device="cpu")
    recorder = Recorder()
    tune(lab_ws, "cpt", tiny_lab_model_dir, config, name="first", progress=recorder)
    assert recorder.calls[0] == ("start", "tune", 4) and recorder.advanced() == 4
    assert recorder.notes()[-1].startswith("step 4/4 loss ") and recorder.notes()[-1].endswith(" tok/s")
    tune(lab_ws, "cpt", tiny_lab_model_dir, config, name="quiet")  # no progress: nothing drawn or printed
    assert capsys.readouterr().err == ""


def test_lab_pretraining_reports_every_step_and_notes_each_loss_point() -> None:
    tokenizer = build_tokenizer("en")
    config = tiny_lab_config(steps=6, batch_size=2, warmup_steps=2, lr=0.002)
    recorder = Recorder()
    result = train(
        build_model(tokenizer, config.architecture()),
        LabData(config, tokenizer),
        config,
        progress=recorder,
        log_every=3,
    )
    assert recorder.calls[0] == ("start", "lab model", 6) and recorder.advanced() == 6
    assert [n.split(" loss")[0] for n in recorder.notes()] == ["step 3/6", "step 6/6"] and len(result.losses) == 2


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_prints_done_total_and_eta_every_5_percent_at_most_once_a_second() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = LineProgress(stream, clock=clock)
    progress.start("embedding", 100)
    for _ in range(100):
        clock.now += 0.25  # 4 units a second: 5% (5 units) is 1.25 s, past the one-second floor
        progress.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "embedding: 0/100"
    assert lines[1] == "embedding: 5/100 (5%) eta 24s"  # 95 left at 4/s (the rate counts from the first unit)
    assert lines[-1] == "embedding: 100/100 (100%) done in 25s"
    assert len(lines) == 1 + 20  # the start, then every 5%; the last one is the completion


def test_line_progress_is_quiet_for_fast_stages_and_ticks_every_10_seconds_for_slow_ones() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = LineProgress(stream, clock=clock)
    progress.start("reading", 1000)
    for _ in range(1000):  # all in the same instant
        progress.advance()
    assert stream.getvalue().splitlines() == ["reading: 0/1000", "reading: 1000/1000 (100%) done in 0s"]

    stream.truncate(0), stream.seek(0)
    progress.start("tune", 10_000)
    for step in range(1, 101):
        clock.now += 1.0
        progress.advance()
        progress.note(f"step {step} loss 2.0")
    lines = stream.getvalue().splitlines()
    # every 10 s: the progress and the note that describes it (not the 9 notes in between)
    assert lines[1:5] == ["tune: 10/10000 (0%) eta 2h46m", "tune: step 10 loss 2.0"] + [
        "tune: 20/10000 (0%) eta 2h46m",
        "tune: step 20 loss 2.0",
    ]
    assert len(lines) == 1 + 2 * 10


def test_json_progress_prints_one_event_object_per_line() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = JsonProgress(stream, clock=clock)
    progress.start("compare rag@1", 4)
    for _ in range(4):
        clock.now += 2.0
        progress.advance()
    progress.start("loading model", None)
    progress.note("converting")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events[0] == {"event": "start", "stage": "compare rag@1", "total": 4}
    assert events[1] == {
        "event": "progress",
        "stage": "compare rag@1",
        "done": 1,
        "total": 4,
        "eta_s": None,  # no rate from a single unit
        "elapsed_s": 2.0,
    }
    assert [(e["done"], e["eta_s"]) for e in events[2:5]] == [(2, 4.0), (3, 2.0), (4, 0.0)]
    assert events[5:] == [
        {"event": "start", "stage": "loading model", "total": None},
        {"event": "note", "stage": "loading model", "text": "converting"},
    ]


def test_tee_hands_every_report_to_each_receiver() -> None:
    first, second = Recorder(), Recorder()
    tee = Tee(first, second)
    tee.start("x", 2)
    tee.advance(2)
    tee.note("ok")
    assert first.calls == second.calls == [("start", "x", 2), ("advance", 2), ("note", "ok")]
