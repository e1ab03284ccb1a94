"""`make demo` runs offline end to end, finds the right passage for each sample question, and shows
the `infuse` command of each step and how to do the same on your own documents."""

from __future__ import annotations

import io
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from infuse.cli import app
from infuse.demo import DEMO_QUERIES, SAMPLE_CORPUS, lab_commands, own_documents_commands, print_own_documents, run
from infuse.lab.story import StoryConfig


def test_demo_answers_every_sample_query_from_the_right_file(tmp_path: Path) -> None:
    output = io.StringIO()
    top = dict(run(tmp_path / "demo", Console(file=output, width=400)))
    expected = ["handbook.md", "handbook.md", "faq.html", "就業規則.md", "faq_shiftjis.txt", "就業規則.md"]
    assert [Path(top[q]).name for q in DEMO_QUERIES] == expected
    lines = output.getvalue().splitlines()
    assert f"$ infuse -w {tmp_path / 'demo'} ingest {SAMPLE_CORPUS} --id-field id" in lines
    assert f"$ infuse -w {tmp_path / 'demo'} search {shlex.quote(DEMO_QUERIES[0])} -k 1" in lines


def parse(line: str) -> tuple[list[str], dict[str, Any]]:
    """The subcommand path and options `line` gives the real CLI parser (nothing runs); a wrong
    option or value fails here as it would for the user."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("infuse", shlex.split(line)[1:])
    names = []
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        names.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    return names, ctx.params


def test_the_demo_prints_cli_commands_that_the_cli_accepts(tmp_path: Path) -> None:
    config = StoryConfig()
    lab = [line for line in lab_commands(Path(".demo-workspace/lab"), config) if not line.startswith("#")]
    parsed = [parse(line) for line in lab]
    restricted = len(config.lab.world().restricted)
    assert [" ".join(names) for names, _ in parsed] == [
        "lab world",
        "ingest",
        *["access set"] * (1 + restricted),
        "questions import",
        "questions import",
        "lab style-examples",
        "dataset build",
        "tune",
        "compare",
        "report",
        "advise",
    ]
    # the story's one run (facts in the house style + style examples) and its training settings,
    # not a copy that can drift
    examples, build, tune = (parsed[i + restricted][1] for i in (5, 6, 7))
    assert (examples["people"], build["kind"], build["per_chunk"]) == (
        config.style_people,
        "qa",
        config.questions_per_doc,
    )
    assert (build["replay"], build["replay_share"]) == (examples["out"], config.style_share) and build["style"]
    assert tune["dataset"] == build["name"]
    assert (tune["max_steps"], tune["lr"], tune["batch_size"]) == (config.tune_steps, config.tune_lr, config.batch_rows)

    output = io.StringIO()
    print_own_documents(Console(file=output, width=400))
    shown = output.getvalue()
    for line in own_documents_commands():
        assert (line if line.startswith("#") else f"$ {line}") in shown
    steps = [" ".join(parse(line.replace("~/", "/"))[0]) for line in own_documents_commands() if line[0] != "#"]
    assert steps == [
        "ingest",
        "questions import",
        "dataset build",
        "tune",
        "compare",
        "report",
        "advise",
        "serve",
    ]


def dry_run(tmp_path: Path, target: str) -> str:
    """What `make TARGET` would run in a fresh clone (make -n: nothing is installed)."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    done = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True)
    return done.stdout


def test_make_demo_installs_only_the_runtime_and_make_test_adds_the_dev_extras(tmp_path: Path) -> None:
    demo = dry_run(tmp_path, "demo")
    assert "pip install -e .\n" in demo and "[dev]" not in demo and "python -m infuse.demo" in demo
    for target in ("test", "check"):  # .ci/run: make check, then make test
        assert 'pip install -e ".[dev]"' in dry_run(tmp_path, target)
