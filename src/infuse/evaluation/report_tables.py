"""The tables of a compare report (variants, freshness, disagreements) and their number formats.

Split from :mod:`infuse.evaluation.report` so that the tables (what the report says) sit apart
from the plots (:mod:`infuse.evaluation.report_plots`) and the two renderings (Markdown, HTML)
that lay both out. Every cell is plain text here; escaping is the renderer's job. A value the
run does not have is shown as "–".
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infuse.evaluation.runs import CompareRun, Freshness, QuestionRecord, Variant, VariantSummary

__all__ = [
    "MAX_DISAGREEMENTS",
    "Table",
    "Disagreement",
    "variants_table",
    "freshness_table",
    "disagreements",
    "fmt_pct",
    "fmt_acc",
    "fmt_usd",
    "fmt_ms",
    "fmt_seconds",
]

MAX_DISAGREEMENTS = 10
_RETRIEVING = (Variant.RAG, Variant.FT_RAG)


# --------------------------------------------------------------------------------------------
# Number formats


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def fmt_acc(accuracy: float | None, ci: tuple[float, float] | None) -> str:
    """Accuracy with its 95% interval: ``90.0% (80.0–97.0)``."""
    if accuracy is None:
        return "–"
    if ci is None:
        return fmt_pct(accuracy)
    return f"{fmt_pct(accuracy)} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    # two significant digits for small amounts: $0.0067, $0.022
    digits = max(2, 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    if digits > 2:
        text = text.rstrip("0")
    return f"${text}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _tokens(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Tables


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


Column = tuple[str, Callable[[VariantSummary], str]]


def variants_table(variants: Sequence[VariantSummary]) -> Table:
    """One row per variant; optional columns only when some variant has a value for them."""

    def has(getter: Callable[[VariantSummary], Any]) -> bool:
        return any(getter(v) is not None for v in variants)

    columns: list[Column] = [
        ("variant", lambda v: v.label),
        ("n", lambda v: _count(v.n)),
        ("accuracy (95% CI)", lambda v: fmt_acc(v.accuracy, v.ci)),
    ]
    if has(lambda v: v.f1):
        columns.append(("F1", lambda v: fmt_pct(v.f1)))
    if has(lambda v: v.acc_norm):
        columns.append(("acc_norm", lambda v: fmt_pct(v.acc_norm)))
    styled = next((v.style for v in variants if v.style), None)
    if styled is not None:
        columns.append(
            (
                f"{styled.style or 'house'} style adherence (95% CI)",
                lambda v: fmt_acc(v.style.adherence, v.style.ci) if v.style else "–",
            )
        )
    leak = next((v.leak for v in variants if v.leak), None)
    if leak is not None:
        columns.append(
            (
                f"leak rate for {leak.user} ({leak.n} unreadable; 95% CI)",
                lambda v: fmt_acc(v.leak.leak_rate, v.leak.ci) if v.leak else "–",
            )
        )
    columns += [
        ("latency median", lambda v: fmt_ms(v.latency_ms.median if v.latency_ms else None)),
        ("latency p90", lambda v: fmt_ms(v.latency_ms.p90 if v.latency_ms else None)),
    ]
    if has(lambda v: v.retrieval_ms_mean or None):
        columns.append(
            (
                "retrieval mean",
                lambda v: "–" if v.k is None and not v.retrieval_ms_mean else fmt_ms(v.retrieval_ms_mean),
            )
        )
    columns += [
        ("tokens in / out", lambda v: f"{_tokens(v.prompt_tokens_mean)} / {_tokens(v.completion_tokens_mean)}"),
        ("cost / 1k questions", lambda v: fmt_usd(v.cost_per_1k_usd)),
    ]
    if has(lambda v: v.retrieval.recall_at_k if v.retrieval else None):
        columns.append(("recall@k", lambda v: fmt_pct(v.retrieval.recall_at_k if v.retrieval else None)))
    if has(lambda v: v.retrieval.mrr if v.retrieval else None):
        columns.append(("MRR", lambda v: _ratio(v.retrieval.mrr if v.retrieval else None)))
    if has(lambda v: v.found_relevant_share):
        columns.append(("found relevant", lambda v: fmt_pct(v.found_relevant_share)))
    if has(lambda v: v.training):
        columns.append(("training time", lambda v: fmt_seconds(v.training.wall_seconds if v.training else None)))
        columns.append(("training cost", lambda v: fmt_usd(v.training.cost_usd if v.training else None)))
    return Table(header=[name for name, _ in columns], rows=[[getter(v) for _, getter in columns] for v in variants])


def freshness_table(fresh: Freshness) -> Table:
    rows = []
    for v in fresh.variants:
        update_cost = "–"
        if v.retrain_seconds is not None:
            update_cost = f"retrain {fmt_seconds(v.retrain_seconds)}"
        elif v.kind in _RETRIEVING and fresh.reindex_seconds is not None:
            update_cost = f"re-index {fmt_seconds(fresh.reindex_seconds)}"
        rows.append([v.label, _count(v.n), fmt_acc(v.accuracy, v.ci), fmt_pct(v.stale_share), update_cost])
    return Table(
        header=["variant", "n", "accuracy on changed facts (95% CI)", "still the old value", "update"], rows=rows
    )


# --------------------------------------------------------------------------------------------
# Disagreements


@dataclass
class Disagreement:
    question_id: str
    question: str
    answers: list[str]
    kind: str | None
    answers_by_label: list[tuple[str, str, bool | None, bool]]  # label, prediction, correct, stale
    # the passages each retrieval variant showed the model: label -> [(source, start of the text)];
    # an empty list is a variant that retrieved nothing relevant (answered closed book)
    passages_by_label: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _retrieves(row: QuestionRecord) -> bool:
    """Whether the record is a retrieval variant's (it has passages, or a retrieval verdict)."""
    return bool(row.retrieved) or row.found_relevant is not None


def _passages(row: QuestionRecord) -> list[tuple[str, str]]:
    texts = list(row.passages) + [""] * (len(row.retrieved) - len(row.passages))
    return list(zip(row.retrieved, texts))


def disagreements(run: CompareRun, limit: int = MAX_DISAGREEMENTS) -> tuple[list[Disagreement], int]:
    """Questions some variants got right and others wrong (at most ``limit``), and how many there are.

    The most balanced splits come first (half right, half wrong), then the run's question order.
    """
    order = [v.label for v in run.summary.variants]
    grouped: OrderedDict[str, dict[str, QuestionRecord]] = OrderedDict()
    for row in run.records:
        grouped.setdefault(row.question_id, {}).setdefault(row.label, row)
    found = []
    for position, (qid, rows) in enumerate(grouped.items()):
        verdicts = [row.correct for row in rows.values() if row.correct is not None]
        right = sum(verdicts)
        if not verdicts or right == 0 or right == len(verdicts):
            continue
        labels = [label for label in order if label in rows] + [label for label in rows if label not in order]
        first = next(iter(rows.values()))
        entry = Disagreement(
            question_id=qid,
            question=first.question,
            answers=list(first.answers),
            kind=first.kind,
            answers_by_label=[
                (label, rows[label].prediction, rows[label].correct, rows[label].stale is True) for label in labels
            ],
            passages_by_label={label: _passages(rows[label]) for label in labels if _retrieves(rows[label])},
        )
        balance = min(right, len(verdicts) - right) / len(verdicts)
        found.append((-balance, position, entry))
    found.sort(key=lambda t: (t[0], t[1]))
    return [entry for _, _, entry in found[:limit]], len(found)
