"""The web UI's pages over HTTP (issue 15): sign-in, access on every page, CSRF, uploads as
background jobs, conversations per user, the two languages.

These run the real app (identity store, LanceDB, the hashing embedder, a scripted model) through
FastAPI's test client, in seconds; ``tests/test_web_browser.py`` drives the same pages in Chromium
with the lab model.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infuse.server.background import JobLauncher
from infuse.server.web import CSRF_COOKIE, linkify
from infuse.server.web.i18n import MESSAGES, Translator, UILanguage, pick_language
from test_team_server import DOCS, Team, api_routes, forbidden_strings, make_team

HASHING_ENV = {"INFUSE_EMBEDDER__BACKEND": "hashing", "INFUSE_EMBEDDER__MODEL": "hashing-128"}
PUBLIC_UI = {"/ui", "/ui/", "/ui/login", "/ui/lang/x"}  # redirects, sign-in, the language switch: no data


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    # Background jobs are `infuse` processes: they read the embedder from the environment as the
    # server's workspace does (the hashing embedder: no model to load).
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HASHING_ENV.items():
            patch.setenv(name, value)
        team = make_team(tmp_path_factory.mktemp("web"), DOCS)
        with team.client:
            yield team


def browser(team: Team, user: str | None) -> TestClient:
    """A new client (its own cookies) signed in as ``user`` through the sign-in form."""
    client = TestClient(team.app)
    if user is not None:
        response = client.post("/ui/login", data={"key": team.keys[user], "next": "/ui/chat"}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/chat", response.text
    return client


def ui_post(client: TestClient, path: str, **kwargs: Any) -> Any:
    """A POST as the page's own script sends it: the htmx header and the CSRF token."""
    headers = {"HX-Request": "true", "X-CSRF-Token": client.cookies.get(CSRF_COOKIE, "")}
    return client.post(path, headers=headers, **kwargs)


def ui_routes(team: Team) -> list[tuple[str, str]]:
    return [(m, p) for m, p in api_routes(team.app) if p.startswith("/ui") and p not in PUBLIC_UI]


# --- sign-in -----------------------------------------------------------------------------------------


def test_every_page_sends_a_stranger_to_sign_in_and_every_action_refuses_them(team: Team) -> None:
    stranger = browser(team, None)
    routes = ui_routes(team)
    assert len(routes) >= 20
    for method, path in routes:
        response = stranger.request(method, path, follow_redirects=False, headers={"HX-Request": "true"})
        if method == "GET":
            # Pages redirect to sign-in (htmx fragments too: the redirect is what a browser can follow).
            assert response.status_code == 303, (method, path, response.text)
            assert response.headers["location"].startswith("/ui/login?next="), path
        else:
            assert response.status_code == 401, (method, path, response.text)
    assert stranger.get("/ui/login").status_code == 200
    assert stranger.get("/ui/static/app.js").status_code == 200  # no data in the static files


def test_sign_in_sets_an_httponly_session_and_refuses_bad_keys_and_foreign_redirects(team: Team) -> None:
    client = browser(team, None)
    bad = client.post("/ui/login", data={"key": "ifk_nope_nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "That key is not valid." in bad.text and "Traceback" not in bad.text
    for target in ("//evil.example/x", "https://evil.example/", "/ui\\@evil"):
        response = client.post("/ui/login", data={"key": team.keys["carol"], "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/ui/chat", target
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("infuse_session="))
    csrf = next(c for c in cookies if c.startswith(f"{CSRF_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=strict" in session
    assert "HttpOnly" not in csrf  # the page's script reads it to send the header
    assert client.get("/ui/chat").status_code == 200


def test_actions_need_the_page_script_header_and_the_csrf_token(team: Team) -> None:
    client = browser(team, "root")
    form = {"name": "mallory"}
    # A cross-site form cannot set HX-Request: refused before anything happens.
    no_header = client.post("/ui/admin/users", data=form, headers={"X-CSRF-Token": client.cookies[CSRF_COOKIE]})
    assert no_header.status_code == 403 and "HX-Request" in no_header.json()["error"]["message"]
    no_token = client.post("/ui/admin/users", data=form, headers={"HX-Request": "true"})
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf_failed"
    assert "mallory" not in {u.name for u in team.identity.list_users()}
    ok = ui_post(client, "/ui/admin/users", data={"name": "mallory", "groups": "legal"})
    assert ok.status_code == 200
    key = re.search(r'<code id="new-key">([^<]+)</code>', ok.text)
    assert key is not None and team.identity.authenticate_key(key.group(1)) is not None  # shown once, and works
    assert ui_post(client, "/ui/admin/users/mallory/remove").status_code == 200
    assert "mallory" not in {u.name for u in team.identity.list_users()}


def test_admin_and_evaluate_pages_are_for_admins(team: Team) -> None:
    member = browser(team, "carol")
    for path in ("/ui/admin", "/ui/evaluate"):
        page = member.get(path)
        assert page.status_code == 403 and "text/html" in page.headers["content-type"], path
        assert "admins" in page.text
    admin = browser(team, "root")
    assert admin.get("/ui/admin").status_code == 200
    assert admin.get("/ui/evaluate").status_code == 200


# --- nobody sees what they may not read ----------------------------------------------------------------


def test_a_member_never_sees_a_restricted_document_in_library_search_document_views_or_chat(team: Team) -> None:
    for user in ("carol", "eve", "bob"):
        client = browser(team, user)
        forbidden = [s for strings in forbidden_strings(team, user).values() for s in strings]
        pages = [client.get("/ui/library").text]
        for query in ("merger Acme", "salary bands", "board Lisbon", "codeword", "parking permits"):
            pages.append(client.get("/ui/library", params={"q": query}).text)
        csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
        for n, question in enumerate(("When does the merger with Acme close?", "How much do salary bands rise?")):
            conversation = f"{user}-conv-{n}"
            body = {"model": "infuse-rag", "messages": [{"role": "user", "content": question}]}
            answer = client.post("/v1/chat/completions", json={**body, "conversation": conversation}, headers=csrf)
            assert answer.status_code == 200
            pages.append(answer.text)
            pages.append(client.get("/ui/chat", params={"c": conversation}).text)
        for text in pages:
            leaks = [s for s in forbidden if s in text]
            assert not leaks, (user, leaks)
        for doc in forbidden_strings(team, user):
            hidden = client.get(f"/ui/documents/{team.paths[doc]}")
            missing = client.get("/ui/documents/no-such-document.md")
            assert hidden.status_code == missing.status_code == 404, doc
            # The same page as for a document that does not exist (only the asked-for name echoed back).
            assert hidden.text.replace(team.paths[doc], "REF") == missing.text.replace("no-such-document.md", "REF")
        # What they may read is there, with its passage highlighted.
        readable = sorted(team.readable(user))[0]
        chunk = team.chunk_ids[readable][0]
        view = client.get(f"/ui/documents/{team.paths[readable]}", params={"chunk": chunk})
        assert view.status_code == 200 and '<mark id="cited"' in view.text


def test_members_see_no_access_lists_and_admins_can_edit_them(team: Team) -> None:
    member = browser(team, "alice").get("/ui/library").text
    assert "merger.md" in member and ">Who may read</th>" not in member and 'name="access"' not in member
    admin = browser(team, "root")
    page = admin.get("/ui/library").text
    assert ">Who may read</th>" in page and 'value="group:legal"' in page
    path = team.paths["public/cafeteria.md"]
    saved = ui_post(admin, "/ui/library/access", data={"doc_id": path, "access": "group:hr"})
    assert saved.status_code == 200 and "group:hr" in saved.text
    assert path not in browser(team, "carol").get("/ui/library").text
    typo = ui_post(admin, "/ui/library/access", data={"doc_id": path, "access": "group:nosuchgroup"})
    assert typo.status_code == 400 and "nosuchgroup" in typo.json()["error"]["message"]
    ui_post(admin, "/ui/library/access", data={"doc_id": path, "access": "everyone"})
    assert path in browser(team, "carol").get("/ui/library").text


def test_conversations_are_kept_per_user(team: Team) -> None:
    alice, bob = browser(team, "alice"), browser(team, "bob")
    question = "When does the cafeteria open?"
    body = {"model": "infuse-rag", "messages": [{"role": "user", "content": question}], "conversation": "shared-id-1"}
    assert alice.post(
        "/v1/chat/completions", json=body, headers={"X-CSRF-Token": alice.cookies[CSRF_COOKIE]}
    ).is_success
    mine = alice.get("/ui/chat", params={"c": "shared-id-1"}).text
    assert question in mine and 'class="cite"' in mine  # the scripted reply cites [1]
    theirs = bob.get("/ui/chat", params={"c": "shared-id-1"}).text
    assert question not in theirs
    assert question not in bob.get("/ui/chat/list").text
    assert question in alice.get("/ui/chat/list").text
    # Bob "deleting" it deletes his own (none); Alice's stays.
    assert ui_post(bob, "/ui/conversations/shared-id-1/delete").status_code == 204
    assert question in alice.get("/ui/chat", params={"c": "shared-id-1"}).text
    assert ui_post(alice, "/ui/conversations/shared-id-1/delete").status_code == 204
    assert question not in alice.get("/ui/chat/list").text
    bad = alice.post(
        "/v1/chat/completions",
        json={**body, "conversation": "../../etc"},
        headers={"X-CSRF-Token": alice.cookies[CSRF_COOKIE]},
    )
    assert bad.status_code == 400


def test_the_streamed_answer_ends_with_citations_and_every_passage_as_sources(team: Team) -> None:
    client = browser(team, "alice")
    body = {"model": "infuse-rag", "stream": True, "messages": [{"role": "user", "content": "Acme merger?"}]}
    with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith('data: {"')]
    import json

    final = json.loads(events[-1][6:])
    assert final["choices"][0]["finish_reason"] == "stop"
    assert [s["number"] for s in final["sources"]] == list(range(1, len(final["sources"]) + 1))
    assert {c["chunk_id"] for c in final["citations"]} <= {s["chunk_id"] for s in final["sources"]}
    assert all(s["doc_id"] in {team.paths[d] for d in team.readable("alice")} for s in final["sources"])


# --- uploads are background jobs ---------------------------------------------------------------------


def wait_for_job(client: TestClient, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        panel = client.get("/ui/jobs").text
        if 'class="job running"' not in panel:
            return panel
        time.sleep(0.5)
    raise AssertionError(f"the job did not end in {timeout} s:\n{panel}")


@pytest.mark.slow
def test_an_upload_is_ingested_in_the_background_searchable_by_its_owner_only(team: Team) -> None:
    alice = browser(team, "alice")
    files = [
        ("files", ("kiwi-notes.md", b"# Kiwi\n\nThe kiwi orchard codeword is quillfinch.", "text/markdown")),
        ("files", ("broken.pdf", b"%PDF-1.4 this is not a pdf", "application/pdf")),
    ]
    started = ui_post(alice, "/ui/library/upload", files=files, data={"share": "me"})
    assert started.status_code == 200 and 'class="job running"' in started.text
    job_id = re.search(r'data-job="([^"]+)"', started.text).group(1)  # type: ignore[union-attr]
    # Server-sent events follow it to the end (a reload would see the same record).
    with alice.stream("GET", f"/ui/jobs/{job_id}/events") as events:
        states = [line for line in events.iter_lines() if line.startswith('data: {"')]
    assert '"state": "finished"' in states[-1], states[-1]
    panel = wait_for_job(alice)
    assert "1 added" in panel and "1 failed" in panel and "broken.pdf" in panel  # the bad file says why
    hits = alice.get("/ui/library", params={"q": "kiwi orchard codeword"}).text
    assert "quillfinch" in hits
    bob = browser(team, "bob")
    assert "quillfinch" not in bob.get("/ui/library", params={"q": "kiwi orchard codeword"}).text
    assert job_id not in bob.get("/ui/jobs").text  # members see only their own jobs
    with bob.stream("GET", f"/ui/jobs/{job_id}/events") as other:
        assert other.status_code == 404
    assert job_id in browser(team, "root").get("/ui/jobs").text


def test_a_member_can_share_an_upload_only_with_their_own_groups(team: Team) -> None:
    alice = browser(team, "alice")
    file = [("files", ("x.md", b"# X\n\ntext", "text/markdown"))]
    refused = ui_post(alice, "/ui/library/upload", files=file, data={"share": "group:hr"})
    assert refused.status_code == 400 and "group you are in" in refused.json()["error"]["message"]
    too_big = ui_post(
        alice, "/ui/library/upload", files=[("files", ("big.txt", b"x" * 60_000_000, "text/plain"))], data={}
    )
    assert too_big.status_code == 413 and "max_upload_bytes" in too_big.json()["error"]["message"]


def test_a_job_whose_command_fails_before_it_starts_is_marked_failed_with_the_reason(tmp_path: Path) -> None:
    launcher = JobLauncher(tmp_path)
    job_id = launcher.start("compare", ["compare", "--no-such-option"], "root")
    deadline = time.monotonic() + 60
    while (job := launcher.get(job_id)) is not None and job.job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job is not None and job.job.state == "failed", job
    assert job.job.error and "no-such-option" in job.job.error
    assert job.user == "root" and launcher.list("someone-else") == []


# --- pages in two languages ----------------------------------------------------------------------------


def test_every_message_has_english_and_japanese_and_placeholders_match() -> None:
    for key, (en, ja) in MESSAGES.items():
        assert en.strip() and ja.strip(), key
        assert set(re.findall(r"\{(\w+)\}", en)) == set(re.findall(r"\{(\w+)\}", ja)), key
    templates = Path(__file__).parents[1] / "src/infuse/server/web/templates"
    used = {m for p in templates.glob("*.html") for m in re.findall(r"""\bt\(["']([\w.]+)["']\s*[,)]""", p.read_text())}
    used |= {
        f"jobs.state.{state}" for state in ("running", "finished", "failed", "interrupted")
    }  # built from the state
    assert len(used) > 100 and used - set(MESSAGES) == set(), "templates use keys without words"
    assert Translator(UILanguage.JA)("doc.page", page=3) == "3ページ"


def test_the_language_follows_the_switch_then_the_browser() -> None:
    assert pick_language(None, "ja-JP,ja;q=0.9,en;q=0.8") is UILanguage.JA
    assert pick_language(None, "en-US,en;q=0.9,ja;q=0.8") is UILanguage.EN
    assert pick_language(None, "fr-FR,ja;q=0.5") is UILanguage.JA
    assert pick_language(None, "de") is UILanguage.EN
    assert pick_language("en", "ja") is UILanguage.EN


def test_pages_render_in_japanese_for_a_japanese_browser_and_after_the_switch(team: Team) -> None:
    client = browser(team, "alice")
    page = client.get("/ui/library", headers={"Accept-Language": "ja-JP,ja;q=0.9"}).text
    assert '<html lang="ja">' in page and "閲覧できる文書" in page
    switched = client.get("/ui/lang/en", params={"next": "/ui/library"}, follow_redirects=False)
    assert switched.headers["location"] == "/ui/library"
    client.cookies.set("infuse_lang", "en")
    assert '<html lang="en">' in client.get("/ui/library", headers={"Accept-Language": "ja"}).text


def test_model_text_is_escaped_and_only_known_citation_numbers_link() -> None:
    source = {"number": 1, "doc_id": "a.md", "chunk_id": "a.md#c0", "source_path": "a.md"}
    html = str(linkify('<script>alert("x")</script> see [1] and [1, 7]', [source]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="cite"') == 2 and "7</a>" not in html and ", 7]" in html
    assert 'href="/ui/documents/a.md?chunk=a.md%23c0#cited"' in html


def test_a_reader_opens_the_original_file_of_a_document_they_may_read_and_nothing_else(team: Team) -> None:
    carol = browser(team, "carol")
    public = team.paths["public/cafeteria.md"]
    original = carol.get(f"/ui/documents-file/{public}")
    assert original.status_code == 200 and "Codeword amberfox" in original.text
    assert "/ui/documents-file/" in carol.get(f"/ui/documents/{public}").text  # the page links it
    for doc in forbidden_strings(team, "carol"):
        hidden = carol.get(f"/ui/documents-file/{team.paths[doc]}")
        assert hidden.status_code == 404 and "Codeword" not in hidden.text, doc


def test_a_cited_pdf_passage_shows_its_page_and_opens_the_original_there(team: Team, tmp_path: Path) -> None:
    from test_documents_cli import write_pdf

    pdf = tmp_path / "manual.pdf"
    write_pdf(pdf, ["The first page is about the lobby.", "The second page explains the vault codeword orchid."])
    assert not team.ws.ingest([pdf], access=["everyone"]).failed
    chunk = next(c for c in team.ws.store().iter_chunks() if c.source_path.endswith("manual.pdf") and c.page == 2)  # type: ignore[union-attr]
    page = browser(team, "carol").get(f"/ui/documents/{chunk.doc_id}", params={"chunk": chunk.chunk_id})
    assert page.status_code == 200 and 'id="cited-page">page 2<' in page.text
    cited = re.search(r'<mark id="cited" tabindex="-1">([^<]*)</mark>', page.text)
    assert cited is not None and "vault codeword orchid" in cited.group(1)
    assert f"/ui/documents-file/{chunk.doc_id}#page=2" in page.text.replace("%2F", "/")
