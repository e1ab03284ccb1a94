"""What every command shares: the workspace and verbosity options, opening the workspace, JSON
output, progress, and the one error handler.

Progress is decided here once, for every command that wraps its library call in
:func:`progress_bar`: a Rich bar on a terminal, :class:`~infuse.progress.LineProgress` lines when
stderr is a log or a pipe, :class:`~infuse.progress.JsonProgress` events when the command was given
``--json``; and, beside the display, a :class:`~infuse.jobs.JobProgress` record in the workspace
the command opened, which ``infuse status`` reads. Library warnings and Hugging Face bars are kept
off the terminal (:func:`infuse.hf_logging.quiet_library_output`) unless ``-v`` is given; they go
to ``WS/logs/warnings.log``.

Errors are handled once, in :class:`InfuseGroup`: any :class:`infuse.errors.InfuseError` a command
lets through is printed as one line on stderr and the process exits with the error class's
``exit_code``. Commands therefore contain no try/except of their own, and a new error class gets
its exit code (and the server its HTTP status) from its class attributes, not from a CLI case.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from infuse.hf_logging import quiet_library_output
from infuse.jobs import JOB_ID_ENV, JobProgress
from infuse.language import Language
from infuse.progress import JsonProgress, LineProgress, Tee
from infuse.progress import Progress as ProgressProtocol
from infuse.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from infuse.rag.style import HouseStyle

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
    opened: Path | None = None  # the workspace this command opened (job records and the warnings log go there)


state = _State()
LOG_DIR = "logs"
WARNINGS_LOG = "warnings.log"


def main(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "-w", "--workspace", envvar="INFUSE_WORKSPACE", help=f"Workspace folder \\[default: ./{DEFAULT_WORKSPACE}]"
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v", "--verbose", help=f"Show the libraries' warnings and bars (else in WS/{LOG_DIR}/{WARNINGS_LOG})."
        ),
    ] = False,
) -> None:
    state.workspace = workspace
    state.opened = None
    if not verbose:
        quiet_library_output(warnings_log)


def warnings_log() -> Path | None:
    """Where library warnings go: the opened workspace's log (None before one is opened: dropped)."""
    return state.opened / LOG_DIR / WARNINGS_LOG if state.opened is not None else None


def open_workspace(create: bool = False, lang: Language | None = None, **overrides: Any) -> Workspace:
    """The workspace named by ``-w``/``$INFUSE_WORKSPACE`` (default ./.infuse)."""
    ws = Workspace.open(state.workspace, create=create, lang=lang, **overrides)
    state.opened = ws.path
    return ws


def model_overrides(model: str | None, adapters: list[str] | None) -> dict[str, Any]:
    """Settings overrides for ``--model``/``--adapter``; fine-tuning run names become their folders."""
    from infuse.tuning.registry import inference_overrides

    return inference_overrides(open_workspace(create=True) if adapters else None, model, adapters)


def command_line(rest: str) -> str:
    """``infuse [-w WS] REST``: a command to print for the user, naming the workspace they named."""
    from infuse.advice.explain import with_workspace

    return with_workspace(f"infuse {rest}", state.workspace)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def render_removed(report: dict[str, Any], as_json: bool) -> None:
    """What an ``rm`` command removed: ``{removed, kind, path, ...}`` as JSON or one line."""
    if as_json:
        print_json(report)
        return
    out.print(f"removed {report['kind']} [bold]{escape(str(report['removed']))}[/] ({escape(str(report['path']))})")


def fmt_loss(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


class RichProgress:
    """The library's progress reports (``start``/``advance``/``note``) drawn as one Rich bar per
    stage on a terminal's stderr."""

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


def current_context() -> Any:
    """The running command's context (None outside one). Typer 0.2x runs commands in its own copy
    of click (``typer._click``), whose context stack is not click's; older Typer uses click."""
    try:
        from typer._click import globals as click_globals
    except ImportError:  # Typer before it vendored click
        import click as click_globals  # type: ignore[no-redef]
    return click_globals.get_current_context(silent=True)


def command_name() -> str:
    """The running command without the program name (``dataset build``), or ``""`` outside one."""
    ctx = current_context()
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def wants_json() -> bool:
    """Whether the running command was given ``--json`` (every command names that option `as_json`)."""
    ctx = current_context()
    return bool(ctx is not None and ctx.params.get("as_json"))


@contextmanager
def progress_bar() -> Iterator[ProgressProtocol]:
    """Progress for the duration of the block, on stderr: a transient Rich bar on a terminal, line
    progress otherwise, JSON events with ``--json``; and a job record in the opened workspace
    (``WS/jobs``; on rank 0 only under torchrun) that ends as finished, failed or interrupted."""
    with _display() as display:
        workspace = job_workspace()
        if workspace is None or os.environ.get("RANK", "0") != "0":
            yield display
            return
        with JobProgress(workspace, command_name() or "job", job_id=os.environ.get(JOB_ID_ENV) or None) as job:
            yield Tee(display, job)


def job_workspace() -> Path | None:
    """Where the running command's job is recorded: the workspace it opened, else the one ``-w``
    names if it exists (commands may open it inside the progress block); None without one."""
    if state.opened is None:
        try:
            open_workspace()
        except InfuseError:  # no workspace there (`lab train`), or its settings are broken
            return None
    return state.opened


@contextmanager
def _display() -> Iterator[ProgressProtocol]:
    if wants_json():
        yield JsonProgress()
        return
    if not err.is_terminal:
        yield LineProgress()
        return
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


def parse_style(entries: list[str]) -> HouseStyle:
    """``--style LANG=TEMPLATE`` options (compare, dataset build) as one house style named "house"."""
    from infuse.rag.style import HouseStyle

    templates = {}
    for entry in entries:
        lang, sep, template = entry.partition("=")
        if not sep or lang.strip() not in ("en", "ja"):
            raise InfuseError(f"--style {entry!r}: write LANG=TEMPLATE with LANG en or ja")
        templates[lang.strip()] = template
    return HouseStyle("house", templates)
