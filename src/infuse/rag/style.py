"""A house style for answers: one template per language, used both to write training answers and
to check generated ones, so the two can never drift apart.

Why: fine-tuning is said to teach a model *how* to answer (format, register) while RAG tells it
*what* to say. To measure the "how", compare needs a behaviour metric that is exact and
checkable (no judge model): does an answer follow the house style, yes or no.

A template holds ``{answer}`` (the short answer, required) and may hold ``{source}`` (the number
of the passage the answer comes from, ``[n]``, written only when there is one). The check
:meth:`HouseStyle.follows` is the template as a pattern with every whitespace removed from both
sides (a word-level tokenizer decodes ``Varnholt [1], that is all.`` as ``Varnholt [1] , that is
all .``; spacing is not style). Invariants: ``follows(render(a, s, lang), lang)`` holds for every
non-empty answer ``a`` without brackets and every source ``s`` (None included), and
``answer_part(render(a, s, lang), lang)`` gives ``a`` back (whitespace removed).

>>> style = HouseStyle("short", {"en": "{answer}{source}, that is all."})
>>> style.render("Varnholt", 1, "en")
'Varnholt [1], that is all.'
>>> style.follows("Varnholt [1] , that is all .", "en"), style.follows("Varnholt [1]", "en")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from infuse.errors import InfuseError
from infuse.language import Language

ANSWER = "{answer}"
SOURCE = "{source}"
_SPACE = re.compile(r"\s+")


class StyleError(InfuseError):
    """A house style's template is malformed (no {answer}, or an unknown placeholder)."""


def _compact(text: str) -> str:
    return _SPACE.sub("", text)


@dataclass(frozen=True)
class HouseStyle:
    """A named answer template per language (see the module docstring)."""

    name: str
    templates: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        for lang, template in self.templates.items():
            Language(lang)  # an unknown language is a ValueError naming it
            if template.count(ANSWER) != 1 or template.count(SOURCE) > 1:
                raise StyleError(
                    f"house style {self.name!r} ({lang}): the template {template!r} must hold {ANSWER} once "
                    f"and {SOURCE} at most once"
                )
            rest = template.replace(ANSWER, "").replace(SOURCE, "")
            if "{" in rest or "}" in rest:
                raise StyleError(
                    f"house style {self.name!r} ({lang}): unknown placeholder in {template!r}; "
                    f"use only {ANSWER} and {SOURCE}"
                )

    def template(self, lang: Language | str) -> str:
        try:
            return self.templates[str(Language(lang))]
        except KeyError:
            raise StyleError(
                f"house style {self.name!r} has no template for {lang!r} (it has: {', '.join(self.templates)})"
            ) from None

    def render(self, answer: str, source: int | None, lang: Language | str) -> str:
        """`answer` written in the house style, citing passage `source` when given."""
        lang = Language(lang)
        cited = "" if source is None else f"{'' if lang is Language.JA else ' '}[{source}]"
        return self.template(lang).replace(SOURCE, cited).replace(ANSWER, answer.strip())

    @cached_property
    def _patterns(self) -> dict[str, re.Pattern[str]]:
        patterns = {}
        for lang, template in self.templates.items():
            parts = re.split(r"(\{answer\}|\{source\})", _compact(template))
            regex = "".join(
                r"(?P<answer>[^\[\]]+?)" if part == ANSWER else r"(?:\[\d+\])?" if part == SOURCE else re.escape(part)
                for part in parts
            )
            patterns[lang] = re.compile(regex)
        return patterns

    def answer_part(self, text: str, lang: Language | str) -> str | None:
        """The answer inside `text` when `text` follows the style (whitespace removed), else None."""
        self.template(lang)  # an unknown language is an error, not a silent "no"
        match = self._patterns[str(Language(lang))].fullmatch(_compact(text))
        return match.group("answer") if match else None

    def follows(self, text: str, lang: Language | str) -> bool:
        """Whether `text` is written exactly in the house style (spacing aside)."""
        return self.answer_part(text, lang) is not None


__all__ = ["HouseStyle", "StyleError"]
