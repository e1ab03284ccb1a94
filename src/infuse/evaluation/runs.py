"""A compare run on disk, as typed records: ``summary.json`` and ``results.jsonl``, read by one loader.

Why typed: the summary used to be a nested dict read by string keys in half a dozen modules
(compare, report, console, advisor, the CLI, the lab story, a benchmark), each with its own guard
against a missing level. Here the shape is written once; every reader uses attributes.

Why lenient: a run folder is a plain file a person may have written or edited by hand (the report
tests do), or an older infuse wrote. Parsing never fails on one odd value: a number that is not a
number reads as None, an entry that is not an object is dropped, and the readers show "–". What
*does* fail is a summary that says it is a newer schema than this infuse knows
(:data:`SCHEMA`), a missing summary or one that is not a JSON object: the error names the file and
what to do.

Versioning: ``summary.json`` carries ``"schema": "infuse-compare/1"`` (like question sets'
``infuse-questions/1``), which versions both files of the folder; a summary without it was written
before the field existed and reads as version 1. The JSON field names are exactly the ones the
previous, untyped writer used (``infuse compare --json`` prints :meth:`CompareSummary.to_json`).

>>> summary = CompareSummary.from_json({"run": "r", "variants": [{"label": "base", "variant": "base", "accuracy": 0.5}]})
>>> summary.variants[0].accuracy, summary.variants[0].kind
(0.5, <Variant.BASE: 'base'>)
>>> CompareSummary.from_json(summary.to_json()) == summary
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from infuse.errors import InfuseError

SCHEMA = "infuse-compare/1"
SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.jsonl"

__all__ = ["SCHEMA", "SUMMARY_FILE", "RESULTS_FILE", "Variant", "RunFileError", "LatencyStats", "RetrievalStats",
           "DatasetInfo", "TrainingInfo", "VariantSummary", "FreshnessRow", "Freshness", "QuestionsInfo", "CostModel",
           "CompareSummary", "QuestionRecord", "CompareRun", "read_run", "write_run"]


class Variant(StrEnum):
    BASE = "base"
    RAG = "rag"
    FT = "ft"
    FT_RAG = "ft+rag"


class RunFileError(InfuseError):
    """A compare run folder cannot be read: no summary.json, an unreadable one, or a newer schema."""


# --- lenient field readers: odd values read as None --------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN and missing values are None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None and number == int(number) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    return None


def _text(value: Any) -> str:
    """Free text from a hand-written field: lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return " | ".join(_text(v) for v in value)
    return str(value)


# --- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per answer over a variant's questions."""

    mean: float | None = None
    median: float | None = None
    p90: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> "LatencyStats | None":
        if not isinstance(data, Mapping):
            return None
        return cls(_num(data.get("mean")), _num(data.get("median")), _num(data.get("p90")))

    @property
    def typical(self) -> float | None:
        """The median, else the mean (a hand-written summary may have only one)."""
        return self.median if self.median is not None else self.mean

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "median": self.median, "p90": self.p90}


@dataclass(frozen=True)
class RetrievalStats:
    """Retrieval quality over the questions whose gold document is known."""

    questions: int | None = None
    recall_at_k: float | None = None
    mrr: float | None = None
    ndcg: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> "RetrievalStats | None":
        if not isinstance(data, Mapping):
            return None
        return cls(_int(data.get("questions")), _num(data.get("recall_at_k")), _num(data.get("mrr")), _num(data.get("ndcg")))

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "recall_at_k": self.recall_at_k, "mrr": self.mrr, "ndcg": self.ndcg}


@dataclass(frozen=True)
class DatasetInfo:
    """The training dataset of an adapter; ``extra`` keeps any further fields a writer added."""

    name: str | None = None
    kind: str | None = None
    paraphrases: float | None = None       # per chunk; 0 for a cpt dataset, None when unknown
    rows: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN = ("name", "kind", "paraphrases", "rows")

    @classmethod
    def from_json(cls, data: Any) -> "DatasetInfo | None":
        if not isinstance(data, Mapping):
            return None
        paraphrases = _num(data.get("paraphrases"))
        return cls(_str(data.get("name")), _str(data.get("kind")),
                   int(paraphrases) if paraphrases is not None and paraphrases == int(paraphrases) else paraphrases,
                   _int(data.get("rows")), {k: v for k, v in data.items() if k not in cls._KNOWN})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "paraphrases": self.paraphrases, "rows": self.rows, **self.extra}

    @property
    def paraphrase_count(self) -> float | None:
        """Paraphrases per chunk as a point on a paraphrase curve: a ``paraphrase`` dataset's count,
        0 for ``cpt`` (the plain text), None for other kinds."""
        if self.kind == "cpt":
            return 0.0
        return float(self.paraphrases) if self.kind == "paraphrase" and self.paraphrases is not None else None


@dataclass(frozen=True)
class TrainingInfo:
    """How an adapter was trained and what it cost once."""

    adapter: str | None = None
    method: str | None = None
    wall_seconds: float | None = None
    cost_usd: float | None = None
    dataset: DatasetInfo | None = None

    @classmethod
    def from_json(cls, data: Any) -> "TrainingInfo | None":
        if not isinstance(data, Mapping):
            return None
        return cls(_str(data.get("adapter")), _str(data.get("method")), _num(data.get("wall_seconds")),
                   _num(data.get("cost_usd")), DatasetInfo.from_json(data.get("dataset")))

    def to_json(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "method": self.method, "wall_seconds": self.wall_seconds, "cost_usd": self.cost_usd,
                "dataset": self.dataset.to_json() if self.dataset else None}


@dataclass(frozen=True)
class VariantSummary:
    """One variant's measurements over the run's questions."""

    label: str
    variant: str | None = None            # "base" | "rag" | "ft" | "ft+rag" (see :attr:`kind`)
    adapter: str | None = None
    k: int | None = None
    n: int | None = None
    accuracy: float | None = None
    ci: tuple[float, float] | None = None   # 95% bootstrap interval of the accuracy
    f1: float | None = None
    acc_norm: float | None = None
    latency_ms: LatencyStats | None = None
    retrieval_ms_mean: float | None = None
    prompt_tokens_mean: float | None = None
    completion_tokens_mean: float | None = None
    retrieval: RetrievalStats | None = None
    found_relevant_share: float | None = None
    cost_per_1k_usd: float | None = None
    training: TrainingInfo | None = None

    @property
    def kind(self) -> Variant | None:
        """The variant family, or None for a name this infuse does not know."""
        try:
            return Variant(self.variant) if self.variant else None
        except ValueError:
            return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], position: int = 0) -> "VariantSummary":
        variant = _str(data.get("variant"))
        return cls(
            label=_str(data.get("label")) or variant or f"variant-{position + 1}", variant=variant,
            adapter=_str(data.get("adapter")), k=_int(data.get("k")), n=_int(data.get("n")),
            accuracy=_num(data.get("accuracy")), ci=_interval(data.get("ci")), f1=_num(data.get("f1")),
            acc_norm=_num(data.get("acc_norm")), latency_ms=LatencyStats.from_json(data.get("latency_ms")),
            retrieval_ms_mean=_num(data.get("retrieval_ms_mean")), prompt_tokens_mean=_num(data.get("prompt_tokens_mean")),
            completion_tokens_mean=_num(data.get("completion_tokens_mean")),
            retrieval=RetrievalStats.from_json(data.get("retrieval")),
            found_relevant_share=_num(data.get("found_relevant_share")), cost_per_1k_usd=_num(data.get("cost_per_1k_usd")),
            training=TrainingInfo.from_json(data.get("training")))

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "variant": self.variant, "adapter": self.adapter, "k": self.k, "n": self.n,
            "accuracy": self.accuracy, "ci": list(self.ci) if self.ci else None, "f1": self.f1, "acc_norm": self.acc_norm,
            "latency_ms": self.latency_ms.to_json() if self.latency_ms else None,
            "retrieval_ms_mean": self.retrieval_ms_mean, "prompt_tokens_mean": self.prompt_tokens_mean,
            "completion_tokens_mean": self.completion_tokens_mean,
            "retrieval": self.retrieval.to_json() if self.retrieval else None,
            "found_relevant_share": self.found_relevant_share, "cost_per_1k_usd": self.cost_per_1k_usd,
            "training": self.training.to_json() if self.training else None,
        }


@dataclass(frozen=True)
class FreshnessRow:
    """One variant after the update: accuracy on the changed facts, share of old answers."""

    label: str
    variant: str | None = None
    adapter: str | None = None
    n: int | None = None
    accuracy: float | None = None
    ci: tuple[float, float] | None = None
    stale_share: float | None = None
    retrain_seconds: float | None = None   # fine-tuned variants: what retraining took

    @property
    def kind(self) -> Variant | None:
        try:
            return Variant(self.variant) if self.variant else None
        except ValueError:
            return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], position: int = 0) -> "FreshnessRow":
        variant = _str(data.get("variant"))
        return cls(_str(data.get("label")) or variant or f"variant-{position + 1}", variant, _str(data.get("adapter")),
                   _int(data.get("n")), _num(data.get("accuracy")), _interval(data.get("ci")), _num(data.get("stale_share")),
                   _num(data.get("retrain_seconds")))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"label": self.label, "variant": self.variant, "adapter": self.adapter, "n": self.n,
                                "accuracy": self.accuracy, "ci": list(self.ci) if self.ci else None,
                                "stale_share": self.stale_share}
        if self.retrain_seconds is not None:
            data["retrain_seconds"] = self.retrain_seconds
        return data


@dataclass(frozen=True)
class Freshness:
    """The update scenario: changed documents re-ingested for RAG, adapters kept as trained."""

    questions: str | None = None            # the question set about the changed facts
    documents: str | None = None
    changed_facts: int | None = None
    reindex_seconds: float | None = None
    reindex_cost_usd: float | None = None
    variants: tuple[FreshnessRow, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> "Freshness | None":
        if not isinstance(data, Mapping):
            return None
        rows = data.get("variants")
        return cls(_str(data.get("questions")), _str(data.get("documents")), _int(data.get("changed_facts")),
                   _num(data.get("reindex_seconds")), _num(data.get("reindex_cost_usd")),
                   tuple(FreshnessRow.from_json(r, i) for i, r in enumerate(rows if isinstance(rows, list) else [])
                         if isinstance(r, Mapping)))

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "documents": self.documents, "changed_facts": self.changed_facts,
                "reindex_seconds": self.reindex_seconds, "reindex_cost_usd": self.reindex_cost_usd,
                "variants": [row.to_json() for row in self.variants]}


@dataclass(frozen=True)
class QuestionsInfo:
    """The question set a run asked: its name, size and question kinds."""

    name: str | None = None
    count: int | None = None
    kinds: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "QuestionsInfo | None":
        if isinstance(data, str) and data:
            return cls(name=data)          # a hand-written summary may just name the set
        if not isinstance(data, Mapping):
            return None
        kinds = {str(k): n for k, v in _obj(data.get("kinds")).items() if (n := _int(v)) is not None}
        return cls(_str(data.get("name")), _int(data.get("count")), kinds)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "kinds": dict(self.kinds)}


@dataclass(frozen=True)
class CostModel:
    """The prices a run's costs were computed with (``[cost]`` in infuse.toml at the time)."""

    machine_hour_usd: float | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    basis: str | None = None                # "machine_time" | "tokens"
    gpu_hour_usd: float | None = None       # the name of machine_hour_usd in early runs

    @classmethod
    def from_json(cls, data: Any) -> "CostModel | None":
        if not isinstance(data, Mapping):
            return None
        return cls(_num(data.get("machine_hour_usd")), _num(data.get("input_usd_per_mtok")),
                   _num(data.get("output_usd_per_mtok")), _str(data.get("basis")), _num(data.get("gpu_hour_usd")))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"machine_hour_usd": self.machine_hour_usd, "input_usd_per_mtok": self.input_usd_per_mtok,
                                "output_usd_per_mtok": self.output_usd_per_mtok, "basis": self.basis}
        if self.gpu_hour_usd is not None:
            data["gpu_hour_usd"] = self.gpu_hour_usd
        return data


@dataclass(frozen=True)
class CompareSummary:
    """``summary.json`` of a compare run (see :mod:`infuse.evaluation.compare` for how it is measured)."""

    run: str | None = None
    created: str | None = None
    workspace: str | None = None
    model: str | None = None
    questions: QuestionsInfo | None = None
    cost_model: CostModel | None = None
    variants: tuple[VariantSummary, ...] = ()
    freshness: Freshness | None = None
    schema: str = SCHEMA

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: Path | str = "summary.json") -> "CompareSummary":
        """The summary from its JSON object; `source` names the file in errors. A summary without
        ``schema`` was written before the field existed (version 1); a newer version is an error."""
        schema = data.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise RunFileError(f"{source}: schema {schema!r} is not one this infuse reads ({SCHEMA!r}); "
                               "upgrade infuse to read this run, or run `infuse compare` again with this version")
        variants = data.get("variants")
        return cls(
            run=_str(data.get("run")), created=_str(data.get("created")), workspace=_str(data.get("workspace")),
            model=_str(data.get("model")), questions=QuestionsInfo.from_json(data.get("questions")),
            cost_model=CostModel.from_json(data.get("cost_model")),
            variants=tuple(VariantSummary.from_json(v, i) for i, v in enumerate(variants if isinstance(variants, list) else [])
                           if isinstance(v, Mapping)),
            freshness=Freshness.from_json(data.get("freshness")))

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "run": self.run, "created": self.created, "workspace": self.workspace,
                "model": self.model, "questions": self.questions.to_json() if self.questions else None,
                "cost_model": self.cost_model.to_json() if self.cost_model else None,
                "variants": [v.to_json() for v in self.variants],
                "freshness": self.freshness.to_json() if self.freshness else None}

    def variant(self, label: str) -> VariantSummary | None:
        return next((v for v in self.variants if v.label == label), None)


# --- the per-question records ------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionRecord:
    """One question through one variant: a line of ``results.jsonl``."""

    question_id: str
    label: str                              # the variant's label; "update:LABEL" after the update
    kind: str | None = None                 # "mc" | "short"
    question: str = ""
    answers: tuple[str, ...] = ()
    prediction: str = ""
    correct: bool | None = None
    acc_norm: bool | None = None            # multiple choice: length-normalised log-likelihood right
    f1: float | None = None                 # short answer: token (or character) F1
    stale: bool | None = None               # answered the old value (update questions)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    retrieved: tuple[str, ...] = ()         # source paths, in rank order
    gold_rank: int | None = None
    found_relevant: bool | None = None
    retrieval_ms: float | None = None
    latency_ms: float | None = None
    gold_known: bool | None = None
    update: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "QuestionRecord":
        answers = data.get("answers")
        answers = [answers] if isinstance(answers, str) and answers else answers if isinstance(answers, list) else []
        retrieved = data.get("retrieved")
        return cls(
            question_id=_text(data.get("question_id")), label=_text(data.get("label")), kind=_str(data.get("kind")),
            question=_text(data.get("question")), answers=tuple(_text(a) for a in answers),
            prediction=_text(data.get("prediction")), correct=_bool(data.get("correct")), acc_norm=_bool(data.get("acc_norm")),
            f1=_num(data.get("f1")), stale=_bool(data.get("stale")), prompt_tokens=_int(data.get("prompt_tokens")),
            completion_tokens=_int(data.get("completion_tokens")),
            retrieved=tuple(_text(r) for r in retrieved) if isinstance(retrieved, list) else (),
            gold_rank=_int(data.get("gold_rank")), found_relevant=_bool(data.get("found_relevant")),
            retrieval_ms=_num(data.get("retrieval_ms")), latency_ms=_num(data.get("latency_ms")),
            gold_known=_bool(data.get("gold_known")), update=data.get("update") is True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "question_id": self.question_id, "label": self.label, "kind": self.kind, "question": self.question,
            "answers": list(self.answers), "prediction": self.prediction, "correct": self.correct, "acc_norm": self.acc_norm,
            "f1": self.f1, "stale": self.stale, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "retrieved": list(self.retrieved), "gold_rank": self.gold_rank, "found_relevant": self.found_relevant,
            "retrieval_ms": self.retrieval_ms, "latency_ms": self.latency_ms, "gold_known": self.gold_known}
        if self.update:
            data["update"] = True
        return data

    def after_update(self) -> "QuestionRecord":
        """This record as one of the update scenario's (label ``update:LABEL``)."""
        return replace(self, label=f"update:{self.label}", update=True)


# --- the run folder ----------------------------------------------------------------------------


@dataclass
class CompareRun:
    """A compare run folder: its summary, its per-question records, and what could not be read."""

    path: Path
    summary: CompareSummary
    records: list[QuestionRecord] = field(default_factory=list)
    results_missing: bool = False           # no results.jsonl in the folder
    bad_result_lines: int = 0               # lines of results.jsonl that were not a record


def write_run(folder: Path, summary: CompareSummary, records: Iterable[QuestionRecord]) -> None:
    """Write ``summary.json`` and ``results.jsonl`` into `folder` (a staging folder: the caller renames it)."""
    with (folder / RESULTS_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    (folder / SUMMARY_FILE).write_text(json.dumps(summary.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_run(folder: Path) -> CompareRun:
    """Read a compare run folder: ``summary.json`` (required) and ``results.jsonl`` (optional;
    lines that are not a record are counted in ``bad_result_lines`` and skipped)."""
    folder = Path(folder)
    summary_path = folder / SUMMARY_FILE
    if not folder.is_dir():
        raise RunFileError(f"{folder}: no such compare run folder (run `infuse compare` first)")
    if not summary_path.is_file():
        raise RunFileError(f"{folder}: no summary.json in this folder; is it a compare run? "
                           f"(run `infuse compare`, or pass the run's folder)")
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{summary_path}: cannot read the run summary: {exc}") from exc
    if not isinstance(data, dict):
        raise RunFileError(f"{summary_path}: expected a JSON object, found {type(data).__name__}")
    run = CompareRun(folder, CompareSummary.from_json(data, summary_path))
    results_path = folder / RESULTS_FILE
    if not results_path.is_file():
        run.results_missing = True
        return run
    with results_path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                run.bad_result_lines += 1
                continue
            if isinstance(row, dict) and row.get("label") is not None:
                run.records.append(QuestionRecord.from_json(row))
            else:
                run.bad_result_lines += 1
    return run
