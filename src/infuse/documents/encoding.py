"""Bytes -> text with encoding detection tuned for English and Japanese sources.

UTF-8 (with or without BOM) and UTF-16 with BOM are tried first, then the Japanese legacy
encodings (Shift_JIS/CP932, EUC-JP), then charset-normalizer's best guess. Text that looks
binary (a NUL byte anywhere, many control characters) is rejected instead of producing mojibake.

Decoding never guesses silently: a file that is mostly UTF-8 with some bytes of another encoding
(a Latin-1 paragraph pasted in) keeps its UTF-8 and reads the stray bytes as Windows-1252, and a
file in an unknown single-byte encoding is decoded by charset-normalizer's guess; both add a
:class:`LoadWarning` that the ingest summary shows.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from infuse.documents.models import LoadWarning
from infuse.errors import LoadError

_JAPANESE_ENCODINGS = ["cp932", "euc_jp"]
_JAPANESE_CHAR = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff9f]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# A well-formed multi-byte UTF-8 sequence (evidence that a file is UTF-8 at heart).
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_STRAY_BYTES = "infuse-stray-cp1252"


def _stray_as_cp1252(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("cp1252", errors="replace"), error.end


codecs.register_error(_STRAY_BYTES, _stray_as_cp1252)


def decode_bytes(data: bytes, path: str) -> str:
    """Decode ``data`` read from ``path`` or raise :class:`LoadError` naming the file."""
    return decode_text(data, path, [])


def decode_text(data: bytes, path: str, warnings: list[LoadWarning]) -> str:
    """Decode ``data`` read from ``path``; a guessed or repaired decoding appends to ``warnings``."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _checked(data.decode(encoding, errors="strict"), path)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise LoadError(
            path,
            f"binary file (NUL byte at byte {nul}); only text, HTML, PDF, DOCX and JSON(L) are supported",
        )
    try:
        return _checked(data.decode("utf-8"), path)
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    japanese = _decode_japanese(data)
    if japanese is not None:
        return _checked(japanese, path)
    if _mostly_utf8(data):
        text = data.decode("utf-8", errors=_STRAY_BYTES)
        warnings.append(
            LoadWarning(
                path,
                f"mixed encodings: not valid UTF-8 from byte {first_bad}; the stray bytes were read as "
                "Windows-1252 (Latin-1): check the text, or convert the file to UTF-8",
            )
        )
        return _checked(text, path)
    western = _western_single_byte(data)
    if western is not None:
        warnings.append(
            LoadWarning(
                path,
                f"not UTF-8 (first at byte {first_bad}); decoded as Windows-1252 (Latin-1) by a guess: "
                "check the text, or convert the file to UTF-8",
            )
        )
        return _checked(western, path)
    best = from_bytes(data).best()
    if best is None:
        raise LoadError(path, "cannot detect the text encoding; convert the file to UTF-8")
    warnings.append(
        LoadWarning(
            path,
            f"not UTF-8 (first at byte {first_bad}); decoded as {best.encoding} by a guess: "
            "check the text, or convert the file to UTF-8",
        )
    )
    return _checked(str(best), path)


def _mostly_utf8(data: bytes) -> bool:
    """Whether most non-ASCII bytes form well-formed UTF-8 sequences (a UTF-8 file with a
    pasted-in Latin-1 part), not the chance matches of a CP932 or Latin-1 file."""
    high = len(data.translate(None, delete=bytes(range(128))))  # the non-ASCII bytes
    valid = sum(len(m) for m in _UTF8_MULTIBYTE.findall(data))
    return valid > 0 and valid >= high - valid


def _western_single_byte(data: bytes) -> str | None:
    """Windows-1252 text when it reads like Western European text: accented letters inside
    otherwise ASCII words ("café"), not whole words of non-ASCII (Cyrillic or Greek read wrongly).
    charset-normalizer often calls short Latin-1 text cp1250 and garbles it ("naďve")."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    positions = [i for i, ch in enumerate(text) if ord(ch) > 127]
    inside_words = sum(
        1
        for i in positions
        if (i > 0 and text[i - 1].isascii() and text[i - 1].isalpha())
        or (i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalpha())
    )
    return text if positions and inside_words >= 0.7 * len(positions) else None


def _decode_japanese(data: bytes) -> str | None:
    """Shift_JIS/CP932 or EUC-JP, when one of them decodes the bytes into mostly Japanese text.

    When both decode, charset-normalizer (limited to these two) picks the more coherent reading;
    the result is only trusted when most non-ASCII characters are Japanese.
    """
    decodable = []
    for encoding in _JAPANESE_ENCODINGS:
        try:
            data.decode(encoding)
            decodable.append(encoding)
        except UnicodeDecodeError:
            continue
    if not decodable:
        return None
    if len(decodable) == 1:
        text = data.decode(decodable[0])
    else:
        best = from_bytes(data, cp_isolation=decodable).best()
        if best is None:
            return None
        text = str(best)
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return text if non_ascii and len(_JAPANESE_CHAR.findall(text)) >= 0.5 * non_ascii else None


def _checked(text: str, path: str) -> str:
    if text and len(_CONTROL.findall(text[:8192])) > 0.05 * min(len(text), 8192):
        raise LoadError(path, "looks like a binary file (many control characters); convert it to text first")
    return text
