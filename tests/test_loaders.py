"""Loader tests on real files of every supported format, in several encodings, good and bad."""

from __future__ import annotations

import codecs
import json
import os
import random
from pathlib import Path

import pytest

from infuse.documents.discovery import discover_files
from infuse.documents.encoding import decode_bytes
from infuse.documents.loaders import RecordFields, load_file, markdown_sections
from infuse.documents.models import Document, FileType
from infuse.errors import LoadError


def load_one(path: Path, fields: RecordFields = RecordFields()) -> Document:
    result = load_file(path, fields)
    assert result.errors == [], result.errors
    assert len(result.documents) == 1
    return result.documents[0]


def load_error(path: Path) -> LoadError:
    result = load_file(path)
    assert result.documents == []
    assert len(result.errors) == 1, result.errors
    error = result.errors[0]
    assert isinstance(error, LoadError)
    # Every message names the file at fault.
    assert error.path == path.resolve().as_posix()
    assert str(error).startswith(f"{path.resolve().as_posix()}: ")
    return error


def section_texts(document: Document) -> list[tuple[tuple[str, ...], str]]:
    return [(s.heading_path, document.text[s.start : s.end]) for s in document.sections]


# --- plain text ---------------------------------------------------------------------------------


def test_text_file_is_one_document_with_exact_content(tmp_path):
    path = tmp_path / "notes.txt"
    content = "Line one.\r\nLine two.\n\n  Indented line.\n"
    path.write_bytes(content.encode("utf-8"))
    document = load_one(path)
    assert document.text == content  # the decoded file itself, so offsets slice the source text
    assert document.file_type is FileType.TEXT
    assert document.doc_id == document.source_path == path.resolve().as_posix()
    assert document.title == "notes"
    assert document.sections == ()
    assert len(document.content_hash) == 64


def test_content_hash_follows_the_bytes(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("same text", encoding="utf-8")
    b.write_text("same text", encoding="utf-8")
    c.write_text("other text", encoding="utf-8")
    assert load_one(a).content_hash == load_one(b).content_hash != load_one(c).content_hash


def test_suffixes_are_case_insensitive_and_text_alias_works(tmp_path):
    upper = tmp_path / "README.TXT"
    upper.write_text("Upper-case suffix.", encoding="utf-8")
    alias = tmp_path / "notes.text"
    alias.write_text("The .text suffix.", encoding="utf-8")
    markdown = tmp_path / "doc.markdown"
    markdown.write_text("# Title\n\nBody.", encoding="utf-8")
    assert load_one(upper).file_type is FileType.TEXT
    assert load_one(alias).file_type is FileType.TEXT
    assert load_one(markdown).file_type is FileType.MARKDOWN


def test_relative_path_becomes_absolute_identity(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("hello", encoding="utf-8")
    document = load_one(Path("sub/../sub/a.txt"))
    assert document.doc_id == (tmp_path / "sub" / "a.txt").resolve().as_posix()


# --- Markdown -----------------------------------------------------------------------------------


MARKDOWN = """Preamble before any heading.

# Guide

Intro text.

## Install

Run the installer.

```bash
# not a heading: a shell comment
pip install infuse
```

### On Linux

Use the package manager.

## Usage ##

Run it.

# Appendix

The end.
"""


def test_markdown_sections_follow_heading_paths(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    document = load_one(path)
    assert document.file_type is FileType.MARKDOWN
    assert document.text == MARKDOWN
    assert document.title == "Guide"
    paths = [s.heading_path for s in document.sections]
    assert paths == [
        (),
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "On Linux"),
        ("Guide", "Usage"),
        ("Appendix",),
    ]
    texts = dict(section_texts(document))
    assert texts[()] == "Preamble before any heading.\n\n"
    assert texts[("Guide", "Install")].startswith("## Install\n")
    assert "# not a heading" in texts[("Guide", "Install")]  # fenced code stays in its section
    assert texts[("Appendix",)] == "# Appendix\n\nThe end.\n"


def test_markdown_sections_cover_the_text_without_gaps(tmp_path):
    sections = markdown_sections(MARKDOWN)
    assert sections[0].start == 0 and sections[-1].end == len(MARKDOWN)
    for previous, current in zip(sections, sections[1:]):
        assert previous.end == current.start


def test_markdown_without_headings_has_one_implicit_section_and_file_title(tmp_path):
    path = tmp_path / "plain.md"
    path.write_text("Just text.\n#hashtag is not a heading\n", encoding="utf-8")
    document = load_one(path)
    assert [s.heading_path for s in document.sections] == [()]
    assert document.title == "plain"


def test_markdown_heading_levels_pop_back(tmp_path):
    text = "### Deep first\n\nA\n\n# Top\n\nB\n\n#### Four\n\nC\n\n## Two\n\nD\n"
    paths = [s.heading_path for s in markdown_sections(text)]
    assert paths == [("Deep first",), ("Top",), ("Top", "Four"), ("Top", "Two")]


def test_markdown_heading_ending_in_hash_keeps_it():
    text = "# C#\n\nAbout C sharp.\n\n## F# basics\n\nx\n"
    assert [s.heading_path for s in markdown_sections(text)] == [("C#",), ("C#", "F# basics")]


# --- HTML ---------------------------------------------------------------------------------------


HTML = """<!DOCTYPE html>
<html><head><title>Team Handbook</title>
<style>body { color: red } .STYLETEXT {}</style>
<script>var secret = "HEADSCRIPT";</script></head>
<body>
<script>alert("BODYSCRIPT")</script>
<noscript>NOSCRIPTTEXT</noscript>
<nav>Home</nav>
<h1>Leave</h1>
<p>Annual   leave is
   twenty days &amp; more.</p>
<!-- COMMENTTEXT -->
<h2>Sick leave</h2>
<p>Call your <b>manager</b> before 9am.</p>
<template>TEMPLATETEXT</template>
<h1>Travel</h1>
<ul><li>Economy class</li><li>Book early</li></ul>
</body></html>
"""


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_text_sections_and_removed_elements(tmp_path, suffix):
    path = tmp_path / f"handbook{suffix}"
    path.write_text(HTML, encoding="utf-8")
    document = load_one(path)
    assert document.file_type is FileType.HTML
    assert document.title == "Team Handbook"
    for hidden in ("HEADSCRIPT", "BODYSCRIPT", "NOSCRIPTTEXT", "STYLETEXT", "COMMENTTEXT", "TEMPLATETEXT", "color"):
        assert hidden not in document.text
    assert "Annual leave is twenty days & more." in document.text  # whitespace collapsed, entities decoded
    assert "Call your manager before 9am." in document.text
    assert "Home" not in document.text  # <nav>: page chrome, not content
    assert section_texts(document) == [
        (("Leave",), "Leave\n\nAnnual leave is twenty days & more.\n\n"),
        (("Leave", "Sick leave"), "Sick leave\n\nCall your manager before 9am.\n\n"),
        (("Travel",), "Travel\n\nEconomy class\n\nBook early"),
    ]


def test_html_without_title_uses_first_heading_then_file_name(tmp_path):
    with_heading = tmp_path / "a.html"
    with_heading.write_text("<body><h2>Only Heading</h2><p>Text.</p></body>", encoding="utf-8")
    fragment = tmp_path / "fragment.htm"
    fragment.write_text("<p>No headings <i>at</i> all.</p><div>Second block</div>", encoding="utf-8")
    assert load_one(with_heading).title == "Only Heading"
    document = load_one(fragment)
    assert document.title == "fragment"
    assert document.text == "No headings at all.\n\nSecond block"
    assert [s.heading_path for s in document.sections] == [()]


def test_html_with_only_scripts_has_no_text(tmp_path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><title>T</title></head><body><script>x()</script>  </body></html>", encoding="utf-8")
    assert "no text" in load_error(path).reason


def test_html_in_shift_jis(tmp_path):
    path = tmp_path / "ja.html"
    path.write_bytes("<html><body><h1>就業規則</h1><p>始業は午前九時です。</p></body></html>".encode("shift_jis"))
    document = load_one(path)
    assert section_texts(document) == [(("就業規則",), "就業規則\n\n始業は午前九時です。")]


# --- PDF ----------------------------------------------------------------------------------------


def write_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    if title:
        pdf.set_title(title)
    path.write_bytes(bytes(pdf.output()))
    return path


def test_pdf_pages_become_sections_with_page_numbers(tmp_path):
    pages = ["Alpha page one. It has two sentences.", "Beta page two.", "", "Delta page four after a blank page."]
    document = load_one(write_pdf(tmp_path / "report.pdf", pages, title="Quarterly Report"))
    assert document.file_type is FileType.PDF
    assert document.title == "Quarterly Report"
    assert [s.page for s in document.sections] == [1, 2, 4]  # the blank page 3 has no section
    assert [document.text[s.start : s.end] for s in document.sections] == [pages[0], pages[1], pages[3]]
    assert document.text == "\n\n".join([pages[0], pages[1], pages[3]])
    assert all(s.heading_path == () for s in document.sections)


def test_pdf_without_title_metadata_uses_file_name(tmp_path):
    document = load_one(write_pdf(tmp_path / "memo.pdf", ["Short memo."]))
    assert document.title == "memo"
    assert document.text == "Short memo."


def test_pdf_without_text_layer_is_an_error(tmp_path):
    error = load_error(write_pdf(tmp_path / "scan.pdf", ["", ""]))
    assert "no text layer" in error.reason and "2 pages" in error.reason


@pytest.mark.parametrize(
    "content",
    [b"%PDF-1.4\n garbage that is not a pdf body", b"plain text renamed to pdf", None],
    ids=["garbage-after-header", "not-a-pdf", "truncated"],
)
def test_corrupt_pdf_is_an_error(tmp_path, content):
    path = tmp_path / "broken.pdf"
    if content is None:
        good = write_pdf(tmp_path / "good.pdf", ["Some text."]).read_bytes()
        content = good[: len(good) // 3]
    path.write_bytes(content)
    error = load_error(path)
    assert "PDF" in error.reason


def test_encrypted_pdf_is_an_error(tmp_path):
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 10, "Secret text.")
    pdf.set_encryption(owner_password="owner", user_password="user", encryption_method=EncryptionMethod.RC4)
    path = tmp_path / "secret.pdf"
    path.write_bytes(bytes(pdf.output()))
    assert "encrypted" in load_error(path).reason


# --- DOCX ---------------------------------------------------------------------------------------


def test_docx_headings_become_heading_paths(tmp_path):
    import docx

    word = docx.Document()
    word.add_paragraph("Intro before any heading.")
    word.add_heading("Chapter One", level=1)
    word.add_paragraph("Chapter one body.")
    word.add_heading("Section 1.1", level=2)
    word.add_paragraph("Section body.")
    word.add_paragraph("   ")  # blank paragraphs are dropped
    word.add_heading("Chapter Two", level=1)
    word.add_paragraph("第二章の本文です。")
    path = tmp_path / "manual.docx"
    word.save(path)

    document = load_one(path)
    assert document.file_type is FileType.DOCX
    assert document.title == "Chapter One"
    assert section_texts(document) == [
        ((), "Intro before any heading.\n\n"),
        (("Chapter One",), "Chapter One\n\nChapter one body.\n\n"),
        (("Chapter One", "Section 1.1"), "Section 1.1\n\nSection body.\n\n"),
        (("Chapter Two",), "Chapter Two\n\n第二章の本文です。"),
    ]


def test_docx_title_style_and_core_title(tmp_path):
    import docx

    word = docx.Document()
    word.add_heading("Document Title", level=0)  # the "Title" style counts as a level-1 heading
    word.add_heading("Part", level=2)
    word.add_paragraph("Body.")
    word.core_properties.title = "Core Title"
    path = tmp_path / "titled.docx"
    word.save(path)
    document = load_one(path)
    assert document.title == "Core Title"
    assert [s.heading_path for s in document.sections] == [("Document Title",), ("Document Title", "Part")]


def test_docx_table_text_is_extracted(tmp_path):
    import docx

    word = docx.Document()
    word.add_paragraph("Prices:")
    table = word.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Item", (0, 1): "Price", (1, 0): "Tea", (1, 1): "3 EUR"}.items():
        table.cell(r, c).text = text
    path = tmp_path / "prices.docx"
    word.save(path)
    assert load_one(path).text == "Prices:\n\nItem | Price\n\nTea | 3 EUR"


def test_docx_table_stays_in_its_section(tmp_path):
    import docx

    word = docx.Document()
    word.add_heading("Prices", level=1)
    table = word.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Tea"
    table.cell(0, 1).text = "3 EUR"
    word.add_heading("Opening hours", level=1)
    word.add_paragraph("Nine to five.")
    path = tmp_path / "shop.docx"
    word.save(path)
    document = load_one(path)
    by_text = {text.strip(): heading_path for heading_path, text in section_texts(document)}
    assert by_text.get("Prices\n\nTea | 3 EUR") == ("Prices",), section_texts(document)


def test_empty_docx_has_no_text(tmp_path):
    import docx

    path = tmp_path / "blank.docx"
    docx.Document().save(path)
    assert "no text" in load_error(path).reason


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated zip", b"not a zip at all"], ids=["bad-zip", "text"])
def test_corrupt_docx_is_an_error(tmp_path, content):
    path = tmp_path / "broken.docx"
    path.write_bytes(content)
    assert "DOCX" in load_error(path).reason


def test_zip_that_is_not_a_docx_is_an_error(tmp_path):
    import zipfile

    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "docx" in load_error(path).reason.lower()


# --- JSONL and JSON -----------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_jsonl_records_become_documents_with_metadata(tmp_path):
    path = write_jsonl(
        tmp_path / "faq.jsonl",
        [
            {
                "id": "q1",
                "text": "How do I reset my password?",
                "title": "Passwords",
                "tags": ["it", "account"],
                "views": 12,
                "score": 0.5,
                "public": True,
                "owner": None,
                "extra": {"lang": "日本語"},
            },
            "",
            {"id": "q2", "text": "パスワードの再設定方法"},
        ],
    )
    result = load_file(path)
    assert result.errors == []
    first, second = result.documents
    source = path.resolve().as_posix()
    assert (first.doc_id, second.doc_id) == (f"{source}#1", f"{source}#3")  # line numbers
    assert first.source_path == second.source_path == source
    assert first.file_type is FileType.JSONL
    assert first.text == "How do I reset my password?"
    assert first.title == "Passwords" and second.title == ""
    # Without --id-field the id is ordinary metadata; nested values are kept as JSON text.
    assert first.metadata == {
        "id": "q1",
        "title": "Passwords",
        "tags": '["it", "account"]',
        "views": 12,
        "score": 0.5,
        "public": True,
        "owner": None,
        "extra": '{"lang": "日本語"}',
    }
    assert second.text == "パスワードの再設定方法"


def test_jsonl_text_and_id_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "records.jsonl",
        [{"uid": "A-1", "body": "First body.", "kind": "note"}, {"uid": 7, "body": "Second body."}],
    )
    result = load_file(path, RecordFields(text_field="body", id_field="uid"))
    assert result.errors == []
    assert [(d.doc_id, d.text, d.metadata) for d in result.documents] == [
        ("A-1", "First body.", {"kind": "note"}),
        ("7", "Second body.", {}),
    ]


def test_jsonl_missing_text_field_is_a_per_record_error_naming_field_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"text": "good one"},
            {"body": "no text field", "id": 2},
            {"text": "   "},
            ["not", "an", "object"],
            {"text": "good two"},
        ],
    )
    result = load_file(path)
    assert [d.text for d in result.documents] == ["good one", "good two"]
    source = path.resolve().as_posix()
    assert [e.path for e in result.errors] == [f"{source} (line 2)", f"{source} (line 3)", f"{source} (line 4)"]
    missing = result.errors[0]
    assert (
        "'text'" in missing.reason and "fields present: body, id" in missing.reason and "--text-field" in missing.reason
    )
    assert str(missing).startswith(f"{source} (line 2): ")
    assert "'text'" in result.errors[1].reason
    assert "expected a JSON object, got list" in result.errors[2].reason


def test_jsonl_custom_text_field_missing_names_that_field(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "has text but not body"}])
    result = load_file(path, RecordFields(text_field="body"))
    assert result.documents == []
    assert "'body'" in result.errors[0].reason and "fields present: text" in result.errors[0].reason


def test_jsonl_missing_id_field_is_a_per_record_error(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": "a", "text": "x"}, {"text": "y"}, {"id": "  ", "text": "z"}])
    result = load_file(path, RecordFields(id_field="id"))
    assert [d.doc_id for d in result.documents] == ["a"]
    source = path.resolve().as_posix()
    assert [e.path for e in result.errors] == [f"{source} (line 2)", f"{source} (line 3)"]
    assert all("'id'" in e.reason and "--id-field" in e.reason for e in result.errors)


def test_jsonl_invalid_line_is_a_per_line_error_and_other_lines_load(tmp_path):
    path = write_jsonl(
        tmp_path / "broken.jsonl", [{"text": "one"}, "{not json", {"text": "three"}, '{"text": "unterminated']
    )
    result = load_file(path)
    assert [d.text for d in result.documents] == ["one", "three"]
    source = path.resolve().as_posix()
    assert [e.path for e in result.errors] == [f"{source}:2", f"{source}:4"]
    assert all("invalid JSON" in e.reason for e in result.errors)


def test_jsonl_with_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [d.text for d in load_file(path).documents] == ["a", "b"]


def test_jsonl_record_containing_unicode_line_separator(tmp_path):
    path = write_jsonl(tmp_path / "u2028.jsonl", [{"text": "first\u2028second"}, {"text": "next"}])
    result = load_file(path)
    assert result.errors == []
    assert [d.text for d in result.documents] == ["first\u2028second", "next"]


def test_json_array_and_single_object(tmp_path):
    array = tmp_path / "items.json"
    array.write_text(json.dumps([{"text": "A", "k": 1}, {"text": "B"}, {"nope": 1}]), encoding="utf-8")
    result = load_file(array)
    source = array.resolve().as_posix()
    assert [(d.doc_id, d.text, d.metadata, d.file_type) for d in result.documents] == [
        (f"{source}#0", "A", {"k": 1}, FileType.JSON),
        (f"{source}#1", "B", {}, FileType.JSON),
    ]
    assert [e.path for e in result.errors] == [f"{source} (record 2)"]

    single = tmp_path / "one.json"
    single.write_text(json.dumps({"text": "Only", "id": "x-1"}), encoding="utf-8")
    assert [(d.doc_id, d.text) for d in load_file(single, RecordFields(id_field="id")).documents] == [("x-1", "Only")]


def test_invalid_json_file_is_one_error_with_line_number(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"text": "x",\n oops}', encoding="utf-8")
    error = load_error(path)
    assert "invalid JSON at line 2" in error.reason


def test_json_without_records_is_an_error(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]", encoding="utf-8")
    assert "no records" in load_error(path).reason


def test_record_content_hash_changes_with_any_field(tmp_path):
    path = write_jsonl(
        tmp_path / "h.jsonl", [{"text": "same", "v": 1}, {"text": "same", "v": 2}, {"v": 1, "text": "same"}]
    )
    first, second, third = load_file(path).documents
    assert first.content_hash != second.content_hash
    assert first.content_hash == third.content_hash  # key order does not matter


# --- encodings ----------------------------------------------------------------------------------


JAPANESE = "日本語のテキストです。東京都の会議資料を確認してください。"


@pytest.mark.parametrize(
    "encoding,prefix",
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("shift_jis", b""),
        ("cp932", b""),
        ("euc_jp", b""),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
    ids=["utf8", "utf8-bom", "shift_jis", "cp932", "euc_jp", "utf16le-bom", "utf16be-bom"],
)
def test_japanese_text_in_each_encoding(tmp_path, encoding, prefix):
    path = tmp_path / "ja.txt"
    path.write_bytes(prefix + JAPANESE.encode(encoding))
    assert load_one(path).text == JAPANESE  # no BOM character left in the text


@pytest.mark.parametrize("text", ["ア", "はい", "メモ", "テスト", "東京へ", "品川区の地図", "第1章\nはじめに\n"])
@pytest.mark.parametrize("encoding", ["shift_jis", "euc_jp"])
def test_short_japanese_strings_in_legacy_encodings(tmp_path, text, encoding):
    path = tmp_path / "short.txt"
    path.write_bytes(text.encode(encoding))
    assert load_one(path).text == text


@pytest.mark.parametrize(
    "text,encoding",
    [
        ("東京", "euc_jp"),
        ("東京大学", "euc_jp"),
        ("日本語", "shift_jis"),
        ("日本語", "euc_jp"),
        ("価格 1000円", "shift_jis"),
        ("ｱｲｳｴｵ", "euc_jp"),
    ],  # half-width katakana are not counted as kana either
)
def test_short_kanji_only_strings_in_legacy_encodings(text, encoding):
    assert decode_bytes(text.encode(encoding), "f.txt") == text


def test_utf8_latin_text_and_bom_only_file(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_text("Café, naïve résumé — “quotes”.", encoding="utf-8")
    assert load_one(latin).text == "Café, naïve résumé — “quotes”."
    bom_only = tmp_path / "bom.txt"
    bom_only.write_bytes(codecs.BOM_UTF8)
    assert "no text" in load_error(bom_only).reason


def test_utf16_without_bom_is_rejected_not_garbled(tmp_path):
    path = tmp_path / "u16.txt"
    path.write_bytes("Hello world, plain English.".encode("utf-16-le"))
    assert "binary" in load_error(path).reason


def test_markdown_in_shift_jis_keeps_heading_paths(tmp_path):
    path = tmp_path / "ja.md"
    path.write_bytes("# 就業規則\n\n## 休暇\n\n年次有給休暇は十日です。\n".encode("shift_jis"))
    document = load_one(path)
    assert [s.heading_path for s in document.sections] == [("就業規則",), ("就業規則", "休暇")]


def test_jsonl_in_shift_jis(tmp_path):
    path = tmp_path / "ja.jsonl"
    path.write_bytes('{"text": "こんにちは、世界。"}\n'.encode("shift_jis"))
    assert [d.text for d in load_file(path).documents] == ["こんにちは、世界。"]


# --- bad inputs ---------------------------------------------------------------------------------


def test_binary_file_with_nul_bytes_is_an_error(tmp_path):
    rng = random.Random(1)
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(4096)) + b"\x00\x00")
    assert "binary" in load_error(path).reason


def test_binary_file_without_nul_bytes_is_an_error(tmp_path):
    rng = random.Random(2)
    path = tmp_path / "noise.md"
    path.write_bytes(bytes(rng.randrange(1, 256) for _ in range(4096)))
    load_error(path)


def test_control_characters_are_rejected_as_binary(tmp_path):
    path = tmp_path / "ctrl.txt"
    path.write_bytes(b"\x01\x02\x03abc\x04\x05\x06\x07" * 100)
    assert "binary" in load_error(path).reason


def test_a_few_control_characters_are_tolerated(tmp_path):
    path = tmp_path / "form-feed.txt"
    text = "Page one text that is long enough.\x0cPage two text that is long enough too.\n" * 3
    path.write_bytes(text.encode("utf-8"))
    assert load_one(path).text == text


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".pdf", ".docx", ".jsonl", ".json"])
def test_empty_file_is_an_error(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    assert "empty file" in load_error(path).reason


@pytest.mark.parametrize("suffix", [".txt", ".md", ".jsonl"])
def test_whitespace_only_file_is_an_error(tmp_path, suffix):
    path = tmp_path / f"blank{suffix}"
    path.write_bytes(b" \n\t\r\n   \n")
    assert "empty file" in load_error(path).reason


def test_ideographic_space_only_file_has_no_text(tmp_path):
    path = tmp_path / "spaces.txt"
    path.write_text("\u3000\u3000\n", encoding="utf-8")
    assert "no text" in load_error(path).reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_is_an_error(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("hidden", encoding="utf-8")
    path.chmod(0)
    try:
        assert "cannot read" in load_error(path).reason
    finally:
        path.chmod(0o644)


def test_folder_named_like_a_file_cannot_be_read(tmp_path):
    path = tmp_path / "looks-like.txt"
    path.mkdir()
    assert "cannot read" in load_error(path).reason


def test_unsupported_suffix_is_an_error(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    error = load_error(path)
    assert "unsupported file type '.csv'" in error.reason


def test_nonexistent_path_is_an_error(tmp_path):
    path = tmp_path / "missing.txt"
    assert "cannot read" in load_error(path).reason


def test_symlink_loop_is_reported_not_raised(tmp_path):
    path = tmp_path / "loop.txt"
    path.symlink_to(path)
    result = load_file(path)
    assert result.documents == [] and len(result.errors) == 1


# --- discover_files -----------------------------------------------------------------------------


def make_tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")


def test_discover_files_walks_folders_and_skips_hidden_and_excluded(tmp_path):
    root = tmp_path / "docs"
    make_tree(
        root,
        [
            "b.txt",
            "a.md",
            "sub/c.html",
            "sub/deeper/d.pdf",
            "sub/e.docx",
            "f.jsonl",
            "g.json",
            "h.htm",
            "skip.csv",
            "noext",
            "sub/image.png",
            ".hidden.txt",
            ".git/config.txt",
            ".obsidian/notes.md",
            "sub/.cache/x.md",
            "workspace/data.txt",
            "workspace/.infuse/state.json",
        ],
    )
    files, errors = discover_files([root], exclude=[root / "workspace"])
    assert errors == []
    rel = [p.relative_to(root.resolve()).as_posix() for p in files]
    assert rel == ["a.md", "b.txt", "f.jsonl", "g.json", "h.htm", "sub/c.html", "sub/deeper/d.pdf", "sub/e.docx"]
    assert all(p.is_absolute() for p in files)
    assert files == sorted(files)


def test_discover_files_dedups_overlapping_arguments_and_symlinks(tmp_path):
    root = tmp_path / "docs"
    make_tree(root, ["a.txt", "sub/b.md"])
    (root / "sub" / "link.txt").symlink_to(root / "a.txt")
    files, errors = discover_files([root, root / "sub", root / "a.txt", root / "sub" / ".." / "a.txt"])
    assert errors == []
    assert [p.name for p in files] == ["a.txt", "b.md"]
    assert len(files) == len(set(files))


def test_discover_files_reports_missing_and_unsupported_explicit_paths(tmp_path):
    make_tree(tmp_path, ["good.txt", "table.csv", "Makefile"])
    files, errors = discover_files(
        [tmp_path / "missing.md", tmp_path / "table.csv", tmp_path / "Makefile", tmp_path / "good.txt"]
    )
    assert files == [(tmp_path / "good.txt").resolve()]
    assert [e.path for e in errors] == [
        str(tmp_path / "missing.md"),
        str(tmp_path / "table.csv"),
        str(tmp_path / "Makefile"),
    ]
    assert "no such file or folder" in errors[0].reason
    assert "unsupported file type '.csv'" in errors[1].reason and ".jsonl" in errors[1].reason
    assert "'(none)'" in errors[2].reason


def test_discover_files_accepts_an_explicit_hidden_file_or_hidden_root(tmp_path):
    make_tree(tmp_path, [".notes/a.md", ".hidden.txt"])
    files, errors = discover_files([tmp_path / ".notes", tmp_path / ".hidden.txt"])
    assert errors == []
    assert [p.name for p in files] == [".hidden.txt", "a.md"]  # sorted by path


def test_discover_files_excluded_folder_given_explicitly_inside_tree(tmp_path):
    make_tree(tmp_path, ["docs/keep.txt", "docs/ws/drop.txt", "docs/ws/deep/drop.md"])
    files, _ = discover_files([tmp_path / "docs"], exclude=[tmp_path / "docs" / "ws" / ".." / "ws"])
    assert [p.name for p in files] == ["keep.txt"]


def test_discover_files_skips_dangling_symlinks(tmp_path):
    make_tree(tmp_path, ["ok.txt"])
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    files, errors = discover_files([tmp_path])
    assert [p.name for p in files] == ["ok.txt"] and errors == []


def test_discover_files_result_is_sorted_across_arguments(tmp_path):
    make_tree(tmp_path, ["a.txt", "z/b.txt"])
    files, _ = discover_files([tmp_path / "z", tmp_path])
    assert files == sorted(files)


def test_discover_files_survives_a_symlink_loop(tmp_path):
    make_tree(tmp_path, ["ok.txt"])
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    files, _ = discover_files([tmp_path])
    assert [p.name for p in files] == ["ok.txt"]
