"""The CLI as a user runs it: exit codes, --json shapes, batch search, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from infuse.cli import EXIT_PARTIAL, app

HIT_FIELDS = {
    "rank",
    "chunk_id",
    "doc_id",
    "source_path",
    "text",
    "start",
    "end",
    "page",
    "heading_path",
    "lang",
    "metadata",
    "score",
    "fused_score",
    "dense_score",
    "dense_rank",
    "lexical_score",
    "lexical_rank",
    "rerank_score",
    "flags",
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def ingested(runner: CliRunner, corpus: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["-w", str(ws), "ingest", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == len(CORPUS)
    return ws


def test_search_json_has_the_documented_fields(runner: CliRunner, ingested: Path) -> None:
    result = runner.invoke(app, ["-w", str(ingested), "search", "API keys rotated", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["query"] == "API keys rotated" and len(payload["hits"]) == 2
    assert set(payload["hits"][0]) == HIT_FIELDS
    assert payload["hits"][0]["source_path"].endswith("keys.md")


def test_table_output_and_modes(runner: CliRunner, ingested: Path) -> None:
    result = runner.invoke(app, ["-w", str(ingested), "search", "有給休暇", "--mode", "lexical"])
    assert result.exit_code == 0 and "vacation_ja.txt" in result.stdout


def test_batch_search_reads_and_writes_jsonl(runner: CliRunner, ingested: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "k", "query": "API keys"}\n\n{"id": "j", "query": "リモートワーク"}\n', encoding="utf-8")
    result = runner.invoke(app, ["-w", str(ingested), "search", "--queries", str(queries), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["k", "j"]
    assert lines[1]["hits"][0]["source_path"].endswith("remote_ja.md") and len(lines[0]["hits"]) == 3


def test_batch_search_bad_line_names_the_line(runner: CliRunner, ingested: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "k", "query": "API keys"}\n{"id": "x"}\n', encoding="utf-8")
    result = runner.invoke(app, ["-w", str(ingested), "search", "--queries", str(queries)])
    assert result.exit_code == 2 and "q.jsonl:2" in result.output


def test_status_json(runner: CliRunner, ingested: Path) -> None:
    result = runner.invoke(app, ["-w", str(ingested), "status", "--json"])
    status = json.loads(result.stdout)
    assert status["documents"] == len(CORPUS) and status["chunks"] >= len(CORPUS)
    assert status["embedder"]["dimension"] == 384 and status["store"]["backend"] == "lancedb"
    assert status["last_sync"]["added"] == len(CORPUS) and status["ingest_running"] is False


def test_partial_failure_exit_code_and_messages(runner: CliRunner, corpus: Path, tmp_path: Path) -> None:
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    result = runner.invoke(app, ["-w", str(tmp_path / "ws"), "ingest", str(corpus)])
    assert result.exit_code == EXIT_PARTIAL
    assert "empty.txt" in result.output and "empty file" in result.output
    status = json.loads(runner.invoke(app, ["-w", str(tmp_path / "ws"), "status", "--json"]).stdout)
    assert status["documents"] == len(CORPUS) and status["last_sync"]["errors"][0]["path"].endswith("empty.txt")


def test_prune_flag(runner: CliRunner, ingested: Path, corpus: Path) -> None:
    (corpus / "backups.txt").unlink()
    result = runner.invoke(app, ["-w", str(ingested), "ingest", str(corpus), "--prune", "--json"])
    assert json.loads(result.stdout)["pruned"] == 1


def test_errors_are_one_line_messages(runner: CliRunner, tmp_path: Path, ingested: Path) -> None:
    missing = runner.invoke(app, ["-w", str(tmp_path / "nowhere"), "search", "x"])
    assert missing.exit_code == 1 and "no infuse workspace" in missing.output and "Traceback" not in missing.output
    bad_filter = runner.invoke(app, ["-w", str(ingested), "search", "x", "--filter", "lang"])
    assert bad_filter.exit_code == 2 and "KEY=VALUE" in bad_filter.output
    neither = runner.invoke(app, ["-w", str(ingested), "search"])
    assert neither.exit_code == 2


def test_bad_config_names_the_setting(runner: CliRunner, ingested: Path) -> None:
    (ingested / "infuse.toml").write_text("[chunking]\nsize = 10\n", encoding="utf-8")
    result = runner.invoke(app, ["-w", str(ingested), "search", "x"])
    assert result.exit_code == 1 and "chunking.size" in result.output


def test_workspace_from_environment(runner: CliRunner, ingested: Path) -> None:
    result = runner.invoke(app, ["status", "--json"], env={"INFUSE_WORKSPACE": str(ingested)})
    assert json.loads(result.stdout)["workspace"] == str(ingested.resolve())


def test_ask_takes_filter_and_mode_like_search(
    runner: CliRunner, ingested: Path, corpus: Path, tiny_chat_llama_dir: str
) -> None:
    keys = (corpus / "keys.md").resolve().as_posix()
    base = ["-w", str(ingested), "ask", "How often are API keys rotated?", "--model", tiny_chat_llama_dir]
    base += ["--max-tokens", "4", "--json"]
    result = runner.invoke(app, [*base, "--filter", f"source_path={keys}", "--mode", "lexical"])
    assert result.exit_code == 0, result.output
    passages = json.loads(result.stdout)["passages"]
    assert passages and all(p["source_path"] == keys and p["dense_score"] is None for p in passages)
    other = runner.invoke(app, [*base, "--filter", "source_path=" + str(corpus / "backups.txt")])
    assert other.exit_code == 0, other.output
    assert all(p["source_path"] != keys for p in json.loads(other.stdout)["passages"])


def test_model_folder_loads_locally_whatever_the_backend(
    runner: CliRunner, tmp_path: Path, tiny_chat_llama_dir: str
) -> None:
    """A workspace set up for an OpenAI-compatible server (here: nothing listens) still answers
    with `--model FOLDER` from the folder; a model id that is not a path still goes to the server."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "infuse.toml").write_text(
        '[model]\nbackend = "openai"\nname = "served"\nbase_url = "http://127.0.0.1:9/v1"\nmax_retries = 0\ntimeout = 2\n',
        encoding="utf-8",
    )
    args = ["-w", str(ws), "ask", "Hello?", "--no-rag", "--max-tokens", "3", "--json"]
    local = runner.invoke(app, [*args, "--model", tiny_chat_llama_dir])
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout)["model"] == Path(tiny_chat_llama_dir).name
    served = runner.invoke(app, [*args, "--model", "some-served-model"])
    assert served.exit_code == 1 and "127.0.0.1:9" in served.output
