"""The ``audit`` commands: ``tail`` and ``search`` over the server's audit log (who asked what, and
which passages they were shown).

Why on the command line too: the admin of a team server answers "who saw this passage?" from a
shell on the server's machine, without a key; reading the workspace's files is already an
admin's power. The records and the file are :mod:`infuse.server.audit`'s.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import open_workspace, out, print_json

audit_app = typer.Typer(
    help="Read the server's audit log (who asked what, which passages came back).", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (a list of records).")]


def _records(last: int | None, **filters: Any) -> list[dict[str, Any]]:
    from infuse.server.audit import audit_path, read_records

    ws = open_workspace()
    path = audit_path(ws.settings.server.audit_log, ws.path)
    if path is None:
        return []
    return read_records(path, last=last, **filters)


def _render(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(records)
        return
    if not records:
        out.print("no audit records")
        return
    table = Table()
    for column in ("time", "user", "route", "status", "model", "question", "chunks"):
        table.add_column(column, overflow="fold")
    for r in records:
        question = str(r.get("question") or "")
        table.add_row(
            str(r.get("time", "")),
            escape(str(r.get("user") or "-")),
            escape(str(r.get("route", ""))),
            str(r.get("status") or "-"),
            escape(str(r.get("model") or "")),
            escape(question[:120] + ("…" if len(question) > 120 else "")),
            escape(", ".join(r.get("chunks") or [])),
        )
    out.print(table)


@audit_app.command("tail")
def tail(
    n: Annotated[int, typer.Option("-n", help="How many of the newest records.", min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """The newest records, oldest first."""
    _render(_records(n), as_json)


@audit_app.command("search")
def search(
    user: Annotated[str | None, typer.Option(help="Only this user's requests.")] = None,
    since: Annotated[str | None, typer.Option(help="At or after this ISO time, e.g. 2026-12-02T17:00.")] = None,
    text: Annotated[str | None, typer.Option(help="Text in the question or route (case-insensitive).")] = None,
    n: Annotated[int | None, typer.Option("-n", help="At most the newest N matches.", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Records matching every option given (all records without options), oldest first."""
    _render(_records(n, user=user, since=since, text=text), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
