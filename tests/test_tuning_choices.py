"""Decisions that used to live in the CLI, now in the tuning library: writer choice, request defaults, layers."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from infuse.config import ModelSettings
from infuse.tuning.builders import BuildRequest
from infuse.tuning.datasets import DatasetError, DatasetKind
from infuse.tuning.generators import WriterChoice, choose_writer, detect_writer, register_writer
from infuse.tuning.trainer import TuneConfig


def test_tuning_does_not_import_the_lab() -> None:
    code = (
        "import sys, infuse.tuning.builders, infuse.tuning.registry, infuse.tuning.generators; "
        "print(sorted(m for m in sys.modules if m.startswith('infuse.lab')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_lab_registers_its_writer_and_the_first_match_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import infuse.lab  # noqa: F401  (registers the lab world's writer)
    from infuse.tuning import generators

    class Templates:
        name = "templates"

    mine = [SimpleNamespace(source_path="/nowhere/docs/a.txt")]  # not a lab world's document
    monkeypatch.setattr(generators, "_DETECTORS", list(generators._DETECTORS))
    assert any(getattr(d, "__qualname__", "") == "LabWorldWriter.detect" for d in generators._DETECTORS)
    assert detect_writer(mine) is None
    register_writer(lambda chunks: Templates() if chunks is mine else None)
    assert isinstance(detect_writer(mine), Templates)
    assert choose_writer(mine, WriterChoice.AUTO, ModelSettings()).name == "templates"


def test_writer_choice_errors_say_what_to_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from infuse.tuning import generators

    monkeypatch.setattr(generators, "_DETECTORS", [])
    with pytest.raises(DatasetError, match="--writer lab: the knowledge base is not made of lab-world documents"):
        choose_writer([], WriterChoice.LAB, ModelSettings(name="m"))
    with pytest.raises(DatasetError, match="building a qa dataset needs a model to write questions: pass --model"):
        choose_writer([], WriterChoice.MODEL, ModelSettings(), task="a qa dataset", writes="questions")


def test_request_types_hold_the_defaults_and_reject_what_is_not_built() -> None:
    with pytest.raises(DatasetError, match="--kind imported is not built"):
        BuildRequest(DatasetKind.IMPORTED)
    assert BuildRequest(DatasetKind.QA).writer is WriterChoice.AUTO
    assert TuneConfig.parse_targets(None) == TuneConfig.parse_targets(" , ") == "all-linear"
    assert TuneConfig.parse_targets("q_proj, v_proj") == ("q_proj", "v_proj")
