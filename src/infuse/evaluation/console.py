"""Terminal tables of a compare run's summary, shared by ``infuse compare`` and the demo story."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def freshness_table(summary: dict[str, Any]) -> Table | None:
    """The update scenario as a table: accuracy on the changed facts and the share of old answers
    per variant (None when the run had no update scenario).

    >>> console.print(freshness_table(run.summary))  # doctest: +SKIP
    """
    fresh = summary.get("freshness")
    if not fresh:
        return None
    table = Table(title=f"after {fresh['changed_facts']} facts changed (re-index {fresh['reindex_seconds']:.1f}s)")
    for column in ("variant", "accuracy on changed facts", "still the old value"):
        table.add_column(column)
    for row in fresh["variants"]:
        table.add_row(row["label"], f"{row['accuracy']:.1%}", f"{row['stale_share']:.1%}")
    return table
