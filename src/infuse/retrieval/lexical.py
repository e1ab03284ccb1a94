"""Keyword tokenisers: the project owns them so every store indexes the same tokens.

- English: lower-cased words, a short stop list, Snowball (Porter2) stemming.
- Japanese: SudachiPy morphological analysis (mode A, dictionary from the ``sudachidict-core``
  wheel), normalised forms, function words (particles, auxiliaries, symbols) dropped. Latin words
  inside Japanese text get the English treatment, so "Python" matches across languages.
- :class:`RegexTokenizer` is the naive baseline the retrieval benchmark compares against.

A text is analysed as Japanese as soon as it contains Japanese characters; the analyser handles
mixed text, and pure-English text takes the fast path.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from typing import TYPE_CHECKING, Any, Protocol

import Stemmer

from infuse.language import contains_japanese

if TYPE_CHECKING:
    from sudachipy import Tokenizer as SudachiTokenizer


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...


ENGLISH_STOPWORDS = frozenset(
    """a an and are as at be but by for from has have he her his i if in into is it its of on or
    she that the their them then there these they this to was were will with you your what which who
    whom when where why how did do does""".split()
)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


class EnglishTokenizer:
    """Lower-cased, stop-worded, stemmed words.

    >>> EnglishTokenizer().tokenize("The Runners were running!")
    ['runner', 'run']
    """

    def __init__(self) -> None:
        self._local = threading.local()  # PyStemmer objects are not thread-safe: one per thread

    @property
    def _stemmer(self) -> Any:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = Stemmer.Stemmer("english")
        return stemmer

    def normalise_word(self, word: str) -> str | None:
        word = word.lower().replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        if word in ENGLISH_STOPWORDS or not word:
            return None
        stem: str = self._stemmer.stemWord(word)  # PyStemmer has no type information
        return stem

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text)
        tokens = (self.normalise_word(w) for w in _WORD.findall(text))
        return [t for t in tokens if t]


# Sudachi parts of speech that carry no search meaning, and light verbs (normalised forms) that
# occur in almost every sentence: like English stop words they only add noise to keyword overlap.
_JAPANESE_SKIP_POS = frozenset({"助詞", "助動詞", "補助記号", "記号", "空白", "代名詞"})
JAPANESE_STOPWORDS = frozenset(
    {
        "為る",
        "居る",
        "有る",
        "成る",
        "出来る",
        "言う",
        "此の",
        "其の",
        "彼の",
        "事",
        "物",
        "所",
        "様",
        # question words that are not pronouns (those go by part of speech),
        # like what/which/how/why in the English list: どの どんな 何(年) 何故 どう 幾(つ)
        "どの",
        "どんな",
        "何",
        "何故",
        "どう",
        "幾",
    }
)
# Latin-script morphemes, including multi-word dictionary entries such as "machine learning".
_LATIN = re.compile(r"^[0-9A-Za-z\u00c0-\u024f'’.+# -]+$")


class JapaneseTokenizer:
    """SudachiPy tokens for Japanese (and mixed) text.

    >>> JapaneseTokenizer().tokenize("東京大学で機械学習を研究した。")
    ['東京', '大学', '機械', '学習', '研究']
    """

    def __init__(self, english: EnglishTokenizer | None = None, mode: str = "A") -> None:
        self._english = english or EnglishTokenizer()
        self._mode = mode
        self._local = threading.local()  # a Sudachi tokenizer refuses concurrent use: one per thread

    @property
    def _sudachi(self) -> SudachiTokenizer:
        tokenizer: SudachiTokenizer | None = getattr(self._local, "sudachi", None)
        if tokenizer is None:
            tokenizer = self._local.sudachi = _sudachi_dictionary().create(mode=_split_mode(self._mode))
        return tokenizer

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        # Sudachi has an input size limit; paragraphs are far below it, but be safe on huge texts.
        for piece in _pieces(text, 8000):
            for morpheme in self._sudachi.tokenize(piece):
                if morpheme.part_of_speech()[0] in _JAPANESE_SKIP_POS:
                    continue
                surface = morpheme.surface()
                if _LATIN.match(unicodedata.normalize("NFKC", surface)):
                    tokens.extend(self._english.tokenize(surface))
                    continue
                form = morpheme.normalized_form()
                if form in JAPANESE_STOPWORDS:
                    continue
                if _LATIN.match(form):
                    tokens.extend(self._english.tokenize(form))
                elif form.strip():
                    tokens.append(form.lower())
        return tokens


@functools.cache
def _sudachi_dictionary() -> Any:
    """The Sudachi dictionary, loaded once (tens of MB); each thread makes its own tokenizer from it."""
    from sudachipy import Dictionary

    return Dictionary(dict="core")


def _split_mode(name: str) -> Any:
    from sudachipy import SplitMode

    return getattr(SplitMode, name)


def _pieces(text: str, size: int) -> list[str]:
    if len(text.encode("utf-8")) < 40000:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


class LanguageAwareTokenizer:
    """The tokenizer the knowledge base uses: Japanese analysis when the text has Japanese."""

    def __init__(self) -> None:
        self.english = EnglishTokenizer()
        self.japanese = JapaneseTokenizer(self.english)

    def tokenize(self, text: str) -> list[str]:
        return self.japanese.tokenize(text) if contains_japanese(text) else self.english.tokenize(text)


class RegexTokenizer:
    """Baseline without morphology: NFKC, lower-case, runs of word characters split on script changes.

    Japanese has no spaces, so ``\\w+`` alone yields whole clauses; splitting where the script
    changes (kanji / hiragana / katakana / Latin) is the usual cheap improvement.
    """

    _RUN = re.compile(
        r"[\u4e00-\u9fff\u3400-\u4dbf々]+|[\u3040-\u309f]+|[\u30a0-\u30ffー]+|[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff々]+"
    )

    def tokenize(self, text: str) -> list[str]:
        return [t.lower() for t in self._RUN.findall(unicodedata.normalize("NFKC", text))]


class WhitespaceTokenizer:
    """The plainest baseline: NFKC, lower-case, ``\\w+`` runs."""

    def tokenize(self, text: str) -> list[str]:
        return [t.lower() for t in re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text))]
