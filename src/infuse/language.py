"""Per-text language detection for the two first-class languages.

Japanese text is recognised by its scripts (hiragana, katakana, CJK ideographs); a text whose
letters are mostly of those scripts is Japanese, anything else is treated as English. This is
cheap, deterministic and exact enough to pick a tokeniser and fusion weights per chunk.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Language(StrEnum):
    EN = "en"
    JA = "ja"


_JAPANESE_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def contains_japanese(text: str) -> bool:
    return _JAPANESE_CHAR.search(text) is not None


def detect_language(text: str) -> Language:
    """Japanese when Japanese characters make up at least 20% of the letters, else English.

    The threshold is low on purpose: Japanese technical prose is full of Latin product names,
    while an English text quoting one Japanese word stays English.
    """
    japanese = len(_JAPANESE_CHAR.findall(text))
    if japanese == 0:
        return Language.EN
    latin_words = len(_LATIN_WORD.findall(text))
    # Compare characters of Japanese with words of Latin script: one Japanese character carries
    # roughly as much as one short word.
    return Language.JA if japanese >= 0.2 * (japanese + latin_words * 3) else Language.EN
