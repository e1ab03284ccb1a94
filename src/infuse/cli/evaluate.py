"""The evaluation commands: ``questions import|generate|list|rm``, ``compare``, ``runs list|rm``,
``report``, ``advise``.

``runs`` is its own group because ``compare`` is one command with options (``infuse compare
--questions SET``): a subcommand under it would change how every existing compare line parses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from infuse.access import Caller, check_name
from infuse.advice import UpdateFrequency
from infuse.cli.common import (
    command_line,
    err,
    open_workspace,
    out,
    parse_style,
    print_json,
    progress_bar,
    render_removed,
    state,
)
from infuse.errors import InfuseError
from infuse.evaluation.cost_over_time import CostScenario
from infuse.evaluation.questions import ImportFormat, QuestionKind
from infuse.evaluation.runs import CompareRun

questions_app = typer.Typer(help="Evaluation question sets: import, generate, list, rm.", no_args_is_help=True)
runs_app = typer.Typer(help="Compare runs: list, rm.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
OverwriteOption = Annotated[bool, typer.Option(help="Replace a set of the same name.")]
SetJsonOption = Annotated[bool, typer.Option("--json", help="Print the set's name and manifest as JSON.")]


def print_question_set(qset: Any, path: Path, as_json: bool) -> None:
    if as_json:
        print_json({"name": qset.name, "path": str(path), "manifest": qset.manifest})
        return
    counts = qset.manifest.get("counts", {})
    skipped = counts.get("skipped", 0)
    out.print(
        f"question set [bold]{qset.name}[/]: {len(qset.questions):,} questions {counts.get('by_kind', {})}"
        + (f", {skipped} rows skipped (see manifest)" if skipped else "")
        + f" -> {path}"
    )
    documents = qset.manifest.get("documents") or {}
    if documents.get("folder"):
        out.print(
            f"{documents['files']:,} articles -> {documents['folder']}\n"
            f"next: {command_line('ingest ' + documents['folder'])}",
            highlight=False,
            markup=False,
        )


@questions_app.command("import")
def questions_import(
    file: Annotated[Path, typer.Argument(help="JSONL (mc, qa, realtimeqa) or SQuAD/JaQuAD JSON file or folder.")],
    format: Annotated[ImportFormat, typer.Option("--format", help="mc | qa | squad | jaquad | realtimeqa.")],
    name: Annotated[str | None, typer.Option(help="Set name \\[default: from the file name].")] = None,
    limit: Annotated[int | None, typer.Option(help="Import at most N questions.", min=1)] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents",
            help="realtimeqa: also write the questions' news articles to DIR, one .txt per article "
            "(stable names), for `infuse ingest DIR`.",
            metavar="DIR",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    as_json: SetJsonOption = False,
) -> None:
    """Import a question set (bad rows are skipped and listed in the manifest)."""
    from infuse.evaluation.questions import import_questions, save_question_set

    ws = open_workspace(create=True)
    qset = import_questions(file, format, name=name, limit=limit, documents=documents)
    print_question_set(qset, save_question_set(ws.questions_dir, qset, overwrite=overwrite), as_json)


@questions_app.command("generate")
def questions_generate(
    per_chunk: Annotated[int, typer.Option(help="Questions per chunk.", min=1)] = 1,
    kind: Annotated[QuestionKind, typer.Option(help="mc (4 options) | short.")] = QuestionKind.MC,
    model: Annotated[str | None, typer.Option(help="The model that writes \\[default: \\[model] name].")] = None,
    name: Annotated[str, typer.Option(help="Set name.")] = "generated",
    limit_chunks: Annotated[int | None, typer.Option(help="Use at most N chunks.", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    overwrite: OverwriteOption = False,
    as_json: SetJsonOption = False,
) -> None:
    """Write an evaluation set from the knowledge base's chunks with a model (source chunk recorded)."""
    from infuse.config import local_model_overrides
    from infuse.evaluation.questions import generate_questions, save_question_set
    from infuse.models import load_model

    ws = open_workspace()
    chunks = list(ws.knowledge_snapshot().iter_chunks())[:limit_chunks]
    with err.status("loading model…"):
        llm = load_model(ws.settings.model.model_copy(update=local_model_overrides(model)))
    with progress_bar() as progress:
        qset = generate_questions(chunks, llm, per_chunk=per_chunk, kind=kind, seed=seed, name=name, progress=progress)
    print_question_set(qset, save_question_set(ws.questions_dir, qset, overwrite=overwrite), as_json)


@questions_app.command("list")
def questions_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The workspace's question sets."""
    from infuse.evaluation.questions import list_question_sets, load_question_set

    ws = open_workspace()
    sets = [load_question_set(ws.questions_dir, n) for n in list_question_sets(ws.questions_dir)]
    rows = [
        {
            "name": q.name,
            "questions": len(q.questions),
            "format": q.manifest.get("format"),
            "by_kind": q.manifest.get("counts", {}).get("by_kind"),
        }
        for q in sets
    ]
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("name", "questions", "format", "kinds"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], f"{r['questions']:,}", str(r["format"]), str(r["by_kind"]))
    out.print(table)


@questions_app.command("rm")
def questions_rm(name: Annotated[str, typer.Argument(help="Question set name.")], as_json: JsonOption = False) -> None:
    """Delete a question set (compare runs that asked it keep their results)."""
    from infuse.evaluation.questions import remove_question_set

    render_removed(remove_question_set(open_workspace().questions_dir, name), as_json)


@runs_app.command("list")
def runs_list(as_json: JsonOption = False) -> None:
    """The workspace's compare runs, oldest first."""
    from infuse.evaluation.compare import list_compare_runs

    rows = list_compare_runs(open_workspace())
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("run", "created", "questions", "variants", "model"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["run"], str(r["created"] or "-"), str(r["questions"] or "-"), ", ".join(r["variants"]), str(r["model"])
        )
    out.print(table)


@runs_app.command("rm")
def runs_rm(name: Annotated[str, typer.Argument(help="Compare run name.")], as_json: JsonOption = False) -> None:
    """Delete a compare run (summary, results, report, its updated knowledge base)."""
    from infuse.evaluation.compare import remove_compare_run

    render_removed(remove_compare_run(open_workspace(), name), as_json)


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise InfuseError(f"-k {text!r}: give passage counts like 1,3,5") from None
    if not ks or min(ks) < 1:
        raise InfuseError(f"-k {text!r}: give positive passage counts like 1,3,5")
    return ks


def compare(
    questions: Annotated[str, typer.Option(help="Question set name (infuse questions list).")],
    variants: Annotated[str, typer.Option(help="Comma-separated: base, rag, ft, ft+rag.")] = "base,rag",
    adapter: Annotated[list[str] | None, typer.Option(help="Fine-tuning run for ft variants; repeatable.")] = None,
    k: Annotated[
        str | None, typer.Option("-k", help="Passages for rag variants, e.g. 1,3,5 \\[default: \\[rag] k].")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Base model \\[default: \\[model] name, else the adapter's base].")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use the first N questions.", min=1)] = None,
    update_docs: Annotated[Path | None, typer.Option(help="Freshness: folder of changed documents.")] = None,
    update_questions: Annotated[
        str | None, typer.Option(help="Freshness: question set about the changed facts.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name \\[default: time + question set].")] = None,
    style: Annotated[
        list[str] | None,
        typer.Option(
            help="House style to check answers against, LANG=TEMPLATE with {answer} and optional {source} "
            "(e.g. 'en={answer}{source}, that is all.'); repeatable, one per language."
        ),
    ] = None,
    style_questions: Annotated[int, typer.Option(help="Style: answers generated per variant.", min=1)] = 50,
    as_user: Annotated[
        str | None, typer.Option(help="Leak rate: ask the questions about documents this user may not read as them.")
    ] = None,
    user_group: Annotated[list[str] | None, typer.Option(help="Leak rate: a group of --as-user; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
) -> None:
    """Evaluate base / RAG / fine-tuned / both on the same questions; writes WS/runs/NAME."""
    from infuse.evaluation.compare import CompareRequest, parse_variants, run_compare
    from infuse.evaluation.questions import load_question_set

    ws = open_workspace()
    specs = parse_variants(variants, adapters=adapter or [], ks=parse_ks(k) if k else [ws.settings.rag.k])
    qset = load_question_set(ws.questions_dir, questions)
    request = CompareRequest(
        specs,
        model=model,
        limit=limit,
        update=update_scenario(ws, update_docs, update_questions),
        run_name=name,
        style=parse_style(style) if style else None,
        style_questions=style_questions,
        caller=Caller(check_name(as_user, "user"), tuple(check_name(g, "group") for g in user_group or ()))
        if as_user
        else None,
    )
    with progress_bar() as progress:
        run = run_compare(ws, qset, request, progress)
    if as_json:
        print_json(run.summary.to_json())
    else:
        render_compare(run)


def update_scenario(ws: Any, docs: Path | None, questions: str | None) -> Any:
    """The freshness scenario of ``--update-docs``/``--update-questions`` (both or neither)."""
    from infuse.evaluation.compare import UpdateScenario
    from infuse.evaluation.questions import load_question_set

    if docs is None and questions is None:
        return None
    if docs is None or questions is None:
        raise InfuseError("freshness needs both --update-docs DIR and --update-questions SET")
    return UpdateScenario(docs, load_question_set(ws.questions_dir, questions))


def render_compare(run: CompareRun) -> None:
    from infuse.evaluation.console import freshness_table, variants_table

    out.print(variants_table(run.summary))
    fresh = freshness_table(run.summary)
    if fresh is not None:
        out.print(fresh)
    caveat = run.summary.timing.caveat() if run.summary.timing else None
    if caveat:
        err.print(f"[yellow]note:[/] {escape(caveat)}", highlight=False)
    out.print(
        f"run [bold]{escape(str(run.summary.run))}[/] -> {escape(str(run.path))}  "
        f"(report: {escape(command_line(f'report {run.summary.run}'))})",
        highlight=False,
    )


def report(
    run: Annotated[str | None, typer.Argument(help="Compare run name \\[default: the latest].")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML report in a browser.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report paths as JSON.")] = False,
    updates_per_month: Annotated[
        float, typer.Option(help="Cost over time: document updates a month.", min=0)
    ] = CostScenario.updates_per_month,
    questions_per_day: Annotated[
        float, typer.Option(help="Cost over time: questions asked a day.", min=0)
    ] = CostScenario.questions_per_day,
    retrain_every: Annotated[
        int, typer.Option(help="Cost over time: the fine-tuned model is retrained every N updates.", min=1)
    ] = CostScenario.retrain_every,
    months: Annotated[int, typer.Option(help="Cost over time: months projected.", min=1)] = CostScenario.months,
) -> None:
    """Write a compare run's report: Markdown and a self-contained HTML page with plots (the
    cost-over-time plot projects the run's measured costs over the usage the options describe)."""
    from infuse.evaluation.compare import latest_run, load_run
    from infuse.evaluation.report import write_report

    ws = open_workspace()
    found = load_run(ws, run) if run else latest_run(ws)
    if found is None:
        raise InfuseError(f"no compare runs in {ws.runs_dir}; run `infuse compare` first")
    scenario = CostScenario(
        months=months,
        updates_per_month=updates_per_month,
        questions_per_day=questions_per_day,
        retrain_every=retrain_every,
    )
    markdown, html = write_report(found.path, scenario=scenario)
    if as_json:
        print_json({"run": found.summary.run, "markdown": str(markdown), "html": str(html)})
    else:
        out.print(f"report -> {html}\n         {markdown}")
    if open_browser:
        import webbrowser

        webbrowser.open(html.resolve().as_uri())


def advise(
    run: Annotated[
        str | None, typer.Option(help="Compare run to ground the advice in \\[default: the latest, if any].")
    ] = None,
    updates: Annotated[
        UpdateFrequency | None, typer.Option(help="How often the knowledge changes: daily | weekly | rarely.")
    ] = None,
    latency_ms: Annotated[float | None, typer.Option(help="Latency budget per answer in ms.", min=0)] = None,
    style: Annotated[bool, typer.Option("--style", help="Answers must follow a strict style or format.")] = False,
    training_budget: Annotated[float | None, typer.Option(help="Training budget in USD.", min=0)] = None,
    training_examples: Annotated[int | None, typer.Option(help="Labelled examples available.", min=0)] = None,
    local_only: Annotated[bool, typer.Option("--local-only", help="Data may not leave this machine.")] = False,
    restricted: Annotated[
        bool, typer.Option("--restricted", help="Some documents may be read only by some users.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON.")] = False,
) -> None:
    """Recommend RAG, fine-tuning, both or the base model, from the measurements and your constraints."""
    from infuse.advice import Criteria, format_recommendation
    from infuse.advice import advise as recommend
    from infuse.evaluation.compare import latest_run, load_run

    ws = open_workspace(create=True)
    found = load_run(ws, run) if run else latest_run(ws)
    criteria = Criteria(
        updates=updates,
        latency_ms=latency_ms,
        needs_style=style,
        training_budget_usd=training_budget,
        training_examples=training_examples,
        privacy_local_only=local_only,
        restricted_documents=restricted,
    )
    recommendation = recommend(criteria, found.summary if found else None, workspace=state.workspace)
    if as_json:
        print_json({"run": found.summary.run if found else None, **recommendation.to_dict()})
        return
    sys.stdout.write(format_recommendation(recommendation) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(questions_app, name="questions")
    app.add_typer(runs_app, name="runs")
    for command in (compare, report, advise):
        app.command()(command)
