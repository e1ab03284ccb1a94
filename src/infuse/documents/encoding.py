"""Bytes -> text with encoding detection tuned for English and Japanese sources.

UTF-8 (with or without BOM) and UTF-16 with BOM are tried first, then the Japanese legacy
encodings (Shift_JIS/CP932, EUC-JP), then charset-normalizer's best guess. Text that looks
binary (NUL bytes, many control characters) is rejected instead of producing mojibake.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from infuse.errors import LoadError

_JAPANESE_ENCODINGS = ["cp932", "euc_jp"]
_JAPANESE_CHAR = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff9f]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def decode_bytes(data: bytes, path: str) -> str:
    """Decode ``data`` read from ``path`` or raise :class:`LoadError` naming the file."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _checked(data.decode(encoding, errors="strict"), path)
    if b"\x00" in data[:8192]:
        raise LoadError(path, "binary file (contains NUL bytes); only text, HTML, PDF, DOCX and JSON(L) are supported")
    try:
        return _checked(data.decode("utf-8"), path)
    except UnicodeDecodeError:
        pass
    japanese = _decode_japanese(data)
    if japanese is not None:
        return _checked(japanese, path)
    best = from_bytes(data).best()
    if best is None:
        raise LoadError(path, "cannot detect the text encoding; convert the file to UTF-8")
    return _checked(str(best), path)


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
