"""The plots of a compare report, as PNG bytes (matplotlib's object API: no pyplot, no global state).

Split from :mod:`infuse.evaluation.report`: the plots are the one part that needs matplotlib and
most of the drawing detail; the report module lays them out next to the tables. Each plot
function returns None when the run has no data for it (see the report module's docstring for
the list).
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infuse.evaluation.cost_over_time import CostScenario, cost_over_time
from infuse.evaluation.report_tables import fmt_seconds, fmt_usd
from infuse.evaluation.runs import CompareRun, CompareSummary, Freshness, QuestionRecord, VariantSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Plot",
    "build_plots",
    "update_times",
    "plot_accuracy",
    "plot_accuracy_vs_k",
    "plot_latency",
    "plot_cost",
    "plot_freshness",
    "plot_paraphrases",
    "plot_cost_over_time",
]

# Dataset fields that may differ between two datasets of one paraphrase-count family.
_DATASET_VOLATILE = {"name", "kind", "paraphrases", "rows", "tokens", "sha256", "created", "counts"}


@dataclass
class Plot:
    name: str  # file stem under plots/
    title: str
    caption: str
    png: bytes


_COLORS = {"base": "#7f7f7f", "rag": "#1f77b4", "ft": "#d62728", "ft+rag": "#9467bd"}


def _color(variant: str | None) -> str:
    """The colour of a variant family (base, rag, ft, ft+rag); green for anything else."""
    return _COLORS.get(str(variant), "#2ca02c")


def _error_bars(points: Sequence[tuple[float, tuple[float, float] | None]]) -> list[list[float]]:
    """Lower and upper whisker lengths for (value, interval) points; 0 without an interval."""
    return [
        [max(0.0, value - ci[0]) if ci else 0.0 for value, ci in points],
        [max(0.0, ci[1] - value) if ci else 0.0 for value, ci in points],
    ]


def _figure(width: float = 7.5, height: float = 4.0) -> Figure:
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _label_axis(ax: Axes, labels: Sequence[str]) -> None:
    ax.set_xticks(range(len(labels)))
    rotate = len(labels) > 4 or max((len(s) for s in labels), default=0) > 12
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8)


def _accuracy_curve_axes(ax: Axes, xs: set[float], xlabel: str, title: str) -> None:
    """The axes of an accuracy curve: a tick at each measured x, accuracy 0-1, legend."""
    ticks = sorted(xs)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{x:g}" for x in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)


def _width_for(count: int) -> float:
    return min(14.0, max(6.0, 1.1 * count + 2.5))


def _bar_axes(points: Sequence[VariantSummary]) -> tuple[Figure, Axes]:
    """A figure sized for one bar per variant, and its axes."""
    fig = _figure(_width_for(len(points)))
    return fig, fig.add_subplot()


def plot_accuracy(variants: Sequence[VariantSummary]) -> Plot | None:
    points = [v for v in variants if v.accuracy is not None]
    if not points:
        return None
    fig, ax = _bar_axes(points)
    accs = [v.accuracy or 0.0 for v in points]
    lower, upper = _error_bars([(acc, v.ci) for v, acc in zip(points, accs)])
    xs = range(len(points))
    ax.bar(
        xs, accs, color=[_color(v.variant) for v in points], yerr=[lower, upper], capsize=4, error_kw={"elinewidth": 1}
    )
    for x, acc, up in zip(xs, accs, upper):
        ax.text(x, acc + up + 0.01, f"{100 * acc:.1f}%", ha="center", va="bottom", fontsize=8)
    _label_axis(ax, [v.label for v in points])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, min(1.15, max(1.0, max(a + u for a, u in zip(accs, upper)) + 0.1)))
    ax.set_title("Accuracy per variant (95% bootstrap interval)")
    ax.grid(axis="y", alpha=0.3)
    return Plot(
        "accuracy", "Accuracy per variant", "Bars: accuracy; whiskers: 95% bootstrap confidence interval.", _png(fig)
    )


def _k_series(variants: Sequence[VariantSummary]) -> OrderedDict[tuple[str, str | None], list[VariantSummary]]:
    series: OrderedDict[tuple[str, str | None], list[VariantSummary]] = OrderedDict()
    for v in variants:
        if v.k is None or v.accuracy is None:
            continue
        series.setdefault((str(v.variant), v.adapter), []).append(v)
    return series


def plot_accuracy_vs_k(variants: Sequence[VariantSummary]) -> Plot | None:
    series = _k_series(variants)
    drawn = {key: pts for key, pts in series.items() if len({p.k for p in pts}) >= 2}
    if not drawn:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    palette = ["#1f77b4", "#9467bd", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2"]
    for i, ((kind, adapter), pts) in enumerate(drawn.items()):
        pts = sorted(pts, key=lambda p: p.k or 0)
        color = palette[i % len(palette)]
        ks = [p.k or 0 for p in pts]  # _k_series keeps only variants with a k
        accs = [p.accuracy or 0.0 for p in pts]
        name = kind if not adapter else f"{kind} ({adapter})"
        errs = _error_bars([(a, p.ci) for p, a in zip(pts, accs)]) if all(p.ci for p in pts) else None
        ax.errorbar(ks, accs, yerr=errs, marker="o", color=color, capsize=3, label=name)
        # the closed-book counterpart: base for rag, the adapter alone for ft+rag
        ref_kind = {"rag": "base", "ft+rag": "ft"}.get(kind)
        for ref in variants:
            if (
                ref_kind
                and ref.variant == ref_kind
                and ref.adapter == adapter
                and ref.k is None
                and ref.accuracy is not None
            ):
                ax.axhline(
                    ref.accuracy,
                    color=color,
                    linestyle="--",
                    linewidth=1,
                    alpha=0.7,
                    label=f"{ref.label} (no retrieval)",
                )
                break
    _accuracy_curve_axes(
        ax, {float(p.k or 0) for pts in drawn.values() for p in pts}, "k (passages retrieved)", "Accuracy vs k"
    )
    return Plot(
        "accuracy_vs_k",
        "Accuracy vs k",
        "One line per series of variants that differ only in k; dashed: the same model without retrieval.",
        _png(fig),
    )


def _horizontal_boxes() -> dict[str, Any]:
    import matplotlib

    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def plot_latency(variants: Sequence[VariantSummary], results: Sequence[QuestionRecord]) -> Plot | None:
    by_label: dict[str, list[float]] = {}
    for row in results:
        if row.latency_ms is not None:
            by_label.setdefault(row.label, []).append(row.latency_ms)
    order = [v.label for v in variants if v.label in by_label]
    order += [label for label in by_label if label not in order]
    if not order:
        return None
    kinds = {v.label: v for v in variants}
    fig = _figure(7.5, max(2.5, 0.5 * len(order) + 1.5))
    ax = fig.add_subplot()
    data = [by_label[label] for label in order]
    box = ax.boxplot(
        data,
        patch_artist=True,
        showfliers=True,
        flierprops={"markersize": 3, "alpha": 0.5},
        medianprops={"color": "black"},
        **_horizontal_boxes(),
    )
    for patch, label in zip(box["boxes"], order):
        patch.set_facecolor(_color(kinds[label].variant if label in kinds else None))
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(order) + 1))
    ax.set_yticklabels(order, fontsize=8)
    ax.invert_yaxis()
    values = [x for xs in data for x in xs]
    if values and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_xscale("log")
    ax.set_xlabel("latency per question (ms)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Latency distribution per variant")
    return Plot(
        "latency",
        "Latency per question",
        "Box: quartiles, line: median, whiskers: 1.5 IQR, dots: outliers "
        "(`latency_ms` of each question in results.jsonl).",
        _png(fig),
    )


def _training_cost(variant: VariantSummary) -> float | None:
    return variant.training.cost_usd if variant.training else None


def plot_cost(variants: Sequence[VariantSummary]) -> Plot | None:
    points = [v for v in variants if v.cost_per_1k_usd is not None]
    if not points:
        return None
    fig, ax = _bar_axes(points)
    costs = [v.cost_per_1k_usd or 0.0 for v in points]
    xs = range(len(points))
    ax.bar(xs, costs, color=[_color(v.variant) for v in points])
    top = max(costs) or 1.0
    for x, cost, v in zip(xs, costs, points):
        note = fmt_usd(cost)
        training = _training_cost(v)
        if training is not None:
            note += f"\n+{fmt_usd(training)} once"
        ax.text(x, cost + 0.01 * top, note, ha="center", va="bottom", fontsize=7)
    _label_axis(ax, [v.label for v in points])
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("USD per 1,000 questions")
    ax.set_title("Cost per 1,000 questions")
    ax.grid(axis="y", alpha=0.3)
    caption = "Serving cost per 1,000 questions under the run's cost model."
    once: dict[str, float] = {}
    for v in variants:
        training_cost = _training_cost(v)
        if training_cost is not None:
            once.setdefault(v.adapter or v.label, training_cost)
    if once:
        caption += " One-off training cost: " + ", ".join(f"{a} {fmt_usd(c)}" for a, c in once.items()) + "."
    return Plot("cost", "Cost per 1,000 questions", caption, _png(fig))


def update_times(fresh: Freshness) -> list[tuple[str, float]]:
    """("re-index", s) and ("retrain ADAPTER", s) once per adapter: ``ft:x`` and ``ft:x+rag@k``
    share one training run, so it is one retrain (listing it per variant showed it twice)."""
    times: list[tuple[str, float]] = []
    if fresh.reindex_seconds is not None:
        times.append(("re-index", fresh.reindex_seconds))
    for v in fresh.variants:
        label = f"retrain {v.adapter or v.label}"
        if v.retrain_seconds is not None and label not in {name for name, _ in times}:
            times.append((label, v.retrain_seconds))
    return times


def plot_freshness(fresh: Freshness | None) -> Plot | None:
    if fresh is None:
        return None
    rows = [v for v in fresh.variants if v.accuracy is not None or v.stale_share is not None]
    if not rows:
        return None
    times = update_times(fresh)
    panels = 3 if times else 2
    fig = _figure(min(15.0, 4.2 * panels), 4.0)
    labels = [v.label for v in rows]
    colors = [_color(v.variant) for v in rows]
    xs = range(len(rows))

    ax = fig.add_subplot(1, panels, 1)
    accs = [v.accuracy or 0.0 for v in rows]
    lower, upper = _error_bars([(a, v.ci) for v, a in zip(rows, accs)])
    ax.bar(xs, accs, color=colors, yerr=[lower, upper], capsize=4)
    _label_axis(ax, labels)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy on changed facts", fontsize=10)
    ax.grid(axis="y", alpha=0.3)

    ax = fig.add_subplot(1, panels, 2)
    stale = [v.stale_share for v in rows]
    ax.bar(xs, [s or 0.0 for s in stale], color=colors)
    for x, s in zip(xs, stale):
        ax.text(x, (s or 0.0) + 0.02, "–" if s is None else f"{100 * s:.0f}%", ha="center", fontsize=8)
    _label_axis(ax, labels)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of answers")
    ax.set_title("Still answering the old value", fontsize=10)
    ax.grid(axis="y", alpha=0.3)

    if times:
        ax = fig.add_subplot(1, panels, 3)
        ax.barh(
            range(len(times)),
            [t for _, t in times],
            color=["#1f77b4" if name == "re-index" else "#d62728" for name, _ in times],
        )
        ax.set_yticks(range(len(times)))
        ax.set_yticklabels([name for name, _ in times], fontsize=8)
        ax.invert_yaxis()
        for y, (_, t) in enumerate(times):
            ax.text(t, y, " " + fmt_seconds(t), va="center", fontsize=8)
        ax.set_xlim(0, max(t for _, t in times) * 1.35 or 1.0)
        ax.set_xlabel("seconds")
        ax.set_title("Cost of an update", fontsize=10)
    changed = fresh.changed_facts
    caption = "After the documents changed"
    if changed is not None:
        caption += f" ({changed:g} changed facts)"
    caption += ": RAG re-ingests the new documents, the fine-tuned model keeps its old adapter."
    return Plot("freshness", "Freshness after an update", caption, _png(fig))


def _paraphrase_curves(variants: Sequence[VariantSummary]) -> dict[str, list[tuple[float, VariantSummary]]]:
    curves: dict[str, list[tuple[float, VariantSummary]]] = {}
    for v in variants:
        dataset = v.training.dataset if v.training else None
        x = dataset.paraphrase_count if dataset else None
        if dataset is None or x is None or v.accuracy is None:
            continue
        rest = {k: val for k, val in dataset.extra.items() if k not in _DATASET_VOLATILE}
        key = json.dumps(
            {"variant": v.variant, "k": v.k, "method": v.training.method if v.training else None, "dataset": rest},
            sort_keys=True,
            default=str,
        )
        curves.setdefault(key, []).append((x, v))
    return {key: pts for key, pts in curves.items() if len({x for x, _ in pts}) >= 2}


def plot_paraphrases(variants: Sequence[VariantSummary]) -> Plot | None:
    curves = _paraphrase_curves(variants)
    if not curves:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for key, pts in curves.items():
        pts = sorted(pts, key=lambda p: p[0])
        info = json.loads(key)
        name = str(info["variant"])
        if info.get("k") is not None:
            name += f" k={info['k']}"
        if info.get("method"):
            name += f" ({info['method']})"
        xs = [x for x, _ in pts]
        accs = [v.accuracy or 0.0 for _, v in pts]
        errs = _error_bars([(a, v.ci) for (_, v), a in zip(pts, accs)]) if all(v.ci for _, v in pts) else None
        ax.errorbar(
            xs, accs, yerr=errs, marker="o", capsize=3, label=name, color=_COLORS.get(str(info["variant"]), None)
        )
    _accuracy_curve_axes(
        ax,
        {x for pts in curves.values() for x, _ in pts},
        "paraphrases per chunk",
        "Fine-tuning: accuracy vs paraphrases per chunk",
    )
    return Plot(
        "paraphrases",
        "Paraphrase count",
        "Adapters trained on datasets that differ only in paraphrases per chunk "
        "(continued pretraining on the plain text counts as 0).",
        _png(fig),
    )


def build_plots(run: CompareRun, scenario: CostScenario | None = None) -> list[Plot]:
    """Every plot the run has the numbers for; `scenario` is the cost-over-time projection's usage
    (None: :class:`CostScenario`'s defaults)."""
    variants = run.summary.variants
    candidates = [
        plot_accuracy(variants),
        plot_accuracy_vs_k(variants),
        plot_latency(variants, run.records),
        plot_cost(variants),
        plot_freshness(run.summary.freshness),
        plot_paraphrases(variants),
        plot_cost_over_time(run.summary, scenario),
    ]
    return [plot for plot in candidates if plot is not None]


def plot_cost_over_time(summary: CompareSummary, scenario: CostScenario | None = None) -> Plot | None:
    """Cumulative cost and staleness over a year for RAG, FT (retrained every N updates) and
    hybrid, projected from the run's measured costs (:mod:`infuse.evaluation.cost_over_time`)."""
    scenario = scenario or CostScenario()
    series = cost_over_time(summary, scenario)
    if not series:
        return None
    fig = _figure(11.0, 4.0)
    colors = {"rag": _color("rag"), "ft": _color("ft"), "ft+rag": _color("ft+rag")}
    months = list(range(scenario.months + 1))
    ax = fig.add_subplot(1, 2, 1)
    for s in series:
        ax.plot(
            months,
            s.cumulative_usd,
            marker="o",
            markersize=3,
            color=colors.get(s.variant),
            label=f"{s.name}: {s.label}",
        )
    ax.set_xlabel("month")
    ax.set_ylabel("cumulative USD")
    ax.set_title("Total cost over time", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    for s in series:
        ax.step(months[1:], s.stale, where="mid", color=colors.get(s.variant), label=s.name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("month")
    ax.set_ylabel("stale share of answers on changed facts")
    ax.set_title("Staleness over time", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    caption = (
        f"Projected from this run's measured costs: {scenario.updates_per_month:g} updates a month, "
        f"{scenario.questions_per_day:,.0f} questions a day, FT retrained every {scenario.retrain_every} updates, "
        "hybrid re-indexed and never retrained. After "
        f"{scenario.months} months: "
        + ", ".join(
            f"{s.name} {fmt_usd(s.cumulative_usd[-1])} (mean staleness {100 * sum(s.stale) / len(s.stale):.0f}%)"
            for s in series
        )
        + "."
    )
    return Plot("cost_over_time", "Total cost and staleness over a year", caption, _png(fig))
