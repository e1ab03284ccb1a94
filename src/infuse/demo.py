"""``make demo``: the whole lab story (synthetic world -> tiny model trained from scratch -> RAG,
one fine-tuning run on the facts in a house style, a head-to-head comparison with style adherence
and a leak rate, a document update, the report and the advice), then the bundled sample corpus
(EN + JA, six formats) ingested and searched.

Runs offline. Everything goes under ``./.demo-workspace`` (or ``$INFUSE_DEMO_WORKSPACE``); the lab
model is trained on the first run (about 5 minutes on 2 cores) and cached afterwards.

The demo makes library calls, but it prints the ``infuse`` command of each step (``$ infuse -w
.demo-workspace/sample ingest ...``) and ends with the commands that take the user's own documents
the same way (:func:`own_documents_commands`), so what it shows can be repeated by hand.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from infuse.progress import PrintProgress
from infuse.workspace import Workspace

if TYPE_CHECKING:
    from infuse.lab.story import StoryConfig

SAMPLE_CORPUS = Path(__file__).parent / "sample_corpus"
DEMO_QUERIES = [
    "How often are API keys rotated?",
    "How fast must the on-call engineer acknowledge a SEV1 page?",
    "What is the default rate limit?",
    "有給休暇は何日もらえますか",
    "パスワードを忘れたときはどうすればいいですか",
    "リモートワークは週何日まで",
]


def command(*words: object) -> str:
    """``infuse WORDS...`` as a shell line (paths and questions quoted where needed)."""
    return shlex.join(["infuse", *(str(w) for w in words)])


def show(console: Console, line: str) -> None:
    """Print a command the user can run (``$ infuse ...``), or a comment (``# ...``)."""
    console.print(line if line.startswith("#") else f"$ {line}", style="cyan", markup=False, highlight=False)


def lab_commands(root: Path, config: StoryConfig) -> list[str]:
    """The CLI equivalents of :func:`infuse.lab.story.run_lab_story` under `root` with `config`, in
    order; lines starting with ``#`` are comments. ``report`` and ``advise`` take the latest run."""
    from infuse.lab.train import model_folder
    from infuse.lab.world import DOCS_DIR, QUESTIONS_DIR, UPDATES_DIR

    ws, world, model = root / "workspace", root / "world", model_folder(config.lab)
    lab = config.lab
    lab_world = lab.world()
    tune_options: list[object] = [
        "--method",
        "lora",
        "--max-steps",
        config.tune_steps,
        "--lr",
        config.tune_lr,
        "--seq-len",
        256,
    ]
    tune_options += ["--batch-size", config.batch_rows, "--eval-fraction", 0, "--lora-dropout", 0]
    from infuse.lab.story import FT_DATASET, FT_RUN
    from infuse.lab.templates import LAB_HOUSE_STYLE

    style = [
        arg for lang, t in LAB_HOUSE_STYLE.templates.items() if lang == lab.lang for arg in ("--style", f"{lang}={t}")
    ]
    compare: list[object] = ["--questions", "new_mc", "--variants", "base,rag,ft,ft+rag", "--adapter", FT_RUN]
    compare += [*style, "--style-questions", config.style_questions, "--as-user", config.user]
    compare += ["-k", config.k, "--model", model, "--update-docs", world / UPDATES_DIR / DOCS_DIR]
    compare += ["--update-questions", "update_mc"] + (["--limit", config.limit] if config.limit else [])
    house_style = root / "house_style.jsonl"
    return [
        f"# the lab model: `infuse lab train --lang {lab.lang}` trains it once into {model}",
        command("lab", "world", "-o", world, "--lang", lab.lang, "--seed", lab.world_seed, "--overwrite"),
        command("-w", ws, "ingest", world / DOCS_DIR, "--prune"),
        "# access lists: everyone reads the documents, but every fifth new person's only group:hr",
        command("-w", ws, "access", "set", world / DOCS_DIR, "--access", "everyone"),
        *(
            command("-w", ws, "access", "set", world / lab_world.doc_path(p), "--access", *lab_world.access(p))
            for p in lab_world.restricted
        ),
        command(
            "-w", ws, "questions", "import", world / QUESTIONS_DIR / "new_mc.jsonl", "--format", "mc", "--overwrite"
        ),
        command(
            "-w",
            ws,
            "questions",
            "import",
            world / UPDATES_DIR / "questions_mc.jsonl",
            *"--format mc --name update_mc --overwrite".split(),
        ),
        "# house-style examples about known people (behaviour, no new facts), mixed into the facts written "
        "as questions answered in the house style: one run learns both",
        command("lab", "style-examples", "-o", house_style, "--lang", lab.lang, "--people", config.style_people),
        command(
            "-w",
            ws,
            *"dataset build --kind qa --name".split(),
            FT_DATASET,
            "--per-chunk",
            config.questions_per_doc,
            *style,
            "--replay",
            house_style,
            "--replay-share",
            config.style_share,
            "--model",
            model,
            "--overwrite",
        ),
        command("-w", ws, "tune", "--dataset", FT_DATASET, "--model", model, "--name", FT_RUN, *tune_options),
        command("-w", ws, "compare", *compare),
        command("-w", ws, "report"),
        command("-w", ws, "advise"),
    ]


def own_documents_commands(workspace: str = "my-ws", documents: str = "~/my-documents") -> list[str]:
    """What to type to take your own documents from a folder to a recommendation and a server."""
    ws = ["-w", workspace]
    return [
        "# MODEL: a Hugging Face model id or folder (or set [model] name in WS/infuse.toml)",
        f"{command(*ws, 'ingest')} {documents}",
        command(*ws, "questions", "import", "my-questions.jsonl", "--format", "qa"),
        "# ...or let a model write them from your documents: "
        + command(*ws, "questions", "generate", "--model", "MODEL", "--name", "my-questions"),
        command(*ws, "dataset", "build", "--kind", "cpt", "--model", "MODEL"),
        command(*ws, "tune", "--dataset", "cpt", "--model", "MODEL"),
        command(
            *ws,
            *"compare --questions my-questions --variants base,rag,ft,ft+rag --adapter cpt-lora".split(),
            "--model",
            "MODEL",
        ),
        command(*ws, "report"),
        command(*ws, "advise"),
        command(*ws, "serve", "--model", "MODEL", "--adapter", "cpt-lora"),
    ]


def run(workspace_dir: Path, console: Console | None = None) -> list[tuple[str, str]]:
    """Ingest the sample corpus twice (the second run must skip everything) and search it."""
    console = console or Console()
    ws = Workspace.open(workspace_dir, create=True)
    show(console, command("-w", workspace_dir, "ingest", SAMPLE_CORPUS, "--id-field", "id"))
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

    show(console, "# the same line again: unchanged files are skipped")
    for query in DEMO_QUERIES[:1]:
        show(console, command("-w", workspace_dir, "search", query, "-k", 1))
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


def print_own_documents(console: Console) -> None:
    """The demo's last words: the same journey on the user's own documents."""
    console.rule("your own documents: the same steps")
    for line in own_documents_commands():
        show(console, line)


def main() -> None:
    from infuse.lab.story import StoryConfig, run_lab_story

    root = Path(os.environ.get("INFUSE_DEMO_WORKSPACE", ".demo-workspace"))
    console = Console()
    console.rule("the knowledge lab: RAG vs fine-tuning on facts no model has seen")
    config = StoryConfig()
    run_lab_story(root / "lab", config, console=console, progress=PrintProgress())
    console.print("the same story with the CLI:")
    for line in lab_commands(root / "lab", config):
        show(console, line)
    console.rule("your documents: the sample corpus")
    run(root / "sample", console)
    print_own_documents(console)


if __name__ == "__main__":
    main()
