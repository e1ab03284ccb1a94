#!/usr/bin/env python
"""The RAG relevance gate: does it let the right passage through, and stop off-topic ones?

For each data set, a knowledge base holds part of the documents. Questions about documents in
the knowledge base are *in*; their top-1 hit, when it is the gold passage, should pass the gate
(recall). Questions about documents left out are *out*; their top-1 hit should be rejected, so
RAG says "not found" instead of answering from an unrelated passage (rejection). Both gates are
the shipped rule (dense similarity >= min_dense_score, or keyword coverage >= min_keyword_coverage)
with the keyword share plain or weighted by IDF (:mod:`infuse.rag.relevance`).

    .venv/bin/python benchmarks/relevance_gate.py [--sets lab-ja,lab-en,squad,jaquad] [--limit 400]
    .venv/bin/python benchmarks/relevance_gate.py --lang ja --sets squad,jaquad --thresholds 0.2,0.25,0.3,0.35,0.4,0.45,0.5

``--lang ja`` builds the SQuAD/JaQuAD knowledge bases as ``infuse ingest --lang ja`` does (USE-m3,
its fusion weights); ``--thresholds`` sweeps min_dense_score (IDF gate) on the same searches, to
choose the threshold per embedder (written to ``relevance_gate-<lang>.{json,md}``).

Sets: the lab worlds (in: the new people's questions; out: known people's questions, whose names
share given names and surnames with the new people: hard negatives), SQuAD 2.0 dev and JaQuAD dev
from ../shared/data (half of the articles in the knowledge base; answerable questions only).
Writes ``benchmarks/results/relevance_gate.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from infuse.evaluation.questions import ImportFormat, import_questions
from infuse.language import Language
from infuse.rag.relevance import RelevanceGate
from infuse.retrieval.search import SearchHit
from infuse.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

GoldCheck = Callable[[SearchHit], bool]
Case = tuple[str, GoldCheck | None]  # question, and for "in" questions: is this hit the gold passage?


def lab_cases(lang: str, root: Path, limit: int) -> tuple[Workspace, list[Case], list[Case]]:
    from infuse.lab.evaluate import lab_workspace
    from infuse.lab.train import LabTrainConfig
    from infuse.lab.world import KNOWN, NEW

    world = LabTrainConfig.for_lang(lang).world()
    workspace = lab_workspace(world, root)
    inside = [
        (q.question, lambda hit, doc=Path(q.doc).name: Path(hit.chunk.source_path).name == doc)
        for q in world.short_questions(NEW)[:limit]
    ]
    outside = [(q.question, None) for q in world.short_questions(KNOWN)[:limit]]
    return workspace, inside, outside


def squad_like_cases(
    path: Path, fmt: ImportFormat, root: Path, limit: int, lang: Language = Language.EN
) -> tuple[Workspace, list[Case], list[Case]]:
    qset = import_questions(path, fmt)
    by_article = defaultdict(list)
    for question in qset.questions:
        by_article[question.gold_doc.rsplit("#", 1)[0]].append(question)
    articles = sorted(by_article)
    random.Random(0).shuffle(articles)
    half = len(articles) // 2
    kept, left_out = articles[:half], articles[half:]
    passages: dict[str, str] = {}
    for article in kept:
        for question in by_article[article]:
            passages.setdefault(question.gold_doc, question.gold_text)
    docs = root / "passages.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in passages.items()),
        encoding="utf-8",
    )
    workspace = Workspace.open(root / "workspace", create=True, lang=lang)
    workspace.ingest([docs], id_field="id")
    rng = random.Random(1)
    inside = [q for a in kept for q in by_article[a]]
    outside = [q for a in left_out for q in by_article[a]]
    rng.shuffle(inside)
    rng.shuffle(outside)
    # a hit is the gold passage when its chunk text lies inside the question's paragraph
    return (
        workspace,
        [
            (q.question, lambda hit, text=q.gold_text: hit.chunk.text.strip() in text or text in hit.chunk.text)
            for q in inside[:limit]
        ],
        [(q.question, None) for q in outside[:limit]],
    )


def measure(
    workspace: Workspace, inside: list[Case], outside: list[Case], thresholds: list[float] | None = None
) -> dict[str, dict[str, float | int]]:
    settings = workspace.settings.rag
    gates = {
        name: RelevanceGate(workspace.tokenizer, settings.min_dense_score, settings.min_keyword_coverage, weighted)
        for name, weighted in (("plain", False), ("idf", True))
    }
    statistics = workspace.term_statistics()
    result: dict[str, dict[str, float | int]] = {}
    in_hits = workspace.search_many([q for q, _ in inside], k=1)
    out_hits = workspace.search_many([q for q, _ in outside], k=1)
    gold = [(q, hits[0]) for (q, check), hits in zip(inside, in_hits) if hits and check and check(hits[0])]
    off = [(q, hits[0]) for (q, _), hits in zip(outside, out_hits) if hits]
    for name, gate in gates.items():
        recall = sum(gate.passes(q, hit, statistics) for q, hit in gold) / len(gold)
        rejection = sum(not gate.passes(q, hit, statistics) for q, hit in off) / len(off)
        result[name] = {
            "recall": round(recall, 4),
            "rejection": round(rejection, 4),
            "balanced": round((recall + rejection) / 2, 4),
        }
    for threshold in thresholds or []:
        gate = RelevanceGate(workspace.tokenizer, threshold, settings.min_keyword_coverage, True)
        recall = sum(gate.passes(q, hit, statistics) for q, hit in gold) / len(gold)
        rejection = sum(not gate.passes(q, hit, statistics) for q, hit in off) / len(off)
        result[f"idf@{threshold}"] = {
            "recall": round(recall, 4),
            "rejection": round(rejection, 4),
            "balanced": round((recall + rejection) / 2, 4),
        }
    result["counts"] = {"in": len(inside), "in_gold_top1": len(gold), "out": len(off)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="lab-ja,lab-en,squad,jaquad")
    parser.add_argument("--limit", type=int, default=400, help="questions per side (in / out)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--lang", default="en", choices=[lang.value for lang in Language], help="workspace profile")
    parser.add_argument("--thresholds", default="", help="min_dense_score values to sweep (IDF gate)")
    args = parser.parse_args()
    lang = Language(args.lang)
    thresholds = [float(t) for t in args.thresholds.split(",") if t]

    builders = {
        "lab-ja": lambda root: lab_cases("ja", root, args.limit),
        "lab-en": lambda root: lab_cases("en", root, args.limit),
        "squad": lambda root: squad_like_cases(
            DATA / "squad-v2-dev" / "dev-v2.0.json", ImportFormat.SQUAD, root, args.limit, lang
        ),
        "jaquad": lambda root: squad_like_cases(DATA / "jaquad-dev", ImportFormat.JAQUAD, root, args.limit, lang),
    }
    results = {}
    for name in args.sets.split(","):
        started = time.perf_counter()
        workspace, inside, outside = builders[name](Path(tempfile.mkdtemp(prefix=f"infuse-gate-{name}-")))
        results[name] = measure(workspace, inside, outside, thresholds)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(name, json.dumps(results[name]), flush=True)

    created = Workspace.open(tempfile.mkdtemp(), create=True, lang=lang).settings
    settings = created.rag
    summary = {
        "lang": lang.value,
        "embedder": created.embedder.model,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "min_dense_score": settings.min_dense_score,
        "min_keyword_coverage": settings.min_keyword_coverage,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "relevance_gate" if lang is Language.EN else f"relevance_gate-{lang.value}"
    (args.out / f"{stem}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    lines = [
        "# RAG relevance gate: plain vs IDF-weighted keyword coverage",
        "",
        f"{summary['date']} · {summary['machine']} · embedder {summary['embedder']} (--lang {summary['lang']}) · "
        f"gate: dense >= {settings.min_dense_score} or coverage >= "
        f"{settings.min_keyword_coverage}. Recall: the gold top-1 passage passes; rejection: an off-topic top-1 is refused.",
        "",
        "| set | gold top-1 / in | out | plain recall | plain rejection | IDF recall | IDF rejection |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['counts']['in_gold_top1']} / {r['counts']['in']} | {r['counts']['out']} | "
            f"{r['plain']['recall']:.1%} | {r['plain']['rejection']:.1%} | {r['idf']['recall']:.1%} | {r['idf']['rejection']:.1%} |"
            for name, r in results.items()
        ),
        "",
    ]
    markdown = "\n".join(lines)
    if thresholds:
        lines += [
            f"min_dense_score sweep ({created.embedder.model}, IDF gate), recall / rejection / balanced:",
            "",
            "| set | " + " | ".join(str(t) for t in thresholds) + " |",
            "|---|" + "---|" * len(thresholds),
            *(
                f"| {name} | "
                + " | ".join(
                    f"{r[f'idf@{t}']['recall']:.1%} / {r[f'idf@{t}']['rejection']:.1%} / {r[f'idf@{t}']['balanced']:.3f}"
                    for t in thresholds
                )
                + " |"
                for name, r in results.items()
            ),
            "",
        ]
        markdown = "\n".join(lines)
    (args.out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    main()
