"""The fine-tuning commands: ``dataset build|list|rm``, ``tune``, ``adapters list|show|rm|merge|export``.

Defaults are read from the library's request types (:class:`BuildRequest`, :class:`TuneConfig`),
so a default changes in one place; which writer writes, whose tokenizer counts, the base model and
the run name are decided by the library (:func:`build_dataset`, :func:`tune`), not here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infuse.cli.common import (
    EXIT_ERROR,
    command_line,
    err,
    fmt_loss,
    open_workspace,
    out,
    parse_style,
    print_json,
    progress_bar,
    render_removed,
)
from infuse.tuning.builders import BuildRequest, DistractorChoice
from infuse.tuning.datasets import Dataset, DatasetKind
from infuse.tuning.generators import WriterChoice
from infuse.tuning.gguf_export import DEFAULT_TYPE, ExportFormat, ExportReport, GgufType
from infuse.tuning.registry import Run
from infuse.tuning.trainer import TuneConfig, TuneMethod

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

dataset_app = typer.Typer(help="Fine-tuning datasets built from the knowledge base.", no_args_is_help=True)
adapters_app = typer.Typer(help="Fine-tuning runs: list, show, rm, merge, export.", no_args_is_help=True)


@dataset_app.command("build")
def dataset_build(
    kind: Annotated[DatasetKind, typer.Option(help="cpt (continued pretraining) | paraphrase | qa | raft.")],
    name: Annotated[str | None, typer.Option(help="Dataset name \\[default: the kind, then -2, -3...].")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="cpt: whose tokenizer cuts the text; paraphrase/qa/raft: the model that writes "
            "(lab worlds use their own templates) \\[default: \\[model] name]."
        ),
    ] = None,
    paraphrases: Annotated[int, typer.Option(help="paraphrase: rewrites per chunk.", min=1)] = BuildRequest.paraphrases,
    no_original: Annotated[bool, typer.Option("--no-original", help="paraphrase: leave the chunk itself out.")] = False,
    block_tokens: Annotated[
        int, typer.Option(help="cpt: tokens per piece (BOS/EOS included).", min=8)
    ] = BuildRequest.block_tokens,
    per_chunk: Annotated[
        int, typer.Option(help="qa/raft: questions per chunk.", min=1)
    ] = BuildRequest.questions_per_chunk,
    distractors: Annotated[
        int, typer.Option(help="raft: distractor chunks per question.", min=0)
    ] = BuildRequest.distractors,
    distractor_choice: Annotated[
        DistractorChoice,
        typer.Option(
            help="raft: random (other chunks drawn at random) | hard (the best-ranked other chunks the search "
            "returns for the question, as a RAG prompt shows them)."
        ),
    ] = BuildRequest.distractor_choice,
    no_oracle_share: Annotated[
        float, typer.Option(help="raft: share of rows without the oracle chunk.", min=0, max=1)
    ] = BuildRequest.no_oracle_share,
    questions_from: Annotated[str | None, typer.Option(help="raft: take questions from this qa dataset.")] = None,
    replay: Annotated[Path | None, typer.Option(help="JSONL rows (general or earlier data) to mix in.")] = None,
    replay_share: Annotated[
        float, typer.Option(help="Share of the final rows taken from --replay.", min=0, max=0.95)
    ] = BuildRequest.replay_share,
    writer: Annotated[
        WriterChoice,
        typer.Option(
            help="paraphrase/qa/raft: auto (a lab world's own templates for lab documents, else --model) | model | lab."
        ),
    ] = BuildRequest.writer,
    limit_chunks: Annotated[
        int | None, typer.Option(help="paraphrase/qa/raft: write for the first N chunks only (a trial run).", min=1)
    ] = BuildRequest.limit_chunks,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            help="paraphrase/qa/raft: longest reply the model may write \\[default: \\[model] max_new_tokens].", min=1
        ),
    ] = BuildRequest.max_new_tokens,
    concurrency: Annotated[
        int,
        typer.Option(
            help="paraphrase/qa/raft: requests in flight (1 for a local model; 8-32 against a vLLM-like server).", min=1
        ),
    ] = BuildRequest.concurrency,
    quality_gate: Annotated[
        bool,
        typer.Option(
            help="Reject model-written text that loses the chunk's key terms or language, or answers off the chunk."
        ),
    ] = BuildRequest.quality_gate,
    style: Annotated[
        list[str] | None,
        typer.Option(
            help="qa/raft: write answers in this house style, LANG=TEMPLATE with {answer} and optional {source}; "
            "repeatable, one per language."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, shuffling and generation.")] = BuildRequest.seed,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new dataset's name and manifest as JSON.")] = False,
) -> None:
    """Build a training set (JSONL + manifest) from the knowledge base.

    A model-written build that is interrupted (even with kill -9) resumes where it stopped when
    the same command is run again."""
    from infuse.tuning.builders import build_dataset

    request = BuildRequest(
        kind,
        name=name,
        model=model,
        writer=writer,
        block_tokens=block_tokens,
        paraphrases=paraphrases,
        include_original=not no_original,
        questions_per_chunk=per_chunk,
        distractors=distractors,
        distractor_choice=distractor_choice,
        no_oracle_share=no_oracle_share,
        questions_from=questions_from,
        replay=replay,
        replay_share=replay_share,
        limit_chunks=limit_chunks,
        max_new_tokens=max_new_tokens,
        concurrency=concurrency,
        quality_gate=quality_gate,
        style=parse_style(style) if style else None,
        seed=seed,
        overwrite=overwrite,
    )
    ws = open_workspace()
    with progress_bar() as progress:
        dataset = build_dataset(ws, request, progress=progress)
    render_dataset(dataset, as_json)


def render_dataset(dataset: Dataset, as_json: bool) -> None:
    manifest = dataset.manifest.to_dict()
    if as_json:
        print_json({"name": dataset.manifest.name, "path": str(dataset.rows_path), "manifest": manifest})
        return
    tokens = f", {manifest['tokens']:,} tokens" if manifest["tokens"] is not None else ""
    out.print(
        f"dataset [bold]{dataset.manifest.name}[/] ({dataset.manifest.kind}): {manifest['rows']:,} rows{tokens} "
        f"-> {dataset.rows_path}"
    )
    counts = dataset.manifest.counts
    rejected = {k.removeprefix("rejected_"): n for k, n in counts.items() if k.startswith("rejected_")}
    if rejected:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1]))
        err.print(f"quality gate rejected {sum(rejected.values()):,} model replies: {reasons}")
    notes = [f"{k.replace('_', ' ')} {n:,}" for k, n in counts.items() if not k.startswith("rejected_") and n]
    if notes:
        err.print(escape("; ".join(notes)))


@dataset_app.command("list")
def dataset_list(as_json: JsonOption = False) -> None:
    """The workspace's datasets."""
    from infuse.tuning.datasets import list_datasets, load_dataset

    ws = open_workspace()
    manifests = [load_dataset(ws.datasets_dir, n).manifest.to_dict() for n in list_datasets(ws.datasets_dir)]
    if as_json:
        print_json(manifests)
        return
    table = Table()
    for column in ("name", "kind", "rows", "tokens", "generator", "created"):
        table.add_column(column)
    for m in manifests:
        table.add_row(
            m["name"],
            m["kind"],
            f"{m['rows']:,}",
            f"{m['tokens']:,}" if m["tokens"] is not None else "-",
            m["generator"] or "-",
            m["created"],
        )
    out.print(table)


@dataset_app.command("rm")
def dataset_rm(name: Annotated[str, typer.Argument(help="Dataset name.")], as_json: JsonOption = False) -> None:
    """Delete a dataset (rows, manifest, and any unfinished build of it)."""
    from infuse.tuning.datasets import remove_dataset

    render_removed(remove_dataset(open_workspace().datasets_dir, name), as_json)


def tune_command(
    dataset: Annotated[str, typer.Option(help="Dataset name (infuse dataset list) or a JSONL file.")],
    method: Annotated[TuneMethod, typer.Option(help="lora | full | qlora (CUDA + bitsandbytes).")] = TuneConfig.method,
    model: Annotated[str | None, typer.Option(help="Base model id or folder \\[default: \\[model] name].")] = None,
    name: Annotated[str | None, typer.Option(help="Run name \\[default: DATASET-METHOD].")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the dataset.", min=0.01)] = TuneConfig.epochs,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides --epochs).", min=1)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate \\[default: 2e-4 LoRA, 2e-5 full].")] = None,
    batch_size: Annotated[
        int, typer.Option(help="Packed rows per step per process.", min=1)
    ] = TuneConfig.micro_batch_size,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = TuneConfig.grad_accum,
    seq_len: Annotated[int, typer.Option(help="Tokens per packed row.", min=16)] = TuneConfig.seq_len,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = TuneConfig.lora_r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = TuneConfig.lora_alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.", min=0, max=0.9)] = TuneConfig.lora_dropout,
    lora_targets: Annotated[
        str | None, typer.Option(help="Comma-separated module names \\[default: all linear layers].")
    ] = None,
    eval_fraction: Annotated[
        float, typer.Option(help="Share of examples held out for the eval loss.", min=0, max=0.5)
    ] = TuneConfig.eval_fraction,
    save_every: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps; 0: none \\[default: about 10 per run].", min=0)
    ] = None,
    keep_checkpoints: Annotated[
        bool,
        typer.Option("--keep-checkpoints", help="Keep checkpoints/ once the run is complete (removed by default)."),
    ] = TuneConfig.keep_final_checkpoints,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Train on the usable rows when some rows are unusable.")
    ] = TuneConfig.skip_bad_rows,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted or failed run from its last checkpoint.")
    ] = False,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Trade compute for memory.")
    ] = TuneConfig.gradient_checkpointing,
    seed: Annotated[int, typer.Option(help="Seed (data order, initialisation).")] = TuneConfig.seed,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps \\[default: best available].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON.")] = False,
) -> None:
    """Fine-tune a local model on a dataset (LoRA, full or QLoRA); the run is registered by name."""
    from infuse.tuning.registry import tune

    config = TuneConfig(
        method=method,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        micro_batch_size=batch_size,
        grad_accum=grad_accum,
        seq_len=seq_len,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_targets=TuneConfig.parse_targets(lora_targets),
        eval_fraction=eval_fraction,
        save_every=save_every,
        keep_final_checkpoints=keep_checkpoints,
        skip_bad_rows=skip_bad_rows,
        gradient_checkpointing=gradient_checkpointing,
        seed=seed,
        device=device,
    )
    with progress_bar() as progress:
        run = tune(open_workspace(), dataset, model, config, name=name, resume=resume, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        render_run(run, as_json)


def render_run(run: Run, as_json: bool) -> None:
    if as_json:
        print_json(run.manifest)
        return
    m = run.manifest
    eval_part = f", eval loss {m['final_eval_loss']:.4f}" if m.get("final_eval_loss") is not None else ""
    err.print(
        f"{m['steps']} steps in {m['wall_seconds']:.0f}s ({m['tokens_per_second']:,.0f} tok/s), "
        f"train loss {m['final_train_loss']:.4f}{eval_part}, peak memory {m['peak_memory_mb']:,.0f} MB"
    )
    out.print(f"run [bold]{run.name}[/] -> {run.output_dir}  (use it: {command_line(f'ask --adapter {run.name} ...')})")


@adapters_app.command("list")
def adapters_list(as_json: JsonOption = False) -> None:
    """Every fine-tuning run in the workspace."""
    from infuse.tuning.registry import list_runs

    runs = [r.summary() for r in list_runs(open_workspace())]
    if as_json:
        print_json(runs)
        return
    table = Table()
    for column in ("name", "status", "method", "base model", "dataset", "steps", "train loss", "eval loss"):
        table.add_column(column, overflow="fold")
    for r in runs:
        table.add_row(
            r["name"],
            r["status"],
            r["method"],
            r["base_model"],
            r["dataset"] or "-",
            str(r["steps"] or "-"),
            fmt_loss(r["final_train_loss"]),
            fmt_loss(r["final_eval_loss"]),
        )
    out.print(table)


@adapters_app.command("show")
def adapters_show(name: Annotated[str, typer.Argument(help="Run name.")], as_json: JsonOption = False) -> None:
    """A run's manifest: base model, dataset, hyperparameters, losses, speed, memory."""
    from infuse.tuning.registry import open_run

    run = open_run(open_workspace(), name)
    data = {**run.manifest, **run.summary()}
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        out.print(
            f"[bold]{key}[/]: {escape(json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))}"
        )


@adapters_app.command("rm")
def adapters_rm(name: Annotated[str, typer.Argument(help="Run name.")], as_json: JsonOption = False) -> None:
    """Delete a fine-tuning run (adapter or model, checkpoints, merged model); refused while it trains."""
    from infuse.tuning.registry import remove_run

    render_removed(remove_run(open_workspace(), name), as_json)


@adapters_app.command("merge")
def adapters_merge(
    name: Annotated[str, typer.Argument(help="Run name (LoRA or QLoRA).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the merged model \\[default: the run's merged/].")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write base + adapter as one model folder, verified to give the same logits."""
    from infuse.tuning.registry import merge_adapter

    with err.status("merging…"):
        report = merge_adapter(open_workspace(), name, out_dir)
    if as_json:
        print_json(report)
        return
    out.print(
        f"merged model -> {report['merged']} (max logit difference {report['max_logit_difference']:.2g} "
        f"on {report['samples']} samples)"
    )


@adapters_app.command("export")
def adapters_export(
    name: Annotated[str, typer.Argument(help="Run name (LoRA, QLoRA or full).")],
    export_format: Annotated[ExportFormat, typer.Option("--format", help="gguf (llama.cpp, Ollama, LM Studio).")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="File, or folder for NAME-TYPE.gguf \\[default: the run's folder]."),
    ] = None,
    gguf_type: Annotated[
        GgufType, typer.Option("--type", help="f32 | f16 | q8_0 (matrices; norms stay f32).")
    ] = DEFAULT_TYPE,
    as_json: JsonOption = False,
) -> None:
    """Write the tuned model as one GGUF file, verified by loading it back and comparing logits.

    Needs a run whose base model is a GGUF file; for other bases it writes the merged model folder
    and prints the llama.cpp commands that convert it (exit status 1: no GGUF was written)."""
    from infuse.tuning.gguf_export import export_gguf

    with err.status(f"exporting {name} as {export_format} ({gguf_type})…"):
        report = export_gguf(open_workspace(), name, out_file, type=gguf_type)
    render_export(report, as_json)
    if report.gguf is None:
        raise typer.Exit(EXIT_ERROR)


def render_export(report: ExportReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    if report.gguf is None:
        err.print(f"[bold yellow]{escape(report.reason or 'no GGUF written')}[/]")
        for command in report.commands:
            out.print(escape(command), highlight=False, soft_wrap=True)
        return
    out.print(
        escape(
            f"GGUF {report.type} ({(report.bytes or 0) / 1e6:,.0f} MB) -> {report.gguf} (max logit difference "
            f"{report.max_logit_difference:.2g} <= {report.tolerance}, same top token at "
            f"{report.top_token_agreement or 0:.1%} of positions, on {report.samples} samples; {report.seconds:.0f}s)"
        ),
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        escape(f'Ollama: echo "FROM {report.gguf}" > Modelfile && ollama create {report.name} -f Modelfile'),
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
    app.command("tune")(tune_command)
    app.add_typer(adapters_app, name="adapters")
