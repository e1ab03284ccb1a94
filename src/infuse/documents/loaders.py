"""File loaders: each supported format becomes one or more :class:`Document`.

Every failure is reported per file (or per JSONL record) as a :class:`LoadError` in the
:class:`LoadResult`, so one bad file never stops a batch.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.access import AccessError, AccessList
from infuse.documents.encoding import decode_bytes
from infuse.documents.models import Document, FileType, Section, sha256_hex
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


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)


def normalise_path(path: Path) -> str:
    """A document's identity for file sources: the absolute, resolved POSIX path."""
    return path.expanduser().resolve().as_posix()


def discover_files(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[Path], list[LoadError]]:
    """Expand files and folders into the supported files below them, sorted, without duplicates.

    Hidden files and folders (``.git``, ``.infuse``...) and ``exclude`` (the workspace itself) are
    skipped inside folders; a file named explicitly with an unsupported suffix is an error.
    """
    excluded = {p.expanduser().resolve() for p in exclude}
    found: dict[Path, None] = {}
    errors: list[LoadError] = []
    for raw in paths:
        path = raw.expanduser()
        if not path.exists():
            errors.append(LoadError(str(raw), "no such file or folder"))
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                try:
                    resolved = child.resolve()
                except (OSError, RuntimeError) as exc:  # a symlink loop
                    errors.append(LoadError(str(child), f"cannot resolve path: {exc}"))
                    continue
                if any(part.startswith(".") for part in rel.parts) or any(
                    e in (resolved, *resolved.parents) for e in excluded
                ):
                    continue
                if child.is_file() and child.suffix.lower() in SUFFIX_TYPES:
                    found[resolved] = None
        elif path.suffix.lower() in SUFFIX_TYPES:
            try:
                found[path.resolve()] = None
            except (OSError, RuntimeError) as exc:
                errors.append(LoadError(str(raw), f"cannot resolve path: {exc}"))
        else:
            supported = ", ".join(sorted(SUFFIX_TYPES))
            errors.append(
                LoadError(str(raw), f"unsupported file type {path.suffix or '(none)'!r}; supported: {supported}")
            )
    return sorted(found), errors


def load_file(path: Path, fields: RecordFields = RecordFields()) -> LoadResult:
    """Load one file into documents; never raises for bad content, only reports."""
    try:
        source = normalise_path(path)
    except (OSError, RuntimeError) as exc:
        return LoadResult(errors=[LoadError(str(path), f"cannot resolve path: {exc}")])
    file_type = SUFFIX_TYPES.get(path.suffix.lower())
    if file_type is None:
        return LoadResult(errors=[LoadError(source, f"unsupported file type {path.suffix!r}")])
    try:
        data = path.read_bytes()
    except OSError as exc:
        return LoadResult(errors=[LoadError(source, f"cannot read file: {exc.strerror or exc}")])
    if not data.strip():
        return LoadResult(errors=[LoadError(source, "empty file: nothing to ingest")])
    try:
        if file_type in (FileType.JSONL, FileType.JSON):
            return _load_records(data, source, file_type, fields)
        document = _FILE_LOADERS[file_type](data, source)
    except LoadError as exc:
        return LoadResult(errors=[exc])
    except Exception as exc:  # a third-party parser failing on corrupt input
        return LoadResult(errors=[LoadError(source, f"cannot parse {file_type.value.upper()} file: {exc}")])
    if not document.text.strip():
        return LoadResult(errors=[LoadError(source, "no text found in the file")])
    return LoadResult(documents=[document])


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


def _load_text(data: bytes, source: str) -> Document:
    return _file_document(data, source, FileType.TEXT, decode_bytes(data, source), "", [])


# CommonMark: a closing run of #s only counts after a space ("# C#" is the heading "C#").
_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown at ATX headings (outside code fences); each section knows its heading path."""
    fenced = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    headings = [m for m in _ATX_HEADING.finditer(text) if not any(a <= m.start() < b for a, b in fenced)]
    return _sections_from_headings(len(text), [(m.start(), len(m.group(1)), m.group(2).strip()) for m in headings])


def _sections_from_headings(length: int, headings: list[tuple[int, int, str]]) -> list[Section]:
    """Turn (offset, level, title) heading marks into sections covering the whole text."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    cursor = 0
    current: tuple[str, ...] = ()
    for offset, level, title in headings:
        if offset > cursor:
            sections.append(Section(cursor, offset, current))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        cursor, current = offset, tuple(t for _, t in path)
    if cursor < length:
        sections.append(Section(cursor, length, current))
    return sections


def _load_markdown(data: bytes, source: str) -> Document:
    text = decode_bytes(data, source)
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


def _load_html(data: bytes, source: str) -> Document:
    from bs4 import BeautifulSoup, Tag
    from bs4.element import Comment, Doctype, NavigableString, ProcessingInstruction

    soup = BeautifulSoup(decode_bytes(data, source), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    hidden: list[str] = []
    length = 0

    def emit(text: str) -> None:
        nonlocal length
        parts.append(text)
        length += len(text)

    def paragraph_break() -> None:
        if parts and not parts[-1].endswith("\n\n"):
            emit("\n\n" if not parts[-1].endswith("\n") else "\n")

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, (Comment, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                text = re.sub(r"\s+", " ", str(child))
                if text.strip():
                    if not parts or parts[-1].endswith("\n"):
                        text = text.lstrip()
                    emit(text)
            elif isinstance(child, Tag):
                if _hidden_from_readers(child):  # kept out of the text, recorded for screening
                    hidden_text = re.sub(r"\s+", " ", child.get_text(" ", strip=True))
                    if hidden_text:
                        hidden.append(hidden_text)
                    continue
                is_block = child.name in _BLOCK_TAGS
                if is_block:
                    paragraph_break()
                if child.name in _HEADING_LEVEL:
                    headings.append((length, _HEADING_LEVEL[child.name], child.get_text(" ", strip=True)))
                walk(child)
                if is_block:
                    paragraph_break()

    walk(soup.body or soup)
    text = "".join(parts).strip()
    shift = len("".join(parts)) - len("".join(parts).lstrip())
    headings = [(max(0, o - shift), lvl, t) for o, lvl, t in headings if t]
    if not title and headings:
        title = headings[0][2]
    document = _file_document(data, source, FileType.HTML, text, title, _sections_from_headings(len(text), headings))
    return replace(document, hidden_text=tuple(hidden))


# --- PDF -----------------------------------------------------------------------------------------


def _load_pdf(data: bytes, source: str) -> Document:
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


def _load_docx(data: bytes, source: str) -> Document:
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


_FILE_LOADERS: dict[FileType, Callable[[bytes, str], Document]] = {
    FileType.TEXT: _load_text,
    FileType.MARKDOWN: _load_markdown,
    FileType.HTML: _load_html,
    FileType.PDF: _load_pdf,
    FileType.DOCX: _load_docx,
}


# --- JSON and JSONL records ----------------------------------------------------------------------


def _load_records(data: bytes, source: str, file_type: FileType, fields: RecordFields) -> LoadResult:
    text = decode_bytes(data, source)
    result = LoadResult()
    for where, record in _iter_records(text, source, file_type, result.errors):
        try:
            result.documents.append(_record_document(record, source, where, file_type, fields))
        except LoadError as exc:
            result.errors.append(exc)
    if not result.documents and not result.errors:
        result.errors.append(LoadError(source, "no records found"))
    return result


def _iter_records(text: str, source: str, file_type: FileType, errors: list[LoadError]) -> Iterator[tuple[str, Any]]:
    if file_type is FileType.JSONL:
        # Split on "\n" only: JSON strings may contain U+2028/U+2029 raw, which splitlines() breaks on.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(LoadError(f"{source}:{number}", f"invalid JSON ({exc.msg}); fix or remove the line"))
        return
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(LoadError(source, f"invalid JSON at line {exc.lineno} ({exc.msg})"))
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
