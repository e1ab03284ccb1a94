"""Builders of bad input files, shared by tests/test_hostile_input.py and benchmarks/hostile_input.py.

Each builder writes one case into an empty folder (the corpus root) and returns the path whose
outcome is checked. ``scale`` sizes the pathological ones: the tests use small files, the
benchmark the sizes of the audit (1 MB lines, a 150 MB DOCX bomb, a 200 MB text file).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuse.config import EmbedderBackend, EmbedderSettings, IngestSettings
from infuse.documents.chunking import Chunker, TokenCounter
from infuse.embedders.hashing import HashingEmbedder, WordCounter
from infuse.ingest.sync import IngestReport, Syncer
from infuse.retrieval.lexical import EnglishTokenizer
from infuse.store.memory import InMemoryStore

MB = 1_000_000
PARAGRAPH = "The council approved the budget on Monday. Transit gets forty new drivers and later buses.\n\n"


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def docx_bytes(paragraphs: list[str]) -> bytes:
    """A real DOCX (python-docx) with these paragraphs."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _replace_part(data: bytes, name: str, write: Callable[[zipfile.ZipFile], None]) -> bytes:
    """The zip ``data`` with part ``name`` rewritten by ``write``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename == name:
                write(target)
            else:
                target.writestr(info, source.read(info))
    return out.getvalue()


def docx_bomb(path: Path, expanded_mb: int) -> Path:
    """A DOCX whose document.xml expands to ``expanded_mb`` MB of paragraphs (about 1,000 times its size)."""

    def write(target: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo("word/document.xml")
        info.compress_type = zipfile.ZIP_DEFLATED
        with target.open(info, "w", force_zip64=True) as part:
            part.write(
                b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                b'wordprocessingml/2006/main"><w:body>'
            )
            paragraph = b"<w:p><w:r><w:t>lol</w:t></w:r></w:p>"
            block = paragraph * (MB // len(paragraph))
            for _ in range(expanded_mb):
                part.write(block)
            part.write(b"</w:body></w:document>")

    return _write(path, _replace_part(docx_bytes(["x"]), "word/document.xml", write))


def docx_lying_header(path: Path) -> Path:
    """A DOCX whose document.xml header claims 1 KB but whose data expands to 5 MB."""
    data = bytearray(
        _replace_part(
            docx_bytes(["x"]),
            "word/document.xml",
            lambda target: target.writestr("word/document.xml", b"<w:document>" + b"a" * (5 * MB)),
        )
    )
    name = b"word/document.xml"
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                struct.pack_into("<I", data, at + size_at, 1000)
            at += 4
    return _write(path, bytes(data))


def docx_many_parts(path: Path, parts: int) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(parts):
            archive.writestr(f"word/media/p{number}.xml", b"")
    return _write(path, buffer.getvalue())


def docx_entity_bomb(path: Path) -> Path:
    """A DOCX whose document.xml is a "billion laughs" entity bomb."""
    lols = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY lol0 "lol">{lols}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"
    )
    return _write(
        path,
        _replace_part(docx_bytes(["x"]), "word/document.xml", lambda t: t.writestr("word/document.xml", xml)),
    )


def big_text(path: Path, size_mb: float) -> Path:
    """A text file of ordinary paragraphs, written in pieces (never held whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = (PARAGRAPH * (MB // len(PARAGRAPH) + 1))[:MB]
    with open(path, "w", encoding="utf-8") as handle:
        whole, rest = divmod(int(size_mb * MB), MB)
        for _ in range(whole):
            handle.write(block)
        handle.write(block[:rest])
    return path


@dataclass(frozen=True)
class Case:
    """One kind of bad input: ``build(root, scale)`` writes it below ``root`` and returns the path
    whose outcome is checked; ``outcome`` is ingested, skipped, failed or partial (some JSONL
    records ingested, some failed), ``reason`` a substring of the skip or failure reason (or of
    the warning, for an ingested file with one)."""

    kind: str
    build: Callable[[Path, int], Path]
    outcome: str
    reason: str = ""


def _link_outside(root: Path, scale: int) -> Path:
    secret = _write(root.parent / "outside" / "credentials.txt", "aws_secret_access_key = AKIAEXAMPLE\n")
    link = root / "notes.txt"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    return link


def _dangling(root: Path, scale: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "gone.md").symlink_to(root / "nowhere.md")
    return root / "gone.md"


def _fifo(root: Path, scale: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "pipe.txt")
    return root / "pipe.txt"


def _deep_jsonl(root: Path, scale: int) -> Path:
    deep = '{"text": "deep", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"text": "first record"}), deep, json.dumps({"text": "third record"})]
    return _write(root / "records.jsonl", "\n".join(lines) + "\n")


def _nul_late(root: Path, scale: int) -> Path:
    return _write(root / "late-nul.txt", (PARAGRAPH * 500).encode() + b"\x00tail\n")


def _line(text: str, scale: int) -> str:
    """A ``scale`` KB line made of ``text`` repeated."""
    return (text * (scale * 1000 // len(text) + 1))[: scale * 1000]


# The cases of the Reliability table. ``scale``: KB of the pathological lines (tests: 100+, benchmark: 1000).
CASES: list[Case] = [
    Case("empty file", lambda r, s: _write(r / "empty.txt", ""), "failed", "empty file"),
    Case(
        "binary with .txt suffix",
        lambda r, s: _write(r / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(4000)),
        "failed",
        "binary file",
    ),
    Case("NUL byte late in a text file", _nul_late, "failed", "NUL byte at byte"),
    Case(
        "Latin-1 text",
        lambda r, s: _write(r / "latin1.txt", ("Le café et la crème brûlée, déjà vu. " * 20).encode("latin-1")),
        "ingested",
        "Windows-1252",
    ),
    Case(
        "UTF-8 with a Latin-1 paragraph",
        lambda r, s: _write(r / "mixed.txt", "Smart “quotes” — ok.\n".encode() + "Café déjà.\n".encode("latin-1")),
        "ingested",
        "mixed encodings",
    ),
    Case(
        "broken PDF",
        lambda r, s: _write(r / "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage"),
        "failed",
        "PDF",
    ),
    Case("file over max_file_mb", lambda r, s: big_text(r / "huge.txt", 51), "failed", "max_file_mb"),
    Case("DOCX decompression bomb", lambda r, s: docx_bomb(r / "bomb.docx", 150), "failed", "decompression bomb"),
    Case("DOCX with a lying size header", lambda r, s: docx_lying_header(r / "liar.docx"), "failed", "corrupt"),
    Case("DOCX with 20,000 parts", lambda r, s: docx_many_parts(r / "parts.docx", 20_000), "failed", "parts (limit"),
    Case("DOCX entity bomb", lambda r, s: docx_entity_bomb(r / "lol.docx"), "failed", "entity"),
    Case("symlink leaving the corpus", _link_outside, "skipped", "outside the given folders"),
    Case("dangling symlink", _dangling, "skipped", "dangling"),
    Case("FIFO named .txt", _fifo, "skipped", "FIFO"),
    Case("hidden file", lambda r, s: _write(r / ".secret.txt", "hidden"), "skipped", "hidden"),
    Case("unsupported suffix (.xlsx)", lambda r, s: _write(r / "table.xlsx", b"PK\x03\x04"), "skipped", "unsupported"),
    Case(
        "HTML nested 1,500 deep",
        lambda r, s: _write(r / "deep.html", "<div>" * 1500 + "deep text" + "</div>" * 1500),
        "ingested",
    ),
    Case("JSONL with one deeply nested record", _deep_jsonl, "partial", "nested too deeply"),
    Case(
        "Markdown heading of spaces",
        lambda r, s: _write(r / "heading.md", "# a" + " " * (s * 1000) + "b\n\nBody text.\n"),
        "ingested",
    ),
    Case("line of dots", lambda r, s: _write(r / "dots.txt", "a" + "." * (s * 1000) + "b\n"), "ingested"),
    Case(
        "line of newlines and spaces",
        lambda r, s: _write(r / "blank.txt", "start\n" + _line(" \n", s) + "end\n"),
        "ingested",
    ),
    Case("one huge line without punctuation", lambda r, s: _write(r / "line.txt", _line("word ", s)), "ingested"),
    Case(
        "injection rule bait (ai: at line starts)",
        lambda r, s: _write(r / "bait.txt", "x\n" + _line("ai: ", s) + "\n"),
        "ingested",
    ),
]


def ingest(root: Path, counter: TokenCounter | None = None, **settings: Any) -> tuple[IngestReport, set[str]]:
    """Ingest ``root`` with fast components (word counts unless ``counter``, hashing embedder,
    in-memory store); the report and the source paths stored. ``settings``: ``[ingest]`` values."""
    store = InMemoryStore(dimension=128)
    options: dict[str, Any] = {}
    if "ingest" in {f.name for f in dataclasses.fields(Syncer)}:  # the benchmark also runs older code
        options["ingest"] = IngestSettings(**settings)
    syncer = Syncer(
        store=store,
        chunker_factory=lambda: Chunker(counter or WordCounter(), 200, 32),
        embedder=HashingEmbedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-128")),
        tokenizer=EnglishTokenizer(),
        pipeline="hostile",
        **options,
    )
    report = syncer.sync([root])
    return report, {state.source_path for state in store.document_states().values()}


def outcome(report: IngestReport, stored: set[str], path: Path) -> tuple[str, str]:
    """What became of ``path``: (ingested | skipped | failed | partial, reason or warning)."""
    names = {str(path), path.resolve().as_posix()}
    errors = [e["error"] for e in report.errors if e["path"] in names or e["path"].split(":")[0] in names]
    skipped = [s["reason"] for s in getattr(report, "skipped_files", []) if s["path"] in names]
    warnings = [w["warning"] for w in getattr(report, "warnings", []) if w["path"] in names]
    ingested = bool(names & stored)
    if skipped:
        return "skipped", skipped[0]
    if errors:
        return ("partial" if ingested else "failed"), errors[0]
    return ("ingested" if ingested else "missing"), "; ".join(warnings)
