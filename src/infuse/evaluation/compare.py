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

Per question and variant the run keeps prediction, correctness, retrieved sources and the gold
passage's rank, timings and tokens (``results.jsonl``); per variant accuracy with a bootstrap
interval, latency, tokens, retrieval recall/MRR/nDCG and cost (``summary.json``). The freshness
scenario applies a document update the way each method would: RAG re-ingests (timed) into a copy
of the knowledge base, fine-tuned runs keep their adapter; it reports accuracy on the changed
facts and the share of answers that are still the old value.

>>> run = run_compare(ws, load_question_set(ws.questions_dir, "new_mc"), CompareRequest(
...     variants=parse_variants("base,rag,ft,ft+rag", adapters=["variants-5-lora"], ks=[1, 3])))  # doctest: +SKIP
>>> run.summary["variants"][1]["accuracy"]                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.errors import InfuseError
from infuse.evaluation.metrics import (
    bootstrap_ci,
    exact_match,
    ndcg_at_k,
    reciprocal_rank,
    recall_at_k,
    score_multiple_choice,
    token_f1,
)
from infuse.evaluation.questions import Question, QuestionKind, QuestionSet
from infuse.staging import staged_folder
from infuse.models.base import GenerationConfig, LanguageModel, plain_chat_prompt

if TYPE_CHECKING:
    from infuse.config import CostSettings
    from infuse.workspace import Workspace

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.jsonl"
_CITATION = re.compile(r"\s*[\[［]\s*\d+(?:\s*[,、]\s*\d+)*\s*[\]］]")


class Variant(StrEnum):
    BASE = "base"
    RAG = "rag"
    FT = "ft"
    FT_RAG = "ft+rag"


class CompareError(InfuseError):
    """A comparison cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class VariantSpec:
    variant: Variant
    adapter: str | None = None   # fine-tuning run name (ft, ft+rag)
    k: int | None = None         # passages retrieved (rag, ft+rag)

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
            raise CompareError(f"variant {name!r} needs a fine-tuned run: pass --adapter NAME (see `infuse adapters list`)")
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
    model: str | None = None                 # base model (default: [model] name, else the first adapter's base)
    limit: int | None = None                 # first N questions
    max_new_tokens: int = 64                 # short answers
    update: UpdateScenario | None = None
    run_name: str | None = None
    seed: int = 0


@dataclass
class CompareRun:
    path: Path
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)


# --- scoring one question --------------------------------------------------------------------


def render(model: LanguageModel, messages: list[dict[str, str]]) -> str:
    """The text a model sees for `messages` (its chat template; the plain format for servers)."""
    renderer = getattr(model, "render", None)
    return renderer(messages) if renderer is not None else plain_chat_prompt(messages)


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text).strip()


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


def answer_question(pipeline, question: Question, spec: VariantSpec, generation: GenerationConfig) -> dict[str, Any]:
    """One question through one variant: the result record (see the module docstring)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"question_id": question.id, "label": spec.label, "kind": str(question.kind),
                              "question": question.question, "answers": list(question.answers)}
    if question.kind is QuestionKind.MC:
        answer, messages = pipeline.prepare(question.question, spec.k, spec.uses_retrieval, generation=generation)
        if messages is None:   # nothing relevant retrieved: the options are scored closed book
            _, messages = pipeline.prepare(question.question, None, False, generation=generation)
        assert question.answer_index is not None
        context = render(pipeline.model, messages)
        score = score_multiple_choice(pipeline.model, context, question.choices, question.answer_index)
        record.update(prediction=question.choices[score.pred], correct=bool(score.acc), acc_norm=bool(score.acc_norm), f1=None,
                      stale=(score.pred == question.old_answer_index) if question.old_answer_index is not None else None,
                      prompt_tokens=pipeline.model.count_tokens(context), completion_tokens=0)
    else:
        answer = pipeline.stream(question.question, spec.k, spec.uses_retrieval, generation=generation).collect()
        prediction = strip_citations(answer.text)
        record.update(prediction=prediction, correct=exact_match(prediction, question.answers, question.lang) == 1.0,
                      f1=token_f1(prediction, question.answers, question.lang), acc_norm=None,
                      stale=(exact_match(prediction, question.old_answers, question.lang) == 1.0) if question.old_answers else None,
                      prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
    retrieved = [hit.chunk.source_path for hit in answer.passages]
    record.update(retrieved=retrieved, gold_rank=gold_rank(question, retrieved) if spec.uses_retrieval else None,
                  found_relevant=answer.found_relevant if spec.uses_retrieval else None,
                  retrieval_ms=round(answer.timings.retrieval_ms, 3), latency_ms=round((time.perf_counter() - started) * 1000, 3))
    return record


# --- aggregation -----------------------------------------------------------------------------


def cost_of(seconds: float, prompt_tokens: float, completion_tokens: float, cost: "CostSettings") -> float:
    """USD for this much machine time, or these tokens when per-token prices are set."""
    if cost.input_usd_per_mtok is not None or cost.output_usd_per_mtok is not None:
        return (prompt_tokens * (cost.input_usd_per_mtok or 0) + completion_tokens * (cost.output_usd_per_mtok or 0)) / 1e6
    return seconds / 3600 * cost.machine_hour_usd


def summarise(spec: VariantSpec, records: list[dict[str, Any]], cost: "CostSettings", seed: int) -> dict[str, Any]:
    correct = [1.0 if r["correct"] else 0.0 for r in records]
    latencies = sorted(r["latency_ms"] for r in records)
    n = len(records)
    mean = (lambda key: sum(r[key] or 0 for r in records) / n) if n else (lambda key: 0.0)
    summary: dict[str, Any] = {
        "label": spec.label, "variant": str(spec.variant), "adapter": spec.adapter, "k": spec.k, "n": n,
        "accuracy": round(sum(correct) / n, 4) if n else 0.0,
        "ci": [round(x, 4) for x in bootstrap_ci(correct, seed=seed)] if n else [0.0, 0.0],
        "f1": round(mean("f1"), 4) if n and any(r["f1"] is not None for r in records) else None,
        "acc_norm": round(sum(1.0 for r in records if r["acc_norm"]) / n, 4) if n and any(r["acc_norm"] is not None for r in records) else None,
        "latency_ms": {"mean": round(statistics.fmean(latencies), 2) if n else 0.0,
                       "median": round(statistics.median(latencies), 2) if n else 0.0,
                       "p90": round(latencies[min(n - 1, int(0.9 * n))], 2) if n else 0.0},
        "retrieval_ms_mean": round(mean("retrieval_ms"), 3),
        "prompt_tokens_mean": round(mean("prompt_tokens"), 1),
        "completion_tokens_mean": round(mean("completion_tokens"), 1),
        "retrieval": None,
        "found_relevant_share": (round(sum(1 for r in records if r["found_relevant"]) / n, 4) if spec.uses_retrieval and n else None),
        "cost_per_1k_usd": round(1000 * cost_of(mean("latency_ms") / 1000, mean("prompt_tokens"), mean("completion_tokens"), cost), 6),
        "training": None,
    }
    with_gold = [r for r in records if spec.uses_retrieval and r.get("gold_known")]
    if with_gold and spec.k:
        gold = "gold"
        ranked = [["gold" if r["gold_rank"] == i + 1 else f"other{i}" for i in range(len(r["retrieved"]))] for r in with_gold]
        summary["retrieval"] = {
            "questions": len(with_gold),
            "recall_at_k": round(statistics.fmean(recall_at_k(x, gold, spec.k) for x in ranked), 4),
            "mrr": round(statistics.fmean(reciprocal_rank(x, gold, spec.k) for x in ranked), 4),
            "ndcg": round(statistics.fmean(ndcg_at_k(x, gold, spec.k) for x in ranked), 4),
        }
    return summary


def training_info(workspace: "Workspace", adapter: str, cost: "CostSettings") -> dict[str, Any]:
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
    return {"adapter": adapter, "method": run.manifest.get("method"), "wall_seconds": wall,
            "cost_usd": round(cost_of(wall, 0, 0, cost.model_copy(update={"input_usd_per_mtok": None, "output_usd_per_mtok": None})), 6),
            "dataset": {"name": dataset.get("name"), "kind": dataset.get("kind"), "paraphrases": paraphrases,
                        "rows": dataset.get("rows")}}


# --- the runner ------------------------------------------------------------------------------


class _Models:
    """Loads the base model once and each fine-tuned run once."""

    def __init__(self, workspace: "Workspace", base: str) -> None:
        self.workspace = workspace
        self.base = base
        self._cache: dict[str | None, LanguageModel] = {}

    def get(self, adapter: str | None) -> LanguageModel:
        if adapter not in self._cache:
            from infuse.models import load_model
            from infuse.tuning.registry import resolve_for_inference

            model, adapters = resolve_for_inference(self.workspace, self.base, [adapter] if adapter else [])
            settings = self.workspace.settings.model.model_copy(update={"name": model, "adapters": adapters})
            self._cache[adapter] = load_model(settings)
        return self._cache[adapter]


def base_model_name(workspace: "Workspace", request: CompareRequest) -> str:
    if request.model or workspace.settings.model.name:
        return request.model or workspace.settings.model.name  # type: ignore[return-value]
    adapters = [s.adapter for s in request.variants if s.adapter]
    if adapters:
        from infuse.tuning.registry import open_run

        return open_run(workspace, adapters[0]).base_model
    raise CompareError("no model to evaluate: pass --model ID_OR_FOLDER or set [model] name in infuse.toml")


def evaluate_variants(workspace: "Workspace", questions: Sequence[Question], specs: Sequence[VariantSpec], models: _Models,
                      generation: GenerationConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None
                      ) -> dict[VariantSpec, list[dict[str, Any]]]:
    from infuse.rag import RagPipeline

    out: dict[VariantSpec, list[dict[str, Any]]] = {}
    for spec in specs:
        pipeline = workspace.rag_pipeline(models.get(spec.adapter), generation)
        tick = progress(spec.label, len(questions)) if progress else None
        records = []
        for question in questions:
            record = answer_question(pipeline, question, spec, generation)
            record["gold_known"] = question.gold_doc is not None
            records.append(record)
            if tick:
                tick(1)
        out[spec] = records
    return out


def apply_update(workspace: "Workspace", documents: Path, target: Path) -> tuple["Workspace", float]:
    """A copy of the workspace with `documents` replacing the documents of the same file names,
    re-ingested the way a RAG deployment would; returns it and the seconds the update took."""
    from infuse.workspace import Workspace

    if not documents.exists():
        raise CompareError(f"update documents {documents} not found; pass the folder of changed documents")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workspace.path, target, ignore=shutil.ignore_patterns("runs", "adapters", "datasets", "write.lock"))
    copy = Workspace.open(target)
    started = time.perf_counter()
    names = {p.name for p in (documents.rglob("*") if documents.is_dir() else [documents]) if p.is_file()}
    replaced = [d.doc_id for d in copy.knowledge_snapshot().iter_documents() if Path(d.document.source_path).name in names]
    copy.remove_documents(replaced)
    report = copy.ingest([documents])
    if report.failed:
        raise CompareError(f"{report.failed} update documents failed to ingest; see `infuse -w {target} status`")
    return copy, time.perf_counter() - started


def run_compare(workspace: "Workspace", qset: QuestionSet, request: CompareRequest,
                progress: Callable[[str, int], Callable[[int], None]] | None = None) -> CompareRun:
    """Evaluate every variant on the same questions and write ``WS/runs/NAME/`` (see module docstring)."""
    questions = qset.questions[: request.limit] if request.limit else list(qset.questions)
    if not questions:
        raise CompareError(f"question set {qset.name!r} is empty")
    name = request.run_name or time.strftime("%Y%m%d-%H%M%S") + f"-{qset.name}"
    run_dir = workspace.runs_dir / name
    if run_dir.exists():
        raise CompareError(f"run {name!r} already exists in {workspace.runs_dir}; choose another --name")
    model_name = base_model_name(workspace, request)
    with staged_folder(run_dir) as staging:   # the run appears complete or not at all
        return _run(workspace, qset, request, questions, name, model_name, staging, progress)


def _run(workspace: "Workspace", qset: QuestionSet, request: CompareRequest, questions: list[Question], name: str,
         model_name: str, staging: Path, progress) -> CompareRun:
    cost = workspace.settings.cost
    models = _Models(workspace, model_name)
    generation = GenerationConfig(max_new_tokens=request.max_new_tokens, temperature=0.0)
    by_spec = evaluate_variants(workspace, questions, request.variants, models, generation, progress)
    variants = []
    for spec, records in by_spec.items():
        summary = summarise(spec, records, cost, request.seed)
        if spec.adapter:
            summary["training"] = training_info(workspace, spec.adapter, cost)
        variants.append(summary)
    summary: dict[str, Any] = {
        "run": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workspace": str(workspace.path), "model": model_name,
        "questions": {"name": qset.name, "count": len(questions),
                      "kinds": {k: sum(1 for q in questions if str(q.kind) == k) for k in {str(q.kind) for q in questions}}},
        "cost_model": {"machine_hour_usd": cost.machine_hour_usd, "input_usd_per_mtok": cost.input_usd_per_mtok,
                       "output_usd_per_mtok": cost.output_usd_per_mtok,
                       "basis": "tokens" if cost.input_usd_per_mtok is not None or cost.output_usd_per_mtok is not None else "machine_time"},
        "variants": variants,
        "freshness": None,
    }
    results = [r for records in by_spec.values() for r in records]
    if request.update is not None:
        summary["freshness"], fresh_results = freshness(workspace, request, models, generation, staging, cost, progress)
        results += fresh_results
    with (staging / RESULTS_FILE).open("w", encoding="utf-8") as handle:
        for record in results:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (staging / SUMMARY_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return CompareRun(workspace.runs_dir / name, summary, results)


def freshness(workspace: "Workspace", request: CompareRequest, models: _Models, generation: GenerationConfig, run_dir: Path,
              cost: "CostSettings", progress) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy on changed facts after the update, and the share of answers still giving the old value."""
    assert request.update is not None
    update = request.update
    changed = [q for q in update.questions.questions if q.old_answers or q.old_answer_index is not None]
    if not changed:
        raise CompareError(f"question set {update.questions.name!r} has no questions with an old answer "
                           "(old_answer / old_answer_index); it cannot measure freshness")
    updated, seconds = apply_update(workspace, update.documents, run_dir / "updated-kb")   # kept for inspection
    specs = list(dict.fromkeys(request.variants))
    by_spec = evaluate_variants(updated, changed, specs, models, generation,
                                (lambda label, total: progress(f"update {label}", total)) if progress else None)
    rows, results = [], []
    for spec, records in by_spec.items():
        n = len(records)
        correct = [1.0 if r["correct"] else 0.0 for r in records]
        row = {"label": spec.label, "variant": str(spec.variant), "adapter": spec.adapter, "n": n,
               "accuracy": round(sum(correct) / n, 4), "ci": [round(x, 4) for x in bootstrap_ci(correct, seed=request.seed)],
               "stale_share": round(sum(1 for r in records if r["stale"]) / n, 4)}
        if spec.adapter:
            row["retrain_seconds"] = training_info(workspace, spec.adapter, cost)["wall_seconds"]
        rows.append(row)
        results += [{**r, "label": f"update:{spec.label}", "update": True} for r in records]
    return {"questions": update.questions.name, "documents": str(update.documents), "changed_facts": len(changed),
            "reindex_seconds": round(seconds, 3), "reindex_cost_usd": round(cost_of(seconds, 0, 0, cost), 6),
            "variants": rows}, results


def summary_field(mapping: Any, *keys: str) -> Any:
    """``summary["a"]["b"]`` for a run summary read from disk, or None where a level is missing
    or not an object (older or hand-written runs)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def load_run(workspace: "Workspace", name: str) -> CompareRun:
    path = workspace.runs_dir / name if not Path(name).is_dir() else Path(name)
    if not (path / SUMMARY_FILE).is_file():
        known = sorted(p.name for p in workspace.runs_dir.iterdir() if (p / SUMMARY_FILE).is_file()) if workspace.runs_dir.is_dir() else []
        raise CompareError(f"no compare run {name!r} in {workspace.runs_dir} (known: {', '.join(known) or 'none yet'})")
    summary = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
    return CompareRun(path, summary)


def latest_run(workspace: "Workspace") -> CompareRun | None:
    if not workspace.runs_dir.is_dir():
        return None
    runs = sorted((p for p in workspace.runs_dir.iterdir() if (p / SUMMARY_FILE).is_file()), key=lambda p: p.stat().st_mtime)
    return load_run(workspace, str(runs[-1])) if runs else None


__all__ = ["CompareError", "CompareRequest", "CompareRun", "UpdateScenario", "Variant", "VariantSpec", "apply_update",
           "latest_run", "load_run", "parse_variants", "run_compare", "summary_field"]
