"""The report of a compare run: Markdown and a self-contained HTML page, with plots.

A compare run folder (``WS/runs/RUN/``, written by :mod:`infuse.evaluation.compare`) holds
``summary.json`` (one entry per variant: accuracy and its 95% bootstrap interval, latency, tokens,
cost per 1,000 questions, retrieval quality, the adapter's training time and cost; plus the
freshness scenario when there was one) and ``results.jsonl`` (one line per question and variant).
:func:`write_report` reads both and writes, next to them:

* ``report.md``: the tables and the plots as ``plots/*.png`` beside it;
* ``report.html``: the same content in one file that opens without a network: plots inlined as
  base64 PNG, inline CSS, no scripts and no links; every piece of text from the run is escaped.

Plots (each is skipped when the run has no data for it):

1. ``accuracy.png``: accuracy per variant with its 95% interval;
2. ``accuracy_vs_k.png``: accuracy against the number of retrieved passages, one line per series
   (variants with the same kind and adapter that differ only in ``k``), when a series has 2+ values
   of ``k``; the closed-book counterpart (base for rag, the adapter alone for ft+rag) is drawn as a
   dashed line;
3. ``latency.png``: the distribution of per-question latency per variant (box plot of
   ``latency_ms`` from ``results.jsonl``);
4. ``cost.png``: cost per 1,000 questions per variant (the one-off training cost is noted);
5. ``freshness.png``: after the update, accuracy on the changed facts and the share of answers that
   were still the old value, per variant, and the time to re-index vs retrain;
6. ``paraphrases.png``: accuracy against paraphrases per chunk, when 2+ fine-tuned variants were
   trained on datasets that differ only in their paraphrase count (a ``cpt`` dataset counts as 0).

The report ends with the questions where the variants disagree (some right, some wrong), with each
variant's prediction, so a reader can see *what* one method gets that the other misses.

>>> md_path, html_path = write_report(ws.runs_dir / "20261121-031500-lab")   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infuse.evaluation.compare import summary_field
from infuse.errors import InfuseError

__all__ = ["ReportError", "RunData", "load_run", "write_report", "disagreements", "Plot", "build_plots"]

MAX_DISAGREEMENTS = 10

# Dataset fields that may differ between two datasets of one paraphrase-count family.
_DATASET_VOLATILE = {"name", "kind", "paraphrases", "rows", "tokens", "sha256", "created", "counts"}


class ReportError(InfuseError):
    """A compare run folder cannot be reported on (no summary.json, or an unreadable one)."""


# --------------------------------------------------------------------------------------------
# Reading the run


@dataclass
class RunData:
    """What the report is built from: the summary, the per-question results, and what was skipped."""

    run_dir: Path
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    results_missing: bool = True
    bad_result_lines: int = 0

    @property
    def variants(self) -> list[dict[str, Any]]:
        variants = self.summary.get("variants")
        if not isinstance(variants, list):
            return []
        out = []
        for i, variant in enumerate(variants):
            if isinstance(variant, dict):
                if not variant.get("label"):
                    variant = {**variant, "label": str(variant.get("variant") or f"variant-{i + 1}")}
                out.append(variant)
        return out

    @property
    def freshness(self) -> dict[str, Any] | None:
        fresh = self.summary.get("freshness")
        return fresh if isinstance(fresh, dict) else None


def load_run(run_dir: Path) -> RunData:
    """Read ``summary.json`` (required) and ``results.jsonl`` (optional) of a compare run."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such compare run folder (run `infuse compare` first)")
    if not summary_path.is_file():
        raise ReportError(f"{run_dir}: no summary.json in this folder; is it a compare run? "
                          f"(run `infuse compare`, or pass the run's folder)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{summary_path}: cannot read the run summary: {exc}") from exc
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: expected a JSON object, found {type(summary).__name__}")
    data = RunData(run_dir=run_dir, summary=summary)
    results_path = run_dir / "results.jsonl"
    if results_path.is_file():
        data.results_missing = False
        with results_path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    data.bad_result_lines += 1
                    continue
                if isinstance(row, dict) and row.get("label") is not None:
                    data.results.append(row)
                else:
                    data.bad_result_lines += 1
    return data


# --------------------------------------------------------------------------------------------
# Small helpers


def _num(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN and missing values are None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ci(variant: dict[str, Any]) -> tuple[float, float] | None:
    ci = variant.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = _num(ci[0]), _num(ci[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    return None


def _pct(value: Any, digits: int = 1) -> str:
    value = _num(value)
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _acc_with_ci(variant: dict[str, Any]) -> str:
    acc = _num(variant.get("accuracy"))
    if acc is None:
        return "–"
    ci = _ci(variant)
    if ci is None:
        return _pct(acc)
    return f"{_pct(acc)} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"


def _usd(value: Any) -> str:
    value = _num(value)
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


def _ms(value: Any) -> str:
    value = _num(value)
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def _seconds(value: Any) -> str:
    value = _num(value)
    if value is None:
        return "–"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _tokens(value: Any) -> str:
    value = _num(value)
    return "–" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return " | ".join(_text(v) for v in value)
    return str(value)


def _md(value: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, no raw HTML."""
    text = " ".join(_text(value).split())
    return html.escape(text, quote=False).replace("|", "\\|")


def _h(value: Any) -> str:
    return html.escape(_text(value), quote=True)


# --------------------------------------------------------------------------------------------
# The variants table


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


def variants_table(variants: Sequence[dict[str, Any]]) -> Table:
    """One row per variant; optional columns only when some variant has a value for them."""
    def has(getter) -> bool:
        return any(getter(v) is not None for v in variants)

    columns: list[tuple[str, Any]] = [
        ("variant", lambda v: _text(v.get("label"))),
        ("n", lambda v: _text(v.get("n")) if _num(v.get("n")) is not None else "–"),
        ("accuracy (95% CI)", _acc_with_ci),
    ]
    if has(lambda v: _num(v.get("f1"))):
        columns.append(("F1", lambda v: _pct(v.get("f1"))))
    if has(lambda v: _num(v.get("acc_norm"))):
        columns.append(("acc_norm", lambda v: _pct(v.get("acc_norm"))))
    columns += [
        ("latency median", lambda v: _ms(summary_field(v, "latency_ms", "median"))),
        ("latency p90", lambda v: _ms(summary_field(v, "latency_ms", "p90"))),
    ]
    if has(lambda v: _num(v.get("retrieval_ms_mean")) or None):
        columns.append(("retrieval mean", lambda v: "–" if v.get("k") is None and not _num(v.get("retrieval_ms_mean"))
                        else _ms(v.get("retrieval_ms_mean"))))
    columns += [
        ("tokens in / out", lambda v: f"{_tokens(v.get('prompt_tokens_mean'))} / "
                                      f"{_tokens(v.get('completion_tokens_mean'))}"),
        ("cost / 1k questions", lambda v: _usd(v.get("cost_per_1k_usd"))),
    ]
    if has(lambda v: _num(summary_field(v, "retrieval", "recall_at_k"))):
        columns.append(("recall@k", lambda v: _pct(summary_field(v, "retrieval", "recall_at_k"))))
    if has(lambda v: _num(summary_field(v, "retrieval", "mrr"))):
        columns.append(("MRR", lambda v: _fmt_ratio(summary_field(v, "retrieval", "mrr"))))
    if has(lambda v: _num(v.get("found_relevant_share"))):
        columns.append(("found relevant", lambda v: _pct(v.get("found_relevant_share"))))
    if has(lambda v: v["training"] if isinstance(v.get("training"), dict) else None):
        columns.append(("training time", lambda v: _seconds(summary_field(v, "training", "wall_seconds"))))
        columns.append(("training cost", lambda v: _usd(summary_field(v, "training", "cost_usd"))))
    return Table(header=[name for name, _ in columns],
                 rows=[[getter(v) for _, getter in columns] for v in variants])


def _fmt_ratio(value: Any) -> str:
    value = _num(value)
    return "–" if value is None else f"{value:.3f}"


def freshness_table(fresh: dict[str, Any]) -> Table:
    rows = []
    for v in fresh.get("variants") or []:
        if not isinstance(v, dict):
            continue
        update_cost = "–"
        if _num(v.get("retrain_seconds")) is not None:
            update_cost = f"retrain {_seconds(v.get('retrain_seconds'))}"
        elif v.get("variant") in ("rag", "ft+rag") and _num(fresh.get("reindex_seconds")) is not None:
            update_cost = f"re-index {_seconds(fresh.get('reindex_seconds'))}"
        rows.append([_text(v.get("label")), _text(v.get("n")) if v.get("n") is not None else "–",
                     _acc_with_ci(v), _pct(v.get("stale_share")), update_cost])
    return Table(header=["variant", "n", "accuracy on changed facts (95% CI)",
                         "still the old value", "update"], rows=rows)


# --------------------------------------------------------------------------------------------
# Plots


@dataclass
class Plot:
    name: str          # file stem under plots/
    title: str
    caption: str
    png: bytes


_COLORS = {"base": "#7f7f7f", "rag": "#1f77b4", "ft": "#d62728", "ft+rag": "#9467bd"}


def _color(variant: dict[str, Any]) -> str:
    return _COLORS.get(str(variant.get("variant")), "#2ca02c")


def _figure(width: float = 7.5, height: float = 4.0):
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _label_axis(ax, labels: Sequence[str]) -> None:
    ax.set_xticks(range(len(labels)))
    rotate = len(labels) > 4 or max((len(s) for s in labels), default=0) > 12
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8)


def _width_for(count: int) -> float:
    return min(14.0, max(6.0, 1.1 * count + 2.5))


def plot_accuracy(variants: Sequence[dict[str, Any]]) -> Plot | None:
    points = [v for v in variants if _num(v.get("accuracy")) is not None]
    if not points:
        return None
    fig = _figure(_width_for(len(points)))
    ax = fig.add_subplot()
    accs = [_num(v["accuracy"]) for v in points]
    lower, upper = [], []
    for v, acc in zip(points, accs):
        ci = _ci(v)
        lower.append(max(0.0, acc - ci[0]) if ci else 0.0)
        upper.append(max(0.0, ci[1] - acc) if ci else 0.0)
    xs = range(len(points))
    ax.bar(xs, accs, color=[_color(v) for v in points], yerr=[lower, upper], capsize=4,
           error_kw={"elinewidth": 1})
    for x, acc, up in zip(xs, accs, upper):
        ax.text(x, acc + up + 0.01, f"{100 * acc:.1f}%", ha="center", va="bottom", fontsize=8)
    _label_axis(ax, [_text(v["label"]) for v in points])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, min(1.15, max(1.0, max(a + u for a, u in zip(accs, upper)) + 0.1)))
    ax.set_title("Accuracy per variant (95% bootstrap interval)")
    ax.grid(axis="y", alpha=0.3)
    return Plot("accuracy", "Accuracy per variant",
                "Bars: accuracy; whiskers: 95% bootstrap confidence interval.", _png(fig))


def _k_series(variants: Sequence[dict[str, Any]]) -> "OrderedDict[tuple[str, str | None], list[dict[str, Any]]]":
    series: OrderedDict[tuple[str, str | None], list[dict[str, Any]]] = OrderedDict()
    for v in variants:
        if _num(v.get("k")) is None or _num(v.get("accuracy")) is None:
            continue
        series.setdefault((str(v.get("variant")), v.get("adapter")), []).append(v)
    return series


def plot_accuracy_vs_k(variants: Sequence[dict[str, Any]]) -> Plot | None:
    series = _k_series(variants)
    drawn = {key: pts for key, pts in series.items() if len({_num(p["k"]) for p in pts}) >= 2}
    if not drawn:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    palette = ["#1f77b4", "#9467bd", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2"]
    for i, ((kind, adapter), pts) in enumerate(drawn.items()):
        pts = sorted(pts, key=lambda p: _num(p["k"]))
        color = palette[i % len(palette)]
        ks = [_num(p["k"]) for p in pts]
        accs = [_num(p["accuracy"]) for p in pts]
        name = kind if not adapter else f"{kind} ({adapter})"
        errs = None
        if all(_ci(p) for p in pts):
            errs = [[max(0.0, a - _ci(p)[0]) for p, a in zip(pts, accs)],
                    [max(0.0, _ci(p)[1] - a) for p, a in zip(pts, accs)]]
        ax.errorbar(ks, accs, yerr=errs, marker="o", color=color, capsize=3, label=name)
        # the closed-book counterpart: base for rag, the adapter alone for ft+rag
        ref_kind = {"rag": "base", "ft+rag": "ft"}.get(kind)
        for ref in variants:
            if (ref_kind and ref.get("variant") == ref_kind and ref.get("adapter") == adapter
                    and _num(ref.get("k")) is None and _num(ref.get("accuracy")) is not None):
                ax.axhline(_num(ref["accuracy"]), color=color, linestyle="--", linewidth=1, alpha=0.7,
                           label=f"{_text(ref.get('label'))} (no retrieval)")
                break
    all_ks = sorted({_num(p["k"]) for pts in drawn.values() for p in pts})
    ax.set_xticks(all_ks)
    ax.set_xticklabels([f"{k:g}" for k in all_ks])
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy vs k")
    return Plot("accuracy_vs_k", "Accuracy vs k",
                "One line per series of variants that differ only in k; dashed: the same model "
                "without retrieval.", _png(fig))


def _horizontal_boxes() -> dict[str, Any]:
    import matplotlib

    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def plot_latency(variants: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]) -> Plot | None:
    by_label: dict[str, list[float]] = {}
    for row in results:
        value = _num(row.get("latency_ms"))
        if value is not None:
            by_label.setdefault(str(row.get("label")), []).append(value)
    order = [str(v["label"]) for v in variants if str(v["label"]) in by_label]
    order += [label for label in by_label if label not in order]
    if not order:
        return None
    kinds = {str(v["label"]): v for v in variants}
    fig = _figure(7.5, max(2.5, 0.5 * len(order) + 1.5))
    ax = fig.add_subplot()
    data = [by_label[label] for label in order]
    box = ax.boxplot(data, patch_artist=True, showfliers=True, flierprops={"markersize": 3, "alpha": 0.5},
                     medianprops={"color": "black"},
                     **_horizontal_boxes())
    for patch, label in zip(box["boxes"], order):
        patch.set_facecolor(_color(kinds.get(label, {})))
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
    return Plot("latency", "Latency per question",
                "Box: quartiles, line: median, whiskers: 1.5 IQR, dots: outliers "
                "(`latency_ms` of each question in results.jsonl).", _png(fig))


def plot_cost(variants: Sequence[dict[str, Any]]) -> Plot | None:
    points = [v for v in variants if _num(v.get("cost_per_1k_usd")) is not None]
    if not points:
        return None
    fig = _figure(_width_for(len(points)))
    ax = fig.add_subplot()
    costs = [_num(v["cost_per_1k_usd"]) for v in points]
    xs = range(len(points))
    ax.bar(xs, costs, color=[_color(v) for v in points])
    top = max(costs) or 1.0
    for x, cost, v in zip(xs, costs, points):
        note = _usd(cost)
        training = _num(summary_field(v, "training", "cost_usd"))
        if training is not None:
            note += f"\n+{_usd(training)} once"
        ax.text(x, cost + 0.01 * top, note, ha="center", va="bottom", fontsize=7)
    _label_axis(ax, [_text(v["label"]) for v in points])
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("USD per 1,000 questions")
    ax.set_title("Cost per 1,000 questions")
    ax.grid(axis="y", alpha=0.3)
    caption = "Serving cost per 1,000 questions under the run's cost model."
    once: dict[str, float] = {}
    for v in variants:
        cost = _num(summary_field(v, "training", "cost_usd"))
        if cost is not None:
            once.setdefault(_text(v.get("adapter") or v["label"]), cost)
    if once:
        caption += " One-off training cost: " + ", ".join(f"{a} {_usd(c)}" for a, c in once.items()) + "."
    return Plot("cost", "Cost per 1,000 questions", caption, _png(fig))


def plot_freshness(fresh: dict[str, Any] | None) -> Plot | None:
    if not fresh:
        return None
    rows = [v for v in fresh.get("variants") or [] if isinstance(v, dict)]
    rows = [v for v in rows if _num(v.get("accuracy")) is not None or _num(v.get("stale_share")) is not None]
    if not rows:
        return None
    times: list[tuple[str, float]] = []
    if _num(fresh.get("reindex_seconds")) is not None:
        times.append(("re-index", _num(fresh["reindex_seconds"])))
    for v in rows:
        if _num(v.get("retrain_seconds")) is not None:
            times.append((f"retrain {v.get('adapter') or v.get('label')}", _num(v["retrain_seconds"])))
    panels = 3 if times else 2
    fig = _figure(min(15.0, 4.2 * panels), 4.0)
    labels = [_text(v.get("label")) for v in rows]
    colors = [_color(v) for v in rows]
    xs = range(len(rows))

    ax = fig.add_subplot(1, panels, 1)
    accs = [_num(v.get("accuracy")) or 0.0 for v in rows]
    lower = [max(0.0, a - _ci(v)[0]) if _ci(v) else 0.0 for v, a in zip(rows, accs)]
    upper = [max(0.0, _ci(v)[1] - a) if _ci(v) else 0.0 for v, a in zip(rows, accs)]
    ax.bar(xs, accs, color=colors, yerr=[lower, upper], capsize=4)
    _label_axis(ax, labels)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy on changed facts", fontsize=10)
    ax.grid(axis="y", alpha=0.3)

    ax = fig.add_subplot(1, panels, 2)
    stale = [_num(v.get("stale_share")) for v in rows]
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
        ax.barh(range(len(times)), [t for _, t in times],
                color=["#1f77b4" if name == "re-index" else "#d62728" for name, _ in times])
        ax.set_yticks(range(len(times)))
        ax.set_yticklabels([name for name, _ in times], fontsize=8)
        ax.invert_yaxis()
        for y, (_, t) in enumerate(times):
            ax.text(t, y, " " + _seconds(t), va="center", fontsize=8)
        ax.set_xlim(0, max(t for _, t in times) * 1.35 or 1.0)
        ax.set_xlabel("seconds")
        ax.set_title("Cost of an update", fontsize=10)
    changed = _num(fresh.get("changed_facts"))
    caption = "After the documents changed"
    if changed is not None:
        caption += f" ({changed:g} changed facts)"
    caption += ": RAG re-ingests the new documents, the fine-tuned model keeps its old adapter."
    return Plot("freshness", "Freshness after an update", caption, _png(fig))


def _paraphrase_curves(variants: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    curves: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for v in variants:
        dataset = summary_field(v, "training", "dataset")
        if not isinstance(dataset, dict) or _num(v.get("accuracy")) is None:
            continue
        kind = dataset.get("kind")
        if kind == "cpt":
            x = 0.0
        elif kind == "paraphrase" and _num(dataset.get("paraphrases")) is not None:
            x = _num(dataset["paraphrases"])
        else:
            continue
        rest = {k: val for k, val in dataset.items() if k not in _DATASET_VOLATILE}
        key = json.dumps({"variant": v.get("variant"), "k": v.get("k"),
                          "method": summary_field(v, "training", "method"), "dataset": rest},
                         sort_keys=True, default=str)
        curves.setdefault(key, []).append((x, v))
    return {key: pts for key, pts in curves.items() if len({x for x, _ in pts}) >= 2}


def plot_paraphrases(variants: Sequence[dict[str, Any]]) -> Plot | None:
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
        accs = [_num(v["accuracy"]) for _, v in pts]
        errs = None
        if all(_ci(v) for _, v in pts):
            errs = [[max(0.0, a - _ci(v)[0]) for (_, v), a in zip(pts, accs)],
                    [max(0.0, _ci(v)[1] - a) for (_, v), a in zip(pts, accs)]]
        ax.errorbar(xs, accs, yerr=errs, marker="o", capsize=3, label=name,
                    color=_COLORS.get(str(info["variant"]), None))
    all_x = sorted({x for pts in curves.values() for x, _ in pts})
    ax.set_xticks(all_x)
    ax.set_xticklabels([f"{x:g}" for x in all_x])
    ax.set_xlabel("paraphrases per chunk")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Fine-tuning: accuracy vs paraphrases per chunk")
    return Plot("paraphrases", "Paraphrase count",
                "Adapters trained on datasets that differ only in paraphrases per chunk "
                "(continued pretraining on the plain text counts as 0).", _png(fig))


def build_plots(data: RunData) -> list[Plot]:
    variants = data.variants
    candidates = [
        plot_accuracy(variants),
        plot_accuracy_vs_k(variants),
        plot_latency(variants, data.results),
        plot_cost(variants),
        plot_freshness(data.freshness),
        plot_paraphrases(variants),
    ]
    return [plot for plot in candidates if plot is not None]


# --------------------------------------------------------------------------------------------
# Disagreements


@dataclass
class Disagreement:
    question_id: str
    question: str
    answers: list[str]
    kind: str | None
    answers_by_label: list[tuple[str, str, bool | None, bool]]   # label, prediction, correct, stale


def disagreements(data: RunData, limit: int = MAX_DISAGREEMENTS) -> tuple[list[Disagreement], int]:
    """Questions some variants got right and others wrong (at most ``limit``), and how many there are.

    The most balanced splits come first (half right, half wrong), then the run's question order.
    """
    order = [str(v["label"]) for v in data.variants]
    grouped: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
    for row in data.results:
        qid = str(row.get("question_id"))
        grouped.setdefault(qid, {}).setdefault(str(row.get("label")), row)
    found = []
    for position, (qid, rows) in enumerate(grouped.items()):
        verdicts = [row.get("correct") for row in rows.values() if isinstance(row.get("correct"), bool)]
        right = sum(verdicts)
        if not verdicts or right == 0 or right == len(verdicts):
            continue
        labels = [label for label in order if label in rows] + [l for l in rows if l not in order]
        first = next(iter(rows.values()))
        answers = first.get("answers")
        answers = [_text(a) for a in answers] if isinstance(answers, list) else [_text(answers)] if answers else []
        entry = Disagreement(
            question_id=qid, question=_text(first.get("question")), answers=answers,
            kind=first.get("kind"),
            answers_by_label=[(label, _text(rows[label].get("prediction")),
                               rows[label].get("correct") if isinstance(rows[label].get("correct"), bool) else None,
                               rows[label].get("stale") is True)
                              for label in labels])
        balance = min(right, len(verdicts) - right) / len(verdicts)
        found.append((-balance, position, entry))
    found.sort(key=lambda t: (t[0], t[1]))
    return [entry for _, _, entry in found[:limit]], len(found)


# --------------------------------------------------------------------------------------------
# Writing


def _questions_line(summary: dict[str, Any]) -> str:
    questions = summary.get("questions")
    if not isinstance(questions, dict):
        return _text(questions) if questions else "–"
    text = _text(questions.get("name") or "–")
    parts = []
    if _num(questions.get("count")) is not None:
        parts.append(f"{questions['count']} questions")
    kinds = questions.get("kinds")
    if isinstance(kinds, dict) and kinds:
        parts.append(", ".join(f"{k}: {n}" for k, n in kinds.items()))
    return text + (f" ({'; '.join(parts)})" if parts else "")


def _cost_line(summary: dict[str, Any]) -> str | None:
    cost = summary.get("cost_model")
    if not isinstance(cost, dict):
        return None
    parts = []
    if _num(cost.get("gpu_hour_usd")) is not None:
        parts.append(f"{_usd(cost['gpu_hour_usd'])} per GPU-hour")
    if _num(cost.get("input_usd_per_mtok")) is not None:
        parts.append(f"{_usd(cost['input_usd_per_mtok'])} per million input tokens")
    if _num(cost.get("output_usd_per_mtok")) is not None:
        parts.append(f"{_usd(cost['output_usd_per_mtok'])} per million output tokens")
    if cost.get("basis"):
        parts.append(f"basis: {_text(cost['basis'])}")
    return "; ".join(parts) if parts else None


def _run_name(data: RunData) -> str:
    return _text(data.summary.get("run") or data.run_dir.name)


def _header_facts(data: RunData) -> list[tuple[str, str]]:
    s = data.summary
    facts = [("run", _run_name(data))]
    if s.get("created"):
        facts.append(("created", _text(s["created"])))
    facts.append(("model", _text(s.get("model") or "–")))
    facts.append(("questions", _questions_line(s)))
    if s.get("workspace"):
        facts.append(("workspace", _text(s["workspace"])))
    cost = _cost_line(s)
    if cost:
        facts.append(("cost model", cost))
    return facts


def _notes(data: RunData) -> list[str]:
    notes = []
    if not data.variants:
        notes.append("The summary lists no variants.")
    if data.results_missing:
        notes.append("No results.jsonl in the run folder: no latency distribution and no disagreements.")
    if data.bad_result_lines:
        notes.append(f"{data.bad_result_lines} unreadable line(s) in results.jsonl were skipped.")
    return notes


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_md(cell) for cell in row) + " |")
    return lines


def _render_markdown(data: RunData, plots: list[Plot], table: Table,
                     fresh_table: Table | None, found: list[Disagreement], total: int) -> str:
    lines = [f"# Compare report: {_md(_run_name(data))}", ""]
    for key, value in _header_facts(data):
        lines.append(f"- **{key}**: {_md(value)}")
    lines.append("")
    for note in _notes(data):
        lines += [f"> {_md(note)}", ""]
    lines += ["## Variants", ""]
    if table.rows:
        lines += _md_table(table) + [""]
    else:
        lines += ["No variants in this run.", ""]
    if fresh_table is not None and fresh_table.rows:
        fresh = data.freshness or {}
        lines += ["## Freshness", ""]
        intro = []
        if fresh.get("questions"):
            intro.append(f"question set {_md(fresh['questions'])}")
        if _num(fresh.get("changed_facts")) is not None:
            intro.append(f"{fresh['changed_facts']} changed facts")
        if _num(fresh.get("reindex_seconds")) is not None:
            intro.append(f"re-index {_seconds(fresh['reindex_seconds'])}"
                         + (f" ({_usd(fresh['reindex_cost_usd'])})"
                            if _num(fresh.get("reindex_cost_usd")) is not None else ""))
        if intro:
            lines += ["After the update: " + ", ".join(intro) + ".", ""]
        lines += _md_table(fresh_table) + [""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += [f"### {plot.title}", "", f"![{_md(plot.title)}](plots/{plot.name}.png)", "",
                      _md(plot.caption), ""]
    lines += ["## Where the variants disagree", ""]
    lines += _disagreement_intro(data, found, total)
    for d in found:
        gold = "; ".join(d.answers) if d.answers else "–"
        lines += [f"**{_md(d.question_id)}**: {_md(d.question)}  ", f"Expected: {_md(gold)}", "",
                  "| variant | prediction | |", "|---|---|---|"]
        for label, prediction, correct, stale in d.answers_by_label:
            lines.append(f"| {_md(label)} | {_md(prediction) or '–'} | {_verdict(correct, stale)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _disagreement_intro(data: RunData, found: list[Disagreement], total: int) -> list[str]:
    if data.results_missing:
        return ["No per-question results (results.jsonl) in this run.", ""]
    if len(data.variants) < 2 and len({str(r.get("label")) for r in data.results}) < 2:
        return ["Only one variant in this run: nothing to compare.", ""]
    if not found:
        return ["The variants agreed on every question (all right or all wrong).", ""]
    shown = f"{len(found)} of {total}" if total > len(found) else f"{total}"
    return [f"{shown} question(s) where some variants were right and others wrong "
            f"(most evenly split first).", ""]


def _verdict(correct: bool | None, stale: bool) -> str:
    text = "right" if correct else "wrong" if correct is False else "–"
    return text + (" (old value)" if stale else "")


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Noto Sans JP", sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0 1rem; }
dl.facts dt { font-weight: 600; color: #555; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4rem .8rem; margin: .5rem 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
.question { margin: 1rem 0 .2rem; } .expected { color: #555; font-size: .9rem; }
.right { color: #1a7f37; font-weight: 600; } .wrong { color: #cf222e; font-weight: 600; }
.pred { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60ch; }
"""


def _html_table(table: Table) -> list[str]:
    out = ['<div class="scroll"><table>', "<thead><tr>"
           + "".join(f"<th>{_h(h)}</th>" for h in table.header) + "</tr></thead>", "<tbody>"]
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i > 0 else ""
            cells.append(f"<td{cls}>{_h(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _render_html(data: RunData, plots: list[Plot], table: Table,
                 fresh_table: Table | None, found: list[Disagreement], total: int) -> str:
    title = f"Compare report: {_run_name(data)}"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_h(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{_h(title)}</h1>", '<dl class="facts">']
    for key, value in _header_facts(data):
        out.append(f"<dt>{_h(key)}</dt><dd>{_h(value)}</dd>")
    out.append("</dl>")
    for note in _notes(data):
        out.append(f'<p class="note">{_h(note)}</p>')
    out.append("<h2>Variants</h2>")
    out += _html_table(table) if table.rows else ["<p>No variants in this run.</p>"]
    if fresh_table is not None and fresh_table.rows:
        fresh = data.freshness or {}
        out.append("<h2>Freshness</h2>")
        intro = []
        if fresh.get("questions"):
            intro.append(f"question set {_h(fresh['questions'])}")
        if _num(fresh.get("changed_facts")) is not None:
            intro.append(f"{_h(fresh['changed_facts'])} changed facts")
        if _num(fresh.get("reindex_seconds")) is not None:
            intro.append(f"re-index {_h(_seconds(fresh['reindex_seconds']))}"
                         + (f" ({_h(_usd(fresh['reindex_cost_usd']))})"
                            if _num(fresh.get("reindex_cost_usd")) is not None else ""))
        if intro:
            out.append("<p>After the update: " + ", ".join(intro) + ".</p>")
        out += _html_table(fresh_table)
    if plots:
        out.append("<h2>Plots</h2>")
        for plot in plots:
            encoded = base64.b64encode(plot.png).decode("ascii")
            out += [f"<figure><h3>{_h(plot.title)}</h3>",
                    f'<img src="data:image/png;base64,{encoded}" alt="{_h(plot.title)}">',
                    f"<figcaption>{_h(plot.caption)}</figcaption></figure>"]
    out.append("<h2>Where the variants disagree</h2>")
    for line in _disagreement_intro(data, found, total):
        if line:
            out.append(f"<p>{_h(line)}</p>")
    for d in found:
        gold = "; ".join(d.answers) if d.answers else "–"
        out += [f'<p class="question"><strong>{_h(d.question_id)}</strong>: {_h(d.question)}</p>',
                f'<p class="expected">Expected: {_h(gold)}</p>',
                "<table><thead><tr><th>variant</th><th>prediction</th><th></th></tr></thead><tbody>"]
        for label, prediction, correct, stale in d.answers_by_label:
            cls = "right" if correct else "wrong" if correct is False else ""
            out.append(f"<tr><td>{_h(label)}</td><td class=\"pred\">{_h(prediction) or '–'}</td>"
                       f'<td class="{cls}">{_h(_verdict(correct, stale))}</td></tr>')
        out.append("</tbody></table>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``RUN_DIR/report.md`` (with ``RUN_DIR/plots/*.png``) and ``RUN_DIR/report.html``.

    Returns the two paths. Raises :class:`ReportError` when the folder has no readable summary.
    """
    data = load_run(Path(run_dir))
    plots = build_plots(data)
    table = variants_table(data.variants)
    fresh_table = freshness_table(data.freshness) if data.freshness else None
    found, total = disagreements(data)

    plots_dir = data.run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    wanted = {f"{plot.name}.png" for plot in plots}
    for stale in plots_dir.glob("*.png"):   # plots of an earlier report that no longer apply
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
    for plot in plots:
        _write_atomic(plots_dir / f"{plot.name}.png", plot.png)
    md_path = data.run_dir / "report.md"
    html_path = data.run_dir / "report.html"
    _write_atomic(md_path, _render_markdown(data, plots, table, fresh_table, found, total).encode("utf-8"))
    _write_atomic(html_path, _render_html(data, plots, table, fresh_table, found, total).encode("utf-8"))
    return md_path, html_path

