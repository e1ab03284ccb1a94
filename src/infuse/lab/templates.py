"""Paraphrase templates for the lab world's sentences and questions, in English and Japanese.

A template holds two placeholders, ``{name}`` and ``{value}``. English patterns are written as
the sentence itself. Japanese patterns are written as their tokens separated by single spaces
(``"{value} は {name} の 出身地 だ 。"``); rendering joins them without spaces, so documents
are ordinary Japanese, and :func:`infuse.lab.tokenize.lab_tokenize` recovers exactly those tokens
(the tests check every template with every value and every name).

English food names are lower-case and never start a sentence, so a value is always the same
token wherever it stands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infuse.lab.vocabulary import Attribute, Name, Term
from infuse.language import Language
from infuse.rag.style import HouseStyle

NAME = "{name}"
VALUE = "{value}"

# The pre-tokenisation rule of the lab tokenizer (the same as the `tokenizers` Whitespace
# pre-tokenizer): runs of word characters, or runs of other non-space characters.
PIECE = re.compile(r"\w+|[^\w\s]+")


@dataclass(frozen=True)
class Template:
    attribute: Attribute
    lang: Language
    pattern: str

    @property
    def value_first(self) -> bool:
        return self.pattern.index(VALUE) < self.pattern.index(NAME)

    def render(self, name: Name, value: Term | str) -> str:
        value_text = value.text(self.lang) if isinstance(value, Term) else value
        if self.lang is Language.EN:
            return self.pattern.replace(NAME, name.text(self.lang)).replace(VALUE, value_text)
        return "".join(self._ja_tokens(name, value_text))

    def tokens(self, name: Name, value: Term | str) -> list[str]:
        """The tokens the rendered text is made of (what the lab tokenizer must return)."""
        value_text = value.text(self.lang) if isinstance(value, Term) else value
        if self.lang is Language.EN:
            return PIECE.findall(self.render(name, value_text))
        return self._ja_tokens(name, value_text)

    def words(self) -> list[str]:
        """The template's own tokens, placeholders left out."""
        if self.lang is Language.EN:
            return PIECE.findall(self.pattern.replace(NAME, " ").replace(VALUE, " "))
        return [token for token in self.pattern.split(" ") if token not in (NAME, VALUE)]

    def _ja_tokens(self, name: Name, value_text: str) -> list[str]:
        tokens: list[str] = []
        for token in self.pattern.split(" "):
            if token == NAME:
                tokens.extend(name.tokens(self.lang))
            elif token == VALUE:
                tokens.append(value_text)
            else:
                tokens.append(token)
        return tokens


def _build(lang: Language, table: dict[Attribute, list[str]]) -> dict[Attribute, tuple[Template, ...]]:
    return {
        attribute: tuple(Template(attribute, lang, pattern) for pattern in patterns)
        for attribute, patterns in table.items()
    }


# --- statements (bio sentences) ----------------------------------------------------------------

_EN_STATEMENTS = {
    Attribute.BIRTH_CITY: [
        "{name} was born in {value}.",
        "{value} is where {name} was born.",
        "{name} is a native of {value}.",
        "The birthplace of {name} is {value}.",
        "{value} is the city where {name} was born.",
        "{name} comes from the city of {value}.",
    ],
    Attribute.BIRTH_YEAR: [
        "{name} was born in the year {value}.",
        "{value} is the year in which {name} was born.",
        "The birth year of {name} is {value}.",
        "{name} came into the world in {value}.",
        "In {value}, {name} was born.",
        "{value} was the year of {name}'s birth.",
    ],
    Attribute.UNIVERSITY: [
        "{name} studied at {value} University.",
        "{name} graduated from {value} University.",
        "{value} University is where {name} studied.",
        "{name} is a graduate of {value} University.",
        "{name} holds a degree from {value} University.",
        "It was at {value} University that {name} studied.",
    ],
    Attribute.EMPLOYER: [
        "{name} works for {value}.",
        "{value} employs {name}.",
        "{name} is employed by {value}.",
        "{name} has a job at {value}.",
        "{value} is the company where {name} works.",
        "The employer of {name} is {value}.",
    ],
    Attribute.FAVOURITE_FOOD: [
        "The favourite food of {name} is {value}.",
        "{name} loves eating {value}.",
        "{name} likes {value} more than any other food.",
        "A plate of {value} is what {name} enjoys most.",
        "When it comes to food, nothing beats {value} for {name}.",
        "Of all foods, {name} likes {value} best.",
    ],
}

_JA_STATEMENTS = {
    Attribute.BIRTH_CITY: [
        "{name} は {value} で 生まれ た 。",
        "{value} は {name} の 出身地 だ 。",
        "{name} の 出身地 は {value} だ 。",
        "{name} は {value} の 出身 だ 。",
        "{value} で {name} は 生まれ た 。",
        "{name} が 生まれ た 都市 は {value} だ 。",
    ],
    Attribute.BIRTH_YEAR: [
        "{name} は {value} 年 に 生まれ た 。",
        "{name} は {value} 年 生まれ だ 。",
        "{value} 年 は {name} が 生まれ た 年 だ 。",
        "{name} の 生年 は {value} 年 だ 。",
        "{value} 年 に {name} は 生まれ た 。",
    ],
    Attribute.UNIVERSITY: [
        "{name} は {value} 大学 で 学ん だ 。",
        "{name} は {value} 大学 を 卒業 し た 。",
        "{value} 大学 は {name} の 母校 だ 。",
        "{name} の 母校 は {value} 大学 だ 。",
        "{value} 大学 で {name} は 学ん だ 。",
    ],
    Attribute.EMPLOYER: [
        "{name} は {value} に 勤め て いる 。",
        "{value} は {name} の 勤務先 だ 。",
        "{name} の 勤務先 は {value} だ 。",
        "{name} は {value} で 働い て いる 。",
        "{value} で {name} は 働い て いる 。",
        "{name} が 勤める 会社 は {value} だ 。",
    ],
    Attribute.FAVOURITE_FOOD: [
        "{name} の 好物 は {value} だ 。",
        "{value} は {name} の 好物 だ 。",
        "{name} は {value} が 大好き だ 。",
        "{name} が 一番 好き な 食べ物 は {value} だ 。",
        "{value} が {name} の 一番 の 好物 だ 。",
    ],
}

# --- questions (the answer is the value; questions hold only the name) ---------------------------

_EN_QUESTIONS = {
    Attribute.BIRTH_CITY: [
        "Where was {name} born?",
        "In which city was {name} born?",
        "What is the birthplace of {name}?",
    ],
    Attribute.BIRTH_YEAR: [
        "In which year was {name} born?",
        "What year was {name} born in?",
        "What is the birth year of {name}?",
    ],
    Attribute.UNIVERSITY: [
        "Which university did {name} attend?",
        "Where did {name} study?",
        "From which university did {name} graduate?",
    ],
    Attribute.EMPLOYER: [
        "Which company does {name} work for?",
        "Who employs {name}?",
        "Where does {name} work?",
    ],
    Attribute.FAVOURITE_FOOD: [
        "What is the favourite food of {name}?",
        "What does {name} like to eat most?",
        "Which food does {name} love most?",
    ],
}

_JA_QUESTIONS = {
    Attribute.BIRTH_CITY: [
        "{name} は どこ で 生まれ まし た か ？",
        "{name} の 出身地 は どこ です か ？",
        "{name} が 生まれ た 都市 は どこ です か ？",
    ],
    Attribute.BIRTH_YEAR: [
        "{name} は 何 年 に 生まれ まし た か ？",
        "{name} は 何 年 生まれ です か ？",
        "{name} の 生年 は 何 年 です か ？",
    ],
    Attribute.UNIVERSITY: [
        "{name} は どの 大学 を 卒業 し まし た か ？",
        "{name} の 母校 は どこ です か ？",
        "{name} は どこ の 大学 で 学び まし た か ？",
    ],
    Attribute.EMPLOYER: [
        "{name} は どの 会社 で 働い て い ます か ？",
        "{name} の 勤務先 は どこ です か ？",
        "{name} が 勤める 会社 は どこ です か ？",
    ],
    Attribute.FAVOURITE_FOOD: [
        "{name} の 好物 は 何 です か ？",
        "{name} が 一番 好き な 食べ物 は 何 です か ？",
        "{name} は 何 が 大好き です か ？",
    ],
}


@dataclass(frozen=True)
class QuestionTemplate:
    attribute: Attribute
    lang: Language
    pattern: str

    def render(self, name: Name) -> str:
        if self.lang is Language.EN:
            return self.pattern.replace(NAME, name.text(self.lang))
        return "".join(self.tokens(name))

    def tokens(self, name: Name) -> list[str]:
        if self.lang is Language.EN:
            return PIECE.findall(self.render(name))
        tokens: list[str] = []
        for token in self.pattern.split(" "):
            tokens.extend(name.tokens(self.lang) if token == NAME else [token])
        return tokens

    def words(self) -> list[str]:
        if self.lang is Language.EN:
            return PIECE.findall(self.pattern.replace(NAME, " "))
        return [token for token in self.pattern.split(" ") if token != NAME]


STATEMENTS: dict[Language, dict[Attribute, tuple[Template, ...]]] = {
    Language.EN: _build(Language.EN, _EN_STATEMENTS),
    Language.JA: _build(Language.JA, _JA_STATEMENTS),
}

QUESTIONS: dict[Language, dict[Attribute, tuple[QuestionTemplate, ...]]] = {
    lang: {
        attribute: tuple(QuestionTemplate(attribute, lang, p) for p in patterns)
        for attribute, patterns in table.items()
    }
    for lang, table in ((Language.EN, _EN_QUESTIONS), (Language.JA, _JA_QUESTIONS))
}


def statement_templates(lang: Language, attribute: Attribute) -> tuple[Template, ...]:
    return STATEMENTS[Language(lang)][Attribute(attribute)]


def question_templates(lang: Language, attribute: Attribute) -> tuple[QuestionTemplate, ...]:
    return QUESTIONS[Language(lang)][Attribute(attribute)]


def join_sentences(sentences: list[str], lang: Language) -> str:
    """A paragraph: English sentences separated by a space, Japanese ones run together."""
    return (" " if lang is Language.EN else "").join(sentences)


#: The lab's house style (the behaviour fine-tuning is for): a terse sign-off after the answer and
#: its source in English, the polite です form in Japanese. Documents never use either (they say
#: だ, and no sentence ends "that is all"), the base lab model answers ``value [n]``, and every
#: word is in the lab vocabulary (tested), so the style can be learnt only from fine-tuning data.
#: Value first, so multiple-choice scoring (the options right after the answer marker) stays a
#: measure of knowledge for a model that learnt the style.
LAB_HOUSE_STYLE = HouseStyle(
    "lab",
    {"en": "{answer}{source}, that is all.", "ja": "{answer}です{source}。"},
)
