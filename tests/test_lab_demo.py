"""The lab demo and the lab CLI on a tiny configuration (seconds), end to end."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from infuse.cli import app
from infuse.lab.demo import run_lab_demo
from infuse.testing import tiny_lab_config

TINY = tiny_lab_config(steps=30, n_known_variants=6, lr=0.002, max_positions=1024)


def test_lab_demo_runs_end_to_end_on_a_tiny_configuration(tmp_path: Path) -> None:
    result = run_lab_demo(
        tmp_path / "demo", TINY, sample=5, cache_dir=tmp_path / "cache", console=Console(file=open("/dev/null", "w"))
    )
    assert (result.model_folder / "config.json").exists() and (result.model_folder / "lab_manifest.json").exists()
    assert result.questions == 5 and 0 <= result.closed_book_accuracy <= 1 and 0 <= result.rag_accuracy <= 1
    assert result.chance == 0.04
    assert len(list((result.workspace.parent / "world" / "docs").glob("*.txt"))) == 5
    again = run_lab_demo(
        tmp_path / "demo", TINY, sample=5, cache_dir=tmp_path / "cache", console=Console(file=open("/dev/null", "w"))
    )
    assert again.model_folder == result.model_folder, "the second run reuses the cached model"


def test_lab_cli_world_and_train(tmp_path: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(app, ["lab", "world", "-o", str(tmp_path / "w"), "--lang", "ja", "--seed", "3", "--json"])
    assert written.exit_code == 0, written.output
    manifest = json.loads(written.stdout)
    assert manifest["seed"] == 3 and (tmp_path / "w" / "docs").is_dir()
    refused = runner.invoke(app, ["lab", "world", "-o", str(tmp_path / "w")])
    assert refused.exit_code == 1 and "--overwrite" in refused.output

    trained = runner.invoke(app, ["lab", "train", "--out", str(tmp_path / "cache"), "--steps", "3", "--json"])
    assert trained.exit_code == 0, trained.output
    info = json.loads(trained.stdout)
    assert Path(info["folder"]).is_dir() and info["parameters"] > 0
