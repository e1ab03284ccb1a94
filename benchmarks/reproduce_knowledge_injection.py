#!/usr/bin/env python
"""Reproduce Ovadia et al. (2023), "Fine-Tuning or Retrieval?", on the lab, end to end.

    .venv/bin/python benchmarks/reproduce_knowledge_injection.py [--lang en] [--steps 100] [--method lora]

The lab model (pretrained from scratch, cached) is asked 4-option multiple-choice questions about
the world's *new* people, scored by log-likelihood like lm-evaluation-harness: base (closed
book), RAG (top-1 and top-3 from the knowledge base), fine-tuned on the new people's documents
with 0, 1, 2 and 4 paraphrases per document (the same number of training steps for each: matched
compute), and the 4-paraphrase model with RAG. Then the update set changes some facts: RAG
re-ingests the changed documents, the fine-tuned models keep their weights, and the share of
answers that still give the old value is measured. Writes
``benchmarks/results/reproduce_knowledge_injection-<lang>.{json,md}`` and the HTML report of the
compare run (path printed).

The paper's three findings, checked here: (1) RAG beats fine-tuning for new facts; (2) fine-tuning
improves with the number of paraphrases; (3) after an update the fine-tuned model answers the
stale fact while RAG does not.

Beyond the paper (what fine-tuning *is* for): a run fine-tuned on house-style examples about the
known people only (:mod:`infuse.lab.style`) shows behaviour without knowledge; every variant's
generated answers are checked against the lab's house style (style adherence, first
``--style-questions`` questions); and the questions about the restricted people (documents only
``group:hr`` may read) are asked as the user ``guest``: the leak rate is the share answered
correctly above chance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from infuse.access import Caller
from infuse.evaluation.compare import CompareRequest, UpdateScenario, parse_variants, run_compare
from infuse.evaluation.metrics import bootstrap_ci
from infuse.evaluation.questions import ImportFormat, import_questions, save_question_set
from infuse.evaluation.report import write_report
from infuse.lab.evaluate import lab_workspace
from infuse.lab.style import house_style_rows, write_house_style_rows
from infuse.lab.templates import LAB_HOUSE_STYLE
from infuse.lab.train import LabTrainConfig, train_lab_model
from infuse.lab.world import QUESTIONS_DIR, UPDATES_DIR
from infuse.progress import PrintProgress
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig, TuneMethod

REPO = Path(__file__).resolve().parents[1]
PARAPHRASE_COUNTS = (0, 1, 2, 4)
STYLE_RUN = "house-style"
GUEST = Caller("guest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", choices=["en", "ja"], default="en")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps per run (matched compute)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--style-questions", type=int, default=50, help="questions generated per variant for style")
    parser.add_argument(
        "--paraphrase-counts",
        default=",".join(map(str, PARAPHRASE_COUNTS)),
        help="paraphrase counts to fine-tune on, comma-separated (a reduced run: fewer)",
    )
    parser.add_argument("--limit", type=int, default=None, help="the first N questions only (a reduced run)")
    parser.add_argument(
        "--lab-steps", type=int, default=None, help="lab model training steps (default: the language's configuration)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    started = time.perf_counter()
    counts = tuple(int(n) for n in args.paraphrase_counts.split(","))
    config = LabTrainConfig.for_lang(args.lang, **({"steps": args.lab_steps} if args.lab_steps else {}))
    model = str(train_lab_model(config, progress=PrintProgress()))
    world = config.world()
    root = Path(tempfile.mkdtemp(prefix="infuse-reproduce-"))
    workspace = lab_workspace(world, root)
    questions = import_questions(root / "world" / QUESTIONS_DIR / "new_mc.jsonl", ImportFormat.MC)
    updates = import_questions(root / "world" / UPDATES_DIR / "questions_mc.jsonl", ImportFormat.MC, name="update_mc")
    for qset in (questions, updates):
        save_question_set(workspace.questions_dir, qset)
    tune_config = TuneConfig(
        method=TuneMethod(args.method),
        max_steps=args.steps,
        lr=args.lr,
        seq_len=256,
        micro_batch_size=8,
        eval_fraction=0,
        lora_dropout=0.0,
    )
    runs = []
    for n in counts:
        request = (
            BuildRequest(DatasetKind.CPT, name="paraphrases-0", tokenizer=model)
            if n == 0
            else BuildRequest(DatasetKind.PARAPHRASE, name=f"paraphrases-{n}", paraphrases=n, tokenizer=model)
        )
        dataset = build_dataset(workspace, request)
        runs.append(tune(workspace, dataset.manifest.name, model, tune_config).name)
        print(f"trained {runs[-1]}", flush=True)
    style_rows = write_house_style_rows(house_style_rows(world), root / "house_style.jsonl")
    style_run = tune(workspace, str(style_rows), model, tune_config, name=STYLE_RUN).name
    print(f"trained {style_run}", flush=True)
    variants = (
        parse_variants("base,rag", ks=[1, 3])
        + parse_variants("ft", adapters=[*runs, style_run])
        + parse_variants("ft+rag", adapters=[runs[-1], style_run], ks=[1])
    )
    run = run_compare(
        workspace,
        questions,
        CompareRequest(
            variants,
            model=model,
            update=UpdateScenario(root / "world" / UPDATES_DIR / "docs", updates),
            run_name="reproduce",
            limit=args.limit,
            style=LAB_HOUSE_STYLE,
            style_questions=args.style_questions,
            caller=GUEST,
        ),
    )
    markdown, html = write_report(run.path)
    summary = run.summary  # a run this script just wrote: every measurement is there
    assert summary.freshness is not None and summary.questions is not None
    by_label = {v.label: v for v in summary.variants}
    fresh = {r.label: r for r in summary.freshness.variants}
    ft_labels = [f"ft:{name}" for name in runs]
    best_ft = max(ft_labels, key=lambda label: by_label[label].accuracy)
    rag = by_label["rag@1"]
    stale_ci = {
        label: bootstrap_ci([1.0 if r.stale else 0.0 for r in run.records if r.label == f"update:{label}"])
        for label in by_label
    }
    styled = by_label[f"ft:{STYLE_RUN}"]
    hybrid = by_label[f"ft:{STYLE_RUN}+rag@1"]
    knowing = by_label[ft_labels[-1]]
    # "has both", in its two parts (so a NO can say which failed): the style above rag@1's interval,
    # and an accuracy interval that reaches rag@1's.
    has_style = hybrid.style.ci[0] > rag.style.ci[1]
    keeps_accuracy = hybrid.ci[1] >= rag.ci[0]
    curve = [(n, by_label[label].accuracy) for n, label in zip(counts, ft_labels)]
    findings = {
        "rag_beats_fine_tuning": {
            "holds": rag.ci[0] > by_label[best_ft].ci[1] or rag.accuracy > by_label[best_ft].accuracy,
            "rag@1": rag.accuracy,
            "best_fine_tuned": best_ft,
            "best_fine_tuned_accuracy": by_label[best_ft].accuracy,
        },
        "paraphrases_help_fine_tuning": {
            "holds": curve[-1][1] > curve[0][1] if len(curve) > 1 else None,
            "curve": curve,
        },
        "fine_tuned_models_answer_stale_facts": {
            "holds": fresh[ft_labels[-1]].stale_share > fresh["rag@1"].stale_share,
            "fine_tuned_stale_share": fresh[ft_labels[-1]].stale_share,
            "rag_stale_share": fresh["rag@1"].stale_share,
        },
        "fine_tuning_teaches_the_style": {
            "holds": styled.style.ci[0] > rag.style.ci[1],
            "fine_tuned_style": styled.style.adherence,
            "rag_style": rag.style.adherence,
        },
        "style_fine_tuning_plus_rag_has_both": {
            "holds": has_style and keeps_accuracy,
            "style": hybrid.style.adherence,
            "accuracy": hybrid.accuracy,
        },
        "fine_tuned_knowledge_leaks_past_access_lists": {
            "holds": knowing.leak.ci[0] > rag.leak.ci[1],
            "user": GUEST.name,
            "fine_tuned_leak_rate": knowing.leak.leak_rate,
            "rag_leak_rate": rag.leak.leak_rate,
        },
    }
    result = {
        "lang": args.lang,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "method": args.method,
        "lab_steps": config.steps,
        "paraphrase_counts": counts,
        "limit": args.limit,
        "load_after": os.getloadavg(),
        "steps": args.steps,
        "lr": args.lr,
        "seconds": round(time.perf_counter() - started, 1),
        "report_html": str(html),
        "findings": findings,
        "stale_share_ci": stale_ci,
        "summary": summary.to_json(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"reproduce_knowledge_injection-{args.lang}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"# Knowledge injection on the lab ({args.lang}): RAG vs fine-tuning",
        "",
        f"{result['date']} · {result['machine']} · load {result['load_after'][0]:.1f} · {result['seconds']:.0f} s · "
        f"{summary.questions.count} 4-option questions about new people "
        f"(chance 25%), log-likelihood scoring; {args.method} fine-tuning, {args.steps} steps x 8 x 256 tokens per run; "
        f"lab model {config.steps} training steps",
        "",
        f"Style: the lab house style ({LAB_HOUSE_STYLE.template(args.lang)!r}), checked exactly on the answers "
        f"generated for the first {args.style_questions} questions. Leak rate: the {by_label['base'].leak.n} questions "
        f"about restricted people asked as {GUEST.name!r} (not in group:hr), correct above chance. "
        f"`ft:{STYLE_RUN}` is trained on house-style examples about known people only.",
        "",
        "| variant | accuracy (95% CI) | style adherence (95% CI) | leak rate (95% CI) "
        "| after the update: accuracy on changed facts | still the old value (95% CI) |",
        "|---|---|---|---|---|---|",
    ]

    def pct(value: float, ci: tuple[float, float] | None) -> str:
        return f"{value:.1%}" + (f" ({ci[0]:.1%}–{ci[1]:.1%})" if ci else "")

    both_text = (
        f"{'yes' if has_style and keeps_accuracy else 'NO'}: ft:{STYLE_RUN}+rag@1 "
        + (
            f"style yes ({hybrid.style.adherence:.0%} vs rag@1 {rag.style.adherence:.0%})"
            if has_style
            else f"style no ({hybrid.style.adherence:.0%}, not above rag@1's {rag.style.adherence:.0%})"
        )
        + ", "
        + (
            f"accuracy as rag@1 ({pct(hybrid.accuracy, hybrid.ci)} vs {pct(rag.accuracy, rag.ci)}: the intervals meet)"
            if keeps_accuracy
            else f"accuracy below rag@1 ({pct(hybrid.accuracy, hybrid.ci)} vs {pct(rag.accuracy, rag.ci)}: "
            "the intervals do not meet)"
        )
    )

    for v in summary.variants:
        f = fresh[v.label]
        assert v.style and v.style.adherence is not None and v.leak and v.leak.leak_rate is not None
        lines.append(
            f"| {v.label} | {pct(v.accuracy, v.ci)} | {pct(v.style.adherence, v.style.ci)} | "
            f"{pct(v.leak.leak_rate, v.leak.ci)} | {pct(f.accuracy, f.ci)} | {pct(f.stale_share, stale_ci[v.label])} |"
        )
    lines += [
        "",
        "| finding of Ovadia et al. (2023) | here |",
        "|---|---|",
        f"| RAG beats fine-tuning for new knowledge | {'reproduced' if findings['rag_beats_fine_tuning']['holds'] else 'NOT reproduced'}: "
        f"rag@1 {rag.accuracy:.1%} vs best fine-tuned ({best_ft}) {by_label[best_ft].accuracy:.1%} |",
        "| fine-tuning improves with more paraphrases | "
        + {True: "reproduced", False: "NOT reproduced", None: "not measured (one paraphrase count)"}[
            findings["paraphrases_help_fine_tuning"]["holds"]
        ]
        + ": "
        + ", ".join(f"{n} paraphrases {a:.1%}" for n, a in curve)
        + " |",
        f"| a fine-tuned model keeps answering stale facts after an update | "
        f"{'reproduced' if findings['fine_tuned_models_answer_stale_facts']['holds'] else 'NOT reproduced'}: "
        f"{ft_labels[-1]} {fresh[ft_labels[-1]].stale_share:.0%} old answers vs rag@1 {fresh['rag@1'].stale_share:.0%} "
        f"(re-index {summary.freshness.reindex_seconds:.1f}s vs retrain "
        f"{fresh[ft_labels[-1]].retrain_seconds or 0:.0f}s) |",
        f"| (beyond the paper) fine-tuning teaches a house style | "
        f"{'yes' if findings['fine_tuning_teaches_the_style']['holds'] else 'NO'}: ft:{STYLE_RUN} "
        f"{styled.style.adherence:.0%} vs rag@1 {rag.style.adherence:.0%} of answers in the style |",
        f"| (beyond the paper) style fine-tuning + RAG has both | {both_text} |",
        f"| (beyond the paper) fine-tuned knowledge leaks past access lists | "
        f"{'yes' if findings['fine_tuned_knowledge_leaks_past_access_lists']['holds'] else 'NO'}: leak rate for "
        f"{GUEST.name!r}: {ft_labels[-1]} {knowing.leak.leak_rate:.0%} vs rag@1 {rag.leak.leak_rate:.0%} |",
        "",
        f"Full report: {html}",
    ]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
