"""The answering commands: ``ask`` (one question, streamed) and ``serve`` (the OpenAI-compatible API)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from infuse.cli.common import err, model_overrides, open_workspace, out, print_json
from infuse.cli.kb import FilterOption, parse_filters
from infuse.config import SearchMode

ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model id, folder or GGUF file (overrides \\[model] name); a folder or file here always loads "
        "locally (transformers), whatever \\[model] backend says."
    ),
]
AdapterOption = Annotated[
    list[str] | None, typer.Option(help="Fine-tuning run name or PEFT adapter folder; repeatable.")
]


def ask(
    question: Annotated[str, typer.Argument(help="The question, in English or Japanese.")],
    no_rag: Annotated[bool, typer.Option("--no-rag", help="Answer closed-book, without retrieval.")] = False,
    k: Annotated[int | None, typer.Option("-k", help="Passages to retrieve.", min=1)] = None,
    mode: Annotated[SearchMode | None, typer.Option(help="Retrieval: hybrid, dense or lexical.")] = None,
    filter_: FilterOption = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    max_tokens: Annotated[int | None, typer.Option(help="Maximum new tokens.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Answer a question from the knowledge base (streamed), then list the cited sources."""
    from infuse.models import load_model

    filters = parse_filters(filter_)
    overrides = model_overrides(model, adapter)
    if max_tokens is not None:
        overrides.setdefault("model", {})["max_new_tokens"] = max_tokens
    ws = open_workspace(create=no_rag, **overrides)
    checked = ws.validate_filters(filters)  # a bad filter fails before the model loads
    with err.status("loading model…"):
        llm = load_model(ws.settings.model)
    stream = ws.rag_pipeline(llm, filters=checked, mode=mode).stream(question, k=k, use_retrieval=not no_rag)
    for delta in stream:
        if not as_json:
            sys.stdout.write(delta)
            sys.stdout.flush()
    if as_json:
        print_json(stream.answer.to_dict())
    else:
        render_answer_end(stream.answer)


def render_answer_end(answer: Any) -> None:
    """After the streamed text: the sources table (cited ones starred) and the timings on stderr."""
    sys.stdout.write("\n")
    if answer.used_retrieval and answer.passages:
        out.print(sources_table(answer))
    timings = answer.timings
    err.print(
        f"[dim]{answer.model}: retrieval {timings.retrieval_ms:.0f} ms, generation {timings.generation_ms:.0f} ms, "
        f"{answer.prompt_tokens} prompt + {answer.completion_tokens} completion tokens[/]"
    )


def sources_table(answer: Any) -> Table:
    table = Table(title="sources", show_lines=False)
    for column in ("", "source", "span", "passage"):
        table.add_column(column, overflow="fold")
    cited = {c.number for c in answer.citations}
    for number, hit in enumerate(answer.passages, start=1):
        mark = f"[{number}]" + ("*" if number in cited else "")
        chunk = hit.chunk
        where = Path(chunk.source_path).name + (f" p.{chunk.page}" if chunk.page else "")
        snippet = chunk.text.replace("\n", " ")
        table.add_row(mark, where, f"{chunk.start}-{chunk.end}", snippet[:160] + ("…" if len(snippet) > 160 else ""))
    return table


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    model: ModelOption = None,
    adapter: AdapterOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="INFUSE_API_KEY", help="Without --auth: require this bearer token on every route."),
    ] = None,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth", help="Serve a team: every route needs a user's API key or session (`infuse users add`)."
        ),
    ] = False,
    allow_tuned_for_all: Annotated[
        bool,
        typer.Option(
            "--allow-tuned-for-all",
            help="Serve fine-tuned weights to every user, also those who may not read all of their training "
            "documents (knowledge in weights cannot be filtered per user).",
        ),
    ] = False,
) -> None:
    """Serve the RAG pipeline as an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions,
    /v1/search, /v1/documents, /admin) and a web UI for colleagues (/ui: chat, documents, evaluate, admin).

    Requests wait for the model in a bounded line (\\[server] max_waiting); see docs/serving.md."""
    from infuse.models import load_model
    from infuse.server import RAG_MODEL_ID, create_app, serve
    from infuse.server.context import TunedWeights
    from infuse.tuning.registry import training_access

    ws = open_workspace(create=True, **model_overrides(model, adapter))
    identity: Any = None
    limiter: Any = None
    if auth:
        from infuse.identity import FailedAuthLimiter, IdentityStore

        if api_key:
            raise typer.BadParameter("--api-key is for a single-user server; with --auth every user has their own key")
        identity = IdentityStore.open(ws.path)
        limiter = FailedAuthLimiter.from_settings(identity.settings)
    elif not _is_loopback(host):
        err.print(
            f"[bold red]WARNING: serving {host}:{port} without --auth: anyone who can reach it "
            f"{'and has the --api-key ' if api_key else ''}reads every document as an admin. "
            "Use --auth to give each person their own key and access.[/]"
        )
    tuned = TunedWeights.from_runs(training_access(ws, ws.settings.model.name, ws.settings.model.adapters))
    with err.status("loading model…"):
        llm = load_model(ws.settings.model)
    err.print(
        f"serving [bold]{RAG_MODEL_ID}[/] (with retrieval) and [bold]{llm.name}[/] (without) at http://{host}:{port}/v1"
        + (" for the users of this workspace (--auth)" if auth else "")
    )
    err.print(f"web UI: http://{host}:{port}/ui" + (" (sign in with a key from `infuse users add`)" if auth else ""))
    settings = ws.settings.server
    allow = allow_tuned_for_all or settings.allow_tuned_for_all
    if tuned is not None:
        err.print(
            f"the model is fine-tuned (run {', '.join(tuned.runs)}): "
            + (
                "served to every user (--allow-tuned-for-all)"
                if allow
                else "refused to users who may not read all of its training documents"
            )
        )
    app = create_app(
        ws.rag_pipeline(llm),
        api_key=api_key,
        settings=settings,
        root=ws.path,
        authenticator=identity,
        limiter=limiter,
        policy=ws.default_policy(),
        tuned=tuned,
        allow_tuned_for_all=allow,
        identity=identity,
    )
    serve(app, host=host, port=port, shutdown_timeout=settings.shutdown_timeout)


def register(app: typer.Typer) -> None:
    for command in (ask, serve):
        app.command()(command)
