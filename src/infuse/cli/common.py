"""What every command shares: the workspace option, opening it, JSON output, progress bars, and
the one error handler.

Errors are handled once, in :class:`InfuseGroup`: any :class:`infuse.errors.InfuseError` a command
lets through is printed as one line on stderr and the process exits with the error class's
``exit_code``. Commands therefore contain no try/except of their own, and a new error class gets
its exit code (and the server its HTTP status) from its class attributes, not from a CLI case.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from infuse.errors import InfuseError
from infuse.workspace import DEFAULT_WORKSPACE, Workspace

EXIT_ERROR = InfuseError.exit_code  # an error (message on stderr); subclasses may choose their own
EXIT_PARTIAL = 3  # ingest finished but some files failed

out = Console()
err = Console(stderr=True, soft_wrap=True)


class InfuseGroup(TyperGroup):
    """The top-level command group; the CLI's one error handler."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except InfuseError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None


class _State:
    workspace: Path | None = None


state = _State()


def main(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "-w", "--workspace", envvar="INFUSE_WORKSPACE", help=f"Workspace folder \\[default: ./{DEFAULT_WORKSPACE}]"
        ),
    ] = None,
) -> None:
    state.workspace = workspace


def open_workspace(create: bool = False, **overrides: Any) -> Workspace:
    """The workspace named by ``-w``/``$INFUSE_WORKSPACE`` (default ./infuse-workspace)."""
    return Workspace.open(state.workspace, create=create, **overrides)


def model_overrides(model: str | None, adapters: list[str] | None) -> dict[str, Any]:
    """Settings overrides for ``--model``/``--adapter``; fine-tuning run names become their folders."""
    from infuse.tuning.registry import inference_overrides

    return inference_overrides(open_workspace(create=True) if adapters else None, model, adapters)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def fmt_loss(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


class RichProgress:
    """The library's progress reports (``start``/``advance``/``note``) drawn as one Rich bar per
    stage on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, stage: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._task = self._progress.add_task(stage[:40], total=total, note="")

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        if self._task is None:
            return
        self._progress.update(self._task, note=text)
        if not self._progress.console.is_terminal:  # logs get the status as lines
            stage = self._progress.tasks[self._task].description
            self._progress.console.print(f"{stage}: {text}", markup=False, highlight=False)


@contextmanager
def progress_bar() -> Iterator[RichProgress]:
    """A transient progress display on stderr for the duration of the block."""
    bar = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
        transient=True,
    )
    with bar:
        yield RichProgress(bar)
