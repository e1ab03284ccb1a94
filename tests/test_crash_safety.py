"""kill -9 during ingest leaves a workspace that opens, searches, and completes on re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_corpus
from infuse.workspace import Workspace

pytestmark = pytest.mark.slow


def _corpus(root: Path) -> Path:
    files = {
        f"doc{i:03d}.md": f"# Document {i}\n\n"
        + " ".join(f"Fact {j} about item {i} is value {i * j}." for j in range(30))
        for i in range(40)
    }
    files["notes_ja.txt"] = "".join(f"項目{i}の値は{i * 7}です。" for i in range(60))
    return write_corpus(root, files)


def _versions(ws_dir: Path) -> int:
    versions = ws_dir / "kb" / "lancedb" / "chunks.lance" / "_versions"
    return len(list(versions.glob("*.manifest"))) if versions.exists() else 0


def _start_ingest(ws_dir: Path, corpus: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "INFUSE_INGEST__COMMIT_EVERY": "8",
        "INFUSE_CHUNKING__SIZE": "64",
        "INFUSE_CHUNKING__OVERLAP": "8",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "infuse.cli", "-w", str(ws_dir), "ingest", str(corpus)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_after_commits(process: subprocess.Popen, ws_dir: Path, commits: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _versions(ws_dir) < commits:
        assert process.poll() is None, "ingest finished before it could be killed; make the corpus bigger"
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _state(ws: Workspace) -> tuple[list[str], int]:
    store = ws.store()
    return sorted(store.chunk_ids()), store.count_documents()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[list[str], int]]:
    root = tmp_path_factory.mktemp("reference")
    corpus = _corpus(root / "corpus")
    ws = Workspace.open(root / "ws", create=True, chunking={"size": 64, "overlap": 8})
    assert ws.ingest([corpus]).ok
    return corpus, _state(ws)


@pytest.mark.parametrize("commits", [3, 6])
def test_kill_9_mid_ingest_then_rerun_completes_exactly(tmp_path: Path, reference, commits: int) -> None:
    corpus, (expected_chunks, expected_documents) = reference
    ws_dir = tmp_path / "ws"
    process = _start_ingest(ws_dir, corpus)
    _kill_after_commits(process, ws_dir, commits)

    interrupted = Workspace.open(ws_dir, chunking={"size": 64, "overlap": 8})
    partial_chunks, _ = _state(interrupted)
    assert 0 < len(partial_chunks) < len(expected_chunks)
    assert len(partial_chunks) == len(set(partial_chunks))
    assert interrupted.search("value of item", k=3), "an interrupted workspace still answers searches"
    interrupted.status()

    report = interrupted.ingest([corpus])
    assert report.ok and report.added + report.updated + report.unchanged == expected_documents
    chunks, documents = _state(interrupted)
    assert chunks == expected_chunks, "no duplicate and no missing chunk after the re-run"
    assert documents == expected_documents
    assert interrupted.ingest([corpus]).chunks_written == 0


def test_kill_9_at_a_random_moment_never_corrupts(tmp_path: Path, reference) -> None:
    corpus, (expected_chunks, _) = reference
    ws_dir = tmp_path / "ws"
    for delay in (0.5, 2.5, 4.0):
        process = _start_ingest(ws_dir, corpus)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (ws_dir / "infuse.toml").exists():  # a kill before creation leaves no workspace at all
            Workspace.open(ws_dir).status()
    ws = Workspace.open(ws_dir, chunking={"size": 64, "overlap": 8})
    assert ws.ingest([corpus]).ok
    assert _state(ws)[0] == expected_chunks


# --- reindex -----------------------------------------------------------------------------------

REINDEXED = {"size": 48, "overlap": 8}  # a new chunking, so every chunk of the reindex is new


def _tables(ws_dir: Path) -> set[str]:
    return {t.name for t in (ws_dir / "kb" / "lancedb").glob("chunks_*.lance")}


def _table_versions(ws_dir: Path, before: set[str]) -> int:
    """Commits so far to the fresh table(s) a reindex writes: tables not in ``before``. A table
    can appear without its ``_versions`` yet, and a killed run's table vanishes when the next
    run drops it, both while this counts."""
    root = ws_dir / "kb" / "lancedb"
    count = 0
    for name in _tables(ws_dir) - before:
        try:
            count += sum(1 for entry in os.scandir(root / name / "_versions") if entry.name.endswith(".manifest"))
        except FileNotFoundError:
            continue
    return count


def _start_reindex(ws_dir: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "INFUSE_INGEST__COMMIT_EVERY": "8",
        "INFUSE_CHUNKING__SIZE": str(REINDEXED["size"]),
        "INFUSE_CHUNKING__OVERLAP": str(REINDEXED["overlap"]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "infuse.cli", "-w", str(ws_dir), "reindex"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_mid_reindex_keeps_the_old_knowledge_base_and_a_rerun_completes(tmp_path: Path, reference) -> None:
    """Killed after 2, 5 and 9 commits to the new table: the old knowledge base stays in service,
    whole (no duplicate, missing or half-reindexed chunk); the re-run gives exactly what an
    uninterrupted reindex gives, and the abandoned tables do not pile up on disk."""
    corpus, (old_chunks, documents) = reference
    expected_ws = Workspace.open(tmp_path / "expected", create=True, chunking={"size": 64, "overlap": 8})
    assert expected_ws.ingest([corpus]).ok
    expected_ws = Workspace.open(tmp_path / "expected", chunking=REINDEXED)
    expected_ws.reindex()
    expected_chunks, _ = _state(expected_ws)
    assert set(expected_chunks) != set(old_chunks)

    ws_dir = tmp_path / "ws"
    assert Workspace.open(ws_dir, create=True, chunking={"size": 64, "overlap": 8}).ingest([corpus]).ok
    for commits in (2, 5, 9):
        before = _tables(ws_dir)
        process = _start_reindex(ws_dir)
        deadline = time.monotonic() + 120
        while _table_versions(ws_dir, before) < commits:
            assert process.poll() is None, "reindex finished before it could be killed; make the corpus bigger"
            assert time.monotonic() < deadline, "reindex made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        in_service = Workspace.open(ws_dir, chunking={"size": 64, "overlap": 8})
        assert _state(in_service) == (old_chunks, documents), "the old knowledge base is whole after the kill"
        assert in_service.search("value of item", k=3)

    finished = Workspace.open(ws_dir, chunking=REINDEXED)
    finished.reindex()
    assert _state(finished) == (expected_chunks, documents), "no duplicate, missing or stale chunk"
    tables = sorted(p.name for p in (ws_dir / "kb" / "lancedb").glob("chunks*.lance"))
    assert len(tables) == 1, f"abandoned reindex tables left on disk: {tables}"
