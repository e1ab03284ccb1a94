"""infuse.files: atomic single files, staged folders, named artifact folders, UTC timestamps."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from infuse.errors import InfuseError
from infuse.files import (
    ArtifactFolders,
    read_json,
    staged_file,
    staged_folder,
    utc_now,
    utc_stamp,
    write_json_atomic,
    write_text_atomic,
)


class ThingError(InfuseError):
    pass


def test_atomic_write_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    write_json_atomic(path, {"n": 1, "名前": "値"})
    write_json_atomic(path, {"n": 2})
    assert read_json(path) == {"n": 2} and path.read_text(encoding="utf-8").endswith("\n")
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    assert read_json(tmp_path / "missing.json") is None


def test_a_failed_atomic_write_leaves_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.json"
    write_text_atomic(path, "old\n")

    def crash(fd: int) -> None:  # the disk fails after the new bytes were written, before the rename
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # the temporary file is gone


def test_a_staged_folder_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "set"
    with staged_folder(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".set.tmp-") and not target.exists()
        (staging / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "a.txt").write_text("2")
            raise RuntimeError("killed half way")
    assert (target / "a.txt").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["set"]
    with staged_folder(target) as staging:  # success replaces the old folder entirely
        (staging / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_a_staged_file_appears_checked_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    with staged_file(target) as staging:
        assert staging.name == "model.gguf" and staging.parent.name.startswith(".model.gguf.tmp-")
        staging.write_text("v1")
        assert not target.exists()
    assert target.read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    with pytest.raises(ValueError, match="check failed"):
        with staged_file(target) as staging:
            staging.write_text("v2")
            raise ValueError("check failed")  # e.g. the exported file does not load back the same
    assert target.read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    with staged_file(target) as staging:
        staging.write_text("v3")
    assert target.read_text() == "v3" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_utc_timestamps() -> None:
    now = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", now)
    assert datetime.fromisoformat(now).utcoffset().total_seconds() == 0
    assert re.fullmatch(r"\d{8}-\d{6}", utc_stamp())


@pytest.fixture
def things(tmp_path: Path) -> ArtifactFolders:
    return ArtifactFolders(tmp_path / "things", kind="thing", error=ThingError, hint="make one with `infuse thing new`")


def _make(folders: ArtifactFolders, name: str, **kwargs) -> Path:
    with folders.create(name, **kwargs) as staging:
        write_json_atomic(staging / "manifest.json", {"name": name})
    return folders.path(name)


def test_artifact_folders_create_list_open_and_remove(things: ArtifactFolders) -> None:
    assert things.names() == []
    with pytest.raises(
        ThingError, match=r"no thing 'a' in .*things; there are none yet; make one with `infuse thing new`"
    ):
        things.require("a")
    _make(things, "b")
    _make(things, "a")
    (things.root / "incomplete").mkdir()  # no manifest: not listed
    (things.root / ".c.tmp-123").mkdir()  # a staging folder: not listed
    (things.root / ".c.tmp-123" / "manifest.json").write_text("{}")
    assert things.names() == ["a", "b"]
    assert things.require("a") == things.root / "a" and json.loads(
        (things.root / "a" / "manifest.json").read_text()
    ) == {"name": "a"}
    with pytest.raises(ThingError, match=r"no thing 'nope' in .*; known: a, b; make one"):
        things.require("nope")
    assert things.next_free("a") == "a-2" and things.next_free("z") == "z"
    things.remove("a")
    assert things.names() == ["b"]
    with pytest.raises(ThingError, match="no thing 'a'"):
        things.remove("a")


def test_artifact_folders_refuse_bad_names_and_existing_ones(things: ArtifactFolders) -> None:
    for bad in ("", ".hidden", "../escape", "a/b", "x" * 101, "spa ce"):
        with pytest.raises(ThingError, match="thing name .*: use letters, digits"):
            _make(things, bad)
        assert not things.exists(bad)
    _make(things, "a")
    with pytest.raises(ThingError, match="thing 'a' already exists in .*; choose another --name or pass --overwrite"):
        _make(things, "a")
    assert json.loads((things.root / "a" / "manifest.json").read_text()) == {"name": "a"}
    with things.create("a", overwrite=True) as staging:
        write_json_atomic(staging / "manifest.json", {"name": "a", "v": 2})
    assert read_json(things.root / "a" / "manifest.json")["v"] == 2
    labelled = ArtifactFolders(things.root, kind="thing", error=ThingError, known_label="known things")
    with pytest.raises(ThingError, match=r"no thing 'b' in .*; known things: a$"):
        labelled.require("b")
