"""A server for a team (issue 14): auth on every route, per-caller retrieval, audit, tuned weights.

The knowledge base holds documents with different access lists (allow users or groups, deny a
user or a group, the default policy); users come from the workspace's identity store. The leak
probe sends 1,000 randomised requests through every route as different users, while access lists
change, a user is removed and a key rotated, and checks that no response (and no prompt given to
the model) carries a chunk the caller may not read: its text, chunk id, doc id or source path,
nor its existence (document views 404 in the same words as a missing document, status counts,
top-k never short). The figure is printed (``-s``) and recorded in docs/serving.md.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from infuse.access import AccessList, Caller, DefaultPolicy
from infuse.cli import app as cli_app
from infuse.config import AuthSettings, ServerSettings
from infuse.documents.models import Chunk, FileType
from infuse.identity import FailedAuthLimiter, IdentityStore
from infuse.language import Language
from infuse.server import RAG_MODEL_ID, create_app
from infuse.server.audit import AuditLog, read_records
from infuse.server.context import TunedWeights
from infuse.store.filters import access_filter
from infuse.testing import ScriptedModel
from infuse.tuning.builders import kb_source
from infuse.tuning.registry import training_access
from infuse.workspace import Workspace
from test_server_reliability import running

HASHING = {"backend": "hashing", "model": "hashing-128"}
FAST_KEYS = AuthSettings(key_hash_time_cost=1, key_hash_memory_kib=8, key_hash_parallelism=1)
POLICY = DefaultPolicy.ADMINS
REPLY = "From the passages [1] [2] [3]."

# file -> (access entries, text); every text has a codeword found nowhere else.
DOCS: dict[str, tuple[list[str], str]] = {
    "public/cafeteria.md": (
        ["everyone"],
        "# Cafeteria\n\nThe cafeteria opens at 8 am and serves lunch until 2 pm. Codeword amberfox.",
    ),
    "legal/merger.md": (
        ["group:legal"],
        "# Merger\n\nThe merger with Acme closes in March after the antitrust review. Codeword blueheron.",
    ),
    "legal/contracts/acme-nda.md": (
        ["group:legal"],  # no access file in contracts/: inherited from legal/
        "# NDA\n\nThe nondisclosure agreement with Acme lasts five years. Codeword harborseal.",
    ),
    "legal/litigation/hold.md": (
        ["group:legal", "deny:user:eve"],
        "# Litigation\n\nThe litigation hold covers all email sent since 2024. Codeword crimsonlynx.",
    ),
    "hr/salaries.md": (
        ["group:hr"],
        "# Salaries\n\nSalary bands rise by four percent in April for every grade. Codeword duskwren.",
    ),
    "hr/reviews/bob.md": (
        ["user:bob"],
        "# Review\n\nThe performance review for Bob is due in June with his manager. Codeword emberotter.",
    ),
    "exec/board.md": (
        ["group:exec", "deny:group:hr"],
        "# Board\n\nThe board meets in Lisbon to approve the budget for next year. Codeword glacierwolf.",
    ),
    "misc/parking.md": (
        [],  # no list: the default policy (admins only here)
        "# Parking\n\nParking permits renew every January at the front desk. Codeword frostmoth.",
    ),
}
# The .infuse-access files that give DOCS their lists at ingest (nested: the nearest file wins).
FOLDER_ACCESS: dict[str, list[str]] = {
    "public": ["everyone"],
    "legal": ["group:legal"],
    "legal/litigation": ["group:legal", "deny:user:eve"],
    "hr": ["group:hr"],
    "hr/reviews": ["user:bob"],
    "exec": ["group:exec", "deny:group:hr"],
}
QUESTIONS = [
    "How long does the nondisclosure agreement with Acme last?",
    "When does the cafeteria open?",
    "When does the merger with Acme close?",
    "What does the litigation hold cover?",
    "How much do salary bands rise?",
    "When is the performance review for Bob due?",
    "Where does the board meet to approve the budget?",
    "When do parking permits renew?",
    "What is the codeword?",
    "Tell me about Acme, salaries, the board and parking.",
    "How often are API keys rotated?",
]
USERS: dict[str, tuple[bool, list[str]]] = {
    "root": (True, []),
    "alice": (False, ["legal"]),
    "eve": (False, ["legal"]),
    "bob": (False, ["hr"]),
    "carol": (False, []),
    "dave": (False, ["hr", "exec"]),
    "frank": (False, ["exec"]),
}


def write_docs(root: Path, docs: dict[str, tuple[list[str], str]], folders: dict[str, list[str]] | None = None) -> Path:
    """The documents, and an ``.infuse-access`` file in each of ``folders`` that holds some."""
    for name, (_, text) in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder, entries in (folders or {}).items():
        if (root / folder).is_dir():
            allow = [e for e in entries if not e.startswith("deny:")]
            deny = [e.removeprefix("deny:") for e in entries if e.startswith("deny:")]
            (root / folder / ".infuse-access").write_text(f"allow = {json.dumps(allow)}\ndeny = {json.dumps(deny)}\n")
    return root


def set_access(ws: Workspace, labels: dict[str, list[str]]) -> None:
    """``infuse access set``: the documents whose source path ends with a key of ``labels`` get its list."""
    for record in ws.documents():
        entries = next((v for k, v in labels.items() if record.source_path.endswith(k)), None)
        if entries is not None:
            ws.set_access([record.doc_id], AccessList.parse(entries))


@dataclass
class Team:
    ws: Workspace
    identity: IdentityStore
    keys: dict[str, str]
    model: ScriptedModel
    app: Any
    client: TestClient
    access: dict[str, tuple[str, ...]] = field(default_factory=dict)  # file -> column (the truth)
    chunk_ids: dict[str, list[str]] = field(default_factory=dict)  # file -> chunk ids
    paths: dict[str, str] = field(default_factory=dict)  # file -> stored source path (= doc id)

    def caller(self, name: str) -> Caller:
        """The user as the server knows them now (a removed user: nobody in particular)."""
        known = {u.name for u in self.identity.list_users()}
        return self.identity.caller(name) if name in known else Caller(name)

    def readable(self, name: str) -> set[str]:
        caller = self.caller(name)
        return {f for f, column in self.access.items() if caller.may_read(column, POLICY)}

    def relabel(self, labels: dict[str, list[str]]) -> None:
        set_access(self.ws, labels)
        for name, entries in labels.items():
            self.access[name] = AccessList.parse(entries).to_column()

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


def make_team(root: Path, docs: dict[str, tuple[list[str], str]], **app_options: Any) -> Team:
    ws = Workspace.open(root / "ws", create=True, embedder=HASHING)
    report = ws.ingest([write_docs(root / "corpus", docs, FOLDER_ACCESS)])
    assert not report.failed
    identity = IdentityStore.open(ws.path, create=True, settings=FAST_KEYS)
    groups = sorted({g for _, gs in USERS.values() for g in gs} | {"exec", "hr", "legal"})
    for group in groups:
        identity.add_group(group)
    keys = {name: identity.add_user(name, admin=admin, groups=gs) for name, (admin, gs) in USERS.items()}
    model = ScriptedModel(REPLY)
    options: dict[str, Any] = {
        "settings": ServerSettings(access_log="off"),
        "authenticator": identity,
        "limiter": FailedAuthLimiter(max_failures=100_000),
        "identity": identity,
        "policy": POLICY,
        **app_options,
    }
    app = create_app(ws.rag_pipeline(model), **options)
    team = Team(ws, identity, keys, model, app, TestClient(app))
    store = ws.store()
    assert store is not None
    for name in docs:
        chunks = [c for c in store.iter_chunks() if c.source_path.endswith(name)]
        team.chunk_ids[name] = [c.chunk_id for c in chunks]
        team.paths[name] = chunks[0].source_path
        # The folder files gave every document its list (nested folders: the nearest file wins).
        team.access[name] = AccessList.parse(docs[name][0]).to_column()
        assert {c.access for c in chunks} == {team.access[name]}, name
    return team


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    team = make_team(tmp_path_factory.mktemp("team"), DOCS)
    with team.client:
        yield team


def forbidden_strings(team: Team, name: str) -> dict[str, list[str]]:
    """For each document ``name`` may not read: the strings none of their responses may carry."""
    readable = team.readable(name)
    found: dict[str, list[str]] = {}
    for doc, (_, text) in DOCS.items():
        if doc in readable:
            continue
        codeword = re.search(r"Codeword (\w+)", text)
        assert codeword is not None
        path = team.paths[doc]
        found[doc] = [codeword.group(1), path, json.dumps(path)[1:-1], *team.chunk_ids[doc]]
    return found


def leaked(team: Team, name: str, text: str) -> list[str]:
    return [f"{doc}: {s}" for doc, strings in forbidden_strings(team, name).items() for s in strings if s in text]


# --- every route needs auth ---------------------------------------------------------------------------

UNAUTHENTICATED = {"/health", "/ready"}


def api_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves through FastAPI, included routers walked (FastAPI keeps
    an included router as one entry whose candidates are its routes, with the prefix applied)."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "effective_candidates"):
                walk(route.effective_candidates())
            elif isinstance(route, APIRoute) or hasattr(route, "original_route"):
                for method in sorted(route.methods):
                    found.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))

    walk(app.routes)
    return found


def other_routes(app: Any) -> set[str]:
    return {getattr(r, "path", "") for r in app.routes if not hasattr(r, "effective_candidates")}


def test_every_route_but_health_rejects_a_missing_or_wrong_key(team: Team) -> None:
    # The web UI's pages answer a stranger with a redirect to sign in: tests/test_web_ui.py knocks on them.
    routes = [(m, p) for m, p in api_routes(team.app) if not p.startswith("/ui")]
    assert len(routes) >= 20 and ("POST", "/v1/search") in routes and ("GET", "/admin/users") in routes
    checked = 0
    for method, path in routes:
        if path in UNAUTHENTICATED:
            assert team.client.request(method, path).status_code == 200
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + team.keys["alice"][:-2]}):
            response = team.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["type"] == "authentication_error"
            checked += 1
    # Non-API routes are FastAPI's own schema pages (they describe routes, never data) and the web
    # UI's static files (a stylesheet and scripts).
    assert other_routes(team.app) <= {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/ui/static"}
    assert checked >= 3 * (len(routes) - 2)


def test_admin_routes_reject_members_with_403(team: Team) -> None:
    admin_routes = [(m, p) for m, p in api_routes(team.app) if p.startswith("/admin")]
    assert len(admin_routes) >= 10
    for method, path in admin_routes:
        response = team.client.request(method, path, headers=team.headers("carol"), json={})
        assert response.status_code == 403, (method, path, response.text)
    assert team.client.get("/admin/users", headers=team.headers("root")).status_code == 200


def test_hostile_document_refs_and_filter_values_get_4xx_and_members_see_no_access_lists(team: Team) -> None:
    for ref in ("~nosuchuser/x.md", "a%00b.md"):
        response = team.client.get(f"/v1/documents/{ref}", headers=team.headers("carol"))
        assert response.status_code == 404 and "Traceback" not in response.text, (ref, response.text)
        assert str(team.ws.path) not in response.text  # no server paths in a member's errors
    for page in ("1e30", "99999999999999999999999999"):
        response = team.client.post(
            "/v1/search", json={"query": "merger", "filters": {"page": page}}, headers=team.headers("carol")
        )
        assert response.status_code == 400, (page, response.text)
    listed = team.client.get("/v1/documents", headers=team.headers("carol")).json()["data"]
    assert listed and all("access" not in row for row in listed)
    as_admin = team.client.get("/v1/documents", headers=team.headers("root")).json()["data"]
    assert all("access" in row for row in as_admin)


def test_admins_manage_users_groups_and_keys_over_http(tmp_path: Path) -> None:
    team = make_team(tmp_path, {k: DOCS[k] for k in ("public/cafeteria.md", "legal/merger.md")})
    root = team.headers("root")
    with TestClient(team.app) as client:
        assert client.post("/admin/groups", json={"name": "audit"}, headers=root).status_code == 200
        made = client.post("/admin/users", json={"name": "gina", "groups": ["legal"]}, headers=root).json()
        assert made["user"]["name"] == "gina"
        gina = {"Authorization": f"Bearer {made['key']}"}
        search = {"query": "blueheron", "mode": "lexical"}
        assert len(client.post("/v1/search", json=search, headers=gina).json()["hits"]) == 1
        assert client.delete("/admin/groups/legal/members/gina", headers=root).json()["removed"] is True
        assert client.post("/v1/search", json=search, headers=gina).json()["hits"] == []  # at once
        rotated = client.post("/admin/users/gina/keys", headers=root).json()["key"]
        assert client.get("/v1/models", headers=gina).status_code == 401  # the old key, at once
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {rotated}"}).status_code == 200
        names = [u["name"] for u in client.get("/admin/users", headers=root).json()["data"]]
        assert "gina" in names
        assert client.delete("/admin/users/gina", headers=root).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {rotated}"}).status_code == 401
        unknown = client.delete("/admin/users/nobody", headers=root)
        assert unknown.status_code >= 400 and "nobody" in unknown.json()["error"]["message"]


# --- the leak probe -------------------------------------------------------------------------------------


@dataclass
class Probe:
    user: str
    route: str
    status: int
    leaks: list[str]


def probe(team: Team, rng: random.Random, user: str, auth: str) -> Probe:
    """One randomised request as ``user`` (``auth``: their key, a session cookie, or none/wrong),
    checked for leaks; returns what was seen."""
    client = team.client
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if auth == "key":
        headers = team.headers(user)
    elif auth == "session":
        signed = client.post("/auth/session", json={"key": team.keys[user]})
        if signed.status_code != 200:
            return Probe(user, "POST /auth/session", signed.status_code, leaked(team, user, signed.text))
        cookies = {"infuse_session": signed.cookies["infuse_session"]}
        headers = {"X-CSRF-Token": signed.json()["csrf_token"]}
    elif auth == "wrong":
        headers = {"Authorization": "Bearer infuse_wrong_key"}
    question = rng.choice(QUESTIONS)
    route = rng.choice(["chat", "chat-stream", "search", "documents", "document", "status", "completions", "admin"])
    prompts_before = len(team.model.prompts)
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    body_text, echoed = "", ""
    extra: list[str] = []
    if route in ("chat", "chat-stream"):
        stream = route == "chat-stream"
        payload = {"model": RAG_MODEL_ID, "messages": [{"role": "user", "content": question}], "stream": stream}
        response = client.post("/v1/chat/completions", json=payload, headers=headers)
        if response.status_code == 200 and not stream:
            cited = {c["source_path"] for c in response.json()["citations"]}
            extra += [f"cited unreadable {p}" for p in cited if p not in {team.paths[d] for d in team.readable(user)}]
    elif route == "search":
        mode = rng.choice(["hybrid", "lexical", "dense"])
        k = rng.randint(1, 8)
        codeword = re.search(r"Codeword (\w+)", rng.choice(list(DOCS.values()))[1])
        assert codeword is not None
        query = rng.choice([question, codeword.group(1)])
        response = client.post("/v1/search", json={"query": query, "k": k, "mode": mode}, headers=headers)
        echoed = json.dumps(query, ensure_ascii=False)[1:-1]
        if response.status_code == 200 and mode == "dense":
            readable_chunks = sum(len(team.chunk_ids[d]) for d in team.readable(user))
            if len(response.json()["hits"]) != min(k, readable_chunks):  # top-k is never short
                extra.append(f"dense top-{k} had {len(response.json()['hits'])} of {readable_chunks} readable")
    elif route == "documents":
        response = client.get("/v1/documents", headers=headers)
        if response.status_code == 200:
            shown = {d["source_path"] for d in response.json()["data"]}
            if shown != {team.paths[d] for d in team.readable(user)}:
                extra.append(f"documents list {sorted(shown)}")
    elif route == "document":
        doc = rng.choice(list(DOCS))
        ref = team.paths[doc]
        response = client.get(f"/v1/documents/{ref}", headers=headers)
        if response.status_code in (200, 404) and auth in ("key", "session"):
            expected = 200 if doc in team.readable(user) else 404
            if response.status_code != expected:
                extra.append(f"document {doc}: {response.status_code}, expected {expected}")
            if expected == 404:
                # Worded exactly like a document that does not exist.
                missing = client.get(f"/v1/documents/{ref}-missing", headers=headers)
                if response.json() != json.loads(missing.text.replace(f"{ref}-missing", ref)):
                    extra.append(f"document {doc}: the 404 differs from a missing document's")
                echoed = ref
    elif route == "status":
        response = client.get("/v1/status", headers=headers)
        if response.status_code == 200 and response.json()["documents"] != len(team.readable(user)):
            extra.append(f"status counts {response.json()['documents']} documents")
    elif route == "completions":
        payload = {"model": team.model.name, "prompt": question, "max_tokens": 4}
        response = client.post("/v1/completions", json=payload, headers=headers)
    else:
        response = client.get("/admin/audit", headers=headers, params={"n": 5})
        is_admin = team.caller(user).admin
        if auth in ("key", "session") and response.status_code != (200 if is_admin else 403):
            extra.append(f"admin route answered {response.status_code}")
    body_text = response.text
    if echoed:
        body_text = body_text.replace(echoed, "")
    if auth in ("none", "wrong") and response.status_code != 401:
        extra.append(f"{auth} auth answered {response.status_code}")
    prompts = [json.dumps(p, ensure_ascii=False) for p in team.model.prompts[prompts_before:]]
    is_admin_route = route == "admin" and team.caller(user).admin
    leaks = [] if is_admin_route else leaked(team, user, body_text + "\n".join(prompts))
    client.cookies.clear()
    return Probe(user, route, response.status_code, leaks + extra)


def test_1000_randomised_probes_leak_nothing(team: Team) -> None:
    rng = random.Random(14)
    seen: list[Probe] = []
    removed: set[str] = set()
    old_keys: dict[str, str] = {}
    started = time.perf_counter()
    for number in range(1000):
        if number == 200:  # access changes after ingest: HR's salaries are shown to legal too
            team.relabel({"hr/salaries.md": ["group:hr", "group:legal"]})
        if number == 350:  # ... and alice is denied the merger her group may read
            team.relabel({"legal/merger.md": ["group:legal", "deny:user:alice"]})
        if number == 500:  # eve leaves: her key stops working at once
            team.identity.remove_user("eve")
            removed.add("eve")
        if number == 600:  # bob's key is rotated: the old one stops working at once
            old_keys["bob"] = team.keys["bob"]
            team.keys["bob"] = team.identity.rotate_key("bob")
        if number == 750:  # carol joins exec: she reads the board's documents at once
            team.identity.add_member("exec", "carol")
        user = rng.choice(sorted(USERS))
        auth = rng.choices(["key", "session", "none", "wrong"], weights=[70, 15, 8, 7])[0]
        if user in removed and auth in ("key", "session"):
            response = team.client.get("/v1/documents", headers={"Authorization": f"Bearer {team.keys[user]}"})
            seen.append(Probe(user, "removed user", response.status_code, [] if response.status_code == 401 else ["!"]))
            continue
        if number > 600 and user == "bob" and rng.random() < 0.2:
            response = team.client.post(
                "/v1/search", json={"query": "salary"}, headers={"Authorization": f"Bearer {old_keys['bob']}"}
            )
            seen.append(Probe(user, "rotated key", response.status_code, [] if response.status_code == 401 else ["!"]))
            continue
        seen.append(probe(team, rng, user, auth))
    seconds = time.perf_counter() - started
    leaks = [p for p in seen if p.leaks]
    statuses: dict[int, int] = {}
    for p in seen:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    routes = sorted({p.route for p in seen})
    print(
        f"\nleak probe: {len(seen)} probes over {len(USERS)} users, {len(routes)} routes ({', '.join(routes)}), "
        f"{seconds:.1f} s; statuses {dict(sorted(statuses.items()))}; leaks: {len(leaks)}"
    )
    assert len(seen) == 1000
    assert not leaks, leaks[:5]
    assert statuses.get(200, 0) > 500 and statuses.get(401, 0) > 50 and statuses.get(404, 0) > 10
    assert {"chat", "chat-stream", "search", "documents", "document", "status", "removed user", "rotated key"} <= set(
        routes
    )


def test_the_probe_finds_leaks_when_access_is_not_enforced(team: Team) -> None:
    """The probe can fail: against a server without --auth (everyone an admin) it finds leaks."""
    unguarded = create_app(team.ws.rag_pipeline(team.model), settings=ServerSettings(access_log="off"))
    with TestClient(unguarded) as client:
        blind = dataclasses.replace(team, app=unguarded, client=client)
        rng = random.Random(1)
        seen = [probe(blind, rng, "carol", "key") for _ in range(60)]
    assert sum(1 for p in seen if p.leaks) > 10


def test_new_access_takes_effect_at_once_and_readers_see_their_documents(team: Team) -> None:
    # A positive control for the probe: readers do get the restricted passages.
    hits = team.client.post(
        "/v1/search", json={"query": "glacierwolf", "mode": "lexical"}, headers=team.headers("frank")
    )
    assert [h["source_path"] for h in hits.json()["hits"]] == [team.paths["exec/board.md"]]
    denied = team.client.post(
        "/v1/search", json={"query": "glacierwolf", "mode": "lexical"}, headers=team.headers("dave")
    )
    assert denied.json()["hits"] == []  # dave is in exec but HR is denied
    root = team.client.post("/v1/search", json={"query": "frostmoth", "mode": "lexical"}, headers=team.headers("root"))
    assert [h["source_path"] for h in root.json()["hits"]] == [team.paths["misc/parking.md"]]  # admins read all


def test_filter_errors_name_only_metadata_keys_the_caller_may_see(tmp_path: Path) -> None:
    deals = '{"text": "The Falcon deal closes soon. Codeword ivoryfinch.", "deal_code": "falcon"}\n'
    team = make_team(
        tmp_path, {"public/cafeteria.md": DOCS["public/cafeteria.md"], "legal/deals.jsonl": (["group:legal"], deals)}
    )
    with TestClient(team.app) as client:
        for user, shown in (("carol", False), ("alice", True)):
            wrong = client.post(
                "/v1/search", json={"query": "deal", "filters": {"deal_cod": "x"}}, headers=team.headers(user)
            )
            assert wrong.status_code == 400
            assert ("deal_code" in wrong.json()["error"]["message"]) is shown, (user, wrong.text)
            listed = client.get("/v1/documents", params={"filter": "deal_code=falcon"}, headers=team.headers(user))
            assert listed.status_code == (200 if shown else 400)
            # carol's own key is echoed back, but the knowledge base's keys she may not see are not listed.
            assert shown or "document metadata keys: none" in listed.json()["error"]["message"]


# --- the relevance gate's statistics -----------------------------------------------------------------


def test_gate_statistics_count_only_what_the_caller_may_read(team: Team, tmp_path: Path) -> None:
    carol = Caller("carol")
    visible = access_filter(carol, POLICY)
    readable = {f for f, column in team.access.items() if carol.may_read(column, POLICY)}
    assert readable == {"public/cafeteria.md"}
    mine = team.ws.term_statistics(visible)
    # Exactly the statistics of a knowledge base holding only what carol may read.
    alone = Workspace.open(tmp_path / "alone", create=True, embedder=HASHING)
    alone.ingest([write_docs(tmp_path / "corpus", {f: DOCS[f] for f in readable}, FOLDER_ACCESS)])
    assert mine == alone.term_statistics()
    everything = team.ws.term_statistics()
    assert "blueheron" in everything.document_frequency and "blueheron" not in mine.document_frequency
    assert everything.n_chunks > mine.n_chunks
    assert team.ws.term_statistics(visible) is mine  # cached for this filter and version
    # The pipeline built for carol weighs by her statistics.
    pipeline = team.app.state.context.pipeline_for(carol)
    assert pipeline.retriever.term_statistics() == mine


# --- sessions, rate limiting ---------------------------------------------------------------------------


def test_sign_in_sets_a_strict_httponly_cookie_and_unsafe_methods_need_csrf(team: Team) -> None:
    with TestClient(team.app, base_url="https://testserver") as client:
        signed = client.post("/auth/session", json={"key": team.keys["alice"]})
        assert signed.status_code == 200
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Max-Age=" in cookie
        csrf = signed.json()["csrf_token"]
        assert client.get("/auth/session").json()["user"] == "alice"
        assert client.get("/v1/documents").status_code == 200
        refused = client.post("/v1/search", json={"query": "merger"})
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]["message"]
        assert client.post("/v1/search", json={"query": "merger"}, headers={"X-CSRF-Token": "nope"}).status_code == 403
        assert client.post("/v1/search", json={"query": "merger"}, headers={"X-CSRF-Token": csrf}).status_code == 200
        assert client.request("DELETE", "/auth/session", headers={"X-CSRF-Token": csrf}).status_code == 200
        client.cookies.set("infuse_session", signed.cookies["infuse_session"])
        assert client.get("/v1/documents").status_code == 401  # signed out
    with TestClient(team.app) as plain:
        assert "Secure" not in plain.post("/auth/session", json={"key": team.keys["alice"]}).headers["set-cookie"]
        assert plain.post("/auth/session", json={"key": "infuse_nope"}).status_code == 401


def test_failed_attempts_are_rate_limited_with_429_and_retry_after_and_recorded_for_admins(tmp_path: Path) -> None:
    team = make_team(tmp_path, {"public/cafeteria.md": DOCS["public/cafeteria.md"]})
    team.app = create_app(
        team.ws.rag_pipeline(team.model),
        settings=ServerSettings(access_log="off"),
        authenticator=team.identity,
        limiter=FailedAuthLimiter(max_failures=3, window=60, block=30),
    )
    with TestClient(team.app) as client:
        wrong = {"Authorization": "Bearer infuse_wrong"}
        assert [client.get("/v1/models", headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
        blocked = client.get("/v1/models", headers=team.headers("alice"))  # even a good key, from this address
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["retry-after"]) <= 30
        assert client.post("/auth/session", json={"key": team.keys["alice"]}).status_code == 429
        assert client.get("/health").status_code == 200
    recorded = team.identity.failures()
    assert len(recorded) == 3 and all(f["reason"] == "bad key" for f in recorded)
    assert "infuse_wrong" not in repr(recorded)  # the key's id at most, never the key


# --- the openai SDK ------------------------------------------------------------------------------------


def test_openai_sdk_with_a_users_key_gets_only_that_users_citations(team: Team) -> None:
    question = [{"role": "user", "content": "Tell me about the merger with Acme, the litigation hold and salary bands"}]
    cited: dict[str, set[str]] = {}
    for name in ("alice", "bob", "carol", "root"):
        client = openai.OpenAI(
            base_url="http://testserver/v1", api_key=team.keys[name], http_client=team.client, max_retries=0
        )
        response = client.chat.completions.create(model=RAG_MODEL_ID, messages=question, max_tokens=8)
        cited[name] = {c["source_path"] for c in response.model_extra["citations"]}
        readable = {team.paths[d] for d in team.readable(name)}
        assert cited[name] <= readable, (name, cited[name] - readable)
        chunks = list(client.chat.completions.create(model=RAG_MODEL_ID, messages=question, max_tokens=8, stream=True))
        streamed = {c["source_path"] for c in chunks[-1].model_extra["citations"]}
        assert streamed == cited[name]
    assert cited["root"] - cited["carol"]  # the admin is cited what carol is not
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url="http://testserver/v1", api_key="infuse_wrong", http_client=team.client, max_retries=0
        ).models.list()


# --- fine-tuned weights -----------------------------------------------------------------------------


def test_tuned_weights_are_refused_to_callers_who_may_not_read_their_training_documents(tmp_path: Path) -> None:
    docs = {k: DOCS[k] for k in ("public/cafeteria.md", "legal/merger.md")}
    tuned = TunedWeights(("legal-qa",), (("group:legal",), ("everyone",)))
    team = make_team(tmp_path / "a", docs, tuned=tuned)
    ask = {"model": RAG_MODEL_ID, "messages": [{"role": "user", "content": "When does the merger close?"}]}
    with TestClient(team.app) as client:
        assert client.post("/v1/chat/completions", json=ask, headers=team.headers("alice")).status_code == 200
        refused = client.post("/v1/chat/completions", json=ask, headers=team.headers("carol"))
        assert refused.status_code == 403
        message = refused.json()["error"]["message"]
        assert "legal-qa" in message and "cannot be filtered per user" in message
        plain = {"model": team.model.name, "prompt": "hello", "max_tokens": 2}
        assert client.post("/v1/completions", json=plain, headers=team.headers("carol")).status_code == 403
        assert client.post("/v1/search", json={"query": "cafeteria"}, headers=team.headers("carol")).status_code == 200
        assert client.get("/v1/status", headers=team.headers("carol")).json()["tuned"]["served_to_you"] is False
    unrecorded = make_team(tmp_path / "b", docs, tuned=TunedWeights(("old-run",), None))
    with TestClient(unrecorded.app) as client:
        assert client.post("/v1/chat/completions", json=ask, headers=unrecorded.headers("alice")).status_code == 403
        assert client.post("/v1/chat/completions", json=ask, headers=unrecorded.headers("root")).status_code == 200
    allowed = make_team(tmp_path / "c", docs, tuned=tuned, allow_tuned_for_all=True)
    with TestClient(allowed.app) as client:
        assert client.post("/v1/chat/completions", json=ask, headers=allowed.headers("carol")).status_code == 200


def test_runs_record_the_access_lists_of_their_training_documents(tmp_path: Path) -> None:
    chunk = Chunk("c1", "d", "/d.md", FileType.MARKDOWN, 0, "x", 0, 1, Language.EN, access=("group:legal",))
    other = dataclasses.replace(chunk, chunk_id="c2", access=("default",))
    assert kb_source("ws", [], [chunk, other, chunk])["access"] == [["default"], ["group:legal"]]
    ws = Workspace.open(tmp_path / "ws", create=True, embedder=HASHING)
    run = ws.adapters_dir / "legal-qa"
    (run / "adapter").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"name": "legal-qa", "training_access": [["group:legal"]]}))
    found = training_access(ws, "some/base", [str(run / "adapter"), "/elsewhere/adapter"])
    assert found == [{"run": "legal-qa", "access": [["group:legal"]]}]
    tuned = TunedWeights.from_runs(found)
    assert tuned is not None and tuned.readable_by(Caller("a", ("legal",)), POLICY)
    assert not tuned.readable_by(Caller("c"), POLICY)
    assert training_access(ws, "some/base", []) == [] and TunedWeights.from_runs([]) is None


# --- the audit log -----------------------------------------------------------------------------------


def test_audit_log_records_who_asked_what_and_which_chunks_came_back(tmp_path: Path) -> None:
    team = make_team(tmp_path, {k: DOCS[k] for k in ("public/cafeteria.md", "legal/merger.md")})
    with TestClient(team.app) as client:
        ask = {"model": RAG_MODEL_ID, "messages": [{"role": "user", "content": "When does the merger close?"}]}
        answer = client.post("/v1/chat/completions", json=ask, headers=team.headers("alice")).json()
        streamed = client.post("/v1/chat/completions", json={**ask, "stream": True}, headers=team.headers("alice"))
        assert streamed.status_code == 200
        hits = client.post("/v1/search", json={"query": "cafeteria"}, headers=team.headers("carol")).json()["hits"]
        assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        client.get("/health")
        records = client.get("/admin/audit", headers=team.headers("root"), params={"n": 100}).json()["data"]
        assert client.get("/admin/audit", headers=team.headers("alice")).status_code == 403
    chat, stream, search, refused = records[:4]
    assert chat["user"] == "alice" and chat["route"] == "POST /v1/chat/completions" and chat["status"] == 200
    assert chat["question"] == "When does the merger close?" and chat["model"] == RAG_MODEL_ID
    assert chat["chunks"] == [c["chunk_id"] for c in answer["citations"]] and chat["chunks"]
    assert stream["chunks"] == chat["chunks"]  # a streamed answer's citations are recorded too
    assert set(chat["chunks"]) <= set(chat["passages"]) and stream["passages"] == chat["passages"]
    assert search["user"] == "carol" and search["chunks"] == [h["chunk_id"] for h in hits]
    assert refused["user"] is None and refused["status"] == 401
    assert all(r["route"] != "GET /health" for r in records)
    for record in records:
        assert set(record) >= {"time", "user", "route", "status", "question", "chunks", "model"}
    runner = CliRunner()
    tail = runner.invoke(cli_app, ["-w", str(team.ws.path), "audit", "tail", "-n", "2", "--json"])
    assert tail.exit_code == 0, tail.output
    assert [(r["route"], r["user"], r["status"]) for r in json.loads(tail.stdout)] == [
        ("GET /admin/audit", "root", 200),
        ("GET /admin/audit", "alice", 403),
    ]
    found = runner.invoke(cli_app, ["-w", str(team.ws.path), "audit", "search", "--user", "carol", "--json"])
    assert [r["route"] for r in json.loads(found.stdout)] == ["POST /v1/search"]
    text = runner.invoke(cli_app, ["-w", str(team.ws.path), "audit", "search", "--text", "MERGER", "--json"])
    assert len(json.loads(text.stdout)) == 2
    since = runner.invoke(cli_app, ["-w", str(team.ws.path), "audit", "search", "--since", "2999-01-01", "--json"])
    assert json.loads(since.stdout) == []
    bad = runner.invoke(cli_app, ["-w", str(team.ws.path), "audit", "search", "--since", "yesterday"])
    assert bad.exit_code != 0 and "yesterday" in bad.output


def test_audit_log_rotates_by_size_and_reads_back_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2048, keep=2)
    for number in range(200):
        log.write({"time": f"2026-12-02T17:{number // 60:02d}:{number % 60:02d}.000Z", "user": "u", "n": number})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 2048 for name in files)
    assert {(tmp_path / name).stat().st_mode & 0o777 for name in files} == {0o600}  # every user's questions
    numbers = [r["n"] for r in read_records(tmp_path / "audit.jsonl")]
    assert numbers == sorted(numbers) and numbers[-1] == 199 and len(numbers) < 200  # the oldest were dropped
    assert [r["n"] for r in read_records(tmp_path / "audit.jsonl", last=3)] == [197, 198, 199]


# --- single-user mode stays as it was ---------------------------------------------------------------------


def test_without_auth_the_single_user_is_an_admin_and_the_api_key_is_checked(team: Team) -> None:
    app = create_app(
        team.ws.rag_pipeline(ScriptedModel(REPLY)), api_key="sk-one", settings=ServerSettings(access_log="off")
    )
    with TestClient(app) as client:
        assert client.get("/v1/documents").status_code == 401
        shown = client.get("/v1/documents", headers={"Authorization": "Bearer sk-one"}).json()["data"]
        assert len(shown) == len(DOCS)  # everything, restricted documents included: one user, an admin
        assert client.get("/v1/status", headers={"Authorization": "Bearer sk-one"}).json()["user"] == "local"
        assert client.post("/auth/session", json={"key": "sk-one"}).status_code == 404  # no sessions without --auth
        assert client.get("/ready").json() == {"status": "ready"}


def test_serve_auth_without_users_says_how_to_add_the_first_admin(tmp_path: Path) -> None:
    Workspace.open(tmp_path / "ws", create=True)
    result = CliRunner().invoke(cli_app, ["-w", str(tmp_path / "ws"), "serve", "--auth"])
    assert result.exit_code != 0 and "users add" in result.output and "--admin" in result.output


# --- 20 users at once -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_kind", ["scripted", "tiny-llama"])
def test_20_users_at_once_get_only_their_own_passages(
    model_kind: str, tmp_path: Path, tiny_chat_llama_dir: str
) -> None:
    users = [f"u{i:02d}" for i in range(20)]
    words = ["apple", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "jade",
             "kelp", "lotus", "maple", "nectar", "onyx", "pearl", "quartz", "raven", "sable", "tundra"]  # fmt: skip
    docs = {
        f"private/{u}.md": ([f"user:{u}"], f"# Note\n\nThe private project of {u} is called {w}berry{i}.")
        for i, (u, w) in enumerate(zip(users, words, strict=True))
    }
    if model_kind == "tiny-llama":
        from infuse.models.transformers_backend import TransformersModel

        model: Any = TransformersModel.load(tiny_chat_llama_dir)
    else:
        model = ScriptedModel(REPLY)
    ws = Workspace.open(tmp_path / "ws", create=True, embedder=HASHING)
    ws.ingest([write_docs(tmp_path / "corpus", docs)])
    set_access(ws, {name: entries for name, (entries, _) in docs.items()})
    identity = IdentityStore.open(ws.path, create=True, settings=FAST_KEYS)
    keys = {u: identity.add_user(u) for u in users}
    app = create_app(
        ws.rag_pipeline(model),
        settings=ServerSettings(access_log="off", max_waiting=64),
        authenticator=identity,
        limiter=FailedAuthLimiter(),
        policy=POLICY,
    )
    barrier = threading.Barrier(len(users))

    def ask(index: int) -> tuple[str, float, int, list[str], list[str]]:
        user = users[index]
        word = f"{words[index]}berry{index}"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{run.port}/v1", api_key=keys[user], max_retries=0)
        barrier.wait(timeout=60)
        started = time.perf_counter()
        response = client.chat.completions.create(
            model=RAG_MODEL_ID,
            messages=[{"role": "user", "content": f"What is the private project of {user} called? {word}"}],
            max_tokens=8,
        )
        seconds = time.perf_counter() - started
        cited = [c["source_path"] for c in response.model_extra["citations"]]
        found = client.post("/search", body={"query": word, "k": 5, "mode": "lexical"}, cast_to=dict)
        hits = [h["source_path"] for h in found["hits"]]
        return user, seconds, len(response.choices), cited, hits

    with running(app) as run:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(users)) as pool:
            results = list(pool.map(ask, range(len(users))))
        wall = time.perf_counter() - started
    latencies = sorted(r[1] for r in results)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"\n20 users at once ({model_kind}): {len(results) * 2 / wall:.1f} requests/s "
        f"(20 chat + 20 search in {wall:.2f} s), chat p95 {p95 * 1000:.0f} ms"
    )
    for user, _, choices, cited, hits in results:
        own = str((tmp_path / "corpus" / "private" / f"{user}.md").resolve())
        assert choices == 1
        assert set(cited) <= {own}, (user, cited)
        assert hits == [own], (user, hits)
        if model_kind == "scripted":
            assert cited == [own]
