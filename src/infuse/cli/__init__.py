"""The ``infuse`` command line: a thin layer over the library.

Each command parses its options, makes one library call and renders the result; decisions
(defaults, which writer, run names) live in the library so a web UI can make the same call.
One module per command group: :mod:`~infuse.cli.kb` (ingest, search, status, reindex),
:mod:`~infuse.cli.documents` (documents list, show, rm), :mod:`~infuse.cli.access` (access show, set),
:mod:`~infuse.cli.answer` (ask, serve), :mod:`~infuse.cli.tuning` (dataset, tune, adapters),
:mod:`~infuse.cli.evaluate` (questions, compare, report, advise), :mod:`~infuse.cli.lab`; shared
pieces (workspace option, JSON output, progress bars, the one error handler) in
:mod:`~infuse.cli.common`. A new command goes in its group's module and is added by its ``register``.

Exit codes: 0 success; 1 an error (message on stderr; the error class's ``exit_code``, see
:mod:`infuse.errors`); 2 bad usage; 3 ingest finished but some files failed (the others were
ingested; the summary lists the failures).
"""

from __future__ import annotations

import typer

import infuse.lab  # noqa: F401  (the lab registers its dataset writer with infuse.tuning)
from infuse.cli import access, answer, audit, documents, evaluate, identity, kb, lab, tuning
from infuse.cli.common import EXIT_ERROR, EXIT_PARTIAL, InfuseGroup, main

app = typer.Typer(
    name="infuse",
    help="Local-first knowledge base, RAG and fine-tuning, measured on your own documents.",
    cls=InfuseGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(main)
for group in (kb, documents, access, answer, tuning, evaluate, lab, identity, audit):
    group.register(app)

__all__ = ["EXIT_ERROR", "EXIT_PARTIAL", "app"]
