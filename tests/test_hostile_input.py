"""Every kind of bad input ends as ingested, skipped or failed with a reason, in bounded time.

The cases (tests/hostile_files.py) are the audit's: decompression bombs, huge files, symlinks
leaving the corpus, FIFOs, deep nesting, pathological lines for the regexes, bad encodings.
benchmarks/hostile_input.py runs the same cases at full size and prints peak RSS and time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hostile_files import CASES, Case, ingest, outcome


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_each_bad_input_has_one_outcome_with_its_reason(tmp_path: Path, case: Case) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    path = case.build(root, 100)  # 100 KB pathological lines
    _write_neighbour(root)
    clock = time.perf_counter()
    report, stored = ingest(root)
    seconds = time.perf_counter() - clock
    got, reason = outcome(report, stored, path)
    assert got == case.outcome, (got, reason)
    assert case.reason in reason
    assert seconds < 60, f"{case.kind} took {seconds:.1f}s"
    # One bad file never costs the batch: the good neighbour is always ingested.
    assert (root / "good.md").resolve().as_posix() in stored


def _write_neighbour(root: Path) -> None:
    (root / "good.md").write_text("# Good\n\nA good file next to the bad one.\n", encoding="utf-8")


LINES = {
    "heading of spaces": lambda n: "# a" + " " * n + "b\n",
    "heading of tabs and a closing hash": lambda n: "## a" + " \t" * (n // 2) + "#x\n",
    "dots": lambda n: "a" + "." * n + "b",
    "question marks": lambda n: "?" * n + "x",
    "newlines": lambda n: "\n" * n + "x",
    "spaces then a word": lambda n: " " * n + "ignore",
    "ai: at every line start": lambda n: "ai: " * (n // 4),
    "ignore at every line start": lambda n: "\n ignore" * (n // 8),
}


@pytest.mark.parametrize("kind", LINES)
def test_a_1mb_pathological_line_is_chunked_and_screened_in_seconds(kind: str) -> None:
    """Each regex on the ingest path (Markdown heading, sentence split, paragraph split, the
    injection rules) is linear: a 1 MB line finishes in seconds (quadratic took hours)."""
    from infuse.documents.chunking import paragraph_spans, sentence_spans
    from infuse.documents.loaders import markdown_sections
    from infuse.retrieval.lexical import EnglishTokenizer
    from infuse.screening.injection import InjectionDetector

    text = LINES[kind](1_000_000)
    clock = time.perf_counter()
    sections = markdown_sections(text)
    sentences = sentence_spans(text, 0, len(text))
    paragraphs = paragraph_spans(text, 0, len(text))
    InjectionDetector().flags(text)
    EnglishTokenizer().tokenize(text)
    seconds = time.perf_counter() - clock
    assert seconds < 60, f"{kind}: {seconds:.1f}s"
    assert sections and sections[0].start == 0 and sections[-1].end == len(text)  # sane: covers the text
    assert all(0 <= a < b <= len(text) for a, b in sentences + paragraphs)
