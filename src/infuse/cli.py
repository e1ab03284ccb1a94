"""The ``infuse`` command line: a thin layer over :class:`infuse.workspace.Workspace`.

Exit codes: 0 success; 1 an error (message on stderr); 2 bad usage; 3 ingest finished but some
files failed (the others were ingested; the summary lists the failures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from infuse.config import SearchMode
from infuse.language import Language
from infuse.errors import InfuseError
from infuse.workspace import DEFAULT_WORKSPACE, Workspace

EXIT_ERROR = 1
EXIT_PARTIAL = 3

app = typer.Typer(
    name="infuse",
    help="Local-first knowledge base, RAG and fine-tuning, measured on your own documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


class _State:
    workspace: Path | None = None


state = _State()


@app.callback()
def main(
    workspace: Annotated[
        Optional[Path],
        typer.Option("-w", "--workspace", envvar="INFUSE_WORKSPACE", help=f"Workspace folder [default: ./{DEFAULT_WORKSPACE}]"),
    ] = None,
) -> None:
    state.workspace = workspace


def _open(create: bool = False, **overrides: Any) -> Workspace:
    return Workspace.open(state.workspace, create=create, **overrides)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(EXIT_ERROR)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


class RichProgress:
    """Adapts :class:`infuse.retrieval.sync.SyncProgress` to one Rich bar per stage, on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = None

    def start(self, stage: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._task = self._progress.add_task(stage, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    prune: Annotated[bool, typer.Option(help="Delete documents whose files vanished.")] = False,
    text_field: Annotated[str, typer.Option(help="JSON(L): field holding the text.")] = "text",
    id_field: Annotated[Optional[str], typer.Option(help="JSON(L): field holding the document id.")] = None,
    wait: Annotated[Optional[float], typer.Option(help="Seconds to wait if another ingest is running.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Add new files, replace changed ones, skip unchanged ones (re-run any time)."""
    try:
        overrides = {"ingest": {"lock_timeout": wait}} if wait is not None else {}
        ws = _open(create=True, **overrides)
        with _progress_bar() as bar:
            report = ws.ingest(paths, prune=prune, text_field=text_field, id_field=id_field, progress=RichProgress(bar))
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(report.to_dict())
    else:
        out.print(
            f"[green]added {report.added}[/], updated {report.updated}, unchanged {report.unchanged}, "
            f"pruned {report.pruned}, [red]failed {report.failed}[/]; {report.chunks_written} chunks written "
            f"in {report.seconds:.1f}s",
            highlight=False,
        )
        for error in report.errors:
            err.print(f"[red]failed:[/] {escape(error['path'])}: {escape(error['error'])}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


def _parse_filters(raw: list[str] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    filters: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. lang=ja or source_path=/docs/a.md", param_hint="--filter")
        filters[key.strip()] = int(value) if key.strip() == "page" and value.isdigit() else value
    return filters


def _read_queries(path: Path) -> tuple[list[str], list[str]]:
    ids, queries = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--queries") from exc
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


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="The query (or use --queries).")] = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Number of results.", min=1)] = None,
    mode: Annotated[Optional[SearchMode], typer.Option(help="hybrid, dense or lexical.")] = None,
    filter_: Annotated[Optional[list[str]], typer.Option("--filter", help="KEY=VALUE (doc_id, source_path, lang, page, or a metadata field); repeatable.")] = None,
    queries: Annotated[Optional[Path], typer.Option(help='JSONL file of {"id", "query"} lines: batch search.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (JSONL with --queries).")] = False,
) -> None:
    """Hybrid (dense + keyword) search over the knowledge base."""
    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE", param_hint="QUERY")
    filters = _parse_filters(filter_)
    try:
        ws = _open()
        if queries is not None:
            ids, texts = _read_queries(queries)
            results = ws.search_many(texts, k=k, mode=mode, filters=filters)
            for query_id, hits in zip(ids, results):
                sys.stdout.write(json.dumps({"id": query_id, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False) + "\n")
            return
        hits = ws.search(query, k=k, mode=mode, filters=filters)
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json({"query": query, "hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        out.print("no results")
        return
    table = Table(show_lines=True)
    for column in ("#", "score", "source", "text"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        where = Path(hit.source_path).name + (f" p.{hit.page}" if hit.page else "") + f" [{hit.start}:{hit.end}]"
        if hit.heading_path:
            where += "\n" + " > ".join(hit.heading_path)
        if hit.flags:
            where += "\nflagged: " + ", ".join(hit.flags)
        snippet = hit.text if len(hit.text) <= 300 else hit.text[:300] + "…"
        table.add_row(str(hit.rank), f"{hit.score:.4f}", where, snippet)
    out.print(table)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Documents, chunks, embedder, store, last sync and its failures."""
    try:
        info = _open().status()
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(info.to_dict())
        return
    table = Table(show_header=False)
    table.add_row("workspace", info.workspace)
    table.add_row("documents", str(info.documents))
    table.add_row("chunks", f"{info.chunks} " + ", ".join(f"{k}: {v}" for k, v in sorted(info.chunks_by_language.items())))
    table.add_row("embedder", f"{info.embedder['model']} ({info.embedder['dimension']}d)" if info.embedder else f"(none yet; configured: {info.configured_embedder})")
    table.add_row("store", f"{info.store['backend']} at {info.store['path']}")
    sync = info.last_sync
    table.add_row("last sync", f"{sync['finished_at']}: +{sync['added']} ~{sync['updated']} ={sync['unchanged']} -{sync['pruned']} failed {sync['failed']}" if sync else "never")
    table.add_row("ingest running", "yes" if info.ingest_running else "no")
    table.add_row("flagged passages", f"{info.flagged_chunks} (ingest.injection = {info.injection_policy})")
    out.print(table)
    for error in (sync or {}).get("errors", []):
        out.print(f"[red]failed:[/] {escape(error['path'])}: {escape(error['error'])}", highlight=False)
    if info.flagged:
        shown = f"first {len(info.flagged)} of {info.flagged_chunks}" if info.flagged_chunks > len(info.flagged) else str(info.flagged_chunks)
        out.print(f"[yellow]possible prompt injection[/] ({shown} passages):", highlight=False)
        for entry in info.flagged:
            out.print(
                f"  [yellow]{escape(', '.join(entry['flags']))}[/] {escape(entry['source_path'])} ({escape(entry['chunk_id'])})\n"
                f"    {escape(entry['snippet'])}",
                highlight=False,
            )


@app.command()
def reindex(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Rebuild all chunks with the configured embedder and chunking (no source files needed)."""
    try:
        ws = _open()
        with _progress_bar() as bar:
            report = ws.reindex(progress=RichProgress(bar))
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(report.to_dict())
    else:
        out.print(f"reindexed {report.updated} documents, {report.chunks_written} chunks in {report.seconds:.1f}s")


def _model_overrides(model: str | None, adapters: list[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if model:
        overrides["name"] = model
    if adapters:
        overrides["adapters"] = adapters
    return {"model": overrides} if overrides else {}


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in English or Japanese.")],
    no_rag: Annotated[bool, typer.Option("--no-rag", help="Answer closed-book, without retrieval.")] = False,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages to retrieve.", min=1)] = None,
    model: Annotated[Optional[str], typer.Option(help="Model id or folder (overrides [model] name).")] = None,
    adapter: Annotated[Optional[list[str]], typer.Option(help="PEFT adapter folder; repeatable.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Maximum new tokens.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Answer a question from the knowledge base (streamed), then list the cited sources."""
    from infuse.models import load_model
    from infuse.rag import RagPipeline

    try:
        overrides = _model_overrides(model, adapter)
        if max_tokens is not None:
            overrides.setdefault("model", {})["max_new_tokens"] = max_tokens
        ws = _open(create=no_rag, **overrides)
        with err.status("loading model…"):
            llm = load_model(ws.settings.model)
        stream = RagPipeline(ws, llm).stream(question, k=k, use_retrieval=not no_rag)
        for delta in stream:
            if not as_json:
                sys.stdout.write(delta)
                sys.stdout.flush()
        answer = stream.answer
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(answer.to_dict())
        return
    sys.stdout.write("\n")
    if answer.used_retrieval:
        table = Table(title="sources", show_lines=False)
        for column in ("", "source", "span", "passage"):
            table.add_column(column, overflow="fold")
        cited = {c.number for c in answer.citations}
        for number, hit in enumerate(answer.passages, start=1):
            mark = f"[{number}]" + ("*" if number in cited else "")
            where = Path(hit.source_path).name + (f" p.{hit.page}" if hit.page else "")
            snippet = hit.text.replace("\n", " ")
            table.add_row(mark, where, f"{hit.start}-{hit.end}", snippet[:160] + ("…" if len(snippet) > 160 else ""))
        if answer.passages:
            out.print(table)
    timings = answer.timings
    err.print(
        f"[dim]{answer.model}: retrieval {timings.retrieval_ms:.0f} ms, generation {timings.generation_ms:.0f} ms, "
        f"{answer.prompt_tokens} prompt + {answer.completion_tokens} completion tokens[/]"
    )


@app.command()
def serve(
    model: Annotated[Optional[str], typer.Option(help="Model id or folder (overrides [model] name).")] = None,
    adapter: Annotated[Optional[list[str]], typer.Option(help="PEFT adapter folder; repeatable.")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="INFUSE_API_KEY", help="Require this bearer token on /v1 requests.")] = None,
) -> None:
    """Serve the RAG pipeline as an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)."""
    import uvicorn

    from infuse.models import load_model
    from infuse.rag import RagPipeline
    from infuse.server import RAG_MODEL_ID, create_app

    try:
        ws = _open(create=True, **_model_overrides(model, adapter))
        with err.status("loading model…"):
            llm = load_model(ws.settings.model)
    except InfuseError as exc:
        _fail(exc)
    err.print(f"serving [bold]{RAG_MODEL_ID}[/] (with retrieval) and [bold]{llm.name}[/] (without) at http://{host}:{port}/v1")
    uvicorn.run(create_app(RagPipeline(ws, llm), api_key=api_key), host=host, port=port, log_level="warning")


lab_app = typer.Typer(help="The knowledge lab: a synthetic world and a tiny model trained from scratch.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")


@lab_app.command("world")
def lab_world(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to write the world to.")],
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed (same seed, same world).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a world already in the folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the world's manifest as JSON.")] = False,
) -> None:
    """Write a fictional world: documents of new people, fine-tuning variants, questions, an update set."""
    from infuse.lab.world import generate_world

    world = generate_world(seed, lang)
    try:
        manifest_path = world.write(out, overwrite=overwrite)
    except FileExistsError:
        _fail(InfuseError(f"{out} is not empty; pass --overwrite to replace the world there"))
    except (OSError, ValueError) as exc:
        _fail(InfuseError(f"cannot write the world to {out}: {exc}"))
    if as_json:
        _print_json(world.manifest())
        return
    root = out.resolve()
    err.print(f"world ({lang.value}, seed {seed}): {len(world.known)} known + {len(world.new)} new people; "
              f"documents in {root / 'docs'}, questions in {root / 'questions'}, manifest {manifest_path}")


@lab_app.command("train")
def lab_train(
    out: Annotated[Optional[Path], typer.Option(help="Cache folder [default: $INFUSE_LAB_CACHE or ~/.cache/infuse/lab].")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps [default: 2400].", min=1)] = None,
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Retrain even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's manifest as JSON.")] = False,
) -> None:
    """Pretrain the lab model from scratch (cached by configuration) and print its folder."""
    from dataclasses import replace

    from infuse.lab.train import LabTrainConfig, read_manifest, train_lab_model

    config = LabTrainConfig(lang=lang.value, world_seed=seed)
    if steps is not None:
        config = replace(config, steps=steps)
    folder = train_lab_model(config, out, force=force)
    manifest = read_manifest(folder)
    if as_json:
        _print_json({"folder": str(folder), **{k: manifest[k] for k in ("final_loss", "wall_seconds", "tokens_per_second", "parameters")}})
        return
    err.print(f"final loss {manifest['final_loss']:.3f}, {manifest['parameters']:,} parameters, trained in {manifest['wall_seconds']:.0f}s")
    sys.stdout.write(f"{folder}\n")


if __name__ == "__main__":
    app()
