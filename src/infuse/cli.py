"""The ``infuse`` command line: a thin layer over :class:`infuse.workspace.Workspace`.

Exit codes: 0 success; 1 an error (message on stderr); 2 bad usage; 3 ingest finished but some
files failed (the others were ingested; the summary lists the failures).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from infuse.advisor import UpdateFrequency
from infuse.config import SearchMode
from infuse.evaluation.questions import ImportFormat, QuestionKind
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.generators import WriterChoice
from infuse.tuning.trainer import TuneMethod
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
        typer.Option("-w", "--workspace", envvar="INFUSE_WORKSPACE", help=f"Workspace folder \\[default: ./{DEFAULT_WORKSPACE}]"),
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
    """Adapts :class:`infuse.progress.Progress` to one Rich bar per stage, on stderr (notes go next
    to the bar on a terminal, and are printed as lines otherwise)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = None
        self._stage = ""

    def start(self, stage: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._stage = stage
        self._task = self._progress.add_task(stage, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=f"{self._stage} {text}")
        if not self._progress.console.is_terminal:
            self._progress.console.print(f"{self._stage}: {text}", markup=False, highlight=False)


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
        where = Path(hit.chunk.source_path).name + (f" p.{hit.chunk.page}" if hit.chunk.page else "") + f" [{hit.chunk.start}:{hit.chunk.end}]"
        if hit.chunk.heading_path:
            where += "\n" + " > ".join(hit.chunk.heading_path)
        if hit.chunk.flags:
            where += "\nflagged: " + ", ".join(hit.chunk.flags)
        snippet = hit.chunk.text if len(hit.chunk.text) <= 300 else hit.chunk.text[:300] + "…"
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
    """Settings overrides for --model/--adapter; fine-tuning run names become their folders."""
    if adapters:
        from infuse.tuning.registry import resolve_for_inference

        try:
            model, adapters = resolve_for_inference(_open(create=True), model, adapters)
        except InfuseError as exc:
            _fail(exc)
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
    model: Annotated[Optional[str], typer.Option(help="Model id or folder (overrides \\[model] name).")] = None,
    adapter: Annotated[Optional[list[str]], typer.Option(help="Fine-tuning run name or PEFT adapter folder; repeatable.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Maximum new tokens.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Answer a question from the knowledge base (streamed), then list the cited sources."""
    from infuse.models import load_model

    try:
        overrides = _model_overrides(model, adapter)
        if max_tokens is not None:
            overrides.setdefault("model", {})["max_new_tokens"] = max_tokens
        ws = _open(create=no_rag, **overrides)
        with err.status("loading model…"):
            llm = load_model(ws.settings.model)
        stream = ws.rag_pipeline(llm).stream(question, k=k, use_retrieval=not no_rag)
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
            where = Path(hit.chunk.source_path).name + (f" p.{hit.chunk.page}" if hit.chunk.page else "")
            snippet = hit.chunk.text.replace("\n", " ")
            table.add_row(mark, where, f"{hit.chunk.start}-{hit.chunk.end}", snippet[:160] + ("…" if len(snippet) > 160 else ""))
        if answer.passages:
            out.print(table)
    timings = answer.timings
    err.print(
        f"[dim]{answer.model}: retrieval {timings.retrieval_ms:.0f} ms, generation {timings.generation_ms:.0f} ms, "
        f"{answer.prompt_tokens} prompt + {answer.completion_tokens} completion tokens[/]"
    )


@app.command()
def serve(
    model: Annotated[Optional[str], typer.Option(help="Model id or folder (overrides \\[model] name).")] = None,
    adapter: Annotated[Optional[list[str]], typer.Option(help="Fine-tuning run name or PEFT adapter folder; repeatable.")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="INFUSE_API_KEY", help="Require this bearer token on /v1 requests.")] = None,
) -> None:
    """Serve the RAG pipeline as an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)."""
    import uvicorn

    from infuse.models import load_model
    from infuse.server import RAG_MODEL_ID, create_app

    try:
        ws = _open(create=True, **_model_overrides(model, adapter))
        with err.status("loading model…"):
            llm = load_model(ws.settings.model)
    except InfuseError as exc:
        _fail(exc)
    err.print(f"serving [bold]{RAG_MODEL_ID}[/] (with retrieval) and [bold]{llm.name}[/] (without) at http://{host}:{port}/v1")
    uvicorn.run(create_app(ws.rag_pipeline(llm), api_key=api_key), host=host, port=port, log_level="warning")


dataset_app = typer.Typer(help="Fine-tuning datasets built from the knowledge base.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(
    kind: Annotated[DatasetKind, typer.Option(help="cpt (continued pretraining) | paraphrase | qa | raft.")],
    name: Annotated[Optional[str], typer.Option(help="Dataset name \\[default: the kind, then -2, -3...].")] = None,
    model: Annotated[Optional[str], typer.Option(help="cpt: whose tokenizer cuts the text; paraphrase/qa/raft: the model that writes "
                                                   "(lab worlds use their own templates) \\[default: \\[model] name].")] = None,
    paraphrases: Annotated[int, typer.Option(help="paraphrase: rewrites per chunk.", min=1)] = 3,
    no_original: Annotated[bool, typer.Option("--no-original", help="paraphrase: leave the chunk itself out.")] = False,
    block_tokens: Annotated[int, typer.Option(help="cpt: tokens per piece (BOS/EOS included).", min=8)] = 256,
    per_chunk: Annotated[int, typer.Option(help="qa/raft: questions per chunk.", min=1)] = 3,
    distractors: Annotated[int, typer.Option(help="raft: distractor chunks per question.", min=0)] = 3,
    no_oracle_share: Annotated[float, typer.Option(help="raft: share of rows without the oracle chunk.", min=0, max=1)] = 0.2,
    questions_from: Annotated[Optional[str], typer.Option(help="raft: take questions from this qa dataset.")] = None,
    replay: Annotated[Optional[Path], typer.Option(help="JSONL rows (general or earlier data) to mix in.")] = None,
    replay_share: Annotated[float, typer.Option(help="Share of the final rows taken from --replay.", min=0, max=0.95)] = 0.1,
    writer: Annotated[WriterChoice, typer.Option(help="paraphrase/qa/raft: auto (a lab world's own templates for lab "
                                                       "documents, else --model) | model | lab.")] = WriterChoice.AUTO,
    seed: Annotated[int, typer.Option(help="Seed for sampling, shuffling and generation.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new dataset's name and manifest as JSON.")] = False,
) -> None:
    """Build a training set (JSONL + manifest) from the knowledge base."""
    from infuse.tuning.builders import BuildRequest, build_dataset

    try:
        if kind is DatasetKind.IMPORTED:
            raise InfuseError("--kind imported is not built: pass your JSONL file to `infuse tune --dataset FILE` directly")
        dataset_kind = kind
        ws = _open()
        model_name = model or ws.settings.model.name
        text_writer = _text_writer(ws, dataset_kind, writer, model_name)
        request = BuildRequest(
            dataset_kind, name=name, tokenizer=_tokenizer_source(ws, dataset_kind, model_name), block_tokens=block_tokens,
            paraphrases=paraphrases, include_original=not no_original, questions_per_chunk=per_chunk,
            distractors=distractors, no_oracle_share=no_oracle_share, questions_from=questions_from,
            replay=replay, replay_share=replay_share if replay else 0.0, seed=seed, overwrite=overwrite,
        )
        with _progress_bar() as bar:
            def progress(stage: str, total: int):
                task = bar.add_task(stage, total=total)
                return lambda n: bar.advance(task, n)

            dataset = build_dataset(ws, request, text_writer, progress)
    except InfuseError as exc:
        _fail(exc)
    manifest = dataset.manifest.to_dict()
    if as_json:
        _print_json({"name": dataset.manifest.name, "path": str(dataset.rows_path), "manifest": manifest})
        return
    tokens = f", {manifest['tokens']:,} tokens" if manifest["tokens"] is not None else ""
    out.print(f"dataset [bold]{dataset.manifest.name}[/] ({dataset.manifest.kind}): {manifest['rows']:,} rows{tokens} "
              f"-> {dataset.rows_path}")


def _text_writer(ws: Workspace, kind: DatasetKind, choice: WriterChoice, model_name: str | None):
    """Who writes paraphrases/questions: the lab world's templates or a model (None: cpt)."""
    from infuse.tuning.generators import LabWorldWriter

    if kind is DatasetKind.CPT:
        return None
    if choice is not WriterChoice.MODEL:
        lab = LabWorldWriter.detect(list(ws.knowledge_snapshot().iter_chunks()))
        if lab is not None:
            return lab
        if choice is WriterChoice.LAB:
            raise InfuseError("--writer lab: the knowledge base is not made of lab-world documents (infuse lab world)")
    if not model_name:
        raise InfuseError("no model to write paraphrases or questions: pass --model ID_OR_FOLDER or set [model] name")
    return _model_writer(ws, model_name)


def _model_writer(ws: Workspace, model: str):
    from infuse.models import load_model
    from infuse.tuning.generators import ModelWriter

    settings = ws.settings.model.model_copy(update={"name": model})
    with err.status(f"loading {model}…"):
        return ModelWriter(load_model(settings))


def _tokenizer_source(ws: Workspace, kind: DatasetKind, model_name: str | None) -> str | None:
    """Whose tokenizer cuts (cpt) and counts tokens: a local model's; a server-side model has none."""
    from infuse.config import ModelBackendKind

    if kind is DatasetKind.CPT or ws.settings.model.backend is ModelBackendKind.TRANSFORMERS:
        return model_name
    return None


@dataset_app.command("list")
def dataset_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The workspace's datasets."""
    from infuse.tuning.datasets import list_datasets, load_dataset

    try:
        ws = _open()
        manifests = [load_dataset(ws.datasets_dir, n).manifest.to_dict() for n in list_datasets(ws.datasets_dir)]
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(manifests)
        return
    table = Table()
    for column in ("name", "kind", "rows", "tokens", "generator", "created"):
        table.add_column(column)
    for m in manifests:
        table.add_row(m["name"], m["kind"], f"{m['rows']:,}", f"{m['tokens']:,}" if m["tokens"] is not None else "-",
                      m["generator"] or "-", m["created"])
    out.print(table)


@app.command("tune")
def tune_command(
    dataset: Annotated[str, typer.Option(help="Dataset name (infuse dataset list) or a JSONL file.")],
    method: Annotated[TuneMethod, typer.Option(help="lora | full | qlora (CUDA + bitsandbytes).")] = TuneMethod.LORA,
    model: Annotated[Optional[str], typer.Option(help="Base model id or folder \\[default: \\[model] name].")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name \\[default: DATASET-METHOD].")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the dataset.", min=0.01)] = 3.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (overrides --epochs).", min=1)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate \\[default: 2e-4 LoRA, 2e-5 full].")] = None,
    batch_size: Annotated[int, typer.Option(help="Packed rows per step per process.", min=1)] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = 1,
    seq_len: Annotated[int, typer.Option(help="Tokens per packed row.", min=16)] = 1024,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = 32,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.", min=0, max=0.9)] = 0.05,
    lora_targets: Annotated[Optional[str], typer.Option(help="Comma-separated module names \\[default: all linear layers].")] = None,
    eval_fraction: Annotated[float, typer.Option(help="Share of examples held out for the eval loss.", min=0, max=0.5)] = 0.05,
    save_every: Annotated[Optional[int], typer.Option(help="Checkpoint every N steps.", min=1)] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    seed: Annotated[int, typer.Option(help="Seed (data order, initialisation).")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, mps \\[default: best available].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON.")] = False,
) -> None:
    """Fine-tune a local model on a dataset (LoRA, full or QLoRA); the run is registered by name."""
    from infuse.tuning.registry import tune
    from infuse.tuning.trainer import TuneConfig

    try:
        ws = _open()
        base = model or ws.settings.model.name
        if not base:
            raise InfuseError("no base model: pass --model ID_OR_FOLDER or set [model] name in infuse.toml")
        config = TuneConfig(
            method=method, epochs=epochs, max_steps=max_steps, lr=lr, micro_batch_size=batch_size, grad_accum=grad_accum,
            seq_len=seq_len, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
            lora_targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else "all-linear",
            eval_fraction=eval_fraction, save_every=save_every, gradient_checkpointing=gradient_checkpointing, seed=seed,
            device=device or ws.settings.model.device,
        )
        with _progress_bar() as bar:
            run = tune(ws, dataset, base, config, name=name, resume=resume, progress=RichProgress(bar))
    except InfuseError as exc:
        _fail(exc)
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        _print_json(run.manifest)
        return
    m = run.manifest
    eval_part = f", eval loss {m['final_eval_loss']:.4f}" if m.get("final_eval_loss") is not None else ""
    err.print(f"{m['steps']} steps in {m['wall_seconds']:.0f}s ({m['tokens_per_second']:,.0f} tok/s), "
              f"train loss {m['final_train_loss']:.4f}{eval_part}, peak memory {m['peak_memory_mb']:,.0f} MB")
    out.print(f"run [bold]{run.name}[/] -> {run.output_dir}  (use it: infuse ask --adapter {run.name} ...)")


adapters_app = typer.Typer(help="Fine-tuning runs: list, show, merge.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
def adapters_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every fine-tuning run in the workspace."""
    from infuse.tuning.registry import list_runs

    try:
        runs = [r.summary() for r in list_runs(_open())]
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(runs)
        return
    table = Table()
    for column in ("name", "status", "method", "base model", "dataset", "steps", "train loss", "eval loss"):
        table.add_column(column, overflow="fold")
    for r in runs:
        table.add_row(r["name"], r["status"], r["method"], r["base_model"], r["dataset"] or "-", str(r["steps"] or "-"),
                      _fmt(r["final_train_loss"]), _fmt(r["final_eval_loss"]))
    out.print(table)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@adapters_app.command("show")
def adapters_show(name: Annotated[str, typer.Argument(help="Run name.")],
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A run's manifest: base model, dataset, hyperparameters, losses, speed, memory."""
    from infuse.tuning.registry import open_run

    try:
        run = open_run(_open(), name)
    except InfuseError as exc:
        _fail(exc)
    data = {**run.manifest, **run.summary()}
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        out.print(f"[bold]{key}[/]: {escape(json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))}")


@adapters_app.command("merge")
def adapters_merge(
    name: Annotated[str, typer.Argument(help="Run name (LoRA or QLoRA).")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the merged model \\[default: the run's merged/].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write base + adapter as one model folder, verified to give the same logits."""
    from infuse.tuning.registry import merge_adapter

    try:
        with err.status("merging…"):
            report = merge_adapter(_open(), name, out_dir)
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(report)
        return
    out.print(f"merged model -> {report['merged']} (max logit difference {report['max_logit_difference']:.2g} "
              f"on {report['samples']} samples)")


questions_app = typer.Typer(help="Evaluation question sets: import, generate, list.", no_args_is_help=True)
app.add_typer(questions_app, name="questions")


def _print_question_set(qset, path: Path, as_json: bool) -> None:
    if as_json:
        _print_json({"name": qset.name, "path": str(path), "manifest": qset.manifest})
        return
    counts = qset.manifest.get("counts", {})
    skipped = counts.get("skipped", 0)
    out.print(f"question set [bold]{qset.name}[/]: {len(qset.questions):,} questions {counts.get('by_kind', {})}"
              + (f", {skipped} rows skipped (see manifest)" if skipped else "") + f" -> {path}")


@questions_app.command("import")
def questions_import(
    file: Annotated[Path, typer.Argument(help="JSONL (mc, qa, realtimeqa) or SQuAD/JaQuAD JSON file or folder.")],
    format: Annotated[ImportFormat, typer.Option("--format", help="mc | qa | squad | jaquad | realtimeqa.")],
    name: Annotated[Optional[str], typer.Option(help="Set name \\[default: from the file name].")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Import at most N questions.", min=1)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a set of the same name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the set's name and manifest as JSON.")] = False,
) -> None:
    """Import a question set (bad rows are skipped and listed in the manifest)."""
    from infuse.evaluation.questions import import_questions, save_question_set

    try:
        ws = _open(create=True)
        qset = import_questions(file, format, name=name, limit=limit)
        path = save_question_set(ws.questions_dir, qset, overwrite=overwrite)
    except InfuseError as exc:
        _fail(exc)
    _print_question_set(qset, path, as_json)


@questions_app.command("generate")
def questions_generate(
    per_chunk: Annotated[int, typer.Option(help="Questions per chunk.", min=1)] = 1,
    kind: Annotated[QuestionKind, typer.Option(help="mc (4 options) | short.")] = QuestionKind.MC,
    model: Annotated[Optional[str], typer.Option(help="The model that writes \\[default: \\[model] name].")] = None,
    name: Annotated[str, typer.Option(help="Set name.")] = "generated",
    limit_chunks: Annotated[Optional[int], typer.Option(help="Use at most N chunks.", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a set of the same name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the set's name and manifest as JSON.")] = False,
) -> None:
    """Write an evaluation set from the knowledge base's chunks with a model (source chunk recorded)."""
    from infuse.evaluation.questions import generate_questions, save_question_set
    from infuse.models import load_model

    try:
        ws = _open()
        chunks = list(ws.knowledge_snapshot().iter_chunks())[:limit_chunks]
        settings = ws.settings.model.model_copy(update={"name": model} if model else {})
        with err.status("loading model…"):
            llm = load_model(settings)
        with _progress_bar() as bar:
            task = bar.add_task("questions", total=len(chunks))
            qset = generate_questions(chunks, llm, per_chunk=per_chunk, kind=kind, seed=seed, name=name,
                                      progress=lambda n=1: bar.advance(task, n))
        path = save_question_set(ws.questions_dir, qset, overwrite=overwrite)
    except InfuseError as exc:
        _fail(exc)
    _print_question_set(qset, path, as_json)


@questions_app.command("list")
def questions_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The workspace's question sets."""
    from infuse.evaluation.questions import list_question_sets, load_question_set

    try:
        ws = _open()
        sets = [load_question_set(ws.questions_dir, n) for n in list_question_sets(ws.questions_dir)]
    except InfuseError as exc:
        _fail(exc)
    rows = [{"name": q.name, "questions": len(q.questions), "format": q.manifest.get("format"),
             "by_kind": q.manifest.get("counts", {}).get("by_kind")} for q in sets]
    if as_json:
        _print_json(rows)
        return
    table = Table()
    for column in ("name", "questions", "format", "kinds"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], f"{r['questions']:,}", str(r["format"]), str(r["by_kind"]))
    out.print(table)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise InfuseError(f"-k {text!r}: give passage counts like 1,3,5") from None
    if not ks or min(ks) < 1:
        raise InfuseError(f"-k {text!r}: give positive passage counts like 1,3,5")
    return ks


@app.command()
def compare(
    questions: Annotated[str, typer.Option(help="Question set name (infuse questions list).")],
    variants: Annotated[str, typer.Option(help="Comma-separated: base, rag, ft, ft+rag.")] = "base,rag",
    adapter: Annotated[Optional[list[str]], typer.Option(help="Fine-tuning run for ft variants; repeatable.")] = None,
    k: Annotated[Optional[str], typer.Option("-k", help="Passages for rag variants, e.g. 1,3,5 \\[default: \\[rag] k].")] = None,
    model: Annotated[Optional[str], typer.Option(help="Base model \\[default: \\[model] name, else the adapter's base].")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use the first N questions.", min=1)] = None,
    update_docs: Annotated[Optional[Path], typer.Option(help="Freshness: folder of changed documents.")] = None,
    update_questions: Annotated[Optional[str], typer.Option(help="Freshness: question set about the changed facts.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name \\[default: time + question set].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
) -> None:
    """Evaluate base / RAG / fine-tuned / both on the same questions; writes WS/runs/NAME."""
    from infuse.evaluation.compare import CompareRequest, UpdateScenario, parse_variants, run_compare
    from infuse.evaluation.questions import load_question_set

    try:
        ws = _open()
        ks = _parse_ks(k) if k else [ws.settings.rag.k]
        specs = parse_variants(variants, adapters=adapter or [], ks=ks)
        qset = load_question_set(ws.questions_dir, questions)
        update = None
        if update_docs is not None or update_questions is not None:
            if update_docs is None or update_questions is None:
                raise InfuseError("freshness needs both --update-docs DIR and --update-questions SET")
            update = UpdateScenario(update_docs, load_question_set(ws.questions_dir, update_questions))
        request = CompareRequest(specs, model=model, limit=limit, update=update, run_name=name)
        with _progress_bar() as bar:
            run = run_compare(ws, qset, request, RichProgress(bar))
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json(run.summary.to_json())
        return
    from infuse.evaluation.console import freshness_table, variants_table

    out.print(variants_table(run.summary))
    fresh = freshness_table(run.summary)
    if fresh is not None:
        out.print(fresh)
    out.print(f"run [bold]{run.summary.run}[/] -> {run.path}  (report: infuse report {run.summary.run})")


@app.command()
def report(
    run: Annotated[Optional[str], typer.Argument(help="Compare run name \\[default: the latest].")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML report in a browser.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report paths as JSON.")] = False,
) -> None:
    """Write a compare run's report: Markdown and a self-contained HTML page with plots."""
    from infuse.evaluation.compare import latest_run, load_run
    from infuse.evaluation.report import write_report

    try:
        ws = _open()
        found = load_run(ws, run) if run else latest_run(ws)
        if found is None:
            raise InfuseError(f"no compare runs in {ws.runs_dir}; run `infuse compare` first")
        markdown, html = write_report(found.path)
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json({"run": found.summary.run, "markdown": str(markdown), "html": str(html)})
    else:
        out.print(f"report -> {html}\n         {markdown}")
    if open_browser:
        import webbrowser

        webbrowser.open(html.resolve().as_uri())


@app.command()
def advise(
    run: Annotated[Optional[str], typer.Option(help="Compare run to ground the advice in \\[default: the latest, if any].")] = None,
    updates: Annotated[Optional[UpdateFrequency], typer.Option(help="How often the knowledge changes: daily | weekly | rarely.")] = None,
    latency_ms: Annotated[Optional[float], typer.Option(help="Latency budget per answer in ms.", min=0)] = None,
    style: Annotated[bool, typer.Option("--style", help="Answers must follow a strict style or format.")] = False,
    training_budget: Annotated[Optional[float], typer.Option(help="Training budget in USD.", min=0)] = None,
    training_examples: Annotated[Optional[int], typer.Option(help="Labelled examples available.", min=0)] = None,
    local_only: Annotated[bool, typer.Option("--local-only", help="Data may not leave this machine.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON.")] = False,
) -> None:
    """Recommend RAG, fine-tuning, both or the base model, from the measurements and your constraints."""
    from infuse.advisor import Criteria, advise as recommend, format_recommendation
    from infuse.evaluation.compare import latest_run, load_run

    try:
        ws = _open(create=True)
        found = load_run(ws, run) if run else latest_run(ws)
        criteria = Criteria(updates=updates, latency_ms=latency_ms, needs_style=style, training_budget_usd=training_budget,
                            training_examples=training_examples, privacy_local_only=local_only)
        recommendation = recommend(criteria, found.summary if found else None)
    except InfuseError as exc:
        _fail(exc)
    if as_json:
        _print_json({"run": found.summary.run if found else None, **recommendation.to_dict()})
        return
    sys.stdout.write(format_recommendation(recommendation) + "\n")


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
    out: Annotated[Optional[Path], typer.Option(help="Cache folder \\[default: $INFUSE_LAB_CACHE or ~/.cache/infuse/lab].")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps \\[default: the language's configuration].", min=1)] = None,
    lang: Annotated[Language, typer.Option(help="en or ja.")] = Language.EN,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Retrain even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's manifest as JSON.")] = False,
) -> None:
    """Pretrain the lab model from scratch (cached by configuration) and print its folder."""
    from dataclasses import replace

    from infuse.lab.train import LabTrainConfig, read_manifest, train_lab_model

    config = LabTrainConfig.for_lang(lang.value, world_seed=seed)
    if steps is not None:
        config = replace(config, steps=steps)
    with _progress_bar() as bar:
        folder = train_lab_model(config, out, force=force, progress=RichProgress(bar))
    manifest = read_manifest(folder)
    if as_json:
        _print_json({"folder": str(folder), **{k: manifest[k] for k in ("final_loss", "wall_seconds", "tokens_per_second", "parameters")}})
        return
    err.print(f"final loss {manifest['final_loss']:.3f}, {manifest['parameters']:,} parameters, trained in {manifest['wall_seconds']:.0f}s")
    sys.stdout.write(f"{folder}\n")


if __name__ == "__main__":
    app()
