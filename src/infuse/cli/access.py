"""The ``access`` commands: ``show`` and ``set`` who may read documents, without re-embedding.

Why a command of its own: revoking a reader must take effect at once and cost nothing like an
ingest; ``set`` rewrites only the documents' access column (``Workspace.set_access``). A folder
names every document below it. The list lasts until an ingest meets a source that speaks for the
document (its record's access field, a folder's ``.infuse-access`` file, ``--access``): ``show``
and ``set`` name the access file that will decide it, so a change meant to last goes there.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import open_workspace, out, print_json
from infuse.cli.kb import AccessOption
from infuse.workspace import DocumentAccess

access_app = typer.Typer(help="Show or change who may read documents (no re-embedding).", no_args_is_help=True)

RefArgument = Annotated[str, typer.Argument(metavar="PATH_OR_DOC", help="A document id, a file or a folder.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def render(entries: list[DocumentAccess], as_json: bool) -> None:
    if as_json:
        print_json({"documents": [e.to_dict() for e in entries]})
        return
    table = Table()
    for column in ("document", "allow", "deny", "decided at the next ingest by"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        name = entry.source_path if entry.doc_id == entry.source_path else f"{entry.source_path}\n{entry.doc_id}"
        allow = ", ".join(entry.access.allow) if not entry.access.is_default else "(default policy)"
        table.add_row(
            escape(name), escape(allow), escape(", ".join(entry.access.deny)), escape(entry.governed_by or "")
        )
    out.print(table)


@access_app.command("show")
def show(ref: RefArgument, as_json: JsonOption = False) -> None:
    """Who may read each document PATH_OR_DOC names (allow, deny; deny wins)."""
    render(open_workspace().document_access(ref), as_json)


@access_app.command("set")
def set_(
    ref: RefArgument,
    access: AccessOption = None,
    default: Annotated[
        bool, typer.Option("--default", help="Clear the list: [access] default_policy decides who reads.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Give every document PATH_OR_DOC names this access list (a folder: every document below it)."""
    if bool(access) == default:
        raise typer.BadParameter("give --access ENTRY... or --default (not both)", param_hint="--access")
    ws = open_workspace()
    render(ws.set_access_at(ref, access or (), known_principals=None), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(access_app, name="access")
