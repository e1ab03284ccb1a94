"""The fine-tuning commands end to end through the CLI: dataset build/list, tune, adapters, ask --adapter NAME."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from infuse.cli import app
from infuse.workspace import Workspace


def _json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_dataset_tune_adapters_and_ask_by_run_name(lab_ws: Workspace, tiny_lab_model_dir: str) -> None:
    runner = CliRunner()
    ws = ["-w", str(lab_ws.path)]
    built = _json(
        runner.invoke(
            app,
            [
                *ws,
                "dataset",
                "build",
                "--kind",
                "paraphrase",
                "--paraphrases",
                "2",
                "--model",
                tiny_lab_model_dir,
                "--json",
            ],
        )
    )
    assert built["name"] == "paraphrase" and built["manifest"]["generator"] == "lab world templates"
    assert built["manifest"]["tokens"] > 0 and built["manifest"]["rows"] == 3 * 8
    listed = _json(runner.invoke(app, [*ws, "dataset", "list", "--json"]))
    assert [d["name"] for d in listed] == ["paraphrase"]

    run = _json(
        runner.invoke(
            app,
            [
                *ws,
                "tune",
                "--dataset",
                "paraphrase",
                "--model",
                tiny_lab_model_dir,
                "--max-steps",
                "3",
                "--seq-len",
                "128",
                "--device",
                "cpu",
                "--json",
            ],
        )
    )
    assert run["name"] == "paraphrase-lora" and run["status"] == "complete" and run["steps"] == 3
    assert [r["name"] for r in _json(runner.invoke(app, [*ws, "adapters", "list", "--json"]))] == ["paraphrase-lora"]
    shown = _json(runner.invoke(app, [*ws, "adapters", "show", "paraphrase-lora", "--json"]))
    assert shown["hyperparameters"]["max_steps"] == 3 and shown["checkpoints"] == []

    merged = _json(runner.invoke(app, [*ws, "adapters", "merge", "paraphrase-lora", "--json"]))
    assert merged["max_logit_difference"] <= merged["tolerance"]

    # The run's name works as --adapter, and supplies the base model.
    answer = _json(
        runner.invoke(
            app,
            [
                *ws,
                "ask",
                "--no-rag",
                "--adapter",
                "paraphrase-lora",
                "--max-tokens",
                "2",
                "Where was Alda Ashby born?",
                "--json",
            ],
        )
    )
    assert answer["model"].endswith("+adapter")


def test_cli_errors_are_one_line_messages(lab_ws: Workspace, tiny_lab_model_dir: str) -> None:
    runner = CliRunner()
    ws = ["-w", str(lab_ws.path)]
    bad_kind = runner.invoke(app, [*ws, "dataset", "build", "--kind", "summaries"])
    assert bad_kind.exit_code == 2 and "'summaries' is not one of" in bad_kind.stderr and "'raft'" in bad_kind.stderr
    no_dataset = runner.invoke(app, [*ws, "tune", "--dataset", "nope", "--model", tiny_lab_model_dir])
    assert no_dataset.exit_code == 1 and "no dataset 'nope'" in no_dataset.stderr
    no_model = runner.invoke(app, [*ws, "tune", "--dataset", "nope"])
    assert no_model.exit_code == 1 and "no base model" in no_model.stderr
    qlora = runner.invoke(app, [*ws, "tune", "--dataset", "nope", "--method", "qlora4"])
    assert qlora.exit_code == 2 and "'qlora4' is not one of" in qlora.stderr
    unknown = runner.invoke(app, [*ws, "adapters", "show", "ghost"])
    assert unknown.exit_code == 1 and "no fine-tuning run 'ghost'" in unknown.stderr


def test_rm_removes_datasets_and_runs_and_bad_rows_get_one_message(lab_ws: Workspace, tiny_lab_model_dir: str) -> None:
    runner = CliRunner()
    ws = ["-w", str(lab_ws.path)]
    tune_args = [*ws, "tune", "--model", tiny_lab_model_dir, "--max-steps", "1", "--seq-len", "128", "--device", "cpu"]
    _json(runner.invoke(app, [*ws, "dataset", "build", "--kind", "qa", "--per-chunk", "1", "--json"]))
    rows = lab_ws.datasets_dir / "qa" / "train.jsonl"
    rows.write_text(rows.read_text(encoding="utf-8") + '{"text": "  "}\n', encoding="utf-8")
    refused = runner.invoke(app, [*tune_args, "--dataset", "qa"])
    assert refused.exit_code == 1 and "1 of 9 rows are unusable (line 9: " in refused.stderr
    assert "--skip-bad-rows to train on the other 8" in refused.stderr and "Traceback" not in refused.output
    run = _json(runner.invoke(app, [*tune_args, "--dataset", "qa", "--skip-bad-rows", "--json"]))
    assert run["status"] == "complete" and run["dataset"]["bad_rows_skipped"] == 1

    removed = _json(runner.invoke(app, [*ws, "adapters", "rm", "qa-lora", "--json"]))
    assert removed["removed"] == "qa-lora" and removed["kind"] == "fine-tuning run"
    assert _json(runner.invoke(app, [*ws, "adapters", "list", "--json"])) == []
    again = runner.invoke(app, [*ws, "adapters", "rm", "qa-lora"])
    assert again.exit_code == 1 and "no fine-tuning run 'qa-lora'" in again.stderr

    removed = _json(runner.invoke(app, [*ws, "dataset", "rm", "qa", "--json"]))
    assert removed["removed"] == "qa" and removed["kind"] == "dataset" and removed["rows"] == 8  # as built
    assert _json(runner.invoke(app, [*ws, "dataset", "list", "--json"])) == []
    plain = runner.invoke(app, [*ws, "dataset", "rm", "qa"])
    assert plain.exit_code == 1 and "no dataset 'qa'" in plain.stderr


def test_markdown_corpus_to_cpt_dataset_to_tune(workspace: Workspace, corpus, tiny_llama_dir: str) -> None:
    """The observed journey: Markdown files end in "\\n", which became a row of its own and made
    `tune` reject the whole dataset."""
    runner = CliRunner()
    ws = ["-w", str(workspace.path)]
    assert runner.invoke(app, [*ws, "ingest", str(corpus)]).exit_code == 0
    built = _json(
        runner.invoke(
            app, [*ws, "dataset", "build", "--kind", "cpt", "--model", tiny_llama_dir, "--block-tokens", "8", "--json"]
        )
    )
    rows = [json.loads(line) for line in open(built["path"], encoding="utf-8")]
    assert rows and all(r["text"].strip() for r in rows)
    run = _json(
        runner.invoke(
            app,
            [*ws, "tune", "--dataset", "cpt", "--model", tiny_llama_dir, "--max-steps", "1", "--seq-len", "64"]
            + ["--device", "cpu", "--json"],
        )
    )
    assert run["status"] == "complete" and run["dataset"]["bad_rows_skipped"] == 0


def test_dataset_build_takes_the_raft_distractor_choice(lab_ws: Workspace) -> None:
    runner = CliRunner()
    ws = ["-w", str(lab_ws.path), "dataset", "build", "--kind", "raft", "--distractors", "1"]
    built = _json(runner.invoke(app, [*ws, "--distractor-choice", "hard", "--json"]))
    assert isinstance(built, dict) and built["manifest"]["parameters"]["distractor_choice"] == "hard"
    bad = runner.invoke(app, [*ws, "--distractor-choice", "nearest"])
    assert bad.exit_code == 2 and "'nearest'" in bad.stderr
