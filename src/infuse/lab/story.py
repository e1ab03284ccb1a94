"""The whole story on the lab, offline: world -> lab model -> RAG, one fine-tuning run that learns
both the facts and the house style, a head-to-head comparison (accuracy, style adherence, the
leak rate for a user who may not read the restricted people's documents), the update scenario,
the report and the advice.

One run, not one per lesson, keeps ``make demo`` within its time budget (each LoRA run costs
tens of seconds on 2 cores, and every variant is asked the style and leak questions too): its
dataset is question-answer pairs about the new people's documents with answers in the house style
(``dataset build --kind qa --style``), mixed half and half with house-style examples about the
known people in the RAG prompt (``lab style-examples`` as ``--replay``), so the run answers in the
style with passages and without. The four variants then show the picture: RAG knows the facts but
not the style; the fine-tuned run has the style and the facts it was trained on, including those
of documents the user may not read (its leak rate); fine-tuned + RAG has both, and still leaks.
The Ovadia reproduction with paraphrase counts and a style-only run is
``benchmarks/reproduce_knowledge_injection.py``.

Every step is the library call the matching CLI command makes (``infuse ingest``, ``questions
import``, ``dataset build``, ``tune``, ``compare``, ``report``, ``advise``), on a workspace under
`root` that the user can keep exploring.

>>> result = run_lab_story(Path(".demo-workspace/lab"))     # doctest: +SKIP
>>> result.report_html                                        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infuse.evaluation.runs import CompareSummary
from infuse.lab.train import LabTrainConfig, train_lab_model
from infuse.lab.world import QUESTIONS_DIR, UPDATES_DIR
from infuse.progress import Progress

STORY_STEPS = 60  # fine-tuning steps of the story's one run (enough for the style and the facts)
STORY_LR = 3e-3
FT_RUN = "ft-house"  # the one fine-tuned run: the facts and the house style
FT_DATASET = "facts-house-style"


@dataclass(frozen=True)
class StoryConfig:
    """What the story trains and asks; the defaults are the `make demo` run."""

    lab: LabTrainConfig = LabTrainConfig.for_lang("en")
    tune_steps: int = STORY_STEPS
    tune_lr: float = STORY_LR
    batch_rows: int = 8
    questions_per_doc: int = 10  # house-style QA pairs per new person's document (2 per attribute)
    style_share: float = 0.5  # share of the run's rows that are house-style examples about known people
    k: int = 1
    limit: int | None = 100  # questions: the first 20 new people's (None: all 250)
    style_people: int = 50  # known people the house-style examples are about
    style_questions: int = 10  # answers generated per variant for the style check
    user: str = "guest"  # the leak rate is measured for this user (not in the restricted group)


@dataclass
class StoryResult:
    workspace: Path
    summary: CompareSummary
    report_html: Path
    report_markdown: Path
    recommendation: dict[str, Any]


def run_lab_story(
    root: Path, config: StoryConfig = StoryConfig(), console: Console | None = None, progress: Progress | None = None
) -> StoryResult:
    """Tell the story under `root`; training steps (lab model, fine-tuning) are reported to `progress`."""
    from infuse.access import Caller
    from infuse.advice import Criteria, advise, format_recommendation
    from infuse.evaluation.compare import CompareRequest, UpdateScenario, parse_variants, run_compare
    from infuse.evaluation.questions import ImportFormat, import_questions, save_question_set
    from infuse.evaluation.report import write_report
    from infuse.lab.evaluate import lab_workspace
    from infuse.lab.style import house_style_rows, write_house_style_rows
    from infuse.lab.templates import LAB_HOUSE_STYLE
    from infuse.tuning.builders import BuildRequest, build_dataset
    from infuse.tuning.datasets import DatasetKind
    from infuse.tuning.registry import remove_run, tune
    from infuse.tuning.trainer import TuneConfig, TuneMethod

    console = console or Console()
    model = str(train_lab_model(config.lab, progress=progress))
    world = config.lab.world()
    console.print(f"lab model: {model}")
    workspace = lab_workspace(world, root)
    world_dir = root / "world"
    console.print(f"world: {len(world.new)} new people's documents ingested into {workspace.path}")
    questions = import_questions(world_dir / QUESTIONS_DIR / "new_mc.jsonl", ImportFormat.MC)
    save_question_set(workspace.questions_dir, questions, overwrite=True)
    updates = import_questions(world_dir / UPDATES_DIR / "questions_mc.jsonl", ImportFormat.MC, name="update_mc")
    save_question_set(workspace.questions_dir, updates, overwrite=True)
    style_file = write_house_style_rows(house_style_rows(world, people=config.style_people), root / "house_style.jsonl")
    dataset = build_dataset(
        workspace,
        BuildRequest(
            DatasetKind.QA,
            name=FT_DATASET,
            questions_per_chunk=config.questions_per_doc,
            style=LAB_HOUSE_STYLE,
            replay=style_file,
            replay_share=config.style_share,
            tokenizer=model,
            overwrite=True,
        ),
    )
    tune_config = TuneConfig(
        method=TuneMethod.LORA,
        max_steps=config.tune_steps,
        lr=config.tune_lr,
        seq_len=256,
        micro_batch_size=config.batch_rows,
        eval_fraction=0,
        lora_dropout=0.0,
    )
    if (workspace.adapters_dir / FT_RUN).is_dir():  # the story re-trains its run (seconds of work)
        remove_run(workspace, FT_RUN)
    console.print(
        f"fine-tuning (LoRA): the new people's facts as questions answered in the house style, "
        f"and house-style examples about known people ({dataset.manifest.rows} rows)"
    )
    run_name = tune(workspace, dataset.manifest.name, model, tune_config, name=FT_RUN, progress=progress).name
    variants = (
        parse_variants("base,rag", ks=[config.k])
        + parse_variants("ft", adapters=[run_name])
        + parse_variants("ft+rag", adapters=[run_name], ks=[config.k])
    )
    request = CompareRequest(
        variants,
        model=model,
        limit=config.limit,
        update=UpdateScenario(world_dir / UPDATES_DIR / "docs", updates),
        run_name=None,
        style=LAB_HOUSE_STYLE,
        style_questions=config.style_questions,
        caller=Caller(config.user),
    )
    run = run_compare(workspace, questions, request)
    markdown, html = write_report(run.path)
    recommendation = advise(Criteria(), run.summary, workspace=workspace.path)
    _print(console, run.summary)
    console.print(format_recommendation(recommendation), soft_wrap=True, highlight=False)
    console.print(f"report: {html}")
    return StoryResult(workspace.path, run.summary, html, markdown, recommendation.to_dict())


def _print(console: Console, summary: CompareSummary) -> None:
    count = summary.questions.count if summary.questions else None
    table = Table(title=f"{count} multiple-choice questions about new people")
    leak = next((v.leak for v in summary.variants if v.leak), None)
    leak_column = f"leak rate for {leak.user}" if leak else "leak rate"
    columns = (
        "variant",
        "accuracy (95% CI)",
        "house style",
        leak_column,
        "median ms / question",
        "$ per 1k",
        "training",
    )
    for column in columns:
        table.add_column(column)
    for v in summary.variants:  # a run this story just wrote: every field is there
        assert (
            v.accuracy is not None and v.ci is not None and v.latency_ms is not None and v.latency_ms.median is not None
        )
        table.add_row(
            v.label,
            f"{v.accuracy:.1%} ({v.ci[0]:.0%}-{v.ci[1]:.0%})",
            f"{v.style.adherence:.0%}" if v.style and v.style.adherence is not None else "-",
            f"{v.leak.leak_rate:.0%}" if v.leak and v.leak.leak_rate is not None else "-",
            f"{v.latency_ms.median:.0f}",
            f"{v.cost_per_1k_usd or 0:.4f}",
            f"{v.training.wall_seconds or 0:.0f}s" if v.training else "-",
        )
    console.print(table)
    from infuse.evaluation.console import freshness_table

    fresh = freshness_table(summary)
    if fresh is not None:
        console.print(fresh)


__all__ = ["StoryConfig", "StoryResult", "run_lab_story"]
