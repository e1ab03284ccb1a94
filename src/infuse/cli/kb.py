"""The knowledge-base commands: ``ingest``, ``search``, ``status``, ``reindex``, ``migrate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import EXIT_PARTIAL, err, open_workspace, out, print_json, progress_bar
from infuse.config import SearchMode, StoreBackend
from infuse.identity import known_principals_of
from infuse.language import Language
from infuse.store.filters import FilterError, filter_keys_help, parse_filter_items

# `--access ENTRY` of ingest and `access set`.
AccessOption = Annotated[
    list[str] | None,
    typer.Option(
        "--access",
        metavar="ENTRY",
        help="Who may read (repeatable): user:NAME, group:NAME, everyone, or deny:... (deny wins). At ingest "
        "it applies to documents whose JSON record (--access-field) and folder (.infuse-access file, nearest "
        "wins) give no list; without any source a document keeps its stored list, or a new one gets the "
        "[access] default_policy. See docs/serving.md.",
    ),
]


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    prune: Annotated[
        bool,
        typer.Option(
            help="Delete documents whose files vanished, only under the PATHS of this ingest "
            "(never under a given folder that is empty or missing, e.g. an unmounted share)."
        ),
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="Skip files and folders matching this gitignore-like glob (e.g. '*.log', 'drafts/'); "
            "repeatable. A .infuseignore file at the top of a folder does the same.",
        ),
    ] = None,
    follow_links: Annotated[
        bool, typer.Option("--follow-links", help="Follow symbolic links that lead outside the PATHS given.")
    ] = False,
    text_field: Annotated[str, typer.Option(help="JSON(L): field holding the text.")] = "text",
    id_field: Annotated[str | None, typer.Option(help="JSON(L): field holding the document id.")] = None,
    wait: Annotated[float | None, typer.Option(help="Seconds to wait if another ingest is running.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    access: AccessOption = None,
    access_field: Annotated[
        str,
        typer.Option(
            help='JSON(L): field holding a record\'s access list (a list or comma-separated string); "" for none.'
        ),
    ] = "access",
    lang: Annotated[
        Language | None,
        typer.Option(
            "--lang",
            help="Language of the corpus, for a new workspace: en (default; all-MiniLM-L6-v2) or ja (Japanese or "
            "mixed Japanese/English; the multilingual USE-m3 embedder). It chooses the embedder and fusion weights "
            "written to infuse.toml; an existing workspace keeps its own (see docs/retrieval.md).",
        ),
    ] = None,
) -> None:
    """Add new files, replace changed ones, skip unchanged ones (re-run any time).

    Every file found ends as ingested, skipped (hidden, excluded, unsupported type, a link leaving
    the PATHS, a FIFO; with the reason) or failed (with the reason). Files over [ingest]
    max_file_mb (default 50) fail; raise it in infuse.toml for bigger ones.
    """
    ws = open_workspace(create=True, lang=lang, **({"ingest": {"lock_timeout": wait}} if wait is not None else {}))
    with progress_bar() as progress:
        report = ws.ingest(
            paths,
            prune=prune,
            text_field=text_field,
            id_field=id_field,
            progress=progress,
            access=access or (),
            access_field=access_field,
            known_principals=known_principals_of(ws.path),
            exclude=exclude or (),
            follow_links=True if follow_links else None,
        )
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(
            f"[green]added {report.added}[/], updated {report.updated}, unchanged {report.unchanged}, "
            f"pruned {report.pruned}, [red]failed {report.failed}[/], {skipped_summary(report.skipped_kinds())}; "
            f"{report.chunks_written} chunks written in {report.seconds:.1f}s",
            highlight=False,
        )
        if report.access_changed:
            out.print(f"access lists changed (not re-embedded): {report.access_changed}", highlight=False)
        for entry in report.skipped_files:
            if not entry["kind"].startswith("."):  # unsupported suffixes: the summary lists them
                err.print(f"[yellow]skipped:[/] {escape(entry['path'])}: {escape(entry['reason'])}", highlight=False)
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning['path'])}: {escape(warning['warning'])}", highlight=False)
        for error in report.errors:
            err.print(f"[red]failed:[/] {escape(error['path'])}: {escape(error['error'])}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


def skipped_summary(kinds: dict[str, int]) -> str:
    """``skipped 3: .xlsx, .png``; a kind seen more than once gets its count (``.png ×2``).

    >>> skipped_summary({".png": 2, "link leaving the corpus": 1})
    'skipped 3: .png ×2, link leaving the corpus'
    >>> skipped_summary({})
    'skipped 0'
    """
    total = sum(kinds.values())
    if not total:
        return "skipped 0"
    return f"skipped {total}: " + ", ".join(kind if n == 1 else f"{kind} ×{n}" for kind, n in kinds.items())


def parse_filters(raw: list[str] | None) -> dict[str, Any] | None:
    """``--filter KEY=VALUE`` flags as a filter dict (``page`` as a number)."""
    if not raw:
        return None
    # Values stay text here: the library checks keys and converts values (infuse.store.filters.validate).
    try:
        return dict(parse_filter_items(raw))
    except FilterError as exc:
        raise typer.BadParameter(str(exc), param_hint="--filter") from None


# `--filter KEY=VALUE` of search, ask and `documents list`; the keys listed come from the filter schema.
FilterOption = Annotated[list[str] | None, typer.Option("--filter", help=filter_keys_help())]


def read_queries(path: Path) -> tuple[list[str], list[str]]:
    """Ids and texts of a ``--queries`` JSONL file; a bad line is a usage error naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--queries") from exc
    ids, queries = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"{path}:{number}: invalid JSON ({exc.msg})", param_hint="--queries") from exc
        if not isinstance(record, dict) or not isinstance(record.get("query"), str):
            raise typer.BadParameter(f'{path}:{number}: expected {{"id": ..., "query": "..."}}', param_hint="--queries")
        ids.append(str(record.get("id", number)))
        queries.append(record["query"])
    return ids, queries


def search(
    query: Annotated[str | None, typer.Argument(help="The query (or use --queries).")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Number of results.", min=1)] = None,
    mode: Annotated[SearchMode | None, typer.Option(help="hybrid, dense or lexical.")] = None,
    filter_: FilterOption = None,
    queries: Annotated[Path | None, typer.Option(help='JSONL file of {"id", "query"} lines: batch search.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (JSONL with --queries).")] = False,
) -> None:
    """Hybrid (dense + keyword) search over the knowledge base."""
    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE", param_hint="QUERY")
    filters = parse_filters(filter_)
    ws = open_workspace()
    if queries is not None:
        ids, texts = read_queries(queries)
        for query_id, hits in zip(ids, ws.search_many(texts, k=k, mode=mode, filters=filters)):
            sys.stdout.write(
                json.dumps({"id": query_id, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False) + "\n"
            )
        return
    assert query is not None  # exactly one of QUERY and --queries, checked above
    hits = ws.search(query, k=k, mode=mode, filters=filters)
    if as_json:
        print_json({"query": query, "hits": [h.to_dict() for h in hits]})
    elif not hits:
        out.print("no results")
    else:
        out.print(hits_table(hits))


def hits_table(hits: list[Any]) -> Table:
    table = Table(show_lines=True)
    for column in ("#", "score", "source", "text"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        chunk = hit.chunk
        where = (
            Path(chunk.source_path).name + (f" p.{chunk.page}" if chunk.page else "") + f" [{chunk.start}:{chunk.end}]"
        )
        if chunk.heading_path:
            where += "\n" + " > ".join(chunk.heading_path)
        if chunk.flags:
            where += "\nflagged: " + ", ".join(chunk.flags)
        snippet = chunk.text if len(chunk.text) <= 300 else chunk.text[:300] + "…"
        table.add_row(str(hit.rank), f"{hit.score:.4f}", where, snippet)
    return table


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Documents, chunks, embedder, store, last sync and its failures, running and recent jobs."""
    from infuse.jobs import Job, JobState, describe

    info = open_workspace().status()
    if as_json:
        print_json(info.to_dict())
        return
    out.print(status_table(info))
    for job in info.jobs:
        colour = {JobState.RUNNING: "cyan", JobState.FINISHED: "green"}.get(job["state"], "red")
        out.print(f"[{colour}]job[/] {escape(describe(Job.from_dict(job)))}", highlight=False)
    for error in (info.last_sync or {}).get("errors", []):
        out.print(f"[red]failed:[/] {escape(error['path'])}: {escape(error['error'])}", highlight=False)
    if info.flagged:
        shown = (
            f"first {len(info.flagged)} of {info.flagged_chunks}"
            if info.flagged_chunks > len(info.flagged)
            else str(info.flagged_chunks)
        )
        out.print(f"[yellow]possible prompt injection[/] ({shown} passages):", highlight=False)
        for entry in info.flagged:
            out.print(
                f"  [yellow]{escape(', '.join(entry['flags']))}[/] {escape(entry['source_path'])} ({escape(entry['chunk_id'])})\n"
                f"    {escape(entry['snippet'])}",
                highlight=False,
            )


def status_table(info: Any) -> Table:
    table = Table(show_header=False)
    table.add_row("workspace", info.workspace)
    table.add_row("documents", str(info.documents))
    table.add_row(
        "chunks", f"{info.chunks} " + ", ".join(f"{k}: {v}" for k, v in sorted(info.chunks_by_language.items()))
    )
    table.add_row(
        "embedder",
        f"{info.embedder['model']} ({info.embedder['dimension']}d, {info.embedder['precision']})"
        if info.embedder
        else f"(none yet; configured: {info.configured_embedder})",
    )
    table.add_row("store", f"{info.store['backend']} at {info.store['path']}")
    sync = info.last_sync
    table.add_row(
        "last sync",
        f"{sync['finished_at']}: +{sync['added']} ~{sync['updated']} ={sync['unchanged']} -{sync['pruned']} failed {sync['failed']}"
        if sync
        else "never",
    )
    table.add_row("ingest running", "yes" if info.ingest_running else "no")
    table.add_row("flagged passages", f"{info.flagged_chunks} (ingest.injection = {info.injection_policy})")
    readers = {"admins": "owner and admins only", "everyone": "every user"}.get(info.access_default_policy, "?")
    table.add_row("unlisted documents", f"{readers} (access.default_policy = {info.access_default_policy})")
    if info.indexes:
        table.add_row("indexes", indexes_summary(info.indexes, info.vector_index_min_rows))
    return table


def indexes_summary(indexes: list[dict[str, Any]], min_rows: int) -> str:
    """One line per search index: its kind and the rows searches still scan.

    >>> print(indexes_summary([{"column": "vector", "kind": None, "indexed_rows": 0, "unindexed_rows": 10},
    ...     {"column": "tokens", "kind": "FTS", "indexed_rows": 8, "unindexed_rows": 2}], 50000))
    vector: none (exact search of 10 rows; built at 50,000)
    keyword: FTS, 8 rows indexed, 2 unindexed (run infuse optimize)
    """
    lines = []
    for index in indexes:
        name = "keyword" if index["column"] == "tokens" else index["column"]
        if index["kind"] is None:
            lines.append(f"{name}: none (exact search of {index['unindexed_rows']:,} rows; built at {min_rows:,})")
            continue
        line = f"{name}: {index['kind']}, {index['indexed_rows']:,} rows indexed, {index['unindexed_rows']:,} unindexed"
        lines.append(line + (" (run infuse optimize)" if index["unindexed_rows"] else ""))
    return "\n".join(lines)


def optimize(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Bring the search indexes up to date now (every ingest does this at its end): rows written
    since join the keyword and vector indexes; the vector index is built once the knowledge base
    reaches store.index.min_rows chunks, and retrained when it has outgrown it."""
    ws = open_workspace()
    states = [state.to_dict() for state in ws.optimize()]
    if as_json:
        print_json({"indexes": states})
    elif not states:
        out.print("no knowledge base yet")
    else:
        out.print(indexes_summary(states, ws.settings.store.index.min_rows), highlight=False)


def reindex(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Rebuild all chunks with the configured embedder and chunking (no source files needed)."""
    ws = open_workspace()
    with progress_bar() as progress:
        report = ws.reindex(progress=progress)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(f"reindexed {report.updated} documents, {report.chunks_written} chunks in {report.seconds:.1f}s")


def migrate(
    to: Annotated[StoreBackend, typer.Option("--to", help="The store to copy the knowledge base into.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Copy the knowledge base into another store (vectors reused, nothing embedded again), verify
    the counts, then switch to it. Set store.backend (and its settings) to the new store first."""
    report = open_workspace().migrate(to)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(
            f"copied {report.documents} documents, {report.chunks} chunks into {to.value} in {report.seconds:.1f}s"
        )


def register(app: typer.Typer) -> None:
    for command in (ingest, search, status, reindex, migrate, optimize):
        app.command()(command)
