"""The evaluation CLI's housekeeping without a model: `questions rm`, `runs list|rm`,
`questions import --format realtimeqa --documents DIR`, and next commands that keep `-w WS`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infuse.cli import app
from infuse.evaluation.runs import CompareSummary, QuestionRecord, write_run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REALTIMEQA = DATA / "realtimeqa" / "20250801_qa.jsonl"
needs_data = pytest.mark.skipif(not REALTIMEQA.is_file(), reason="../shared/data is not present")

MC = [
    {"id": f"q{i}", "question": f"Which colour is item {i}?", "choices": ["red", "blue", "green", "grey"], "answer": 1}
    for i in range(3)
]


def _cli(ws: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["-w", str(ws), *args])


def _write_run(ws: Path, name: str, accuracy: float = 0.8, timing: dict | None = None) -> Path:
    folder = ws / "runs" / name
    folder.mkdir(parents=True)
    summary = CompareSummary.from_json(
        {
            "run": name,
            "created": f"2026-12-01T00:00:0{len(name) % 10}+0000",
            "model": "m",
            "questions": {"name": "mc", "count": 200, "kinds": {"mc": 200}, "chance": 0.25},
            "variants": [
                {"label": "base", "variant": "base", "n": 200, "accuracy": 0.3, "ci": [0.24, 0.36]},
                {"label": "rag@3", "variant": "rag", "k": 3, "n": 200, "accuracy": accuracy, "ci": [0.7, 0.86]},
            ],
            "timing": timing,
        }
    )
    write_run(folder, summary, [QuestionRecord(question_id="q0", label="base", correct=True)])
    return folder


def test_questions_rm_removes_the_set_and_lists_known_ones_when_missing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    source = tmp_path / "mc.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in MC), encoding="utf-8")
    assert _cli(ws, "questions", "import", str(source), "--format", "mc").exit_code == 0
    assert _cli(ws, "questions", "import", str(source), "--format", "mc", "--name", "other").exit_code == 0
    missing = _cli(ws, "questions", "rm", "ghost")
    assert missing.exit_code == 1 and "ghost" in missing.stderr and "known sets: mc, other" in missing.stderr
    removed = _cli(ws, "questions", "rm", "mc", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout) == {
        "removed": "mc",
        "kind": "question set",
        "path": str(ws / "questions" / "mc"),
        "questions": 3,
    }
    assert not (ws / "questions" / "mc").exists()
    listed = json.loads(_cli(ws, "questions", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["other"]
    plain = _cli(ws, "questions", "rm", "other")
    assert plain.exit_code == 0 and "removed question set other" in plain.stdout


def test_runs_list_and_rm(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    from infuse.workspace import Workspace

    Workspace.open(ws, create=True)
    _write_run(ws, "first")
    _write_run(ws, "second")
    listed = _cli(ws, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["run"] for r in json.loads(listed.stdout)] == ["first", "second"]
    assert json.loads(listed.stdout)[0]["variants"] == ["base", "rag@3"]
    plain = _cli(ws, "runs", "list")
    assert plain.exit_code == 0 and "first" in plain.stdout and "rag@3" in plain.stdout
    missing = _cli(ws, "runs", "rm", "ghost")
    assert missing.exit_code == 1 and "no compare run 'ghost'" in missing.stderr and "first, second" in missing.stderr
    removed = _cli(ws, "runs", "rm", "first", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout)["removed"] == "first" and json.loads(removed.stdout)["kind"] == "compare run"
    assert not (ws / "runs" / "first").exists() and (ws / "runs" / "second").is_dir()
    assert "removed compare run second" in _cli(ws, "runs", "rm", "second").stdout


def test_advise_next_commands_keep_the_workspace_and_noisy_timings_are_a_caveat(tmp_path: Path) -> None:
    from infuse.workspace import Workspace

    ws = tmp_path / "my ws"
    Workspace.open(ws, create=True)
    _write_run(
        ws,
        "r1",
        timing={
            "warmup": True,
            "order": "interleaved",
            "cpu_count": 2,
            "load_before": [5.0, 4.0, 3.0],
            "load_after": [6.5, 4.0, 3.0],
            "repeats": 6,
            "repeat_spread": 0.9,
        },
    )
    result = _cli(ws, "advise", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    commands = [s for s in data["next_steps"] if "infuse " in s]
    assert commands and all(f"infuse -w '{ws}' " in s for s in commands)
    assert any("Timings are noisy" in r and "above its 2 cores" in r and "90%" in r for r in data["reasons"])
    budget = json.loads(_cli(ws, "advise", "--latency-ms", "1000", "--json").stdout)
    assert budget["confidence"] != "high" and "latency budget was weighed" in " ".join(budget["reasons"])


@needs_data
def test_realtimeqa_import_writes_the_articles_of_the_imported_questions(tmp_path: Path) -> None:
    ws, docs = tmp_path / "ws", tmp_path / "news"
    result = _cli(
        ws, "questions", "import", str(REALTIMEQA), "--format", "realtimeqa", "--limit", "2", "--documents", str(docs)
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in docs.iterdir())
    gcs = [json.loads(line) for line in REALTIMEQA.with_name("20250801_gcs.jsonl").read_text().splitlines()]
    urls = {r["url"] for row in gcs[:2] for r in row["search_result"] if r["text"].strip()}
    assert 0 < len(files) == len(urls)
    assert f"infuse -w {ws} ingest {docs}" in " ".join(result.stdout.split())
    manifest = json.loads((ws / "questions" / "20250801_qa" / "manifest.json").read_text())
    assert manifest["documents"]["files"] == len(files) and manifest["documents"]["folder"] == str(docs.resolve())
    # stable names: importing again writes the same files
    again = _cli(
        ws,
        "questions",
        "import",
        str(REALTIMEQA),
        "--format",
        "realtimeqa",
        "--limit",
        "2",
        "--documents",
        str(docs),
        "--overwrite",
        "--json",
    )
    assert again.exit_code == 0 and sorted(p.name for p in docs.iterdir()) == files
    wrong = _cli(ws, "questions", "import", str(REALTIMEQA), "--format", "mc", "--documents", str(docs))
    assert wrong.exit_code == 1 and "--documents writes RealTimeQA's articles" in wrong.stderr
