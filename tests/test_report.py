"""The compare report: Markdown + self-contained HTML with plots, from a hand-written run folder."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from infuse.errors import InfuseError
from infuse.evaluation.report import ReportError, disagreements, load_run, write_report

EVIL = 'Who founded <script>alert("x")</script> Velmora & Sons?'


def _variant(
    label,
    variant,
    accuracy,
    ci,
    *,
    adapter=None,
    k=None,
    median=12.0,
    cost=0.0067,
    retrieval=None,
    training=None,
    f1=None,
    acc_norm=None,
):
    return {
        "label": label,
        "variant": variant,
        "adapter": adapter,
        "k": k,
        "n": 40,
        "accuracy": accuracy,
        "ci": ci,
        "f1": f1,
        "acc_norm": acc_norm,
        "latency_ms": {"mean": median + 1, "median": median, "p90": median * 1.4},
        "retrieval_ms_mean": 0.0 if variant in ("base", "ft") else 3.5,
        "prompt_tokens_mean": 9.0 if k is None else 9.0 + 40 * k,
        "completion_tokens_mean": 1.0,
        "retrieval": retrieval,
        "cost_per_1k_usd": cost,
        "found_relevant_share": None,
        "training": training,
    }


def _training(adapter, paraphrases, seconds, cost, kind="paraphrase"):
    return {
        "adapter": adapter,
        "method": "lora",
        "wall_seconds": seconds,
        "cost_usd": cost,
        "dataset": {
            "name": adapter.removesuffix("-lora"),
            "kind": kind,
            "paraphrases": paraphrases,
            "rows": 50 * (paraphrases + 1),
        },
    }


def _summary() -> dict:
    t1 = _training("variants-1-lora", 1, 12.3, 0.0068)
    t5 = _training("variants-5-lora", 5, 40.1, 0.022)
    variants = [
        _variant("base", "base", 0.056, [0.03, 0.09], acc_norm=0.05),
        _variant(
            "rag@1",
            "rag",
            0.85,
            [0.74, 0.94],
            k=1,
            median=20.0,
            cost=0.011,
            retrieval={"recall_at_k": 0.98, "mrr": 0.97, "ndcg": 0.97},
            acc_norm=0.84,
        ),
        _variant(
            "rag@3",
            "rag",
            0.9,
            [0.8, 0.97],
            k=3,
            median=31.0,
            cost=0.017,
            retrieval={"recall_at_k": 0.99, "mrr": 0.975, "ndcg": 0.98},
            acc_norm=0.88,
        ),
        _variant("ft:variants-1-lora", "ft", 0.2, [0.1, 0.33], adapter="variants-1-lora", training=t1, acc_norm=0.21),
        _variant("ft:variants-5-lora", "ft", 0.45, [0.3, 0.6], adapter="variants-5-lora", training=t5, acc_norm=0.44),
        _variant(
            "ft:variants-5-lora+rag@3",
            "ft+rag",
            0.92,
            [0.83, 0.98],
            adapter="variants-5-lora",
            k=3,
            median=33.0,
            cost=0.018,
            training=t5,
            retrieval={"recall_at_k": 0.99, "mrr": 0.975, "ndcg": 0.98},
            acc_norm=0.9,
        ),
    ]
    return {
        "run": "20261121-031500-lab",
        "created": "2026-11-21T03:15:00+0000",
        "workspace": "/abs/ws",
        "model": "/abs/lab-model",
        "questions": {"name": "new_mc", "count": 40, "kinds": {"mc": 40}},
        "cost_model": {
            "gpu_hour_usd": 2.0,
            "input_usd_per_mtok": None,
            "output_usd_per_mtok": None,
            "basis": "gpu_time",
        },
        "variants": variants,
        "freshness": {
            "questions": "updates",
            "changed_facts": 10,
            "reindex_seconds": 1.2,
            "reindex_cost_usd": 0.0007,
            "variants": [
                {
                    "label": "rag@3",
                    "variant": "rag",
                    "adapter": None,
                    "accuracy": 0.9,
                    "ci": [0.6, 1.0],
                    "stale_share": 0.0,
                    "n": 10,
                },
                {
                    "label": "ft:variants-5-lora",
                    "variant": "ft",
                    "adapter": "variants-5-lora",
                    "accuracy": 0.1,
                    "ci": [0.0, 0.3],
                    "stale_share": 0.7,
                    "n": 10,
                    "retrain_seconds": 40.1,
                },
            ],
        },
    }


def _results(summary: dict) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for q in range(40):
        question = EVIL if q == 0 else f"What is the capital of province {q}?"
        for v in summary["variants"]:
            correct = rng.random() < v["accuracy"]
            if q == 0:  # a guaranteed, evenly split disagreement on the question with markup in it
                correct = v["k"] is not None
            rows.append(
                {
                    "question_id": f"q{q:03d}",
                    "label": v["label"],
                    "kind": "mc",
                    "question": question,
                    "prediction": "Tarn <b>Velmora</b>" if correct else "Oskel",
                    "answers": ["Tarn <b>Velmora</b>"],
                    "correct": correct,
                    "f1": None,
                    "acc_norm": correct,
                    "stale": None,
                    "latency_ms": v["latency_ms"]["median"] * rng.uniform(0.7, 1.6),
                    "retrieval_ms": v["retrieval_ms_mean"],
                    "prompt_tokens": 9,
                    "completion_tokens": 1,
                    "retrieved": [] if v["k"] is None else ["world/p1.md"] * v["k"],
                    "gold_rank": None,
                }
            )
    return rows


def _write_run(run_dir: Path, summary: dict, results: list[dict] | None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if results is not None:
        with (run_dir / "results.jsonl").open("w", encoding="utf-8") as handle:
            for row in results:
                handle.write(json.dumps(row) + "\n")
    return run_dir


def _images(page: str) -> int:
    return page.count('<img src="data:image/png;base64,')


def test_full_report(tmp_path):
    summary = _summary()
    run = _write_run(tmp_path / "runs" / summary["run"], summary, _results(summary))
    md_path, html_path = write_report(run)

    assert md_path == run / "report.md" and html_path == run / "report.html"
    md, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")
    plots = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert plots == sorted(
        [
            "accuracy.png",
            "accuracy_vs_k.png",
            "latency.png",
            "cost.png",
            "freshness.png",
            "paraphrases.png",
            "cost_over_time.png",
        ]
    )
    for name in plots:
        assert (run / "plots" / name).read_bytes().startswith(b"\x89PNG")
        assert f"](plots/{name})" in md

    # self-contained: every plot inlined, nothing fetched from anywhere
    assert _images(page) == 7
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 7 and all(s.startswith("data:image/png;base64,") for s in sources)

    # header and table values
    for text in ("20261121-031500-lab", "/abs/lab-model", "new_mc", "$2.00 per GPU-hour"):
        assert text in md and text in page
    for value in (
        "5.6% (3.0–9.0)",
        "90.0% (80.0–97.0)",
        "92.0% (83.0–98.0)",
        "$0.0067",
        "$0.017",
        "98.0%",
        "0.975",
        "40.1 s",
        "$0.022",
        "31.0 ms",
        "43.4 ms",
        "acc_norm",
        "recall@k",
    ):
        assert value in md, value
        assert value in page, value
    assert "F1" not in md.split("## Variants")[1].split("\n")[2]  # no F1 column without F1 values

    # freshness table
    assert "70.0%" in md and "retrain 40.1 s" in md and "re-index 1.2 s" in md
    assert "70.0%" in page and "10 changed facts" in page

    # user text is escaped in HTML, never raw
    assert EVIL not in page
    assert "Who founded &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Velmora &amp; Sons?" in page
    assert "Tarn &lt;b&gt;Velmora&lt;/b&gt;" in page and "<b>Velmora" not in page
    assert "<script>" not in md

    # disagreements: q000 is one, base wrong and the others right
    assert "Where the variants disagree" in md and "Where the variants disagree" in page
    section = page.split("Where the variants disagree")[1]
    assert "q000" in section and section.count('<p class="question">') <= 10
    found, total = disagreements(load_run(run))
    assert 1 <= len(found) <= 10 and total >= len(found)
    q0 = next(d for d in found if d.question_id == "q000")
    verdicts = {label: correct for label, _, correct, _ in q0.answers_by_label}
    assert verdicts == {
        "base": False,
        "rag@1": True,
        "rag@3": True,
        "ft:variants-1-lora": False,
        "ft:variants-5-lora": False,
        "ft:variants-5-lora+rag@3": True,
    }
    assert found[0].question_id == "q000"  # the most even split comes first


def test_minimal_run_only_base(tmp_path):
    summary = {
        "run": "only-base",
        "model": "m",
        "questions": {"name": "qs", "count": 3, "kinds": {"short": 3}},
        "variants": [
            {
                "label": "base",
                "variant": "base",
                "accuracy": 0.5,
                "ci": None,
                "f1": 0.6,
                "latency_ms": {"median": 5.0},
                "cost_per_1k_usd": None,
            }
        ],
        "freshness": None,
    }
    results = [
        {
            "question_id": f"q{i}",
            "label": "base",
            "kind": "short",
            "question": f"q {i}",
            "prediction": "x",
            "answers": ["x"],
            "correct": i % 2 == 0,
            "f1": 0.5,
            "latency_ms": 4.0 + i,
        }
        for i in range(3)
    ]
    run = _write_run(tmp_path / "only-base", summary, results)
    md_path, html_path = write_report(run)
    page = html_path.read_text(encoding="utf-8")
    md = md_path.read_text(encoding="utf-8")
    assert sorted(p.name for p in (run / "plots").glob("*.png")) == ["accuracy.png", "latency.png"]
    assert _images(page) == 2
    assert "50.0%" in md and "60.0%" in md  # accuracy without CI, and the F1 column
    assert "nothing to compare" in md
    assert "Freshness" not in md


def test_odd_fields_and_no_results(tmp_path):
    summary = {
        "variants": [
            {
                "variant": "rag",
                "k": "three",
                "accuracy": "n/a",
                "ci": [0.1],
                "latency_ms": None,
                "training": "oops",
                "retrieval": [],
            },
            "not a variant",
        ],
        "questions": "free text",
        "freshness": {"variants": None},
        "cost_model": None,
    }
    run = _write_run(tmp_path / "odd", summary, None)
    (run / "plots").mkdir()
    (run / "plots" / "paraphrases.png").write_bytes(b"old")  # left from an earlier report
    md_path, html_path = write_report(run)
    md = md_path.read_text(encoding="utf-8")
    assert "No results.jsonl" in md and "rag" in md
    assert _images(html_path.read_text(encoding="utf-8")) == 0
    assert not (run / "plots" / "paraphrases.png").exists()


def test_bad_result_lines_are_skipped(tmp_path):
    summary = _summary()
    summary["freshness"] = None
    run = _write_run(tmp_path / "r", summary, _results(summary))
    with (run / "results.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("{not json\n[1, 2]\n")
    md_path, html_path = write_report(run)
    assert "2 unreadable line(s)" in md_path.read_text(encoding="utf-8")
    assert _images(html_path.read_text(encoding="utf-8")) == 5  # no freshness plot


def test_missing_summary_is_a_clear_error(tmp_path):
    run = tmp_path / "runs" / "nope"
    run.mkdir(parents=True)
    with pytest.raises(ReportError, match=r"nope.*summary\.json") as info:
        write_report(run)
    assert isinstance(info.value, InfuseError)
    with pytest.raises(ReportError, match="no such compare run folder"):
        write_report(tmp_path / "missing")
    (run / "summary.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ReportError, match="summary.json"):
        write_report(run)


def test_report_opens_with_the_verdict_and_its_top_reasons(tmp_path):
    summary = _summary()
    run = _write_run(tmp_path / "runs" / summary["run"], summary, _results(summary))
    md_path, html_path = write_report(run)
    md, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")
    body = page.split("<body>", 1)[1]
    # the first thing after the title is the recommendation, before the run's facts and tables
    assert body.index('class="verdict"') < body.index('class="facts"') < body.index("<h2>Variants</h2>")
    assert re.search(r'<p class="headline">Recommendation: [a-z]', body)
    assert body.index("Best measured variant: ft:variants-5-lora+rag@3") < body.index('class="facts"')
    assert len(re.findall(r"<li>", body.split("</section>", 1)[0])) == 3
    first = md.split("- **run**", 1)[0]
    assert "**Recommendation: " in first and "Best measured variant" in first and "no constraints stated" in first


def test_tables_scroll_inside_themselves(tmp_path):
    summary = _summary()
    run = _write_run(tmp_path / "runs" / summary["run"], summary, _results(summary))
    page = write_report(run)[1].read_text(encoding="utf-8")
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", page)
    tables = page.count("<table>")
    assert tables >= 3 and page.count('<div class="scroll"><table>') == tables  # disagreements too
    assert "overflow-wrap: anywhere" in page.split("th, td {", 1)[1].split("}", 1)[0]


def test_disagreements_show_the_passages_each_rag_variant_saw(tmp_path):
    summary = _summary()
    results = _results(summary)
    for row in results:
        if row["question_id"] == "q000" and row["label"] == "rag@1":
            row["retrieved"], row["passages"] = ["world/p1.md"], ["Tarn <i>Velmora</i> founded it in 1921."]
        if row["question_id"] == "q000" and row["label"] == "rag@3":
            row["retrieved"], row["found_relevant"] = [], False
    run = _write_run(tmp_path / "runs" / summary["run"], summary, results)
    md_path, html_path = write_report(run)
    md, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")
    first = page.split('<p class="question">', 2)[1]  # q000: the evenly split question comes first
    assert "Passages rag@1 saw (1)" in first and "world/p1.md" in first
    assert "Tarn &lt;i&gt;Velmora&lt;/i&gt; founded it in 1921." in first
    assert "rag@3: nothing relevant retrieved" in first
    assert "Passages ft:variants-5-lora+rag@3 saw (3)" in first  # an older record: sources only
    assert "base saw" not in first  # closed book variants saw nothing
    assert "Passages rag@1 saw:" in md and "1. `world/p1.md`: Tarn &lt;i&gt;Velmora&lt;/i&gt; founded it" in md


def test_update_cost_lists_each_retrain_once():
    from infuse.evaluation.report_plots import update_times
    from infuse.evaluation.runs import Freshness

    fresh = Freshness.from_json(
        {
            "reindex_seconds": 1.2,
            "variants": [
                {"label": "rag@1", "variant": "rag", "accuracy": 0.9},
                {"label": "ft:a", "variant": "ft", "adapter": "a", "accuracy": 0.1, "retrain_seconds": 40.1},
                {"label": "ft:a+rag@1", "variant": "ft+rag", "adapter": "a", "accuracy": 0.8, "retrain_seconds": 40.1},
                {"label": "ft:b", "variant": "ft", "adapter": "b", "accuracy": 0.2, "retrain_seconds": 12.0},
            ],
        }
    )
    assert fresh is not None
    assert update_times(fresh) == [("re-index", 1.2), ("retrain a", 40.1), ("retrain b", 12.0)]


def test_noisy_timings_are_a_note_in_the_report(tmp_path):
    summary = _summary()
    summary["timing"] = {"cpu_count": 2, "load_before": [4.0, 3.0, 2.0], "load_after": [4.5, 3.0, 2.0]}
    run = _write_run(tmp_path / "runs" / summary["run"], summary, _results(summary))
    md_path, html_path = write_report(run)
    for text in (md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")):
        assert "Timings are noisy" in text and "above its 2 cores" in text
