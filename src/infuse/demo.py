"""``make demo``: the whole lab story (synthetic world -> tiny model trained from scratch -> RAG,
fine-tuning on 1 and 5 paraphrased variants, a head-to-head comparison, a document update, the
report and the advice), then the bundled sample corpus (EN + JA, six formats) ingested and searched.

Runs offline. Everything goes under ``./.demo-workspace`` (or ``$INFUSE_DEMO_WORKSPACE``); the lab
model is trained on the first run (about 5 minutes on 2 cores) and cached afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infuse.progress import PrintProgress
from infuse.workspace import Workspace

SAMPLE_CORPUS = Path(__file__).parent / "sample_corpus"
DEMO_QUERIES = [
    "How often are API keys rotated?",
    "How fast must the on-call engineer acknowledge a SEV1 page?",
    "What is the default rate limit?",
    "有給休暇は何日もらえますか",
    "パスワードを忘れたときはどうすればいいですか",
    "リモートワークは週何日まで",
]


def run(workspace_dir: Path, console: Console | None = None) -> list[tuple[str, str]]:
    """Ingest the sample corpus twice (the second run must skip everything) and search it."""
    console = console or Console()
    ws = Workspace.open(workspace_dir, create=True)
    started = time.perf_counter()
    first = ws.ingest([SAMPLE_CORPUS], id_field="id")
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = ws.ingest([SAMPLE_CORPUS], id_field="id")
    second_seconds = time.perf_counter() - started
    console.print(
        f"ingest: {first.added} new documents, {first.chunks_written} chunks in {first_seconds:.1f}s; "
        f"re-run: {second.unchanged} unchanged, {second.chunks_written} chunks embedded in {second_seconds:.2f}s"
    )
    for error in first.errors:
        console.print(f"[red]failed:[/] {error['path']}: {error['error']}")

    table = Table(title="hybrid search (top hit)", show_lines=True)
    for column in ("query", "source", "passage"):
        table.add_column(column, overflow="fold")
    top: list[tuple[str, str]] = []
    for query, hits in zip(DEMO_QUERIES, ws.search_many(DEMO_QUERIES, k=1)):
        hit = hits[0]
        name = Path(hit.chunk.source_path).name + (
            f" ({hit.chunk.doc_id})" if hit.chunk.doc_id != hit.chunk.source_path else ""
        )
        table.add_row(query, name, hit.chunk.text.replace("\n", " ")[:160])
        top.append((query, hit.chunk.doc_id))
    console.print(table)
    console.print(f'workspace: {ws.path}  (try: infuse -w {ws.path} search "backup retention")')
    return top


def main() -> None:
    from infuse.lab.story import run_lab_story

    root = Path(os.environ.get("INFUSE_DEMO_WORKSPACE", ".demo-workspace"))
    console = Console()
    console.rule("the knowledge lab: RAG vs fine-tuning on facts no model has seen")
    run_lab_story(root / "lab", console=console, progress=PrintProgress())
    console.rule("your documents: the sample corpus")
    run(root / "sample", console)


if __name__ == "__main__":
    main()
