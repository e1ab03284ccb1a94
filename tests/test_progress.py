"""Library calls report through infuse.progress.Progress and never draw."""

from __future__ import annotations

import io

import pytest

from infuse.lab.model import build_model, build_tokenizer
from infuse.lab.train import LabData, train
from infuse.progress import NullProgress, PrintProgress, Progress
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
