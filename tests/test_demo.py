"""`make demo` runs offline end to end and finds the right passage for each sample question."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from infuse.demo import DEMO_QUERIES, run


def test_demo_answers_every_sample_query_from_the_right_file(tmp_path: Path) -> None:
    top = dict(run(tmp_path / "demo", Console(file=open("/dev/null", "w"))))
    expected = ["handbook.md", "handbook.md", "faq.html", "就業規則.md", "faq_shiftjis.txt", "就業規則.md"]
    assert [Path(top[q]).name for q in DEMO_QUERIES] == expected
