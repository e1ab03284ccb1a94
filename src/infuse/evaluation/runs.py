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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from infuse.errors import InfuseError

SCHEMA = "infuse-compare/1"
SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.jsonl"
NOISY_SPREAD = 0.5  # repeated timings of one question differing by more than this (relative) are noise

__all__ = [
    "SCHEMA",
    "SUMMARY_FILE",
    "RESULTS_FILE",
    "Variant",
    "RunFileError",
    "LatencyStats",
    "RetrievalStats",
    "DatasetInfo",
    "TrainingInfo",
    "StyleStats",
    "LeakStats",
    "VariantSummary",
    "FreshnessRow",
    "Freshness",
    "QuestionsInfo",
    "CostModel",
    "Timing",
    "NOISY_SPREAD",
    "CompareSummary",
    "QuestionRecord",
    "CompareRun",
    "read_run",
    "write_run",
]


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


def _whole(value: Any) -> float | None:
    """A number, as an int when it is a whole one (a count written as 2 reads back as 2)."""
    number = _num(value)
    return int(number) if number is not None and number == int(number) else number


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


# --- one reader and one writer for every record ----------------------------------------------

_OMIT_NEVER = object()


def _field(
    read: Callable[[Any], Any],
    default: Any = None,
    *,
    factory: Callable[[], Any] | None = None,
    omit: Any = _OMIT_NEVER,
) -> Any:
    """A record field read from JSON by `read` (lenient: odd values become None); written unless
    its value is `omit` (fields a writer only adds when they apply)."""
    metadata = {"read": read, "omit": omit}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _dump(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    return value


class _Record:
    """A frozen dataclass read from and written to JSON field by field (see :func:`_field`)."""

    @classmethod
    def _read_fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {f.name: f.metadata["read"](data.get(f.name)) for f in fields(cls) if "read" in f.metadata}  # type: ignore[arg-type]  # subclasses are dataclasses; the mixin is not

    @classmethod
    def from_json(cls, data: Any) -> Self | None:
        """The record from its JSON object (None when `data` is not an object)."""
        return cls(**cls._read_fields(data)) if isinstance(data, Mapping) else None

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: _dump(getattr(self, f.name))
            for f in fields(self)  # type: ignore[arg-type]  # as above
            if "read" in f.metadata and getattr(self, f.name) is not f.metadata["omit"]
        }


def _records(cls: type[_Record]) -> Callable[[Any], tuple[Any, ...]]:
    """A reader for a list of `cls` objects: entries that are not objects are dropped, and an
    entry without a label is named by its variant, else by its position (``variant-2``)."""

    def read(value: Any) -> tuple[Any, ...]:
        items = value if isinstance(value, list) else []
        return tuple(
            cls.from_json({**item, "label": _str(item.get("label")) or _str(item.get("variant")) or f"variant-{i + 1}"})
            for i, item in enumerate(items)
            if isinstance(item, Mapping)
        )

    return read


def _texts(value: Any) -> tuple[str, ...]:
    """A list of strings; a single string is a list of one."""
    items = [value] if isinstance(value, str) and value else value if isinstance(value, list) else []
    return tuple(_text(v) for v in items)


def _counts(value: Any) -> dict[str, int]:
    return {str(k): n for k, v in _obj(value).items() if (n := _int(v)) is not None}


# --- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats(_Record):
    """Milliseconds per answer over a variant's questions."""

    mean: float | None = _field(_num)
    median: float | None = _field(_num)
    p90: float | None = _field(_num)

    @property
    def typical(self) -> float | None:
        """The median, else the mean (a hand-written summary may have only one)."""
        return self.median if self.median is not None else self.mean


@dataclass(frozen=True)
class RetrievalStats(_Record):
    """Retrieval quality over the questions whose gold document is known."""

    questions: int | None = _field(_int)
    recall_at_k: float | None = _field(_num)
    mrr: float | None = _field(_num)
    ndcg: float | None = _field(_num)


@dataclass(frozen=True)
class DatasetInfo(_Record):
    """The training dataset of an adapter; ``extra`` keeps any further fields a writer added."""

    name: str | None = _field(_str)
    kind: str | None = _field(_str)
    paraphrases: float | None = _field(_whole)  # per chunk (paraphrase datasets)
    rows: int | None = _field(_int)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Self | None:
        if not isinstance(data, Mapping):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**cls._read_fields(data), extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.extra}

    @property
    def paraphrase_count(self) -> float | None:
        """Paraphrases per chunk as a point on a paraphrase curve: a ``paraphrase`` dataset's count,
        0 for ``cpt`` (the plain text), None for other kinds."""
        if self.kind == "cpt":
            return 0.0
        return float(self.paraphrases) if self.kind == "paraphrase" and self.paraphrases is not None else None


@dataclass(frozen=True)
class TrainingInfo(_Record):
    """How an adapter was trained and what it cost once."""

    adapter: str | None = _field(_str)
    method: str | None = _field(_str)
    wall_seconds: float | None = _field(_num)
    cost_usd: float | None = _field(_num)
    dataset: DatasetInfo | None = _field(DatasetInfo.from_json)


@dataclass(frozen=True)
class StyleStats(_Record):
    """How often a variant's generated answers follow the run's house style (exact rules,
    :class:`infuse.rag.style.HouseStyle`), over the first `n` questions."""

    style: str | None = _field(_str)  # the house style's name
    n: int | None = _field(_int)
    adherence: float | None = _field(_num)
    ci: tuple[float, float] | None = _field(_interval)  # 95% bootstrap interval of the adherence


@dataclass(frozen=True)
class LeakStats(_Record):
    """What a variant tells a user about documents that user may not read.

    ``accuracy``: on the `n` questions whose gold document the user cannot read, asked as that
    user (retrieval filtered by their access); ``leak_rate``: the share of those questions
    answered correctly above chance, ``(accuracy - chance) / (1 - chance)``, at least 0 (a
    variant that knows nothing leaks 0, one that answers all of them leaks 1)."""

    user: str | None = _field(_str)
    n: int | None = _field(_int)
    accuracy: float | None = _field(_num)
    chance: float | None = _field(_num)
    leak_rate: float | None = _field(_num)
    ci: tuple[float, float] | None = _field(_interval)  # 95% bootstrap interval of the leak rate


@dataclass(frozen=True)
class _Measured(_Record):
    """A variant's accuracy over a set of questions (the fields a summary row and a freshness row share)."""

    label: str = _field(_text, "")
    variant: str | None = _field(_str)  # "base" | "rag" | "ft" | "ft+rag" (see :attr:`kind`)
    adapter: str | None = _field(_str)
    n: int | None = _field(_int)
    accuracy: float | None = _field(_num)
    ci: tuple[float, float] | None = _field(_interval)  # 95% bootstrap interval of the accuracy

    @property
    def kind(self) -> Variant | None:
        """The variant family, or None for a name this infuse does not know."""
        try:
            return Variant(self.variant) if self.variant else None
        except ValueError:
            return None


@dataclass(frozen=True)
class VariantSummary(_Measured):
    """One variant's measurements over the run's questions."""

    k: int | None = _field(_int)
    f1: float | None = _field(_num)
    acc_norm: float | None = _field(_num)
    latency_ms: LatencyStats | None = _field(LatencyStats.from_json)
    retrieval_ms_mean: float | None = _field(_num)
    prompt_tokens_mean: float | None = _field(_num)
    completion_tokens_mean: float | None = _field(_num)
    retrieval: RetrievalStats | None = _field(RetrievalStats.from_json)
    found_relevant_share: float | None = _field(_num)
    cost_per_1k_usd: float | None = _field(_num)
    training: TrainingInfo | None = _field(TrainingInfo.from_json)
    style: StyleStats | None = _field(StyleStats.from_json, omit=None)  # runs with a house style
    leak: LeakStats | None = _field(LeakStats.from_json, omit=None)  # runs asked as a user


@dataclass(frozen=True)
class FreshnessRow(_Measured):
    """One variant after the update: accuracy on the changed facts, share of old answers."""

    stale_share: float | None = _field(_num)
    retrain_seconds: float | None = _field(_num, omit=None)  # fine-tuned variants: what retraining took


@dataclass(frozen=True)
class Freshness(_Record):
    """The update scenario: changed documents re-ingested for RAG, adapters kept as trained."""

    questions: str | None = _field(_str)  # the question set about the changed facts
    documents: str | None = _field(_str)
    changed_facts: int | None = _field(_int)
    reindex_seconds: float | None = _field(_num)
    reindex_cost_usd: float | None = _field(_num)
    variants: tuple[FreshnessRow, ...] = _field(_records(FreshnessRow), ())


@dataclass(frozen=True)
class QuestionsInfo(_Record):
    """The question set a run asked: its name, size and question kinds."""

    name: str | None = _field(_str)
    count: int | None = _field(_int)
    kinds: Mapping[str, int] = _field(_counts, factory=dict)
    # the accuracy of guessing: mean of 1/options over mc questions, 0 for open ones (the
    # advisor's floor); absent in runs written before it was recorded
    chance: float | None = _field(_num, omit=None)

    @classmethod
    def from_json(cls, data: Any) -> Self | None:
        if isinstance(data, str) and data:
            return cls(name=data)  # a hand-written summary may just name the set
        return super().from_json(data)


@dataclass(frozen=True)
class CostModel(_Record):
    """The prices a run's costs were computed with (``[cost]`` in infuse.toml at the time)."""

    machine_hour_usd: float | None = _field(_num)
    input_usd_per_mtok: float | None = _field(_num)
    output_usd_per_mtok: float | None = _field(_num)
    basis: str | None = _field(_str)  # "machine_time" | "tokens"
    gpu_hour_usd: float | None = _field(_num, omit=None)  # the name of machine_hour_usd in early runs


def _load(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3:
        numbers = [_num(v) for v in value]
        if all(n is not None for n in numbers):
            return (numbers[0], numbers[1], numbers[2])  # type: ignore[return-value]  # checked above
    return None


@dataclass(frozen=True)
class Timing(_Record):
    """How the latencies were measured and how quiet the machine was (see
    :func:`infuse.evaluation.compare.evaluate_variants`); absent in runs written before it."""

    warmup: bool | None = _field(_bool)  # one untimed answer per variant first
    order: str | None = _field(_str)  # "interleaved in blocks of 10": variants alternate per block of questions
    cpu_count: int | None = _field(_int)
    load_before: tuple[float, float, float] | None = _field(_load)  # os.getloadavg(): 1, 5, 15 min
    load_after: tuple[float, float, float] | None = _field(_load)
    repeats: int | None = _field(_int)  # (question, variant) pairs timed twice
    repeat_spread: float | None = _field(_num)  # median relative difference between the two timings

    @property
    def peak_load(self) -> float | None:
        """The higher 1-minute load average of before and after."""
        loads = [load[0] for load in (self.load_before, self.load_after) if load is not None]
        return max(loads) if loads else None

    @property
    def overloaded(self) -> bool:
        """The load was above the number of cores: other work competed for the CPU."""
        peak = self.peak_load
        return peak is not None and self.cpu_count is not None and peak > self.cpu_count

    @property
    def spread_noisy(self) -> bool:
        return self.repeat_spread is not None and self.repeat_spread > NOISY_SPREAD

    @property
    def noisy(self) -> bool:
        return self.overloaded or self.spread_noisy

    def caveat(self) -> str | None:
        """One sentence for the report and the advice when the timings are noisy, else None."""
        if not self.noisy:
            return None
        why = []
        if self.spread_noisy:
            assert self.repeat_spread is not None
            why.append(f"the same question timed twice differed by {100 * self.repeat_spread:.0f}% (median)")
        if self.overloaded:
            why.append(f"the machine's load ({self.peak_load:g}) was above its {self.cpu_count} cores")
        return (
            "Timings are noisy: "
            + " and ".join(why)
            + "; treat latency and cost differences with care and re-run compare on a quiet machine."
        )


@dataclass(frozen=True)
class CompareSummary(_Record):
    """``summary.json`` of a compare run (see :mod:`infuse.evaluation.compare` for how it is measured)."""

    schema: str = _field(lambda value: SCHEMA, SCHEMA)  # checked by from_json before it is read
    run: str | None = _field(_str)
    created: str | None = _field(_str)
    workspace: str | None = _field(_str)
    model: str | None = _field(_str)
    questions: QuestionsInfo | None = _field(QuestionsInfo.from_json)
    cost_model: CostModel | None = _field(CostModel.from_json)
    variants: tuple[VariantSummary, ...] = _field(_records(VariantSummary), ())
    freshness: Freshness | None = _field(Freshness.from_json)
    timing: Timing | None = _field(Timing.from_json, omit=None)

    @classmethod
    def from_json(cls, data: Any, source: Path | str = SUMMARY_FILE) -> Self:
        """The summary from its JSON object; `source` names the file in errors. A summary without
        ``schema`` was written before the field existed (version 1); a newer version is an error."""
        if not isinstance(data, Mapping):
            raise RunFileError(f"{source}: expected a JSON object, found {type(data).__name__}")
        schema = data.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise RunFileError(
                f"{source}: schema {schema!r} is not one this infuse reads ({SCHEMA!r}); "
                "upgrade infuse to read this run, or run `infuse compare` again with this version"
            )
        return cls(**cls._read_fields(data))

    def variant(self, label: str) -> VariantSummary | None:
        return next((v for v in self.variants if v.label == label), None)


# --- the per-question records ------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionRecord(_Record):
    """One question through one variant: a line of ``results.jsonl``."""

    question_id: str = _field(_text, "")
    label: str = _field(_text, "")  # the variant's label; "update:LABEL" after the update, "leak:LABEL" asked as a user
    kind: str | None = _field(_str)  # "mc" | "short"
    question: str = _field(_text, "")
    answers: tuple[str, ...] = _field(_texts, ())
    prediction: str = _field(_text, "")
    correct: bool | None = _field(_bool)
    acc_norm: bool | None = _field(_bool)  # multiple choice: length-normalised log-likelihood right
    f1: float | None = _field(_num)  # short answer: token (or character) F1
    stale: bool | None = _field(_bool)  # answered the old value (update questions)
    prompt_tokens: int | None = _field(_int)
    completion_tokens: int | None = _field(_int)
    retrieved: tuple[str, ...] = _field(_texts, ())  # source paths of the passages the model saw, in rank order
    passages: tuple[str, ...] = _field(_texts, (), omit=())  # the start of each of those passages' text
    gold_rank: int | None = _field(_int)
    found_relevant: bool | None = _field(_bool)
    retrieval_ms: float | None = _field(_num)
    latency_ms: float | None = _field(_num)
    gold_known: bool | None = _field(_bool)
    styled_answer: str | None = _field(_str, omit=None)  # runs with a house style: the generated answer
    styled: bool | None = _field(_bool, omit=None)  # ... and whether it follows the style
    update: bool = _field(lambda value: value is True, False, omit=False)
    asked_as: str | None = _field(_str, omit=None)  # the leak check: the user the question was asked as

    def after_update(self) -> QuestionRecord:
        """This record as one of the update scenario's (label ``update:LABEL``)."""
        return replace(self, label=f"update:{self.label}", update=True)

    def leak_check(self, user: str) -> QuestionRecord:
        """This record as one of the leak check's, asked as `user` (label ``leak:LABEL``)."""
        return replace(self, label=f"leak:{self.label}", asked_as=user)


# --- the run folder ----------------------------------------------------------------------------


@dataclass
class CompareRun:
    """A compare run folder: its summary, its per-question records, and what could not be read."""

    path: Path
    summary: CompareSummary
    records: list[QuestionRecord] = field(default_factory=list)
    results_missing: bool = False  # no results.jsonl in the folder
    bad_result_lines: int = 0  # lines of results.jsonl that were not a record


def write_run(folder: Path, summary: CompareSummary, records: Iterable[QuestionRecord]) -> None:
    """Write ``summary.json`` and ``results.jsonl`` into `folder` (a staging folder: the caller renames it)."""
    with (folder / RESULTS_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    (folder / SUMMARY_FILE).write_text(
        json.dumps(summary.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def read_run(folder: Path) -> CompareRun:
    """Read a compare run folder: ``summary.json`` (required) and ``results.jsonl`` (optional;
    lines that are not a record are counted in ``bad_result_lines`` and skipped)."""
    folder = Path(folder)
    summary_path = folder / SUMMARY_FILE
    if not folder.is_dir():
        raise RunFileError(f"{folder}: no such compare run folder (run `infuse compare` first)")
    if not summary_path.is_file():
        raise RunFileError(
            f"{folder}: no summary.json in this folder; is it a compare run? "
            f"(run `infuse compare`, or pass the run's folder)"
        )
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{summary_path}: cannot read the run summary: {exc}") from exc
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
            record = QuestionRecord.from_json(row) if isinstance(row, dict) and row.get("label") is not None else None
            if record is None:
                run.bad_result_lines += 1
            else:
                run.records.append(record)
    return run
