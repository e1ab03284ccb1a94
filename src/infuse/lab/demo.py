"""The lab story in one call: world -> lab model (cached) -> ingest new people's documents ->
answer a sample of questions with and without RAG through the same code path users use.

>>> result = run_lab_demo(Path(".demo-workspace"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infuse.lab.evaluate import GENERATION, chance, closed_book, lab_workspace, rag
from infuse.lab.train import LabTrainConfig, read_manifest, train_lab_model
from infuse.lab.world import NEW
from infuse.models.transformers_backend import TransformersModel
from infuse.progress import PrintProgress, Progress


@dataclass
class LabDemoResult:
    model_folder: Path
    workspace: Path
    questions: int
    closed_book_accuracy: float
    rag_accuracy: float
    chance: float
    example: dict[str, Any]


def run_lab_demo(
    root: Path,
    config: LabTrainConfig | None = None,
    *,
    sample: int = 40,
    cache_dir: Path | None = None,
    console: Console | None = None,
    progress: Progress | None = None,
) -> LabDemoResult:
    """Run the demo under ``root``; the model is trained once per configuration and then reused
    (training progress goes to `progress`, by default a line every ~5% on stderr)."""
    console = console or Console()
    config = config or LabTrainConfig.for_lang("en")
    console.print(f"[bold]1. lab model[/] ({config.lang}, {config.steps} steps; trained once, then cached)")
    folder = train_lab_model(config, cache_dir, progress=progress or PrintProgress())
    manifest = read_manifest(folder)
    console.print(f"   {folder}  (final loss {manifest['final_loss']:.3f}, trained in {manifest['wall_seconds']:.0f}s)")

    world = config.world()
    console.print(
        f"[bold]2. world[/]: {len(world.known)} known people (in pretraining), {len(world.new)} new people (never seen)"
    )
    workspace = lab_workspace(world, root)
    console.print(
        f"[bold]3. knowledge base[/]: the new people's {len(world.new)} documents ingested into {workspace.path}"
    )

    model = TransformersModel.load(str(folder))
    pipeline = workspace.rag_pipeline(model, GENERATION)
    questions = world.short_questions(NEW)[:sample]
    console.print(f"[bold]4. asking[/] {len(questions)} questions about the new people, without and with retrieval")
    closed = closed_book(pipeline, questions)
    grounded = rag(pipeline, questions, k=1)

    table = Table(title="what the lab model knows about people it never saw")
    for column in ("variant", "accuracy", "questions"):
        table.add_column(column)
    baseline = chance(world)
    table.add_row("closed book (base model)", f"{closed.accuracy:.0%}", str(closed.total))
    table.add_row("RAG (top-1 passage)", f"{grounded.accuracy:.0%}", str(grounded.total))
    table.add_row("chance", f"{baseline:.0%}", "")
    console.print(table)

    question = questions[0]
    answer = pipeline.stream(question.question, k=1, generation=GENERATION).collect()
    cited = answer.citations[0].chunk.source_path if answer.citations else "(no citation)"
    console.print(f"example: {question.question!r} -> {answer.text!r} (expected {question.answer!r}; cites {cited})")
    console.print(
        f"workspace: {workspace.path}  (try: infuse -w {workspace.path} ask {question.question!r} --model {folder})"
    )
    return LabDemoResult(
        folder,
        workspace.path,
        len(questions),
        closed.accuracy,
        grounded.accuracy,
        baseline,
        {"question": question.question, "answer": answer.text, "expected": question.answer, "cites": cited},
    )
