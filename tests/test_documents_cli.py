"""`infuse documents list|show|rm`, filter validation and the document routes of the server.

The point of `documents show` is that citation offsets can be highlighted: for every format the
text it prints is the text every chunk's (and so every hit's and citation's) start/end index.
"""

from __future__ import annotations

import json
from pathlib import Path

import docx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import write_corpus
from infuse.cli import app
from infuse.config import DEFAULT_CONFIG_TOML
from infuse.server import create_app
from infuse.store.filters import FILTER_FIELDS, AnyOf
from infuse.testing import ScriptedModel
from infuse.workspace import Workspace

HTML = """<html><head><title>Backup policy</title></head><body>
<nav>Home | Products | Contact</nav>
<h1>Backups</h1><p>Databases are backed up every 6 hours &amp; backups are kept for 35 days.</p>
<p>Restores are tested monthly by the platform team; a failed restore opens a SEV2 incident.</p>
<h2>Offsite</h2><p>Weekly copies go to a second region, encrypted with a key held by security.</p>
<p>Copies older than one year are deleted automatically unless legal asks to keep them.</p>
</body></html>"""

MARKDOWN = """# Security

## API keys

API keys are rotated every 90 days from the admin console. A leaked key is revoked at once
and the owner is told by the security team within one hour of the report.

## Passwords

Passwords have at least 14 characters. They are never sent by email or chat, and a reset link
expires after 30 minutes. Shared accounts are not allowed for production systems.
"""

PDF_PAGES = [
    "Quarterly report. Revenue grew by 12 percent compared with the previous quarter, "
    "driven by the new storage product and renewals in the public sector.",
    "Outlook. Hiring continues in support and sales; the data centre move finishes in May "
    "and the old site closes at the end of June after the final audit.",
]

JSONL = (
    '{"id": "p1", "text": "The travel mug keeps drinks hot for six hours.", "team": "retail", "year": 2024}\n'
    '{"id": "p2", "text": "The desk lamp has three brightness levels.", "team": "office", "year": 2023}\n'
)


def write_pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    path.write_bytes(bytes(pdf.output()))


def write_docx(path: Path) -> None:
    word = docx.Document()
    word.add_heading("Onboarding", level=1)
    word.add_paragraph("New staff get a laptop on their first day and an account within two hours.")
    word.add_heading("Equipment", level=2)
    word.add_paragraph("Monitors, keyboards and headsets are ordered through the service desk portal.")
    table = word.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Budget"
    table.cell(1, 0).text, table.cell(1, 1).text = "Chair", "400 EUR"
    word.add_heading("リモートワーク", level=1)
    word.add_paragraph("リモートワークは週3日まで認められています。事前に上長の承認が必要です。")
    word.save(path)


FILES = {"policy.md": "md", "backup.html": "html", "report.pdf": "pdf", "onboarding.docx": "docx"}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace (MiniLM, small chunks) over Markdown, HTML, PDF, DOCX and JSONL; (workspace, corpus)."""
    root = tmp_path_factory.mktemp("mixed")
    corpus = write_corpus(root / "corpus", {"policy.md": MARKDOWN, "backup.html": HTML, "products.jsonl": JSONL})
    write_pdf(corpus / "report.pdf", PDF_PAGES)
    write_docx(corpus / "onboarding.docx")
    ws = Workspace.open(root / "ws", create=True)
    small_chunks = DEFAULT_CONFIG_TOML.replace("size = 200", "size = 24").replace("overlap = 32", "overlap = 4")
    assert small_chunks != DEFAULT_CONFIG_TOML
    (ws.path / "infuse.toml").write_text(small_chunks, encoding="utf-8")
    report = Workspace.open(root / "ws").ingest([corpus], id_field="id")
    assert report.failed == 0, report.errors
    return root / "ws", corpus


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, ws: Path, *args: str) -> object:
    return runner.invoke(app, ["-w", str(ws), *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize("name", list(FILES), ids=list(FILES.values()))
def test_show_prints_the_text_every_chunk_offset_indexes(runner: CliRunner, mixed, name: str) -> None:
    ws, corpus = mixed
    path = (corpus / name).resolve().as_posix()
    chunks = [c for c in Workspace.open(ws).knowledge_snapshot().iter_chunks() if c.source_path == path]
    assert len(chunks) >= 2, f"{name}: the test needs several chunks, got {len(chunks)}"

    shown = run(runner, ws, "documents", "show", str(corpus / name))
    assert shown.exit_code == 0, shown.output
    for chunk in chunks:
        assert shown.stdout[chunk.start : chunk.end] == chunk.text, (name, chunk.chunk_id)

    as_json = run(runner, ws, "documents", "show", path, "--json")
    payload = json.loads(as_json.stdout)
    assert payload["doc_id"] == path and payload["source_path"] == path
    assert [(c["chunk_id"], c["start"], c["end"]) for c in payload["chunks"]] == [
        (c.chunk_id, c.start, c.end) for c in chunks
    ]
    assert all(payload["text"][c["start"] : c["end"]] == t.text for c, t in zip(payload["chunks"], chunks))
    assert shown.stdout.rstrip("\n") == payload["text"].rstrip("\n")


def test_search_hit_offsets_index_the_shown_text(runner: CliRunner, mixed, monkeypatch) -> None:
    ws, corpus = mixed
    monkeypatch.chdir(corpus.parent)  # a relative source_path resolves like an ingested path
    hits = json.loads(
        run(
            runner, ws, "search", "restore backups offsite", "--filter", "source_path=corpus/backup.html", "--json"
        ).stdout
    )["hits"]
    assert hits and {h["source_path"] for h in hits} == {(corpus / "backup.html").resolve().as_posix()}
    text = json.loads(run(runner, ws, "documents", "show", "corpus/backup.html", "--json").stdout)["text"]
    assert "<p>" not in text and "&amp;" not in text  # the extracted text, not the file's HTML
    for hit in hits:
        assert text[hit["start"] : hit["end"]] == hit["text"]


def test_list_shows_each_document_and_filters_like_search(runner: CliRunner, mixed) -> None:
    ws, corpus = mixed
    listed = json.loads(run(runner, ws, "documents", "list", "--json").stdout)
    by_id = {d["doc_id"]: d for d in listed}
    assert set(by_id) == {*((corpus / n).resolve().as_posix() for n in FILES), "p1", "p2"}
    chunks = list(Workspace.open(ws).knowledge_snapshot().iter_chunks())
    for doc_id, entry in by_id.items():
        assert entry["chunks"] == sum(1 for c in chunks if c.doc_id == doc_id) > 0
    assert by_id["p1"]["metadata"] == {"team": "retail", "year": 2024} and by_id["p1"]["lang"] == "en"
    assert by_id["p1"]["source_path"] == (corpus / "products.jsonl").resolve().as_posix()

    pdfs = json.loads(run(runner, ws, "documents", "list", "--filter", "file_type=pdf", "--json").stdout)
    assert [d["doc_id"] for d in pdfs] == [(corpus / "report.pdf").resolve().as_posix()]
    retail = json.loads(run(runner, ws, "documents", "list", "--filter", "team=retail", "--json").stdout)
    assert [d["doc_id"] for d in retail] == ["p1"]
    japanese = json.loads(run(runner, ws, "documents", "list", "--filter", "lang=ja", "--json").stdout)
    assert [d["doc_id"] for d in japanese] == [(corpus / "onboarding.docx").resolve().as_posix()]

    table = run(runner, ws, "documents", "list")
    assert table.exit_code == 0 and "report.pdf" in table.stdout and "team=retail" in table.stdout


def test_show_errors_name_the_document(runner: CliRunner, mixed) -> None:
    ws, corpus = mixed
    missing = run(runner, ws, "documents", "show", "nope.md")
    assert missing.exit_code == 1 and "no document 'nope.md'" in missing.output and "documents list" in missing.output
    records = run(runner, ws, "documents", "show", str(corpus / "products.jsonl"))
    assert records.exit_code == 1 and "holds 2 documents" in records.output and "p1, p2" in records.output
    record = json.loads(run(runner, ws, "documents", "show", "p2", "--json").stdout)
    assert record["text"] == "The desk lamp has three brightness levels."


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("page=abc", "filter page='abc': page is a whole number"),
        ("pgae=2", "unknown filter key 'pgae'. Did you mean 'page'?"),
        ("lang=fr", "filter lang='fr': lang is one of en, ja"),
        ("file_type=xlsx", "file_type is one of txt, md, html, pdf, docx, jsonl, json"),
        (
            "tema=retail",
            "Did you mean 'team'? Filter keys: doc_id, source_path, lang, file_type, page, access; "
            "document metadata keys: team, year",
        ),
    ],
)
def test_bad_filters_are_one_clear_line(runner: CliRunner, mixed, flag: str, message: str) -> None:
    ws, _ = mixed
    for command in (["search", "backups"], ["documents", "list"], ["ask", "backups?"]):
        result = run(runner, ws, *command, "--filter", flag)
        assert result.exit_code == 1, (command, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_good_typed_filters_find_what_they_name(runner: CliRunner, mixed) -> None:
    ws, corpus = mixed
    hits = json.loads(run(runner, ws, "search", "revenue outlook", "--filter", "page=2", "--json").stdout)["hits"]
    assert hits and {(h["source_path"].rsplit("/", 1)[-1], h["page"]) for h in hits} == {("report.pdf", 2)}
    year = json.loads(run(runner, ws, "search", "lamp mug", "--filter", "year=2023", "--json").stdout)["hits"]
    assert [h["doc_id"] for h in year] == ["p2"]


def test_help_lists_every_filter_key(runner: CliRunner) -> None:
    for command in (["search"], ["ask"], ["documents", "list"]):
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        missing = [f.name for f in FILTER_FIELDS if f.name not in text]
        assert not missing, (command, missing)


def test_rm_removes_by_path_or_id_and_reports_unknown_names(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"a.md": "# A\n\nAlpha text.\n", "b.md": "# B\n\nBeta text.\n"})
    (corpus / "items.jsonl").write_text('{"text": "Gamma."}\n{"text": "Delta."}\n', encoding="utf-8")
    ws = tmp_path / "ws"
    Workspace.open(ws, create=True)
    (ws / "infuse.toml").write_text('[embedder]\nbackend = "hashing"\nmodel = "hashing-64"\n', encoding="utf-8")
    assert run(runner, ws, "ingest", str(corpus)).exit_code == 0
    monkeypatch.chdir(tmp_path)

    result = run(runner, ws, "documents", "rm", "corpus/a.md", "corpus/items.jsonl", "missing.md", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    removed = sorted(d["source_path"].rsplit("/", 1)[-1] for d in report["removed"])
    assert removed == ["a.md", "items.jsonl", "items.jsonl"] and report["not_found"] == ["missing.md"]
    assert "not found: missing.md" in result.stderr
    left = json.loads(run(runner, ws, "documents", "list", "--json").stdout)
    assert [d["source_path"] for d in left] == [(corpus / "b.md").resolve().as_posix()]
    assert Workspace.open(ws).search("Alpha", mode="lexical") == []

    by_id = run(runner, ws, "documents", "rm", left[0]["doc_id"])
    assert by_id.exit_code == 0 and "removed 1 documents" in by_id.stdout
    assert json.loads(run(runner, ws, "documents", "list", "--json").stdout) == []


# --- the server's document routes -------------------------------------------------------------------


def test_server_document_routes(mixed) -> None:
    ws_path, corpus = mixed
    ws = Workspace.open(ws_path)
    client = TestClient(create_app(ws.rag_pipeline(ScriptedModel("ok")), api_key="secret"))
    auth = {"Authorization": "Bearer secret"}
    path = (corpus / "backup.html").resolve().as_posix()

    assert client.get(f"/v1/documents/{path}").status_code == 401
    document = client.get(f"/v1/documents/{path}", headers=auth).json()
    assert document["object"] == "document" and document["doc_id"] == path
    chunks = [c for c in ws.knowledge_snapshot().iter_chunks() if c.doc_id == path]
    assert [document["text"][c["start"] : c["end"]] for c in document["chunks"]] == [c.text for c in chunks]

    listed = client.get("/v1/documents", headers=auth).json()
    assert listed["object"] == "list" and len(listed["data"]) == len(FILES) + 2
    assert [d["doc_id"] for d in client.get("/v1/documents?filter=team=office", headers=auth).json()["data"]] == ["p2"]

    missing = client.get("/v1/documents/nope", headers=auth)
    assert missing.status_code == 404 and "no document 'nope'" in missing.json()["error"]["message"]
    bad = client.get("/v1/documents?filter=page=abc", headers=auth)
    assert bad.status_code == 400
    assert (
        bad.json()["error"]["type"] == "invalid_request_error"
        and "page is a whole number" in bad.json()["error"]["message"]
    )


def test_server_documents_follow_the_pipelines_filters(mixed) -> None:
    """A user's pipeline (access filter) sees only the documents it may search: none here, as no
    document has an access list naming them."""
    ws_path, corpus = mixed
    ws = Workspace.open(ws_path)
    client = TestClient(create_app(ws.rag_pipeline(ScriptedModel("ok"), filters=AnyOf("access", ["user:eve"]))))
    assert client.get("/v1/documents").json()["data"] == []
    assert client.get(f"/v1/documents/{(corpus / 'policy.md').resolve().as_posix()}").status_code == 404
