"""Terminal tables of a compare run's summary, shared by ``infuse compare`` and the demo story."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from infuse.evaluation.runs import CompareSummary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def freshness_table(summary: CompareSummary) -> Table | None:
    """The update scenario as a table: accuracy on the changed facts and the share of old answers
    per variant (None when the run had no update scenario).

    >>> console.print(freshness_table(run.summary))  # doctest: +SKIP
    """
    fresh = summary.freshness
    if fresh is None:
        return None
    table = Table(title=f"after {fresh.changed_facts} facts changed (re-index {fresh.reindex_seconds or 0:.1f}s)")
    for column in ("variant", "accuracy on changed facts", "still the old value"):
        table.add_column(column)
    for row in fresh.variants:
        table.add_row(row.label, _pct(row.accuracy), _pct(row.stale_share))
    return table


def variants_table(summary: CompareSummary, title: str | None = None) -> Table:
    """One row per variant: accuracy with its interval, F1, median latency, tokens, cost, recall."""
    questions = summary.questions
    if title is None:
        title = (
            f"{questions.name if questions else '-'}: {questions.count if questions else '-'} questions, "
            f"model {Path(summary.model or '-').name}"
        )
    table = Table(title=title)
    for column in ("variant", "accuracy (95% CI)", "F1", "median ms", "tokens in/out", "$ / 1k q", "recall@k"):
        table.add_column(column)
    for v in summary.variants:
        latency = v.latency_ms.median if v.latency_ms else None
        table.add_row(
            v.label,
            _accuracy(v.accuracy, v.ci),
            f"{v.f1:.2f}" if v.f1 is not None else "-",
            f"{latency:.0f}" if latency is not None else "-",
            f"{v.prompt_tokens_mean or 0:.0f}/{v.completion_tokens_mean or 0:.0f}",
            f"{v.cost_per_1k_usd:.4f}" if v.cost_per_1k_usd is not None else "-",
            f"{v.retrieval.recall_at_k:.2f}" if v.retrieval and v.retrieval.recall_at_k is not None else "-",
        )
    return table


def _accuracy(accuracy: float | None, ci: tuple[float, float] | None) -> str:
    if accuracy is None:
        return "-"
    return f"{accuracy:.1%}" + (f" ({ci[0]:.0%}-{ci[1]:.0%})" if ci else "")
