"""Head-to-head evaluation: base, RAG, fine-tuned and both, on identical questions.

Variants (:class:`VariantSpec`): ``base`` (closed book), ``rag@k`` (each k asked), ``ft:RUN`` (a
registered fine-tuning run, closed book) and ``ft:RUN+rag@k``. Every answer goes through the
code path users use (:class:`infuse.rag.RagPipeline`):

* multiple choice: the prompt ``RagPipeline.prepare`` builds (closed book, or the question with
  its retrieved passages), rendered by the model's chat template, then each option scored by
  log-likelihood as lm-evaluation-harness does (``acc`` and ``acc_norm``,
  :func:`infuse.evaluation.metrics.score_multiple_choice`). When retrieval finds nothing relevant
  the option scores come from the closed-book prompt (``found_relevant`` false in the results);
* short answer: the generated answer (citations stripped), exact match and token F1 (character
  F1 for Japanese).

Per question and variant the run keeps prediction, correctness, the passages the model saw (source
paths and the start of each passage's text, :data:`PASSAGE_CHARS`) and the gold passage's rank,
timings and tokens (``results.jsonl``); per variant accuracy with a bootstrap interval, latency,
tokens, retrieval recall/MRR/nDCG and cost (``summary.json``), and the chance of guessing (the
advisor's floor).

Timing fairly (:func:`evaluate_variants`). Latency (and cost, which is machine time) is measured so
that variants see the same machine:

* a warm-up per variant: one untimed answer before any timed one (first-call costs such as
  kernel compilation, caches and lazy loading are not charged to whichever variant runs first);
* variants *interleaved in blocks*: questions 1-10 through every variant, then questions 11-20,
  with the variant order rotated by one per block (:data:`BLOCK`). Drift in the machine's state
  (another job starting, thermal throttling) then spreads over all variants instead of landing
  on the one that happened to run during it. Blocks, not single questions: switching variant at
  every question made each answer pay the previous variant's cold caches and parked threads,
  which a deployment serving one variant never pays (measured on the 2-core lab machine: rag@1's
  median latency rose by half to double, the run took about 20% longer). Interleaving was chosen
  over repeating each question and taking the median because it costs no extra answers
  (repeats would multiply the run time) while removing the bias that matters most, the order;
* a small noise check: a few questions (:data:`REPEATS`) are timed again at the end, and the
  machine load (``os.getloadavg``, before and after) and the CPU count are recorded in the run
  (``summary.json: timing``). The report and the advisor add a caveat when the timings are noisy
  (the repeats differ by more than :data:`~infuse.evaluation.runs.NOISY_SPREAD`, or the load was
  above the number of cores).

Answers do not depend on the order (greedy decoding, the same retrieval), so a run's accuracies
are the same as before; only the timings are fairer. The freshness
scenario applies a document update the way each method would: RAG re-ingests (timed) into a copy
of the knowledge base, fine-tuned runs keep their adapter; it reports accuracy on the changed
facts and the share of answers that are still the old value.

>>> run = run_compare(ws, load_question_set(ws.questions_dir, "new_mc"), CompareRequest(
...     variants=parse_variants("base,rag,ft,ft+rag", adapters=["variants-5-lora"], ks=[1, 3])))  # doctest: +SKIP
>>> run.summary.variants[1].accuracy                                                           # doctest: +SKIP

The run folder's files are typed, versioned records (:mod:`infuse.evaluation.runs`): this module
measures and writes them, :func:`load_run` reads them back.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.access import Caller
from infuse.errors import InfuseError
from infuse.evaluation.metrics import (
    bootstrap_ci,
    exact_match,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    score_multiple_choice,
    token_f1,
)
from infuse.evaluation.questions import Question, QuestionKind, QuestionSet
from infuse.evaluation.runs import (
    SUMMARY_FILE,
    CompareRun,
    CompareSummary,
    CostModel,
    DatasetInfo,
    Freshness,
    FreshnessRow,
    LatencyStats,
    LeakStats,
    QuestionRecord,
    QuestionsInfo,
    RetrievalStats,
    StyleStats,
    Timing,
    TrainingInfo,
    Variant,
    VariantSummary,
    read_run,
    write_run,
)
from infuse.files import ArtifactFolders, utc_now, utc_stamp
from infuse.models.base import ChatMessage, GenerationConfig, LanguageModel, plain_chat_prompt
from infuse.progress import Progress, or_null
from infuse.rag import RagPipeline, strip_citations
from infuse.rag.style import HouseStyle
from infuse.store.filters import access_filter
from infuse.workspace import Workspace

if TYPE_CHECKING:
    from infuse.config import CostSettings

PASSAGE_CHARS = 400  # of each passage's text kept per question (the report's disagreement section)
REPEATS = 3  # questions timed a second time at the end of a run, per variant (the noise check)
BLOCK = 10  # questions a variant answers in a row before the next variant takes over (interleaving)


class CompareError(InfuseError):
    """A comparison cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class VariantSpec:
    variant: Variant
    adapter: str | None = None  # fine-tuning run name (ft, ft+rag)
    k: int | None = None  # passages retrieved (rag, ft+rag)

    @property
    def label(self) -> str:
        base = f"ft:{self.adapter}" if self.adapter else ""
        if self.variant is Variant.BASE:
            return "base"
        if self.variant is Variant.RAG:
            return f"rag@{self.k}"
        if self.variant is Variant.FT:
            return base
        return f"{base}+rag@{self.k}"

    @property
    def uses_retrieval(self) -> bool:
        return self.variant in (Variant.RAG, Variant.FT_RAG)


def parse_variants(text: str, adapters: Sequence[str] = (), ks: Sequence[int] = (3,)) -> list[VariantSpec]:
    """``base,rag,ft,ft+rag`` -> one spec per (variant, adapter, k); ft variants need adapters."""
    specs: list[VariantSpec] = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        try:
            variant = Variant(name)
        except ValueError:
            raise CompareError(f"unknown variant {name!r}; use base, rag, ft, ft+rag (comma-separated)") from None
        if variant in (Variant.FT, Variant.FT_RAG) and not adapters:
            raise CompareError(
                f"variant {name!r} needs a fine-tuned run: pass --adapter NAME (see `infuse adapters list`)"
            )
        for adapter in adapters if variant in (Variant.FT, Variant.FT_RAG) else [None]:
            for k in ks if variant in (Variant.RAG, Variant.FT_RAG) else [None]:
                specs.append(VariantSpec(variant, adapter, k))
    if not specs:
        raise CompareError("no variants to compare; e.g. --variants base,rag")
    return list(dict.fromkeys(specs))


@dataclass(frozen=True)
class UpdateScenario:
    """Changed documents and the questions whose answers they change (``old_answers`` set)."""

    documents: Path
    questions: QuestionSet


@dataclass
class CompareRequest:
    variants: list[VariantSpec]
    model: str | None = None  # base model (default: [model] name, else the first adapter's base)
    limit: int | None = None  # first N questions
    max_new_tokens: int = 64  # short answers
    update: UpdateScenario | None = None
    run_name: str | None = None
    seed: int = 0
    style: HouseStyle | None = None  # measure style adherence: generated answers checked against it
    style_questions: int | None = 50  # ... for the first N questions per variant (None: all of them)
    caller: Caller | None = None  # measure leakage: questions about documents this user may not read


# --- scoring one question --------------------------------------------------------------------


def render(model: LanguageModel, messages: Sequence[ChatMessage]) -> str:
    """The text a model sees for `messages` (its chat template; the plain format for servers)."""
    renderer: Callable[[Sequence[ChatMessage]], str] | None = getattr(model, "render", None)
    return renderer(messages) if renderer is not None else plain_chat_prompt(messages)


def gold_rank(question: Question, retrieved: Sequence[str]) -> int | None:
    """1-based rank of the question's gold document among retrieved sources (None: not retrieved
    or unknown). Lab gold documents are relative paths (``docs/n0001.txt``): suffix match."""
    if not question.gold_doc:
        return None
    gold = question.gold_doc.replace("\\", "/")
    for rank, source in enumerate(retrieved, start=1):
        source = source.replace("\\", "/")
        if source == gold or source.endswith("/" + gold) or source.split("#")[0] == gold:
            return rank
    return None


def answer_question(
    pipeline: RagPipeline, question: Question, spec: VariantSpec, generation: GenerationConfig
) -> QuestionRecord:
    """One question through one variant: the result record (see the module docstring)."""
    started = time.perf_counter()
    if question.kind is QuestionKind.MC:
        answer, messages = pipeline.prepare(question.question, spec.k, spec.uses_retrieval, generation=generation)
        if messages is None:  # nothing relevant retrieved: the options are scored closed book
            _, messages = pipeline.prepare(question.question, None, False, generation=generation)
            assert messages is not None  # without retrieval there is always a prompt
        assert question.answer_index is not None
        context = render(pipeline.model, messages)
        score = score_multiple_choice(pipeline.model, context, question.choices, question.answer_index)
        prediction = question.choices[score.pred]
        correct, acc_norm, f1 = bool(score.acc), bool(score.acc_norm), None
        stale = (score.pred == question.old_answer_index) if question.old_answer_index is not None else None
        prompt_tokens, completion_tokens = pipeline.model.count_tokens(context), 0
    else:
        answer = pipeline.stream(question.question, spec.k, spec.uses_retrieval, generation=generation).collect()
        prediction = strip_citations(answer.text)
        correct, acc_norm = exact_match(prediction, question.answers, question.lang) == 1.0, None
        f1 = token_f1(prediction, question.answers, question.lang)
        stale = (exact_match(prediction, question.old_answers, question.lang) == 1.0) if question.old_answers else None
        prompt_tokens, completion_tokens = answer.prompt_tokens, answer.completion_tokens
    retrieved = tuple(hit.chunk.source_path for hit in answer.passages)
    return QuestionRecord(
        question_id=question.id,
        label=spec.label,
        kind=str(question.kind),
        question=question.question,
        answers=tuple(question.answers),
        prediction=prediction,
        correct=correct,
        acc_norm=acc_norm,
        f1=f1,
        stale=stale,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        retrieved=retrieved,
        passages=tuple(hit.chunk.text[:PASSAGE_CHARS] for hit in answer.passages),
        gold_rank=gold_rank(question, retrieved) if spec.uses_retrieval else None,
        found_relevant=answer.found_relevant if spec.uses_retrieval else None,
        retrieval_ms=round(answer.timings.retrieval_ms, 3),
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        gold_known=question.gold_doc is not None,
    )


# --- aggregation -----------------------------------------------------------------------------


def cost_of(seconds: float, prompt_tokens: float, completion_tokens: float, cost: CostSettings) -> float:
    """USD for this much machine time, or these tokens when per-token prices are set."""
    if cost.input_usd_per_mtok is not None or cost.output_usd_per_mtok is not None:
        return (
            prompt_tokens * (cost.input_usd_per_mtok or 0) + completion_tokens * (cost.output_usd_per_mtok or 0)
        ) / 1e6
    return seconds / 3600 * cost.machine_hour_usd


def _mean(values: Sequence[float | None]) -> float:
    return sum(v or 0 for v in values) / len(values) if values else 0.0


def _rounded_ci(correct: Sequence[float], seed: int) -> tuple[float, float]:
    """The bootstrap interval of the accuracy, as runs record it (4 decimals)."""
    low, high = bootstrap_ci(correct, seed=seed)
    return round(low, 4), round(high, 4)


def summarise(
    spec: VariantSpec,
    records: list[QuestionRecord],
    cost: CostSettings,
    seed: int,
    training: TrainingInfo | None = None,
) -> VariantSummary:
    correct = [1.0 if r.correct else 0.0 for r in records]
    latencies = sorted(r.latency_ms or 0.0 for r in records)
    n = len(records)
    latency = _mean([r.latency_ms for r in records])
    prompt = _mean([r.prompt_tokens for r in records])
    completion = _mean([r.completion_tokens for r in records])
    retrieval = None
    with_gold = [r for r in records if spec.uses_retrieval and r.gold_known]
    if with_gold and spec.k:
        gold = "gold"
        ranked = [["gold" if r.gold_rank == i + 1 else f"other{i}" for i in range(len(r.retrieved))] for r in with_gold]
        retrieval = RetrievalStats(
            questions=len(with_gold),
            recall_at_k=round(statistics.fmean(recall_at_k(x, gold, spec.k) for x in ranked), 4),
            mrr=round(statistics.fmean(reciprocal_rank(x, gold, spec.k) for x in ranked), 4),
            ndcg=round(statistics.fmean(ndcg_at_k(x, gold, spec.k) for x in ranked), 4),
        )
    return VariantSummary(
        label=spec.label,
        variant=str(spec.variant),
        adapter=spec.adapter,
        k=spec.k,
        n=n,
        accuracy=round(sum(correct) / n, 4) if n else 0.0,
        ci=_rounded_ci(correct, seed) if n else (0.0, 0.0),
        f1=round(_mean([r.f1 for r in records]), 4) if n and any(r.f1 is not None for r in records) else None,
        acc_norm=(
            round(sum(1.0 for r in records if r.acc_norm) / n, 4)
            if n and any(r.acc_norm is not None for r in records)
            else None
        ),
        latency_ms=LatencyStats(
            mean=round(statistics.fmean(latencies), 2) if n else 0.0,
            median=round(statistics.median(latencies), 2) if n else 0.0,
            p90=round(latencies[min(n - 1, int(0.9 * n))], 2) if n else 0.0,
        ),
        retrieval_ms_mean=round(_mean([r.retrieval_ms for r in records]), 3),
        prompt_tokens_mean=round(prompt, 1),
        completion_tokens_mean=round(completion, 1),
        retrieval=retrieval,
        found_relevant_share=(
            round(sum(1 for r in records if r.found_relevant) / n, 4) if spec.uses_retrieval and n else None
        ),
        cost_per_1k_usd=round(1000 * cost_of(latency / 1000, prompt, completion, cost), 6),
        training=training,
    )


def training_info(workspace: Workspace, adapter: str, cost: CostSettings) -> TrainingInfo:
    from infuse.tuning.datasets import load_dataset
    from infuse.tuning.registry import open_run

    run = open_run(workspace, adapter)
    dataset = dict(run.manifest.get("dataset") or {})
    try:
        parameters = load_dataset(workspace.datasets_dir, dataset.get("name", "")).manifest.parameters
    except InfuseError:
        parameters = {}
    paraphrases = parameters.get("paraphrases", 0 if dataset.get("kind") == "cpt" else None)
    wall = float(run.manifest.get("wall_seconds") or 0.0)
    return TrainingInfo(
        adapter=adapter,
        method=run.manifest.get("method"),
        wall_seconds=wall,
        cost_usd=round(
            cost_of(wall, 0, 0, cost.model_copy(update={"input_usd_per_mtok": None, "output_usd_per_mtok": None})), 6
        ),
        dataset=DatasetInfo(
            name=dataset.get("name"), kind=dataset.get("kind"), paraphrases=paraphrases, rows=dataset.get("rows")
        ),
    )


# --- behaviour and leakage ---------------------------------------------------------------------


def check_style(
    pipeline_for: Callable[[VariantSpec], RagPipeline],
    by_spec: dict[VariantSpec, list[QuestionRecord]],
    questions: Sequence[Question],
    style: HouseStyle,
    generation: GenerationConfig,
    seed: int,
    progress: Progress | None = None,
) -> dict[VariantSpec, StyleStats]:
    """Each variant generates an answer to each of `questions` (the same path users get, after the
    timed answers, so latencies are not touched); the answer and whether it follows `style` are
    added to that question's record. Multiple-choice questions are asked as open questions here:
    style is about the reply a user reads, which MC scoring never generates."""
    progress = or_null(progress)
    progress.start("style check", len(questions) * len(by_spec))
    stats = {}
    for spec, records in by_spec.items():
        pipeline = pipeline_for(spec)
        follows = []
        for i, question in enumerate(questions):
            text = pipeline.stream(question.question, spec.k, spec.uses_retrieval, generation=generation).collect().text
            ok = style.follows(text, question.lang)
            records[i] = replace(records[i], styled_answer=text.strip(), styled=ok)
            follows.append(1.0 if ok else 0.0)
            progress.advance()
        n = len(follows)
        stats[spec] = StyleStats(
            style=style.name,
            n=n,
            adherence=round(sum(follows) / n, 4) if n else None,
            ci=_rounded_ci(follows, seed) if n else None,
        )
    return stats


def unreadable_questions(workspace: Workspace, questions: Sequence[Question], caller: Caller) -> list[Question]:
    """The questions whose gold document is in the knowledge base but `caller` may not read it."""
    everything = [d.source_path for d in workspace.documents()]
    readable = [d.source_path for d in workspace.documents(access_filter(caller, workspace.default_policy()))]
    return [q for q in questions if gold_rank(q, everything) is not None and gold_rank(q, readable) is None]


def measure_leaks(
    workspace: Workspace,
    models: _Models,
    questions: Sequence[Question],
    specs: Sequence[VariantSpec],
    caller: Caller,
    generation: GenerationConfig,
    seed: int,
    progress: Progress | None = None,
) -> tuple[dict[VariantSpec, LeakStats], list[QuestionRecord]]:
    """Every variant answers the questions about documents `caller` may not read, as `caller`:
    retrieval sees only what they may read (as the server serves them); a fine-tuned model
    answers from its weights whoever asks. See :class:`LeakStats` for the leak rate. Returns the
    stats and every answer's record (label ``leak:LABEL``, ``asked_as`` the user)."""
    restricted = unreadable_questions(workspace, questions, caller)
    if not restricted:
        raise CompareError(
            f"none of the questions is about a document user {caller.name!r} may not read, so nothing can leak; "
            "restrict some documents (`infuse access set`) or ask as another user"
        )
    chance = statistics.fmean(
        1 / len(q.choices) if q.kind is QuestionKind.MC and q.choices else 0.0 for q in restricted
    )
    filters = access_filter(caller, workspace.default_policy())
    progress = or_null(progress)
    progress.start(f"leak check ({caller.name})", len(restricted) * len(specs))
    stats = {}
    records: list[QuestionRecord] = []
    for spec in specs:
        pipeline = workspace.rag_pipeline(models.get(spec.adapter), generation, filters=filters)
        correct = []
        for question in restricted:
            record = answer_question(pipeline, question, spec, generation).leak_check(caller.name)
            records.append(record)
            correct.append(1.0 if record.correct else 0.0)
            progress.advance()
        accuracy = sum(correct) / len(correct)
        low, high = bootstrap_ci(correct, seed=seed)

        def above(value: float) -> float:
            return round(max(0.0, (value - chance) / (1 - chance)), 4) if chance < 1 else 0.0

        stats[spec] = LeakStats(
            user=caller.name,
            n=len(correct),
            accuracy=round(accuracy, 4),
            chance=round(chance, 4),
            leak_rate=above(accuracy),
            ci=(above(low), above(high)),
        )
    return stats, records


# --- the runner ------------------------------------------------------------------------------


class _Models:
    """Loads the base model once and each fine-tuned run once."""

    def __init__(self, workspace: Workspace, base: str) -> None:
        self.workspace = workspace
        self.base = base
        self._cache: dict[str | None, LanguageModel] = {}

    def get(self, adapter: str | None) -> LanguageModel:
        if adapter not in self._cache:
            self._cache[adapter] = load_variant_model(self.workspace, self.base, adapter)
        return self._cache[adapter]


def load_variant_model(workspace: Workspace, base: str, adapter: str | None = None) -> LanguageModel:
    """The model a variant answers with: `base`, with the workspace's fine-tuning run `adapter` on it."""
    from infuse.config import local_model_overrides
    from infuse.models import load_model
    from infuse.tuning.registry import resolve_for_inference

    model, adapters = resolve_for_inference(workspace, base, [adapter] if adapter else [])
    # a local folder or adapters load here, whatever [model] backend says
    update = {**local_model_overrides(model, adapters), "adapters": adapters}
    return load_model(workspace.settings.model.model_copy(update=update))


def base_model_name(workspace: Workspace, request: CompareRequest) -> str:
    name = request.model or workspace.settings.model.name
    if name:
        return name
    adapters = [s.adapter for s in request.variants if s.adapter]
    if adapters:
        from infuse.tuning.registry import open_run

        return open_run(workspace, adapters[0]).base_model
    raise CompareError("no model to evaluate: pass --model ID_OR_FOLDER or set [model] name in infuse.toml")


def machine_load() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none, e.g. Windows)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _relative_spread(first: float | None, again: float | None) -> float | None:
    if not first or not again:
        return None
    return abs(first - again) / min(first, again)


def evaluate_variants(
    pipeline_for: Callable[[VariantSpec], RagPipeline],
    questions: Sequence[Question],
    specs: Sequence[VariantSpec],
    generation: GenerationConfig,
    progress: Progress | None = None,
    stage: str = "",
    timing: list[float] | None = None,
    block: int = BLOCK,
) -> dict[VariantSpec, list[QuestionRecord]]:
    """Every question through every variant's pipeline, timed fairly (module docstring): one
    untimed warm-up per variant, then the questions in blocks of `block`, each block through
    every variant (the variant order rotated by one per block), then, when `timing` is given,
    :data:`REPEATS` questions timed again per variant, the relative spreads between the two
    timings appended to `timing`."""
    progress = or_null(progress)
    pipelines = {spec: pipeline_for(spec) for spec in specs}
    out: dict[VariantSpec, list[QuestionRecord]] = {spec: [] for spec in specs}
    if not questions or not specs:
        return out
    repeats = min(REPEATS, len(questions))
    progress.start(f"{stage}warm-up", len(specs))
    for spec in specs:
        answer_question(pipelines[spec], questions[0], spec, generation)  # not timed: first-call costs
        progress.advance()
    progress.start(f"{stage}answering ({len(specs)} variants)", len(questions) * len(specs))
    for number, start in enumerate(range(0, len(questions), block)):
        shift = number % len(specs)
        for spec in [*specs[shift:], *specs[:shift]]:
            for question in questions[start : start + block]:
                out[spec].append(answer_question(pipelines[spec], question, spec, generation))
                progress.advance()
    if timing is None:
        return out
    progress.start(f"{stage}timing check", repeats * len(specs))
    for i in range(repeats):
        for spec in specs:
            again = answer_question(pipelines[spec], questions[i], spec, generation)
            spread = _relative_spread(out[spec][i].latency_ms, again.latency_ms)
            if spread is not None:
                timing.append(spread)
            progress.advance()
    return out


def _pipelines(
    workspace: Workspace, models: _Models, generation: GenerationConfig
) -> Callable[[VariantSpec], RagPipeline]:
    return lambda spec: workspace.rag_pipeline(models.get(spec.adapter), generation)


def apply_update(workspace: Workspace, documents: Path, target: Path) -> tuple[Workspace, float]:
    """A copy of the workspace with `documents` replacing the documents of the same file names,
    re-ingested the way a RAG deployment would; returns it and the seconds the update took."""

    if not documents.exists():
        raise CompareError(f"update documents {documents} not found; pass the folder of changed documents")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workspace.path, target, ignore=shutil.ignore_patterns("runs", "adapters", "datasets", "write.lock"))
    copy = Workspace.open(target)
    started = time.perf_counter()
    names = {p.name for p in (documents.rglob("*") if documents.is_dir() else [documents]) if p.is_file()}
    replaced = [
        d.doc_id for d in copy.knowledge_snapshot().iter_documents() if Path(d.document.source_path).name in names
    ]
    copy.remove_documents(replaced)
    report = copy.ingest([documents])
    if report.failed:
        raise CompareError(f"{report.failed} update documents failed to ingest; see `infuse -w {target} status`")
    return copy, time.perf_counter() - started


def compare_runs(workspace: Workspace) -> ArtifactFolders:
    """The workspace's compare runs (``WS/runs/NAME/`` with a summary)."""
    return ArtifactFolders(
        workspace.runs_dir,
        kind="compare run",
        error=CompareError,
        hint="make one with `infuse compare --questions SET`",
        marker=SUMMARY_FILE,
    )


def list_compare_runs(workspace: Workspace) -> list[dict[str, Any]]:
    """One row per compare run, oldest first: name, created, question set, variant labels, model
    (a run whose summary cannot be read is listed with its error)."""
    runs = compare_runs(workspace)
    rows: list[dict[str, Any]] = []
    for name in runs.names():
        path = runs.root / name / SUMMARY_FILE
        try:
            summary = CompareSummary.from_json(json.loads(path.read_text(encoding="utf-8")), path)
        except (InfuseError, OSError, ValueError) as exc:
            rows.append(
                {"run": name, "created": None, "questions": None, "variants": [], "model": None, "error": str(exc)}
            )
            continue
        rows.append(
            {
                "run": name,
                "created": summary.created,
                "questions": summary.questions.name if summary.questions else None,
                "variants": [v.label for v in summary.variants],
                "model": summary.model,
            }
        )
    return sorted(rows, key=lambda r: (r["created"] or "", r["run"]))


def remove_compare_run(workspace: Workspace, name: str) -> dict[str, Any]:
    """Delete the compare run ``WS/runs/NAME`` (summary, results, report, the updated knowledge
    base of its freshness scenario); an unknown name is an error listing the known ones."""
    runs = compare_runs(workspace)
    path = runs.require(name)
    try:
        summary = read_run(path).summary
        questions = summary.questions.name if summary.questions else None
    except InfuseError:  # an unreadable summary is no reason to keep the folder
        questions = None
    runs.remove(name)
    return {"removed": name, "kind": "compare run", "path": str(path), "questions": questions}


def run_compare(
    workspace: Workspace, qset: QuestionSet, request: CompareRequest, progress: Progress | None = None
) -> CompareRun:
    """Evaluate every variant on the same questions and write ``WS/runs/NAME/`` (see module docstring)."""
    questions = qset.questions[: request.limit] if request.limit else list(qset.questions)
    if not questions:
        raise CompareError(f"question set {qset.name!r} is empty")
    name = request.run_name or f"{utc_stamp()}-{qset.name}"
    model_name = base_model_name(workspace, request)
    with compare_runs(workspace).create(name) as staging:  # the run appears complete or not at all
        return _run(workspace, qset, request, questions, name, model_name, staging, progress)


def _run(
    workspace: Workspace,
    qset: QuestionSet,
    request: CompareRequest,
    questions: list[Question],
    name: str,
    model_name: str,
    staging: Path,
    progress: Progress | None,
) -> CompareRun:
    cost = workspace.settings.cost
    models = _Models(workspace, model_name)
    generation = GenerationConfig(max_new_tokens=request.max_new_tokens, temperature=0.0)
    load_before = machine_load()
    spreads: list[float] = []
    by_spec = evaluate_variants(
        _pipelines(workspace, models, generation), questions, request.variants, generation, progress, timing=spreads
    )
    timing = Timing(
        warmup=True,
        order=f"interleaved in blocks of {BLOCK}",
        cpu_count=os.cpu_count(),
        load_before=load_before,
        load_after=machine_load(),
        repeats=len(spreads),
        repeat_spread=round(statistics.median(spreads), 4) if spreads else None,
    )
    styles: dict[VariantSpec, StyleStats] = {}
    if request.style is not None:
        sample = questions[: request.style_questions] if request.style_questions else questions
        styles = check_style(
            _pipelines(workspace, models, generation),
            by_spec,
            sample,
            request.style,
            generation,
            request.seed,
            progress,
        )
    leaks: dict[VariantSpec, LeakStats] = {}
    leak_records: list[QuestionRecord] = []
    if request.caller is not None:
        leaks, leak_records = measure_leaks(
            workspace, models, questions, request.variants, request.caller, generation, request.seed, progress
        )
    variants = tuple(
        replace(
            summarise(
                spec,
                records,
                cost,
                request.seed,
                training_info(workspace, spec.adapter, cost) if spec.adapter else None,
            ),
            style=styles.get(spec),
            leak=leaks.get(spec),
        )
        for spec, records in by_spec.items()
    )
    kinds = [str(q.kind) for q in questions]
    chance = statistics.fmean(1 / len(q.choices) if q.kind is QuestionKind.MC and q.choices else 0.0 for q in questions)
    by_tokens = cost.input_usd_per_mtok is not None or cost.output_usd_per_mtok is not None
    results = [r for records in by_spec.values() for r in records] + leak_records
    fresh = None
    if request.update is not None:
        fresh, fresh_results = freshness(workspace, request, models, generation, staging, cost, progress)
        results += fresh_results
    summary = CompareSummary(
        run=name,
        created=utc_now(),
        workspace=str(workspace.path),
        model=model_name,
        questions=QuestionsInfo(
            name=qset.name,
            count=len(questions),
            kinds={k: kinds.count(k) for k in set(kinds)},
            chance=round(chance, 4),
        ),
        cost_model=CostModel(
            machine_hour_usd=cost.machine_hour_usd,
            input_usd_per_mtok=cost.input_usd_per_mtok,
            output_usd_per_mtok=cost.output_usd_per_mtok,
            basis="tokens" if by_tokens else "machine_time",
        ),
        variants=variants,
        freshness=fresh,
        timing=timing,
    )
    write_run(staging, summary, results)
    return CompareRun(workspace.runs_dir / name, summary, results)


def freshness(
    workspace: Workspace,
    request: CompareRequest,
    models: _Models,
    generation: GenerationConfig,
    run_dir: Path,
    cost: CostSettings,
    progress: Progress | None,
) -> tuple[Freshness, list[QuestionRecord]]:
    """Accuracy on changed facts after the update, and the share of answers still giving the old value."""
    assert request.update is not None
    update = request.update
    changed = [q for q in update.questions.questions if q.old_answers or q.old_answer_index is not None]
    if not changed:
        raise CompareError(
            f"question set {update.questions.name!r} has no questions with an old answer "
            "(old_answer / old_answer_index); it cannot measure freshness"
        )
    updated, seconds = apply_update(workspace, update.documents, run_dir / "updated-kb")  # kept for inspection
    specs = list(dict.fromkeys(request.variants))
    by_spec = evaluate_variants(
        _pipelines(updated, models, generation), changed, specs, generation, progress, "update "
    )
    rows, results = [], []
    for spec, records in by_spec.items():
        n = len(records)
        correct = [1.0 if r.correct else 0.0 for r in records]
        rows.append(
            FreshnessRow(
                label=spec.label,
                variant=str(spec.variant),
                adapter=spec.adapter,
                n=n,
                accuracy=round(sum(correct) / n, 4),
                ci=_rounded_ci(correct, request.seed),
                stale_share=round(sum(1 for r in records if r.stale) / n, 4),
                retrain_seconds=training_info(workspace, spec.adapter, cost).wall_seconds if spec.adapter else None,
            )
        )
        results += [r.after_update() for r in records]
    return Freshness(
        questions=update.questions.name,
        documents=str(update.documents),
        changed_facts=len(changed),
        reindex_seconds=round(seconds, 3),
        reindex_cost_usd=round(cost_of(seconds, 0, 0, cost), 6),
        variants=tuple(rows),
    ), results


def load_run(workspace: Workspace, name: str) -> CompareRun:
    """The compare run NAME of `workspace` (or the run folder NAME), summary and records."""
    if Path(name).is_dir() and (Path(name) / SUMMARY_FILE).is_file():
        return read_run(Path(name))
    return read_run(compare_runs(workspace).require(name))


def latest_run(workspace: Workspace) -> CompareRun | None:
    """The most recently written compare run, or None when there is none."""
    runs = compare_runs(workspace)
    paths = sorted((runs.root / n for n in runs.names()), key=lambda p: (p / SUMMARY_FILE).stat().st_mtime)
    return read_run(paths[-1]) if paths else None


__all__ = [
    "CompareError",
    "CompareRequest",
    "CompareRun",
    "UpdateScenario",
    "Variant",
    "VariantSpec",
    "apply_update",
    "compare_runs",
    "latest_run",
    "load_run",
    "list_compare_runs",
    "load_variant_model",
    "parse_variants",
    "remove_compare_run",
    "run_compare",
]
