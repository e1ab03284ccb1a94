"""File loaders: each supported format becomes one or more :class:`Document`.

Every failure is reported per file (or per JSONL record) as a :class:`LoadError` in the
:class:`LoadResult`, so one bad file never stops a batch.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.access import AccessError, AccessList
from infuse.documents.encoding import decode_text
from infuse.documents.models import Document, FileType, LoadWarning, Section, sha256_hex
from infuse.errors import LoadError

if TYPE_CHECKING:
    from bs4 import Tag

SUFFIX_TYPES: dict[str, FileType] = {
    ".txt": FileType.TEXT,
    ".text": FileType.TEXT,
    ".md": FileType.MARKDOWN,
    ".markdown": FileType.MARKDOWN,
    ".html": FileType.HTML,
    ".htm": FileType.HTML,
    ".pdf": FileType.PDF,
    ".docx": FileType.DOCX,
    ".jsonl": FileType.JSONL,
    ".json": FileType.JSON,
}


@dataclass(frozen=True)
class RecordFields:
    """Which JSON fields hold a record's text, (optionally) its identity, and who may read it."""

    text_field: str = "text"
    id_field: str | None = None
    # A list of access entries or a comma-separated string (infuse.access); not metadata, not hashed.
    access_field: str = "access"


@dataclass(frozen=True)
class LoadLimits:
    """Per-file bounds on what loading may hold or unpack (``[ingest]`` settings).

    Memory of an ingest is bounded by these, not by the largest file it meets.
    """

    max_file_mb: float = 50.0
    max_unzipped_mb: float = 100.0
    max_zip_entries: int = 10_000
    # A zip entry expanding more than this many times (and past 1 MB) is a decompression bomb;
    # real DOCX parts compress 3-20 times.
    max_zip_ratio: float = 100.0


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    warnings: list[LoadWarning] = field(default_factory=list)


def normalise_path(path: Path) -> str:
    """A document's identity for file sources: the absolute, resolved POSIX path; a path that cannot
    be resolved (``~nosuchuser``, a NUL byte, a link loop) is a :class:`LoadError` naming it."""
    try:
        return path.expanduser().resolve().as_posix()
    except (OSError, RuntimeError, ValueError) as exc:
        raise LoadError(str(path), f"cannot resolve path: {exc}") from None


def load_file(path: Path, fields: RecordFields = RecordFields(), limits: LoadLimits = LoadLimits()) -> LoadResult:
    """Load one file into documents; never raises for bad content, only reports."""
    try:
        source = normalise_path(path)
    except LoadError as exc:
        return LoadResult(errors=[exc])
    file_type = SUFFIX_TYPES.get(path.suffix.lower())
    if file_type is None:
        return LoadResult(errors=[LoadError(source, f"unsupported file type {path.suffix!r}")])
    try:
        data = _read_bounded(Path(source), limits)
    except LoadError as exc:
        return LoadResult(errors=[exc])
    if not data.strip():
        return LoadResult(errors=[LoadError(source, "empty file: nothing to ingest")])
    warnings: list[LoadWarning] = []
    try:
        if file_type in (FileType.JSONL, FileType.JSON):
            return _load_records(data, source, file_type, fields)
        if file_type is FileType.DOCX:
            check_zip(data, source, limits)
        text = decode_text(data, source, warnings) if file_type in _TEXT_TYPES else ""
        document = _FILE_LOADERS[file_type](data, source, text)
    except LoadError as exc:
        return LoadResult(errors=[exc])
    except RecursionError:
        return LoadResult(errors=[LoadError(source, f"{file_type.value.upper()} file nested too deeply to parse")])
    except Exception as exc:  # a third-party parser failing on corrupt input
        return LoadResult(errors=[LoadError(source, f"cannot parse {file_type.value.upper()} file: {exc}")])
    if not document.text.strip():
        return LoadResult(errors=[LoadError(source, "no text found in the file")])
    return LoadResult(documents=[document], warnings=warnings)


def stream_file(
    path: Path, fields: RecordFields = RecordFields(), limits: LoadLimits = LoadLimits()
) -> Iterator[Document | LoadError | LoadWarning]:
    """Load one file as :func:`load_file` does, yielding documents, errors and warnings as they come.

    A JSONL file larger than ``limits.max_file_mb`` is not refused but read one record at a time
    (UTF-8, each line at most ``max_file_mb``), so an ingest holds one record and one batch, not
    the file: a corpus larger than memory goes in as one JSONL file. Other files are read whole,
    within the limits.
    """
    if path.suffix.lower() == ".jsonl":
        try:
            source = normalise_path(path)
            size = os.stat(source).st_size
        except (LoadError, OSError):
            size = 0  # load_file reports the problem
        if size > limits.max_file_mb * _MB:
            yield from _stream_jsonl(Path(source), fields, limits)
            return
    result = load_file(path, fields, limits)
    yield from result.warnings
    yield from result.errors
    yield from result.documents


def _stream_jsonl(path: Path, fields: RecordFields, limits: LoadLimits) -> Iterator[Document | LoadError]:
    source = path.as_posix()
    limit = int(limits.max_file_mb * _MB)
    found = False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            yield LoadError(source, "not a regular file (FIFO, socket or device): never read")
            return
        with open(path, "rb") as handle:
            number = 0
            while line := handle.readline(limit + 1):
                number += 1
                where = f"{source}:{number}"
                if len(line) > limit and not line.endswith(b"\n"):
                    yield LoadError(where, f"line over the {limits.max_file_mb:g} MB limit; {_FIX_LINE}")
                    while line and not line.endswith(b"\n"):  # skip the rest of it
                        line = handle.readline(limit + 1)
                    continue
                try:
                    text = line.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    yield LoadError(
                        where,
                        f"not UTF-8 ({exc.reason} at byte {exc.start}): a JSONL file over the "
                        f"{limits.max_file_mb:g} MB limit is read line by line and must be UTF-8; {_FIX_LINE}",
                    )
                    continue
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                    document = _record_document(record, source, f"line {number}", FileType.JSONL, fields)
                except json.JSONDecodeError as exc:
                    yield LoadError(where, f"invalid JSON ({exc.msg}); {_FIX_LINE}")
                    continue
                except RecursionError:
                    yield LoadError(where, f"JSON nested too deeply to parse; {_FIX_LINE}")
                    continue
                except LoadError as exc:
                    yield exc
                    continue
                found = True
                yield document
    except OSError as exc:
        yield LoadError(source, f"cannot read file: {exc.strerror or exc}")
        return
    if not found:
        yield LoadError(source, "no records found")


_MB = 1_000_000


def _read_bounded(path: Path, limits: LoadLimits) -> bytes:
    """The bytes of a regular file no larger than ``limits.max_file_mb`` (never opens a FIFO)."""
    source = path.as_posix()
    limit = int(limits.max_file_mb * _MB)
    too_big = (
        f"over the {limits.max_file_mb:g} MB limit for one file; raise [ingest] max_file_mb in infuse.toml "
        "(or INFUSE_INGEST__MAX_FILE_MB), or split the file"
    )
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise LoadError(source, "cannot read file: it is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(source, "not a regular file (FIFO, socket or device): never read")
        if info.st_size > limit:
            raise LoadError(source, f"file is {info.st_size / _MB:.1f} MB, {too_big}")
        with open(path, "rb") as handle:
            # Ask for the size stat saw (+1), not the limit: read(n) reserves n bytes up front.
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew since stat: read on, but never past the limit
                data += handle.read(limit + 1 - len(data))
    except OSError as exc:
        raise LoadError(source, f"cannot read file: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise LoadError(source, f"file grew past {limits.max_file_mb:g} MB while reading, {too_big}")
    return data


def check_zip(data: bytes, source: str, limits: LoadLimits) -> None:
    """Refuse a zip-based file (DOCX) whose parts are too many or expand too far.

    The declared sizes are checked first (cheap); then every part is decompressed in pieces and
    thrown away, counting bytes, so a part whose header lies about its size is caught too.
    """
    limit = int(limits.max_unzipped_mb * _MB)
    raise_it = (
        f"raise [ingest] max_unzipped_mb (now {limits.max_unzipped_mb:g}) or max_zip_entries "
        f"(now {limits.max_zip_entries}) in infuse.toml if the file is genuine"
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_zip_entries:
                raise LoadError(
                    source, f"zip archive has {len(infos)} parts (limit {limits.max_zip_entries}); {raise_it}"
                )
            declared = sum(info.file_size for info in infos)
            if declared > limit:
                raise LoadError(
                    source,
                    f"decompression bomb? parts expand to {declared / _MB:.0f} MB (limit {limits.max_unzipped_mb:g} MB); {raise_it}",
                )
            for info in infos:
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > _MB and ratio > limits.max_zip_ratio:
                    raise LoadError(
                        source,
                        f"decompression bomb: part {info.filename!r} expands {ratio:.0f} times to {info.file_size / _MB:.0f} MB",
                    )
            total = 0
            for info in infos:
                with archive.open(info) as part:
                    while piece := part.read(1 << 20):
                        total += len(piece)
                        if total > limit:
                            raise LoadError(
                                source,
                                f"decompression bomb: parts expand past {limits.max_unzipped_mb:g} MB; {raise_it}",
                            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as exc:
        raise LoadError(source, f"corrupt or not a zip-based (DOCX) file: {exc}") from exc


def _file_document(
    data: bytes, source: str, file_type: FileType, text: str, title: str, sections: list[Section]
) -> Document:
    return Document(
        doc_id=source,
        source_path=source,
        file_type=file_type,
        text=text,
        content_hash=sha256_hex(data),
        title=title or Path(source).stem,
        sections=tuple(sections),
    )


# --- plain text and Markdown -------------------------------------------------------------------


def _load_text(data: bytes, source: str, text: str) -> Document:
    return _file_document(data, source, FileType.TEXT, text, "", [])


# An ATX heading line; its title is cleaned in Python (:func:`_heading_title`): a regex that
# also strips the closing #s backtracks quadratically on a long run of spaces.
_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]([^\n]*)", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _heading_title(rest: str) -> str:
    """The title of an ATX heading line after its opening #s; CommonMark: a closing run of #s
    only counts after a space ("# C#" is the heading "C#", "# C# #" too)."""
    title = rest.strip()
    without_closing = title.rstrip("#")
    if without_closing != title and without_closing and without_closing[-1] in " \t":
        title = without_closing.rstrip()
    return title


# Heading titles (any format) have whitespace runs collapsed and are cut to this length: each is
# repeated in the heading path of every chunk of its section.
_MAX_TITLE = 300


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown at ATX headings (outside code fences); each section knows its heading path."""
    fence_starts, fence_ends = [], []
    for m in _FENCE.finditer(text):
        fence_starts.append(m.start())
        fence_ends.append(m.end())
    headings = []
    for m in _ATX_HEADING.finditer(text):
        inside = bisect.bisect_right(fence_starts, m.start()) - 1  # fences do not overlap
        title = _heading_title(m.group(2))
        if title and not (inside >= 0 and m.start() < fence_ends[inside]):
            headings.append((m.start(), len(m.group(1)), title))
    return _sections_from_headings(len(text), headings)


def _sections_from_headings(length: int, headings: list[tuple[int, int, str]]) -> list[Section]:
    """Turn (offset, level, title) heading marks into sections covering the whole text."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    cursor = 0
    current: tuple[str, ...] = ()
    for offset, level, raw_title in headings:
        title = " ".join(raw_title.split())[:_MAX_TITLE]
        if offset > cursor:
            sections.append(Section(cursor, offset, current))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        cursor, current = offset, tuple(t for _, t in path)
    if cursor < length:
        sections.append(Section(cursor, length, current))
    return sections


def _load_markdown(data: bytes, source: str, text: str) -> Document:
    sections = markdown_sections(text)
    title = next((s.heading_path[0] for s in sections if s.heading_path), "")
    return _file_document(data, source, FileType.MARKDOWN, text, title, sections)


# --- HTML ----------------------------------------------------------------------------------------

_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")
_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "nav",
    "aside",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "td",
    "th",
    "br",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "figure",
    "figcaption",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "form",
    "address",
}
_HEADING_LEVEL = {f"h{i}": i for i in range(1, 7)}
_ZERO_SIZE = re.compile(r"^[+-]?(?=[\d.])0*(?:\.0+)?(?:px|em|rem|pt|pc|%|vw|vh|ex|ch)?$")
_COLOR_NAMES = {"white": "#ffffff", "black": "#000000"}


def _css_color(value: str) -> str:
    value = value.replace(" ", "").lower()
    value = _COLOR_NAMES.get(value, value)
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        value = "#" + "".join(c * 2 for c in value[1:])
    match = re.fullmatch(r"rgba?\((\d+),(\d+),(\d+)(?:,1(?:\.0+)?)?\)", value)
    return "#{:02x}{:02x}{:02x}".format(*(int(g) for g in match.groups())) if match else value


def _hidden_from_readers(tag: Tag) -> bool:
    """Whether an element's text is hidden from people reading the rendered page.

    ``hidden``, ``aria-hidden="true"`` and inline styles ``display:none``, ``visibility:hidden``,
    ``font-size:0``, ``opacity:0``, transparent text or text in its own background colour.
    Classes and stylesheets are not evaluated.
    """
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = attrs.get("style")
    if not style:
        return False
    rules: dict[str, str] = {}
    for declaration in str(style).split(";"):
        name, _, value = declaration.partition(":")
        rules[name.strip().lower()] = value.replace("!important", "").strip().lower()
    color = _css_color(rules.get("color", ""))
    background = _css_color(rules.get("background-color", rules.get("background", "")))
    return (
        rules.get("display") == "none"
        or rules.get("visibility") in ("hidden", "collapse")
        or bool(_ZERO_SIZE.match(rules.get("font-size", "x")))
        or bool(_ZERO_SIZE.match(rules.get("opacity", "x")))
        or color == "transparent"
        or bool(re.fullmatch(r"rgba\(\d+,\d+,\d+,0*(?:\.0+)?\)", color))
        or (color not in ("", "inherit", "initial", "unset", "currentcolor") and color == background)
    )


def _load_html(data: bytes, source: str, text: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    hidden: list[str] = []
    for tag in soup.find_all(True):  # document order; a hidden element's descendants go with it
        if not tag.decomposed and _hidden_from_readers(tag):  # kept out of the text, recorded for screening
            hidden_text = re.sub(r"\s+", " ", tag.get_text(" ", strip=True))
            if hidden_text:
                hidden.append(hidden_text)
            tag.decompose()
    chrome = _chrome(soup)
    # A page without chrome is all content; lxml (under trafilatura) stops reading past 255 levels.
    main = _main_content(soup) if chrome and _depth(soup) < 200 else None
    if main is None:
        for tag in chrome:
            if not tag.decomposed:
                tag.decompose()
    text, headings = _html_text(main if main is not None else (soup.body or soup))
    if not title and headings:
        title = headings[0][2]
    document = _file_document(data, source, FileType.HTML, text, title, _sections_from_headings(len(text), headings))
    return replace(document, hidden_text=tuple(hidden))


# Page chrome: its presence sends a page through trafilatura; the fallback removes at least these.
_CHROME_TAGS = ("nav", "header", "footer", "aside")
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}
_CONSENT = re.compile(r"cookie|consent|gdpr", re.IGNORECASE)


def _main_content(soup: Any) -> Tag | None:
    """The page's main content without navigation, header, footer, cookie banners and other
    boilerplate, found by trafilatura (as simple HTML). None when it finds no structured main
    content (short pages, where it falls back to a flat copy of all text): then only the
    :func:`_chrome` elements are removed."""
    import logging

    import trafilatura
    from bs4 import BeautifulSoup

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)  # it logs per page; failures fall back
    try:
        extracted = trafilatura.extract(
            str(soup),
            output_format="html",
            include_tables=True,
            include_comments=False,
            include_links=False,
            include_images=False,
            favor_recall=True,
            deduplicate=False,
        )
    except Exception:  # its parser failing on odd input (e.g. extreme nesting): the fallback
        return None
    if not extracted:
        return None
    main = BeautifulSoup(extracted, "html.parser")
    body = main.body or main
    blocks = body.find_all(True, recursive=False)
    if len(blocks) <= 1 and "\n" in body.get_text().strip():  # trafilatura's baseline: one flat blob
        return None
    return body if body.get_text(strip=True) else None


def _depth(soup: Any) -> int:
    """How deeply the elements nest (an explicit stack: any depth works)."""
    from bs4 import Tag

    deepest = 0
    stack = [(soup, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tag))
    return deepest


def _chrome(soup: Any) -> list[Tag]:
    """Page chrome: navigation, header, footer, sidebars (by element or landmark role) and
    cookie/consent banners (by id or class)."""
    found = []
    for tag in soup.find_all(True):
        role = str(tag.get("role", "")).lower()
        marks = " ".join([str(tag.get("id", "")), *(str(c) for c in tag.get("class", []) or [])])
        if tag.name in _CHROME_TAGS or role in _CHROME_ROLES or (marks.strip() and _CONSENT.search(marks)):
            found.append(tag)
    return found


def _html_text(root: Tag) -> tuple[str, list[tuple[int, int, str]]]:
    """The readable text below ``root`` (paragraph breaks at block elements) and its headings
    as (offset, level, title). Walks with an explicit stack: any nesting depth works."""
    from bs4 import Tag
    from bs4.element import Comment, Doctype, NavigableString, ProcessingInstruction

    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    length = 0

    def emit(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    def paragraph_break() -> None:
        if parts and not parts[-1].endswith("\n\n"):
            emit("\n\n" if not parts[-1].endswith("\n") else "\n")

    stack: list[tuple[Any, bool]] = [(child, False) for child in reversed(list(root.children))]
    while stack:
        node, closing = stack.pop()
        if closing:
            paragraph_break()
        elif isinstance(node, (Comment, Doctype, ProcessingInstruction)):
            continue
        elif isinstance(node, NavigableString):
            piece = re.sub(r"\s+", " ", str(node))
            if piece.strip():
                if not parts or parts[-1].endswith("\n"):
                    piece = piece.lstrip()
                emit(piece)
        elif isinstance(node, Tag):
            if node.name in _BLOCK_TAGS:
                paragraph_break()
                stack.append((node, True))
            if node.name in _HEADING_LEVEL:
                headings.append((length, _HEADING_LEVEL[node.name], node.get_text(" ", strip=True)))
            stack.extend((child, False) for child in reversed(list(node.children)))
    joined = "".join(parts)
    text = joined.strip()
    shift = len(joined) - len(joined.lstrip())
    return text, [(max(0, o - shift), level, t) for o, level, t in headings if t]


# --- PDF -----------------------------------------------------------------------------------------


def _load_pdf(data: bytes, source: str, _text: str) -> Document:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings repeat what LoadError says
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise LoadError(source, "encrypted PDF; decrypt it first (e.g. qpdf --decrypt)")
        page_texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except PdfReadError as exc:
        raise LoadError(source, f"corrupt or unreadable PDF: {exc}") from exc
    sections: list[Section] = []
    chunks: list[str] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if not page_text:
            continue
        if chunks:
            chunks.append("\n\n")
            offset += 2
        sections.append(Section(offset, offset + len(page_text), page=number))
        chunks.append(page_text)
        offset += len(page_text)
    if not sections:
        raise LoadError(source, f"PDF has no text layer ({len(page_texts)} pages, scanned?); run OCR on it first")
    meta_title = ""
    try:
        meta_title = (reader.metadata.title or "") if reader.metadata else ""
    except Exception:
        meta_title = ""
    return _file_document(data, source, FileType.PDF, "".join(chunks), meta_title, sections)


# --- DOCX ----------------------------------------------------------------------------------------


def _load_docx(data: bytes, source: str, _text: str) -> Document:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        word = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError) as exc:
        raise LoadError(source, f"corrupt or not a .docx file: {exc}") from exc
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    from docx.table import Table

    blocks: list[tuple[str, str]] = []
    for item in word.iter_inner_content():  # paragraphs and tables in document order
        if isinstance(item, Table):
            blocks.extend((" | ".join(cell.text.strip() for cell in row.cells), "") for row in item.rows)
        else:
            blocks.append((item.text, item.style.name if item.style is not None else ""))
    for text, style in blocks:
        text = text.strip()
        if not text:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        level = _docx_heading_level(style)
        if level:
            headings.append((offset, level, text))
        parts.append(text)
        offset += len(text)
    full = "".join(parts)
    title = word.core_properties.title or (headings[0][2] if headings else "")
    return _file_document(data, source, FileType.DOCX, full, title, _sections_from_headings(len(full), headings))


def _docx_heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


_TEXT_TYPES = (FileType.TEXT, FileType.MARKDOWN, FileType.HTML)
# Each loader gets the bytes, the source path and (for text types) the decoded text.
_FILE_LOADERS: dict[FileType, Callable[[bytes, str, str], Document]] = {
    FileType.TEXT: _load_text,
    FileType.MARKDOWN: _load_markdown,
    FileType.HTML: _load_html,
    FileType.PDF: _load_pdf,
    FileType.DOCX: _load_docx,
}


# --- JSON and JSONL records ----------------------------------------------------------------------


def _load_records(data: bytes, source: str, file_type: FileType, fields: RecordFields) -> LoadResult:
    result = LoadResult()
    text = decode_text(data, source, result.warnings)
    for where, record in _iter_records(text, source, file_type, result.errors):
        try:
            result.documents.append(_record_document(record, source, where, file_type, fields))
        except LoadError as exc:
            result.errors.append(exc)
        except RecursionError:
            result.errors.append(LoadError(f"{source} ({where})", f"record nested too deeply; {_FIX_LINE}"))
    if not result.documents and not result.errors:
        result.errors.append(LoadError(source, "no records found"))
    return result


_FIX_LINE = "fix or remove the line"


def _iter_records(text: str, source: str, file_type: FileType, errors: list[LoadError]) -> Iterator[tuple[str, Any]]:
    if file_type is FileType.JSONL:
        # Split on "\n" only: JSON strings may contain U+2028/U+2029 raw, which splitlines() breaks on.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(LoadError(f"{source}:{number}", f"invalid JSON ({exc.msg}); {_FIX_LINE}"))
            except RecursionError:
                errors.append(LoadError(f"{source}:{number}", f"JSON nested too deeply to parse; {_FIX_LINE}"))
        return
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(LoadError(source, f"invalid JSON at line {exc.lineno} ({exc.msg})"))
        return
    except RecursionError:
        errors.append(LoadError(source, "JSON nested too deeply to parse"))
        return
    records = parsed if isinstance(parsed, list) else [parsed]
    for index, record in enumerate(records):
        yield f"record {index}", record


def _record_document(record: Any, source: str, where: str, file_type: FileType, fields: RecordFields) -> Document:
    location = f"{source} ({where})"
    if not isinstance(record, dict):
        raise LoadError(location, f"expected a JSON object, got {type(record).__name__}")
    text = record.get(fields.text_field)
    if not isinstance(text, str) or not text.strip():
        present = ", ".join(sorted(record)) or "none"
        raise LoadError(
            location,
            f"missing or empty text field {fields.text_field!r} (fields present: {present}); choose one with --text-field",
        )
    if fields.id_field is not None:
        raw_id = record.get(fields.id_field)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raise LoadError(location, f"missing id field {fields.id_field!r}; choose one with --id-field")
        doc_id = str(raw_id)
    else:
        doc_id = f"{source}#{where.split()[-1]}"
    metadata = {
        key: value
        if isinstance(value, (str, int, float, bool)) or value is None
        else json.dumps(value, ensure_ascii=False)
        for key, value in record.items()
        if key not in (fields.text_field, fields.id_field, fields.access_field)
    }
    title = record.get("title")
    if not isinstance(title, str):
        title = ""
    return Document(
        doc_id=doc_id,
        source_path=source,
        file_type=file_type,
        text=text,
        # Without the access field: a changed list is rewritten in place, not re-embedded.
        content_hash=sha256_hex(
            json.dumps(
                {k: v for k, v in record.items() if k != fields.access_field}, sort_keys=True, ensure_ascii=False
            )
        ),
        title=title,
        metadata=metadata,
        access=record_access(record, fields.access_field, location),
    )


def record_access(record: dict[str, Any], name: str, location: str) -> tuple[str, ...]:
    """The stored access column a record's ``name`` field gives (a list of entries or a
    comma-separated string); empty when the field is absent, null or empty (the record then takes
    its folder's access file or the ingest's ``--access``) or ``name`` is empty (no access field).

    >>> record_access({"access": "group:legal, deny:user:eve"}, "access", "a.jsonl (line 1)")
    ('group:legal', 'deny:user:eve')
    """
    value = record.get(name) if name else None  # "": records carry no access field
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if value is None or value == []:
        return ()
    hint = 'give a list such as ["group:legal", "deny:user:eve"] or a comma-separated string, or rename the field with --access-field'
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise LoadError(location, f"access field {name!r} is {json.dumps(value, ensure_ascii=False)[:200]}: {hint}")
    try:
        return AccessList.parse(value).to_column()
    except AccessError as exc:
        raise LoadError(location, f"access field {name!r}: {exc}") from None
