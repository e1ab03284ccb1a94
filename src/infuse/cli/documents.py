"""The ``documents`` commands: ``list``, ``show`` and ``rm`` for the knowledge base's documents.

Why: a search hit or a citation points at a span (``start``/``end``) of a document's extracted
text, which for HTML, PDF and DOCX is not the file's bytes; ``show`` prints exactly that text so
the span can be found and highlighted. ``list`` says what is in the knowledge base and ``rm``
takes a document out of it without touching its file.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import EXIT_ERROR, err, open_workspace, out, print_json
from infuse.cli.kb import FilterOption, parse_filters
from infuse.workspace import DocumentSummary

documents_app = typer.Typer(help="List, show and remove the knowledge base's documents.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@documents_app.command("list")
def list_documents(filter_: FilterOption = None, as_json: JsonOption = False) -> None:
    """Each document: id, source path, language, chunks, access list and metadata."""
    documents = open_workspace().documents(parse_filters(filter_))
    if as_json:
        print_json([d.to_dict() for d in documents])
    elif not documents:
        out.print("no documents")
    else:
        out.print(documents_table(documents))


def documents_table(documents: list[DocumentSummary]) -> Table:
    table = Table()
    for column in ("doc id", "source", "lang", "chunks", "access / metadata"):
        table.add_column(column, overflow="fold")
    for d in documents:
        tags = [*d.access, *(f"{k}={v}" for k, v in d.metadata.items())]
        doc_id = "" if d.doc_id == d.source_path else d.doc_id  # a file's id is its path: shown once
        table.add_row(escape(doc_id), escape(d.source_path), d.lang or "-", str(d.chunks), escape(", ".join(tags)))
    return table


@documents_app.command("show")
def show(
    doc: Annotated[str, typer.Argument(help="Document id or source path (as `documents list` shows it).")],
    as_json: JsonOption = False,
) -> None:
    """Print a document's extracted text: the text that chunk and citation offsets (start/end) index into."""
    view = open_workspace().document(doc)
    if as_json:
        print_json(view.to_dict())
    else:
        sys.stdout.write(view.text)
        if not view.text.endswith("\n"):
            sys.stdout.write("\n")


@documents_app.command("rm")
def rm(
    docs: Annotated[list[str], typer.Argument(help="Document ids or source paths (a path removes all its documents).")],
    as_json: JsonOption = False,
) -> None:
    """Remove documents and their chunks from the knowledge base (the files are not touched; a
    later ingest of the same path adds them again)."""
    report = open_workspace().remove(docs)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(f"removed {len(report.removed)} documents", highlight=False)
        for d in report.removed:
            out.print(f"  {escape(d.doc_id)} ({d.chunks} chunks)", highlight=False)
    for ref in report.not_found:
        err.print(f"[red]not found:[/] {escape(ref)} (see `infuse documents list`)", highlight=False)
    if report.not_found:
        raise typer.Exit(EXIT_ERROR)


def register(app: typer.Typer) -> None:
    app.add_typer(documents_app, name="documents")
