"""Total cost and staleness over a year, projected from a run's measured costs."""

from __future__ import annotations

import pytest

from infuse.evaluation.cost_over_time import CostScenario, cost_over_time
from infuse.evaluation.report_plots import plot_cost_over_time
from infuse.evaluation.runs import CompareSummary


def _summary(with_freshness: bool = True) -> CompareSummary:
    training = {"adapter": "p4-lora", "wall_seconds": 36.0, "cost_usd": 0.02}
    return CompareSummary.from_json(
        {
            "run": "r",
            "variants": [
                {"label": "base", "variant": "base", "accuracy": 0.25, "cost_per_1k_usd": 0.005},
                {"label": "rag@1", "variant": "rag", "accuracy": 0.99, "cost_per_1k_usd": 0.01},
                {"label": "rag@3", "variant": "rag", "accuracy": 0.75, "cost_per_1k_usd": 0.02},
                {
                    "label": "ft:p4-lora",
                    "variant": "ft",
                    "adapter": "p4-lora",
                    "accuracy": 0.9,
                    "cost_per_1k_usd": 0.005,
                    "training": training,
                },
                {
                    "label": "ft:p4-lora+rag@1",
                    "variant": "ft+rag",
                    "adapter": "p4-lora",
                    "accuracy": 0.92,
                    "cost_per_1k_usd": 0.01,
                    "training": training,
                },
            ],
            "freshness": {
                "reindex_seconds": 0.3,
                "reindex_cost_usd": 0.001,
                "variants": [
                    {"label": "rag@1", "variant": "rag", "stale_share": 0.0},
                    {"label": "rag@3", "variant": "rag", "stale_share": 0.1},
                    {"label": "ft:p4-lora", "variant": "ft", "stale_share": 0.8, "retrain_seconds": 36.0},
                    {"label": "ft:p4-lora+rag@1", "variant": "ft+rag", "stale_share": 0.3},
                ],
            }
            if with_freshness
            else None,
        }
    )


def test_each_approach_is_projected_from_its_measured_costs() -> None:
    scenario = CostScenario(months=12, updates_per_month=4, questions_per_day=1000, retrain_every=4)
    rag, ft, hybrid = cost_over_time(_summary(), scenario)
    assert (rag.label, ft.label, hybrid.label) == ("rag@1", "ft:p4-lora", "ft:p4-lora+rag@1")  # the most accurate
    days = 360
    assert rag.cumulative_usd[-1] == pytest.approx(days * 0.01 + 48 * 0.001)  # serving + 48 re-indexes
    assert ft.cumulative_usd[0] == pytest.approx(0.02)  # trained once before the first question
    assert ft.cumulative_usd[-1] == pytest.approx(0.02 + days * 0.005 + 12 * 0.02)  # + a retrain every 4 updates
    assert hybrid.cumulative_usd[-1] == pytest.approx(0.02 + days * 0.01 + 48 * 0.001)
    for series in (rag, ft, hybrid):
        assert len(series.cumulative_usd) == 13 and len(series.stale) == 12
        assert all(b >= a for a, b in zip(series.cumulative_usd, series.cumulative_usd[1:]))
    assert set(rag.stale) == {0.0}
    assert all(0 < s < 0.8 for s in ft.stale)  # stale between an update and the retrain that includes it
    assert hybrid.stale[-1] == 0.3


def test_more_frequent_retraining_costs_more_and_is_staler_less_often() -> None:
    often = cost_over_time(_summary(), CostScenario(retrain_every=1))[1]
    rarely = cost_over_time(_summary(), CostScenario(retrain_every=8))[1]
    assert often.cumulative_usd[-1] > rarely.cumulative_usd[-1]
    assert sum(often.stale) == 0.0 and sum(rarely.stale) > 0  # retrained on the day of each update


def test_no_updates_means_serving_and_one_training_only() -> None:
    rag, ft, hybrid = cost_over_time(_summary(), CostScenario(updates_per_month=0))
    assert rag.cumulative_usd[-1] == pytest.approx(360 * 0.01)
    assert ft.cumulative_usd[-1] == pytest.approx(0.02 + 360 * 0.005)
    assert all(s == 0.0 for series in (rag, ft, hybrid) for s in series.stale)


def test_the_report_plot_needs_the_update_scenario() -> None:
    assert cost_over_time(_summary(False)) == [] and plot_cost_over_time(_summary(False)) is None
    plot = plot_cost_over_time(_summary())
    assert plot is not None and plot.png.startswith(b"\x89PNG")
    assert "After 12 months: RAG $3.65" in plot.caption
    with pytest.raises(ValueError, match="retrain_every >= 1"):
        CostScenario(retrain_every=0)


def test_infuse_report_takes_the_usage_to_project_over(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from infuse.cli import app
    from infuse.evaluation.runs import write_run
    from infuse.workspace import Workspace

    Workspace.open(tmp_path / "ws", create=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run(run_dir, _summary(), [])
    runner = CliRunner()
    ws = ["-w", str(tmp_path / "ws")]
    default = runner.invoke(app, [*ws, "report", str(run_dir), "--json"])
    assert default.exit_code == 0, default.output
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "4 updates a month, 1,000 questions a day, FT retrained every 4 updates" in markdown
    options = ["--updates-per-month", "8", "--questions-per-day", "50", "--retrain-every", "2", "--months", "6"]
    chosen = runner.invoke(app, [*ws, "report", str(run_dir), *options, "--json"])
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["markdown"] == str(run_dir / "report.md")
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "8 updates a month, 50 questions a day, FT retrained every 2 updates" in markdown
    assert "After 6 months" in markdown
    bad = runner.invoke(app, [*ws, "report", str(run_dir), "--retrain-every", "0"])
    assert bad.exit_code != 0
