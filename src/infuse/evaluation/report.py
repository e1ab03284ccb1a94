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

The report opens with the verdict: the advisor's recommendation for the run (:func:`infuse.advice.advise`
with no stated constraints, or the `criteria` given) and its top reasons, so a reader gets the
answer before the evidence. It ends with the questions where the variants disagree (some right,
some wrong), with each variant's prediction and the passages each retrieval variant showed the
model, so a reader can see *what* one method gets that the other misses, and why.

Tables fit the page: each sits in its own horizontally scrolling box (``overflow-x: auto``) and
long cells wrap, so a wide table scrolls inside itself instead of widening the page.

The run is read by the one run loader (:func:`infuse.evaluation.runs.read_run`, typed records);
the tables are built in :mod:`infuse.evaluation.report_tables`, the plots drawn in
:mod:`infuse.evaluation.report_plots`, and this module lays both out as Markdown and HTML.

>>> md_path, html_path = write_report(ws.runs_dir / "20261121-031500-lab")   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path

from infuse.advice import Criteria, Recommendation, advise
from infuse.evaluation.cost_over_time import CostScenario
from infuse.evaluation.report_plots import Plot, build_plots
from infuse.evaluation.report_tables import (
    Disagreement,
    Table,
    disagreements,
    fmt_seconds,
    fmt_usd,
    freshness_table,
    variants_table,
)
from infuse.evaluation.runs import CompareRun, CostModel, QuestionsInfo, RunFileError, read_run

__all__ = ["ReportError", "load_run", "write_report", "verdict", "disagreements", "Plot", "build_plots"]

# A run folder that cannot be reported on is a run folder that cannot be read: one error class.
ReportError = RunFileError


def load_run(run_dir: Path) -> CompareRun:
    """Read ``summary.json`` (required) and ``results.jsonl`` (optional) of a compare run."""
    return read_run(Path(run_dir))


def _md(value: object) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, no raw HTML."""
    text = " ".join(str(value).split())
    return html.escape(text, quote=False).replace("|", "\\|")


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------------------------
# Writing


def _questions_line(questions: QuestionsInfo | None) -> str:
    if questions is None:
        return "–"
    parts = []
    if questions.count is not None:
        parts.append(f"{questions.count} questions")
    if questions.kinds:
        parts.append(", ".join(f"{k}: {n}" for k, n in questions.kinds.items()))
    return (questions.name or "–") + (f" ({'; '.join(parts)})" if parts else "")


def _cost_line(cost: CostModel | None) -> str | None:
    if cost is None:
        return None
    parts = []
    if cost.machine_hour_usd is not None:
        parts.append(f"{fmt_usd(cost.machine_hour_usd)} per machine-hour")
    if cost.gpu_hour_usd is not None:
        parts.append(f"{fmt_usd(cost.gpu_hour_usd)} per GPU-hour")
    if cost.input_usd_per_mtok is not None:
        parts.append(f"{fmt_usd(cost.input_usd_per_mtok)} per million input tokens")
    if cost.output_usd_per_mtok is not None:
        parts.append(f"{fmt_usd(cost.output_usd_per_mtok)} per million output tokens")
    if cost.basis:
        parts.append(f"basis: {cost.basis}")
    return "; ".join(parts) if parts else None


def _run_name(run: CompareRun) -> str:
    return run.summary.run or run.path.name


def _header_facts(run: CompareRun) -> list[tuple[str, str]]:
    s = run.summary
    facts = [("run", _run_name(run))]
    if s.created:
        facts.append(("created", s.created))
    facts.append(("model", s.model or "–"))
    facts.append(("questions", _questions_line(s.questions)))
    if s.workspace:
        facts.append(("workspace", s.workspace))
    cost = _cost_line(s.cost_model)
    if cost:
        facts.append(("cost model", cost))
    return facts


TOP_REASONS = 3  # reasons quoted under the verdict


def verdict(run: CompareRun, criteria: Criteria | None = None) -> Recommendation:
    """The advisor's recommendation for the run (no stated constraints unless `criteria`)."""
    return advise(criteria or Criteria(), run.summary)


def _verdict_lines(rec: Recommendation, stated: bool, run_name: str) -> tuple[str, list[str], str]:
    headline = f"Recommendation: {rec.approach} (confidence: {rec.confidence})"
    scope = (
        "For the constraints given."
        if stated
        else f"With no constraints stated; `infuse advise --run {run_name}` with yours (--updates, "
        "--latency-ms, --training-budget, --style) may choose differently."
    )
    return headline, rec.reasons[:TOP_REASONS], scope


def _notes(run: CompareRun) -> list[str]:
    notes = []
    caveat = run.summary.timing.caveat() if run.summary.timing else None
    if caveat:
        notes.append(caveat)
    if not run.summary.variants:
        notes.append("The summary lists no variants.")
    if run.results_missing:
        notes.append("No results.jsonl in the run folder: no latency distribution and no disagreements.")
    if run.bad_result_lines:
        notes.append(f"{run.bad_result_lines} unreadable line(s) in results.jsonl were skipped.")
    return notes


def _freshness_intro(run: CompareRun, escape: Callable[[object], str]) -> str | None:
    """ "After the update: question set X, N changed facts, re-index 1.2 s ($0.0007)." (or None)."""
    fresh = run.summary.freshness
    if fresh is None:
        return None
    intro = []
    if fresh.questions:
        intro.append(f"question set {escape(fresh.questions)}")
    if fresh.changed_facts is not None:
        intro.append(f"{escape(fresh.changed_facts)} changed facts")
    if fresh.reindex_seconds is not None:
        intro.append(
            f"re-index {escape(fmt_seconds(fresh.reindex_seconds))}"
            + (f" ({escape(fmt_usd(fresh.reindex_cost_usd))})" if fresh.reindex_cost_usd is not None else "")
        )
    return "After the update: " + ", ".join(intro) + "." if intro else None


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in table.header) + " |", "|" + "|".join("---" for _ in table.header) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_md(cell) for cell in row) + " |")
    return lines


def _render_markdown(
    run: CompareRun,
    plots: list[Plot],
    table: Table,
    fresh_table: Table | None,
    found: list[Disagreement],
    total: int,
    verdict_lines: tuple[str, list[str], str],
) -> str:
    headline, reasons, scope = verdict_lines
    lines = [f"# Compare report: {_md(_run_name(run))}", "", f"**{_md(headline)}**", ""]
    lines += [f"- {_md(reason)}" for reason in reasons]
    lines += ["", f"_{_md(scope)}_", ""]
    for key, value in _header_facts(run):
        lines.append(f"- **{key}**: {_md(value)}")
    lines.append("")
    for note in _notes(run):
        lines += [f"> {_md(note)}", ""]
    lines += ["## Variants", ""]
    if table.rows:
        lines += _md_table(table) + [""]
    else:
        lines += ["No variants in this run.", ""]
    if fresh_table is not None and fresh_table.rows:
        lines += ["## Freshness", ""]
        intro = _freshness_intro(run, _md)
        if intro:
            lines += [intro, ""]
        lines += _md_table(fresh_table) + [""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += [
                f"### {plot.title}",
                "",
                f"![{_md(plot.title)}](plots/{plot.name}.png)",
                "",
                _md(plot.caption),
                "",
            ]
    lines += ["## Where the variants disagree", ""]
    lines += _disagreement_intro(run, found, total)
    for d in found:
        gold = "; ".join(d.answers) if d.answers else "–"
        lines += [
            f"**{_md(d.question_id)}**: {_md(d.question)}  ",
            f"Expected: {_md(gold)}",
            "",
            "| variant | prediction | |",
            "|---|---|---|",
        ]
        for label, prediction, correct, stale in d.answers_by_label:
            lines.append(f"| {_md(label)} | {_md(prediction) or '–'} | {_verdict(correct, stale)} |")
        lines.append("")
        for label, passages in d.passages_by_label.items():
            lines.append(f"Passages {_md(label)} saw:" if passages else f"{_md(label)}: {_NOTHING_SEEN}")
            lines += [f"{i}. `{_md(source)}`: {_md(text) or '–'}" for i, (source, text) in enumerate(passages, 1)]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_NOTHING_SEEN = "nothing relevant retrieved; answered closed book"


def _disagreement_intro(run: CompareRun, found: list[Disagreement], total: int) -> list[str]:
    if run.results_missing:
        return ["No per-question results (results.jsonl) in this run.", ""]
    if len(run.summary.variants) < 2 and len({r.label for r in run.records}) < 2:
        return ["Only one variant in this run: nothing to compare.", ""]
    if not found:
        return ["The variants agreed on every question (all right or all wrong).", ""]
    shown = f"{len(found)} of {total}" if total > len(found) else f"{total}"
    return [f"{shown} question(s) where some variants were right and others wrong (most evenly split first).", ""]


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
.verdict { background: #eef6ff; border-left: 4px solid #2f6fde; padding: .5rem 1rem; margin: .8rem 0 1.2rem; }
.verdict p.headline { font-size: 1.15rem; font-weight: 700; margin: .2rem 0; } .verdict ul { margin: .3rem 0; }
.verdict p.scope { font-size: .85rem; color: #555; margin: .2rem 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .55rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
details.passages { margin: .2rem 0 .8rem; font-size: .85rem; } details.passages ol { margin: .3rem 0; }
details.passages .src { font-family: ui-monospace, monospace; color: #555; overflow-wrap: anywhere; }
details.passages .text { white-space: pre-wrap; overflow-wrap: anywhere; }
th { background: #f3f4f6; } tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
.question { margin: 1rem 0 .2rem; } .expected { color: #555; font-size: .9rem; }
.right { color: #1a7f37; font-weight: 600; } .wrong { color: #cf222e; font-weight: 600; }
.pred { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60ch; }
"""


def _html_table(table: Table) -> list[str]:
    out = [
        '<div class="scroll"><table>',
        "<thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in table.header) + "</tr></thead>",
        "<tbody>",
    ]
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i > 0 else ""
            cells.append(f"<td{cls}>{_h(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _render_html(
    run: CompareRun,
    plots: list[Plot],
    table: Table,
    fresh_table: Table | None,
    found: list[Disagreement],
    total: int,
    verdict_lines: tuple[str, list[str], str],
) -> str:
    title = f"Compare report: {_run_name(run)}"
    headline, reasons, scope = verdict_lines
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_h(title)}</h1>",
        '<section class="verdict">',
        f'<p class="headline">{_h(headline)}</p>',
        "<ul>",
        *[f"<li>{_h(reason)}</li>" for reason in reasons],
        "</ul>",
        f'<p class="scope">{_h(scope)}</p>',
        "</section>",
        '<dl class="facts">',
    ]
    for key, value in _header_facts(run):
        out.append(f"<dt>{_h(key)}</dt><dd>{_h(value)}</dd>")
    out.append("</dl>")
    for note in _notes(run):
        out.append(f'<p class="note">{_h(note)}</p>')
    out.append("<h2>Variants</h2>")
    out += _html_table(table) if table.rows else ["<p>No variants in this run.</p>"]
    if fresh_table is not None and fresh_table.rows:
        out.append("<h2>Freshness</h2>")
        intro = _freshness_intro(run, _h)
        if intro:
            out.append(f"<p>{intro}</p>")
        out += _html_table(fresh_table)
    if plots:
        out.append("<h2>Plots</h2>")
        for plot in plots:
            encoded = base64.b64encode(plot.png).decode("ascii")
            out += [
                f"<figure><h3>{_h(plot.title)}</h3>",
                f'<img src="data:image/png;base64,{encoded}" alt="{_h(plot.title)}">',
                f"<figcaption>{_h(plot.caption)}</figcaption></figure>",
            ]
    out.append("<h2>Where the variants disagree</h2>")
    for line in _disagreement_intro(run, found, total):
        if line:
            out.append(f"<p>{_h(line)}</p>")
    for d in found:
        gold = "; ".join(d.answers) if d.answers else "–"
        out += [
            f'<p class="question"><strong>{_h(d.question_id)}</strong>: {_h(d.question)}</p>',
            f'<p class="expected">Expected: {_h(gold)}</p>',
            '<div class="scroll"><table><thead><tr><th>variant</th><th>prediction</th><th></th></tr></thead><tbody>',
        ]
        for label, prediction, correct, stale in d.answers_by_label:
            cls = "right" if correct else "wrong" if correct is False else ""
            out.append(
                f'<tr><td>{_h(label)}</td><td class="pred">{_h(prediction) or "–"}</td>'
                f'<td class="{cls}">{_h(_verdict(correct, stale))}</td></tr>'
            )
        out.append("</tbody></table></div>")
        for label, passages in d.passages_by_label.items():
            if not passages:
                out.append(f'<p class="expected">{_h(label)}: {_h(_NOTHING_SEEN)}</p>')
                continue
            out.append(
                f'<details class="passages" open><summary>Passages {_h(label)} saw ({len(passages)})</summary><ol>'
            )
            out += [
                f'<li><span class="src">{_h(source)}</span><br><span class="text">{_h(text) or "–"}</span></li>'
                for source, text in passages
            ]
            out.append("</ol></details>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_report(
    run_dir: Path, criteria: Criteria | None = None, scenario: CostScenario | None = None
) -> tuple[Path, Path]:
    """Write ``RUN_DIR/report.md`` (with ``RUN_DIR/plots/*.png``) and ``RUN_DIR/report.html``; the
    verdict at the top is the advice for `criteria` (none stated: the advisor's defaults); the
    cost-over-time plot projects the run over `scenario` (None: :class:`CostScenario`'s defaults).

    Returns the two paths. Raises :class:`ReportError` when the folder has no readable summary.
    """
    run = load_run(Path(run_dir))
    verdict_lines = _verdict_lines(verdict(run, criteria), criteria is not None, _run_name(run))
    plots = build_plots(run, scenario)
    table = variants_table(run.summary.variants)
    fresh_table = freshness_table(run.summary.freshness) if run.summary.freshness else None
    found, total = disagreements(run)

    plots_dir = run.path / "plots"
    plots_dir.mkdir(exist_ok=True)
    wanted = {f"{plot.name}.png" for plot in plots}
    for stale in plots_dir.glob("*.png"):  # plots of an earlier report that no longer apply
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
    for plot in plots:
        _write_atomic(plots_dir / f"{plot.name}.png", plot.png)
    md_path = run.path / "report.md"
    html_path = run.path / "report.html"
    _write_atomic(
        md_path, _render_markdown(run, plots, table, fresh_table, found, total, verdict_lines).encode("utf-8")
    )
    _write_atomic(html_path, _render_html(run, plots, table, fresh_table, found, total, verdict_lines).encode("utf-8"))
    return md_path, html_path
