"""Total cost and staleness over a year, from a compare run's measured costs (no new measurement).

Why: one run measures what an answer costs, what one training run costs and what re-indexing
an update costs, and how often each variant still gives the old value after an update. Whether
fine-tuning pays off depends on how often the documents change and how many questions come in,
so the report projects the measured numbers over :attr:`CostScenario.months`:

* **RAG** (the most accurate ``rag`` variant): serving, plus a re-index per update; stale share
  after an update as measured for it (about zero: it reads the new document);
* **FT** (the most accurate fine-tuned variant): its training once, serving, and a retrain (the
  measured training cost again) after every :attr:`CostScenario.retrain_every` updates; between
  an update and the retrain that includes it, its measured stale share applies;
* **hybrid** (the most accurate ``ft+rag`` variant): its training once, serving, a re-index per
  update, never retrained; its measured stale share after the first update.

Updates arrive at even intervals; a month is 30 days; costs accrue per day. Staleness is the
time average per month of the share of answers about changed facts that still give the old
value. Invariants: cumulative cost never decreases; with no updates every series is serving
cost plus the one-off training.

>>> series = cost_over_time(summary, CostScenario(updates_per_month=4, retrain_every=4))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

from infuse.evaluation.runs import CompareSummary, FreshnessRow, Variant, VariantSummary

DAYS_PER_MONTH = 30

__all__ = ["CostScenario", "CostSeries", "cost_over_time", "DAYS_PER_MONTH"]


@dataclass(frozen=True)
class CostScenario:
    """How the knowledge base is used over time (the report's defaults: weekly updates, 1,000
    questions a day, a retrain every fourth update)."""

    months: int = 12
    updates_per_month: float = 4.0
    questions_per_day: float = 1000.0
    retrain_every: int = 4

    def __post_init__(self) -> None:
        if self.months < 1 or self.updates_per_month < 0 or self.questions_per_day < 0 or self.retrain_every < 1:
            raise ValueError(
                "a cost scenario needs months >= 1, updates_per_month >= 0, questions_per_day >= 0, retrain_every >= 1"
            )


@dataclass(frozen=True)
class CostSeries:
    """One approach over the scenario: cumulative USD at the end of each month (index 0: the
    start, after the one-off training) and the time-averaged stale share of each month."""

    name: str  # "RAG", "FT (retrain every 4 updates)", "hybrid"
    label: str  # the measured variant it projects
    variant: str
    cumulative_usd: tuple[float, ...]
    stale: tuple[float, ...]


def _best(variants: list[VariantSummary]) -> VariantSummary | None:
    scored = [v for v in variants if v.accuracy is not None and v.cost_per_1k_usd is not None]
    return max(scored, key=lambda v: v.accuracy or 0.0) if scored else None


def _update_days(scenario: CostScenario) -> set[int]:
    """The days (0-based) an update lands on: evenly spread, `updates_per_month` a month."""
    rate = scenario.updates_per_month / DAYS_PER_MONTH
    return {d for d in range(scenario.months * DAYS_PER_MONTH) if int((d + 1) * rate) > int(d * rate)}


def _series(
    name: str,
    variant: VariantSummary,
    scenario: CostScenario,
    *,
    update_cost: float,
    stale_share: float,
    retrain_cost: float | None,
) -> CostSeries:
    serving_per_day = scenario.questions_per_day / 1000 * (variant.cost_per_1k_usd or 0.0)
    training = variant.training.cost_usd if variant.training and variant.training.cost_usd else 0.0
    updates = _update_days(scenario)
    total, pending, seen = training, 0, 0
    cumulative, stale = [round(total, 6)], []
    month_stale = 0.0
    for day in range(scenario.months * DAYS_PER_MONTH):
        total += serving_per_day
        if day in updates:
            seen += 1
            total += update_cost
            pending += 1
            if retrain_cost is not None and pending >= scenario.retrain_every:
                total += retrain_cost
                pending = 0
        if retrain_cost is not None:
            month_stale += stale_share if pending else 0.0
        else:
            month_stale += stale_share if seen else 0.0
        if (day + 1) % DAYS_PER_MONTH == 0:
            cumulative.append(round(total, 6))
            stale.append(round(month_stale / DAYS_PER_MONTH, 4))
            month_stale = 0.0
    return CostSeries(name, variant.label, str(variant.variant), tuple(cumulative), tuple(stale))


def cost_over_time(summary: CompareSummary, scenario: CostScenario = CostScenario()) -> list[CostSeries]:
    """The RAG, FT and hybrid series the run has the numbers for (see the module docstring);
    empty without a freshness scenario (no measured update cost or stale share)."""
    fresh = summary.freshness
    if fresh is None:
        return []
    rows: dict[str, FreshnessRow] = {r.label: r for r in fresh.variants}
    reindex = fresh.reindex_cost_usd or 0.0
    out = []
    for kind, name in (
        (Variant.RAG, "RAG"),
        (Variant.FT, f"FT (retrain every {scenario.retrain_every} updates)"),
        (Variant.FT_RAG, "hybrid"),
    ):
        best = _best([v for v in summary.variants if v.kind is kind and v.label in rows])
        if best is None:
            continue
        stale_share = rows[best.label].stale_share or 0.0
        if kind is Variant.FT:
            retrain = best.training.cost_usd if best.training and best.training.cost_usd is not None else None
            if retrain is None:
                continue  # no measured training cost: nothing to project
            out.append(_series(name, best, scenario, update_cost=0.0, stale_share=stale_share, retrain_cost=retrain))
        else:
            out.append(_series(name, best, scenario, update_cost=reindex, stale_share=stale_share, retrain_cost=None))
    return out
