"""A knowledge base on S3-compatible object storage (a real SeaweedFS server, tests/seaweed.py):
the store contract holds there, two ingest processes writing one table at once lose nothing, and
a replica reads a pinned version until it refreshes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infuse.config import SearchMode, ServerSettings
from infuse.server.app import create_app
from infuse.store.lancedb import LanceDBStore
from infuse.testing import ScriptedModel
from infuse.workspace import Workspace
from seaweed import BUCKET, S3Server, s3_server  # noqa: F401  (the fixture)
from store_contract import MakeStore, StoreContract

HASHING = {"backend": "hashing", "model": "hashing-64"}


def fresh_uri() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


class TestLanceDBOnS3(StoreContract):
    @pytest.fixture
    def make_store(self, s3_server: S3Server) -> MakeStore:  # noqa: F811
        uri, options = fresh_uri(), s3_server.settings().storage_options()
        return lambda dimension: LanceDBStore(uri, "chunks", dimension, storage_options=options)


def corpus(root: Path, name: str, count: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{name}{i}.md").write_text(f"# {name} {i}\n\nNote {name}marker{i} about budgets and renewals.\n")
    return folder


def workspace(path: Path, s3: S3Server, uri: str, **store: Any) -> Workspace:
    return Workspace.open(
        path, create=True, embedder=HASHING, store={"uri": uri, "s3": s3.settings().model_dump(), **store}
    )


def test_two_ingest_processes_on_one_s3_table_lose_nothing(tmp_path: Path, s3_server: S3Server) -> None:  # noqa: F811
    uri = fresh_uri()
    seed = corpus(tmp_path, "seed", 1)
    assert workspace(tmp_path / "ws0", s3_server, uri).ingest([seed]).added == 1  # the knowledge base exists
    env = {
        **os.environ,
        **s3_server.env(),
        "INFUSE_STORE__URI": uri,
        "INFUSE_EMBEDDER__BACKEND": "hashing",
        "INFUSE_EMBEDDER__MODEL": "hashing-64",
        "INFUSE_INGEST__COMMIT_EVERY": "3",  # many small commits, interleaved
    }
    folders = [corpus(tmp_path, name, 24) for name in ("alpha", "beta")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "infuse", "-w", str(tmp_path / f"ws-{folder.name}"), "ingest", str(folder)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, out + err
    reader = workspace(tmp_path / "reader", s3_server, uri)
    status = reader.status()
    assert status.documents == 49 and status.store["path"] == uri
    snapshot = reader.knowledge_snapshot()
    assert snapshot.count_chunks() == 49
    sources = {Path(state.source_path).name for state in snapshot.document_states().values()}
    assert sources == {"seed0.md", *(f"{name}{i}.md" for name in ("alpha", "beta") for i in range(24))}
    hits = reader.search("betamarker17", mode=SearchMode.LEXICAL)
    assert hits and Path(hits[0].chunk.source_path).name == "beta17.md"


def test_a_replica_reads_a_pinned_version_until_it_refreshes(tmp_path: Path, s3_server: S3Server) -> None:  # noqa: F811
    uri = fresh_uri()
    writer = workspace(tmp_path / "writer", s3_server, uri)
    writer.ingest([corpus(tmp_path, "first", 3)])
    replica = workspace(tmp_path / "replica", s3_server, uri, refresh_seconds=3600)
    assert replica.status().documents == 3
    writer.ingest([corpus(tmp_path, "second", 2)])
    assert replica.status().documents == 3  # pinned: the replica has not looked for new commits
    assert not replica.search("secondmarker1", mode=SearchMode.LEXICAL)
    with TestClient(
        create_app(replica.rag_pipeline(ScriptedModel("ok")), settings=ServerSettings(access_log="off"))
    ) as client:
        response = client.post("/admin/refresh")  # an ingest worker tells the replica it finished
    assert response.status_code == 200 and response.json()["documents"] == 5
    assert replica.status().documents == 5
    assert replica.search("secondmarker1", mode=SearchMode.LEXICAL)
    follower = workspace(tmp_path / "follower", s3_server, uri)  # refresh_seconds 0: every read is the latest
    writer.ingest([corpus(tmp_path, "third", 1)])
    assert follower.status().documents == 6
