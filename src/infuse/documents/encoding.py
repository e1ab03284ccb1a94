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

_JAPANESE_ENCODINGS = ("cp932", "euc_jp")
# Kana are the strongest evidence that a legacy decode produced real Japanese.
_KANA = re.compile(r"[\u3040-\u30ff]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def decode_bytes(data: bytes, path: str) -> str:
    """Decode ``data`` read from ``path`` or raise :class:`LoadError` naming the file."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return _checked(data.decode(encoding, errors="strict"), path)
    if b"\x00" in data[:8192]:
        raise LoadError(path, "binary file (contains NUL bytes); only text, HTML, PDF, DOCX and JSON(L) are supported")
    try:
        return _checked(data.decode("utf-8"), path)
    except UnicodeDecodeError:
        pass
    candidates: list[tuple[int, str]] = []
    for encoding in _JAPANESE_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        candidates.append((len(_KANA.findall(text)), text))
    if candidates:
        kana, text = max(candidates, key=lambda c: c[0])
        if kana > 0:
            return _checked(text, path)
    best = from_bytes(data).best()
    if best is None:
        raise LoadError(path, "cannot detect the text encoding; convert the file to UTF-8")
    return _checked(str(best), path)


def _checked(text: str, path: str) -> str:
    if text and len(_CONTROL.findall(text[:8192])) > 0.05 * min(len(text), 8192):
        raise LoadError(path, "looks like a binary file (many control characters); convert it to text first")
    return text
