"""The canonical word-level tokenisation of lab-world text.

Rule (identical for English and Japanese):

1. Pre-split into runs of word characters and runs of other non-space characters
   (``\\w+|[^\\w\\s]+``; the `tokenizers` ``Whitespace`` pre-tokenizer does the same).
2. Segment each run by greedy longest match against the closed lab vocabulary. A run that
   cannot be segmented completely is one unknown token (returned as it is; a model maps it to
   ``[UNK]``).

English words are whole vocabulary entries, so step 2 leaves them as they are. Japanese has no
spaces: a run such as ``マーシュは1987年に生まれた`` is segmented into ``マーシュ / は / 1987 /
年 / に / 生まれ / た``. The vocabulary is designed so that this greedy segmentation returns
exactly the tokens the templates were written with (checked by the tests for every template,
value and name); Japanese documents therefore stay ordinary Japanese, with no spaces, and still
have every answer as one token.

This is exactly what a `tokenizers` ``WordPiece`` model with ``continuing_subword_prefix=""``
behind a ``Whitespace`` pre-tokenizer computes, so the lab model's tokenizer can be built from
:func:`lab_vocabulary` with the `tokenizers` library (:func:`build_lab_tokenizer`) and agree with
:func:`lab_tokenize` token for token.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from infuse.lab.templates import PIECE, QUESTIONS, STATEMENTS
from infuse.lab.vocabulary import GIVEN_NAMES, JA_NAME_SEPARATOR, SURNAMES, VALUES
from infuse.language import Language

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def _languages(lang: Language | str | None) -> tuple[Language, ...]:
    return tuple(Language) if lang is None else (Language(lang),)


@cache
def lab_vocabulary(lang: Language | str | None = None) -> tuple[str, ...]:
    """Every token lab-world text in `lang` (both languages when None) is made of, sorted.

    Template words and punctuation, given names and surnames, and every attribute value. No
    special tokens: the model adds its own.
    """
    tokens: set[str] = set()
    for language in _languages(lang):
        for table in (STATEMENTS[language], QUESTIONS[language]):
            for templates in table.values():
                for template in templates:
                    tokens.update(template.words())
        for term in (*GIVEN_NAMES, *SURNAMES, *(v for values in VALUES.values() for v in values)):
            tokens.add(term.text(language))
        if language is Language.JA:
            tokens.add(JA_NAME_SEPARATOR)
    return tuple(sorted(tokens))


@cache
def _lexicon(lang: Language | str | None) -> tuple[frozenset[str], int]:
    vocabulary = lab_vocabulary(None if lang is None else Language(lang))
    return frozenset(vocabulary), max(len(token) for token in vocabulary)


def _segment(piece: str, lexicon: frozenset[str], longest: int) -> list[str]:
    tokens: list[str] = []
    start = 0
    while start < len(piece):
        for end in range(min(len(piece), start + longest), start, -1):
            if piece[start:end] in lexicon:
                tokens.append(piece[start:end])
                start = end
                break
        else:
            return [piece]  # not segmentable: one unknown token, as WordPiece does
    return tokens


def lab_tokenize(text: str, lang: Language | str | None = None) -> list[str]:
    """Split `text` into lab tokens (see the module docstring for the rule).

    `lang` picks the vocabulary (None: both languages). Unknown runs come back whole.
    """
    lexicon, longest = _lexicon(None if lang is None else Language(lang))
    tokens: list[str] = []
    for piece in PIECE.findall(text):
        if piece in lexicon:
            tokens.append(piece)
        else:
            tokens.extend(_segment(piece, lexicon, longest))
    return tokens


def build_lab_tokenizer(
    lang: Language | str | None = None,
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS,
    extra_tokens: tuple[str, ...] = (),
) -> Tokenizer:
    """A `tokenizers` Tokenizer that splits exactly like :func:`lab_tokenize`.

    Ids: `special_tokens` first (one of them must be ``[UNK]``), then `extra_tokens` (e.g.
    prompt markers such as ``Q`` or ``A``), then :func:`lab_vocabulary`. No decoder and no
    post-processor are set; whoever saves a model folder chooses those.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    if "[UNK]" not in special_tokens:
        raise ValueError("special_tokens must contain [UNK]")
    vocab: dict[str, int] = {}
    for token in (*special_tokens, *extra_tokens, *lab_vocabulary(lang)):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(
        models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="", max_input_chars_per_word=10_000)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer
