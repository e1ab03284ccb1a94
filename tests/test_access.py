"""Document access lists end to end: where lists come from at ingest, changing them without
re-embedding, the default policy setting, and the errors bad access input gives.

The store side (the prefilter agrees with ``Caller.may_read``; top-k is not short) is in the store
contract suite (tests/store_contract.py), run against every store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from infuse.access import DEFAULT, AccessError, AccessList, Caller, DefaultPolicy
from infuse.cli import app
from infuse.config import DEFAULT_POLICIES, SearchMode, Settings
from infuse.ingest.access_sources import ACCESS_FILE
from infuse.store.filters import access_filter
from infuse.workspace import Workspace

HASHING = {"backend": "hashing", "model": "hashing-64"}


def open_ws(path: Path) -> Workspace:
    return Workspace.open(path, create=True, embedder=HASHING)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def columns(ws: Workspace) -> dict[str, set[tuple[str, ...]]]:
    """Each document's access columns as its chunks store them (one per document when consistent)."""
    store = ws.knowledge_snapshot()
    found: dict[str, set[tuple[str, ...]]] = {}
    for chunk in store.iter_chunks():
        found.setdefault(chunk.doc_id, set()).add(chunk.access)
    return found


def access_by_name(ws: Workspace) -> dict[str, tuple[str, ...]]:
    """``file name (or record id) -> access column``, checking every chunk of a document agrees."""
    found = {}
    for doc_id, cols in columns(ws).items():
        assert len(cols) == 1, (doc_id, cols)
        found[doc_id.rsplit("/", 1)[-1]] = next(iter(cols))
    return found


def vectors(ws: Workspace) -> dict[str, np.ndarray]:
    """Every chunk's stored vector, read straight from the LanceDB table."""
    store: Any = ws.store()
    table = store._chunks.to_arrow()
    return {
        cid: np.asarray(v) for cid, v in zip(table.column("chunk_id").to_pylist(), table.column("vector").to_pylist())
    }


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with an access file, a subfolder with its own, a deeper folder inheriting it, JSONL
    records with and without their own lists, and a folder without any file."""
    root = write(
        tmp_path / "docs",
        {
            "legal/a.md": "# Contract\n\nThe renewal terms of the contract.\n",
            "legal/sub/b.md": "# Board\n\nThe board minutes of March.\n",
            "legal/sub/deep/c.md": "# Deep\n\nDeep notes about the board.\n",
            "legal/records.jsonl": "\n".join(
                json.dumps(r)
                for r in (
                    {"text": "Carol's own record.", "access": ["user:carol"]},
                    {"text": "A record that takes its folder's list.", "team": "legal"},
                    {"text": "A record with a comma list.", "access": "group:ops, deny:user:eve"},
                )
            ),
            "open/d.md": "# Handbook\n\nThe handbook for everyone.\n",
        },
    )
    (root / "legal" / ACCESS_FILE).write_text('allow = ["group:legal"]\n', encoding="utf-8")
    (root / "legal/sub" / ACCESS_FILE).write_text('allow = ["user:bob"]\ndeny = ["user:eve"]\n', encoding="utf-8")
    return root


# --- the default policy setting ----------------------------------------------------------------


def test_default_policy_is_admins_and_spelled_like_the_access_enum(tmp_path: Path) -> None:
    assert set(DEFAULT_POLICIES) == {p.value for p in DefaultPolicy}
    ws = open_ws(tmp_path / "ws")
    assert ws.settings.access.default_policy == "admins" and ws.default_policy() is DefaultPolicy.ADMINS
    assert ws.status().to_dict()["access_default_policy"] == "admins"
    assert Settings.load(None, access={"default_policy": "everyone"}).access.default_policy == "everyone"
    (tmp_path / "ws/infuse.toml").write_text('[access]\ndefault_policy = "nobody"\n', encoding="utf-8")
    with pytest.raises(Exception, match="default_policy"):
        Workspace.open(tmp_path / "ws")


def test_status_shows_the_default_policy(tmp_path: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    toml = ws.path / "infuse.toml"
    toml.write_text(toml.read_text().replace('default_policy = "admins"', 'default_policy = "everyone"'))
    runner = CliRunner()
    shown = runner.invoke(app, ["-w", str(ws.path), "status"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "every user (access.default_policy = everyone)" in shown.output
    as_json = runner.invoke(app, ["-w", str(ws.path), "status", "--json"])
    assert json.loads(as_json.output)["access_default_policy"] == "everyone"


# --- sources at ingest ---------------------------------------------------------------------------


def test_record_field_then_nearest_folder_file_then_flag_then_default(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    report = ws.ingest([tree], access=["group:ops"])
    assert report.ok, report.errors
    assert access_by_name(ws) == {
        "a.md": ("group:legal",),  # legal/.infuse-access wins over --access
        "b.md": ("user:bob", "deny:user:eve"),  # the nearest file: legal/sub/.infuse-access
        "c.md": ("user:bob", "deny:user:eve"),  # inherited from legal/sub
        "records.jsonl#1": ("user:carol",),  # the record's own field wins over its folder's file
        "records.jsonl#2": ("group:legal",),
        "records.jsonl#3": ("group:ops", "deny:user:eve"),
        "d.md": ("group:ops",),  # no file above it: the flag
    }
    records = {r.doc_id.rsplit("/", 1)[-1]: r.document for r in ws.knowledge_snapshot().iter_documents()}
    assert "access" not in records["records.jsonl#1"].metadata  # not a metadata field
    assert records["records.jsonl#2"].metadata == {"team": "legal"}
    assert records["d.md"].access == ("group:ops",)  # the document row agrees with its chunks
    other = open_ws(tmp_path / "ws2")
    other.ingest([tree / "open"])
    assert access_by_name(other) == {"d.md": (DEFAULT,)}  # no source at all: the default policy


def test_search_returns_only_what_each_caller_may_read(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree])
    readable = {
        Caller("bob"): {"b.md", "c.md"},
        Caller("eve", groups=("legal",)): {"a.md", "records.jsonl#2"},
        Caller("carol", groups=("ops",)): {"records.jsonl#1", "records.jsonl#3"},
        Caller("zed"): set(),
    }
    for policy in DefaultPolicy:
        for caller, names in readable.items():
            expected = names | ({"d.md"} if policy is DefaultPolicy.EVERYONE else set())
            for mode in (SearchMode.DENSE, SearchMode.LEXICAL):
                query = "the board record contract handbook notes"
                hits = ws.search(query, k=20, mode=mode, filters=access_filter(caller, policy))
                found = {h.chunk.doc_id.rsplit("/", 1)[-1] for h in hits}
                assert found <= expected, (caller, policy, mode)
                if mode is SearchMode.DENSE:  # every chunk has some similarity: all readable ones come back
                    assert found == expected, (caller, policy)
    root = access_filter(Caller("root", admin=True), DefaultPolicy.ADMINS)
    admin_hits = ws.search("board", k=20, mode=SearchMode.DENSE, filters=root)
    assert len(admin_hits) == ws.status().chunks


def test_a_changed_access_file_or_flag_rewrites_access_without_re_embedding(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree], access=["group:ops"])
    before = vectors(ws)
    (tree / "legal/sub" / ACCESS_FILE).write_text('allow = ["group:board"]\n', encoding="utf-8")
    report = ws.ingest([tree], access=["group:support"])
    assert (report.added, report.updated, report.chunks_written) == (0, 0, 0)
    assert report.access_changed == 3  # b.md and c.md (their folder's file), d.md (the flag)
    names = access_by_name(ws)
    assert names["b.md"] == names["c.md"] == ("group:board",)
    assert names["d.md"] == ("group:support",)
    assert names["records.jsonl#3"] == ("group:ops", "deny:user:eve")  # its own field did not change
    after = vectors(ws)
    assert after.keys() == before.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_changed_record_field_rewrites_access_only(tmp_path: Path) -> None:
    root = write(
        tmp_path / "docs", {"r.jsonl": json.dumps({"id": "r1", "text": "Quarterly numbers.", "access": "group:a"})}
    )
    ws = open_ws(tmp_path / "ws")
    ws.ingest([root], id_field="id")
    (root / "r.jsonl").write_text(json.dumps({"id": "r1", "text": "Quarterly numbers.", "access": ["group:b"]}))
    report = ws.ingest([root], id_field="id")
    assert (report.unchanged, report.access_changed, report.chunks_written) == (1, 1, 0)
    assert access_by_name(ws) == {"r1": ("group:b",)}
    (root / "r.jsonl").write_text(json.dumps({"id": "r1", "text": "Quarterly numbers.", "who": ["group:c"]}))
    report = ws.ingest([root], id_field="id", access_field="who")
    assert report.access_changed == 1 and access_by_name(ws) == {"r1": ("group:c",)}
    # No access field: "access" is plain metadata again (a changed record: re-embedded, list kept).
    (root / "r.jsonl").write_text(json.dumps({"id": "r1", "text": "Quarterly numbers.", "access": "public"}))
    report = ws.ingest([root], id_field="id", access_field="")
    assert report.ok and report.updated == 1 and access_by_name(ws) == {"r1": ("group:c",)}
    [record] = ws.knowledge_snapshot().iter_documents()
    assert record.document.metadata == {"access": "public"}


def test_without_a_source_a_document_keeps_its_stored_list(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree / "open"], access=["group:ops"])
    (tree / "open/new.md").write_text("# New\n\nA new page.\n", encoding="utf-8")
    (tree / "open/d.md").write_text("# Handbook\n\nThe handbook, second edition.\n", encoding="utf-8")
    report = ws.ingest([tree / "open"])  # no --access: d.md (changed) keeps group:ops; new.md gets the default
    assert (report.added, report.updated) == (1, 1)
    assert access_by_name(ws) == {"d.md": ("group:ops",), "new.md": (DEFAULT,)}


@pytest.mark.parametrize("old", ["null column", "no column"])
def test_documents_stored_before_access_lists_get_the_default_sentinel(tmp_path: Path, tree: Path, old: str) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree / "open"])
    store: Any = ws.store()
    for table in (store._chunks, store._documents):  # as a table from before access lists reads
        if old == "null column":
            table.update(where="true", values_sql={"access": "NULL"})
        else:
            table.drop_columns(["access"])
    assert access_by_name(ws) == {"d.md": ()}
    # Unlisted is not readable until ingest writes the sentinel (fail closed), whatever the policy.
    everyone = access_filter(Caller("ann"), DefaultPolicy.EVERYONE)
    assert ws.search("handbook", filters=everyone) == []
    report = ws.ingest([tree / "open"])
    assert (report.chunks_written, report.access_changed) == (0, 1)
    assert access_by_name(ws) == {"d.md": (DEFAULT,)}
    assert [h.chunk.doc_id.rsplit("/", 1)[-1] for h in ws.search("handbook", filters=everyone)] == ["d.md"]


# --- bad input -----------------------------------------------------------------------------------


def test_bad_access_input_fails_only_the_documents_it_applies_to(tmp_path: Path, tree: Path) -> None:
    (tree / "legal/sub" / ACCESS_FILE).write_text("allow = [group:legal\n", encoding="utf-8")  # not TOML
    write(tree, {"odd/x.md": "# X\n\nx\n", "odd/y.jsonl": json.dumps({"text": "wrong type", "access": 42}) + "\n"})
    (tree / "odd" / ACCESS_FILE).write_text('allow = ["grp:legal"]\n', encoding="utf-8")
    write(tree, {"typo/z.md": "# Z\n\nz\n"})
    (tree / "typo" / ACCESS_FILE).write_text('allow = ["group:legal"]\ndney = ["user:eve"]\n', encoding="utf-8")
    ws = open_ws(tmp_path / "ws")
    report = ws.ingest([tree], known_principals={"group:legal", "user:carol", "group:ops", "user:eve", "everyone"})
    errors = {e["path"].rsplit("/", 1)[-1]: e["error"] for e in report.errors}
    assert set(errors) == {"b.md", "c.md", "x.md", "y.jsonl (line 1)", "z.md"}, errors
    assert "legal/sub/.infuse-access: not valid TOML" in errors["b.md"]
    assert "odd/.infuse-access" in errors["x.md"] and "'grp:legal'" in errors["x.md"]
    assert (
        "access field 'access' is 42" in errors["y.jsonl (line 1)"] and "--access-field" in errors["y.jsonl (line 1)"]
    )
    assert "unknown key(s) dney" in errors["z.md"]
    assert set(access_by_name(ws)) == {"a.md", "records.jsonl#1", "records.jsonl#2", "records.jsonl#3", "d.md"}
    assert report.failed == 5 and report.added == 5


def test_unknown_principals_are_named(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    known = {"group:legal", "user:bob", "user:eve", "group:ops", "everyone"}
    with pytest.raises(AccessError, match="--access: unknown 'group:nope'"):
        ws.ingest([tree], access=["group:nope"], known_principals=known)
    with pytest.raises(AccessError, match="--access: access entry 'bob' is not user:NAME"):
        ws.ingest([tree], access=["bob"])
    assert ws.manifest() is None  # nothing was read or written
    report = ws.ingest([tree], known_principals=known)
    assert [e["path"].rsplit("/", 1)[-1] for e in report.errors] == ["records.jsonl"]
    assert "unknown 'user:carol'" in report.errors[0]["error"] and "records.jsonl#1" in report.errors[0]["error"]


def test_a_document_whose_source_fails_keeps_what_is_stored(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree])
    (tree / "legal" / ACCESS_FILE).write_text("allow = 3\n", encoding="utf-8")
    report = ws.ingest([tree], prune=True)
    assert report.pruned == 0 and {e["path"].rsplit("/", 1)[-1] for e in report.errors} == {"a.md", "records.jsonl"}
    assert "allow = 3 is not a list of strings" in report.errors[0]["error"]
    assert access_by_name(ws)["a.md"] == ("group:legal",)


# --- access show / set ---------------------------------------------------------------------------


def test_set_access_rewrites_only_the_access_column(tmp_path: Path, tree: Path) -> None:
    ws = open_ws(tmp_path / "ws")
    ws.ingest([tree])
    before = vectors(ws)
    result = ws.set_access_at(str(tree / "legal/sub"), ["group:board", "deny:user:eve"])
    assert [r.source_path.rsplit("/", 1)[-1] for r in result] == ["b.md", "c.md"]
    assert all(r.access == AccessList(("group:board",), ("user:eve",)) for r in result)
    assert result[0].governed_by == (tree / "legal/sub" / ACCESS_FILE).resolve().as_posix()
    names = access_by_name(ws)
    assert names["b.md"] == names["c.md"] == ("group:board", "deny:user:eve")
    assert names["a.md"] == ("group:legal",)
    after = vectors(ws)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # One commit of the chunks, whatever the number of documents.
    store: Any = ws.store()
    version = store._chunks.version
    store.set_access(ws.documents_at(str(tree)), ("group:all",))
    assert store._chunks.version == version + 1
    store.set_access(ws.documents_at(str(tree / "legal/sub")), ("group:board", "deny:user:eve"))
    board = access_filter(Caller("ann", groups=("board",)), DefaultPolicy.ADMINS)
    assert {h.chunk.doc_id.rsplit("/", 1)[-1] for h in ws.search("board", k=10, filters=board)} == {"b.md", "c.md"}
    # No entries: back to the default policy.
    [d] = ws.set_access_at(str(tree / "open/d.md"), [])
    assert d.access.is_default and d.governed_by is None and access_by_name(ws)["d.md"] == (DEFAULT,)


def test_access_cli_show_and_set(tmp_path: Path, tree: Path) -> None:
    runner = CliRunner()
    ws = tmp_path / "ws"
    (ws).mkdir()
    (ws / "infuse.toml").write_text('[embedder]\nbackend = "hashing"\nmodel = "hashing-64"\n', encoding="utf-8")

    def run(*args: str) -> Any:
        return runner.invoke(app, ["-w", str(ws), *args], env={"COLUMNS": "250"})

    ingested = run("ingest", str(tree / "open"), "--access", "group:ops", "--access", "deny:user:eve", "--json")
    assert ingested.exit_code == 0, ingested.output
    shown = run("access", "show", str(tree / "open/d.md"), "--json")
    assert json.loads(shown.output)["documents"] == [
        {
            "doc_id": (tree / "open/d.md").resolve().as_posix(),
            "source_path": (tree / "open/d.md").resolve().as_posix(),
            "allow": ["group:ops"],
            "deny": ["user:eve"],
            "uses_default_policy": False,
            "governed_by": None,
        }
    ]
    changed = run("access", "set", str(tree / "open"), "--access", "user:bob")
    assert changed.exit_code == 0 and "user:bob" in changed.output
    assert "user:bob" in run("access", "show", str(tree / "open")).output
    missing = run("access", "show", str(tree / "nowhere"))
    assert missing.exit_code == 1 and "no document, file or folder" in missing.output
    bad = run("access", "set", str(tree / "open"), "--access", "grp:x")
    assert bad.exit_code == 1 and "'grp:x'" in bad.output
    neither = run("access", "set", str(tree / "open"))
    assert neither.exit_code == 2 and "--access ENTRY... or --default" in neither.output
    cleared = run("access", "set", str(tree / "open/d.md"), "--default", "--json")
    assert json.loads(cleared.output)["documents"][0]["uses_default_policy"] is True
    bad_flag = run("ingest", str(tree / "legal"), "--access", "group:")
    assert bad_flag.exit_code == 1 and "--access: access entry 'group:'" in bad_flag.output
    assert "nearest wins" in run("ingest", "--help").output


_FLIPPER = """
import sys
from infuse.access import AccessList
from infuse.workspace import Workspace
ws = Workspace.open(sys.argv[1])
ids = ws.documents_at(sys.argv[2])
lists = [AccessList(("group:one",)), AccessList(("group:two",), ("user:eve",))]
print("ready", flush=True)
i = 0
while True:
    ws.set_access(ids, lists[i % 2])
    i += 1
"""


def test_a_kill_during_set_access_never_leaves_a_document_half_changed(tmp_path: Path) -> None:
    root = write(tmp_path / "docs", {f"f{i}.md": f"# F{i}\n\n" + "Words of a long page. " * 400 for i in range(6)})
    ws = open_ws(tmp_path / "ws")
    ws.ingest([root])
    assert max(len(v) for v in columns(ws).values()) == 1 and ws.status().chunks > 12
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    for delay in (0.3, 0.7, 1.1):
        child = subprocess.Popen(
            [sys.executable, "-c", _FLIPPER, str(ws.path), str(root)], env=env, stdout=subprocess.PIPE
        )
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        fresh = Workspace.open(ws.path)
        found = columns(fresh)
        assert all(len(cols) == 1 for cols in found.values()), found
        # Every document's chunks carry one of the two lists, or the original default.
        assert {c for cols in found.values() for c in cols} <= {
            ("group:one",),
            ("group:two", "deny:user:eve"),
            (DEFAULT,),
        }


def test_the_cli_checks_access_entries_against_the_workspaces_users_and_groups(tmp_path: Path, tree: Path) -> None:
    """With users in the workspace, an unknown group or user is refused by ingest and by access set;
    known ones pass. (Without users any well-formed name is accepted: see the test above.)"""
    runner = CliRunner()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "infuse.toml").write_text('[embedder]\nbackend = "hashing"\nmodel = "hashing-64"\n', encoding="utf-8")

    def run(*args: str) -> Any:
        return runner.invoke(app, ["-w", str(ws), *args], env={"COLUMNS": "250"})

    assert run("groups", "add", "legal").exit_code == 0
    assert run("users", "add", "alice", "--admin", "--group", "legal").exit_code == 0
    unknown = run("ingest", str(tree / "open"), "--access", "group:lgeal")
    assert unknown.exit_code == 1 and "unknown 'group:lgeal'" in unknown.output
    known = run("ingest", str(tree / "open"), "--access", "group:legal", "--json")
    assert known.exit_code == 0, known.output
    refused = run("access", "set", str(tree / "open"), "--access", "user:bob")
    assert refused.exit_code == 1 and "unknown 'user:bob'" in refused.output
    assert run("access", "set", str(tree / "open"), "--access", "user:alice").exit_code == 0


def test_a_crash_between_set_access_commits_cannot_undo_it(tmp_path: Path) -> None:
    """A crash after set_access committed the chunks but not the document rows leaves the rows with
    the old, wider list. Before, the next ingest kept that stored list (and a reindex rebuilt chunks
    from the rows), giving back access that had been taken away; now writers reconcile first."""
    docs = write(tmp_path / "docs", {"memo.md": "# Memo\n\nThe merger with Acme closes in May.\n"})
    ws = open_ws(tmp_path / "ws")
    ws.ingest([docs], access=["everyone"])
    [doc_id] = ws.documents_at(str(docs / "memo.md"))
    store: Any = ws.store()
    # The crash: the chunks' commit of set_access happened, the document rows' did not.
    store._chunks.update(where=f"doc_id = '{doc_id}'", values_sql={"access": "['user:ceo']"})
    assert store.document_states()[doc_id].access == ("everyone",)
    ws.ingest([docs])  # no source speaks for the memo: it keeps what is stored
    assert access_by_name(ws)["memo.md"] == ("user:ceo",)
    assert ws.store().document_states()[doc_id].access == ("user:ceo",)
    ws_again = Workspace.open(ws.path, embedder=HASHING, chunking={"size": 40, "overlap": 4})
    ws_again.reindex()
    assert access_by_name(ws_again)["memo.md"] == ("user:ceo",)
    reader = access_filter(Caller("ann"), DefaultPolicy.ADMINS)
    assert ws_again.search("merger", k=5, filters=reader) == []


def test_an_access_file_anyone_may_write_is_refused(tmp_path: Path) -> None:
    """The lookup walks above the folders given to ingest, so a world-writable file (a shared /tmp)
    must not decide who reads: the documents it would govern fail, naming it; nothing is opened."""
    docs = write(tmp_path / "shared" / "hr", {"salaries.md": "# Salaries\n\nBands for 2026.\n"})
    planted = tmp_path / "shared" / ACCESS_FILE
    planted.write_text('allow = ["everyone"]\n', encoding="utf-8")
    planted.chmod(0o666)
    ws = open_ws(tmp_path / "ws")
    report = ws.ingest([docs], access=["group:hr"])
    assert report.added == 0 and "anyone may write it" in report.errors[0]["error"]
    assert str(planted) in report.errors[0]["error"]
    planted.chmod(0o644)
    assert ws.ingest([docs], access=["group:hr"]).added == 1  # now the (owner's) file decides, as documented
