#!/usr/bin/env python
"""Multiple-choice scoring speed: infuse vs lm-evaluation-harness, same model, same questions, one run.

The default model is a random-weight Llama built from a config (hidden 256, 4 layers; offline);
pass ``--model`` for a local model folder. The questions are synthetic (English and Japanese,
4 choices of different lengths). Timed, after one warm-up pass each:

- infuse, batched: ``score_multiple_choice_batch`` (all questions' requests in one
  ``TransformersModel.loglikelihood`` call, which sorts by length and runs batches of 8);
- infuse, per question: ``score_multiple_choice`` called once per question (4 requests per call);
- lm-eval, scoring only: ``HFLM.loglikelihood`` on the same (context, continuation) requests,
  batch size 8;
- lm-eval, end to end: ``lm_eval.simple_evaluate`` on a custom task over a local JSONL file (task
  building, dataset loading, request building, scoring, metrics).

Accuracies from both sides are checked to be equal. Writes
``benchmarks/results/mc_scoring_speed.{json,md}``.

    .venv/bin/python benchmarks/mc_scoring_speed.py [--questions 200] [--model FOLDER] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    import infuse  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

TASK = "infuse_mc_speed"
PROMPT = "Question: {q}\nAnswer:"
EN_POOL = [
    "red",
    "blue",
    "seven",
    "x",
    "90",
    "API keys",
    "on-call engineer",
    "a big green house",
    "the quick brown fox",
    "backups are kept for 35 days",
    "every 6 hours",
    "the admin console",
    "within 5 minutes of the page",
    "the security team rotates them",
]
JA_POOL = ["東京", "東京都", "年次有給休暇", "週3日", "リモートワーク", "夏季休暇は3日", "上長の承認", "10日"]


def log(message: str) -> None:
    print(f"[mc-speed] {message}", file=sys.stderr, flush=True)


def questions(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        japanese = i % 4 == 3
        stem = f"質問{i}：正しいものはどれですか？" if japanese else f"Which statement about item {i} is right?"
        rows.append(
            {"question": stem, "choices": rnd.sample(JA_POOL if japanese else EN_POOL, 4), "label": rnd.randrange(4)}
        )
    return rows


def interleaved(repeats: int, runs: dict) -> tuple[dict[str, list[float]], dict]:
    """Time each function ``repeats`` times, alternating between them (so load changes on a shared
    machine hit every contender alike), after one warm-up call each."""
    results = {name: fn() for name, fn in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local model folder (default: a random Llama of hidden 256)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both sides; 0: torch's default)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import lm_eval
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from infuse.evaluation.metrics import score_multiple_choice, score_multiple_choice_batch
    from infuse.models.transformers_backend import TransformersModel
    from infuse.testing import build_random_llama

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="mc-speed-"))
    if args.model:
        model_dir, model_desc = args.model, args.model
    else:
        model_dir = build_random_llama(tmp / "model", hidden_size=256, layers=4, heads=8, vocab_size=400, seed=0)
        model_desc = "random Llama, hidden 256, 4 layers, 8 heads, byte-level BPE vocab 400"
    rows = questions(args.questions)
    items = [(PROMPT.format(q=r["question"]), r["choices"], r["label"]) for r in rows]
    n_requests = sum(len(r["choices"]) for r in rows)

    ours = TransformersModel.load(model_dir, device="cpu", dtype="float32")
    params = sum(p.numel() for p in ours.model.parameters())
    log(f"model: {model_desc} ({params / 1e6:.2f}M parameters); {len(rows)} questions, {n_requests} requests")

    lm = HFLM(pretrained=model_dir, device="cpu", dtype="float32", batch_size=args.batch_size)
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=(context, " " + choice), idx=j)
        for context, choices, _ in items
        for j, choice in enumerate(choices)
    ]
    data = tmp / "questions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / f"{TASK}.yaml").write_text(
        json.dumps(
            {
                "task": TASK,
                "dataset_path": "json",
                "test_split": "test",
                "output_type": "multiple_choice",
                "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(tmp / "hf-cache")},
                "doc_to_text": PROMPT.format(q="{{question}}"),
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "label",
                "metric_list": [
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    manager = TaskManager(include_path=str(tmp / "tasks"))

    def end_to_end():
        return lm_eval.simple_evaluate(
            model=lm, tasks=[TASK], task_manager=manager, num_fewshot=0, bootstrap_iters=0, verbosity="ERROR"
        )["results"][TASK]

    log(f"timing: warm-up, then {args.repeats} interleaved rounds")
    times, results = interleaved(
        args.repeats,
        {
            "infuse_batched": lambda: score_multiple_choice_batch(ours, items),
            "infuse_per_question": lambda: [score_multiple_choice(ours, c, ch, a) for c, ch, a in items],
            "lm_eval_loglikelihood": lambda: lm.loglikelihood(instances, disable_tqdm=True),
            "lm_eval_simple_evaluate": end_to_end,
        },
    )
    best = {name: min(values) for name, values in times.items()}
    t_batch, t_single = best["infuse_batched"], best["infuse_per_question"]
    t_lm, t_e2e = best["lm_eval_loglikelihood"], best["lm_eval_simple_evaluate"]
    times_batch, times_single = times["infuse_batched"], times["infuse_per_question"]
    times_lm, times_e2e = times["lm_eval_loglikelihood"], times["lm_eval_simple_evaluate"]
    scores, lm_results, lm_metrics = (
        results["infuse_batched"],
        results["lm_eval_loglikelihood"],
        results["lm_eval_simple_evaluate"],
    )
    log(f"best seconds: {best}")

    acc = sum(s.acc for s in scores) / len(scores)
    acc_norm = sum(s.acc_norm for s in scores) / len(scores)
    ours_lls = [ll for s in scores for ll in s.loglikelihoods]
    max_diff = max(abs(a - float(b[0])) for a, b in zip(ours_lls, lm_results))
    agree = acc == lm_metrics["acc,none"] and acc_norm == lm_metrics["acc_norm,none"] and max_diff < 1e-4

    result = {
        "benchmark": "mc_scoring_speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model": model_desc,
        "parameters": params,
        "questions": len(rows),
        "requests": n_requests,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "seconds_best": {
            "infuse_batched": round(t_batch, 4),
            "infuse_per_question": round(t_single, 4),
            "lm_eval_loglikelihood": round(t_lm, 4),
            "lm_eval_simple_evaluate": round(t_e2e, 4),
        },
        "seconds_all": {
            "infuse_batched": times_batch,
            "infuse_per_question": times_single,
            "lm_eval_loglikelihood": times_lm,
            "lm_eval_simple_evaluate": times_e2e,
        },
        "ratio_lm_eval_over_infuse": {
            "scoring_only_batched": round(t_lm / t_batch, 2),
            "scoring_only_per_question": round(t_lm / t_single, 2),
            "end_to_end_vs_batched": round(t_e2e / t_batch, 2),
        },
        "agreement": {
            "acc": acc,
            "acc_norm": acc_norm,
            "lm_eval_acc": lm_metrics["acc,none"],
            "lm_eval_acc_norm": lm_metrics["acc_norm,none"],
            "max_abs_loglikelihood_diff": max_diff,
            "agree": agree,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "lm_eval": getattr(lm_eval, "__version__", "?"),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mc_scoring_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    s, r = result["seconds_best"], result["ratio_lm_eval_over_infuse"]
    per_q = lambda t: f"{1000 * t / len(rows):.1f}"  # noqa: E731
    md = [
        "# Multiple-choice scoring speed: infuse vs lm-evaluation-harness",
        "",
        f"{result['date']}; {model_desc} ({params / 1e6:.2f}M parameters); {len(rows)} questions x 4 choices "
        f"({n_requests} log-likelihood requests); CPU, float32, {result['machine']['torch_threads']} torch threads; "
        f"load average {result['machine']['load_average_1_5_15'][0]} at the end (other work shares the machine: "
        "absolute times are noisy, the interleaved ratio less so); "
        f"lm-eval {result['machine']['lm_eval']}, batch size {args.batch_size} on both sides; best of {args.repeats} interleaved rounds after a warm-up.",
        "",
        "| what | seconds | ms / question | lm-eval time / this |",
        "|---|---:|---:|---:|",
        f"| infuse `score_multiple_choice_batch` (one call) | {s['infuse_batched']:.3f} | {per_q(t_batch)} | {r['scoring_only_batched']:.2f} |",
        f"| infuse `score_multiple_choice` per question | {s['infuse_per_question']:.3f} | {per_q(t_single)} | {r['scoring_only_per_question']:.2f} |",
        f"| lm-eval `HFLM.loglikelihood` (same requests) | {s['lm_eval_loglikelihood']:.3f} | {per_q(t_lm)} | 1.00 |",
        f"| lm-eval `simple_evaluate` (custom local task, end to end) | {s['lm_eval_simple_evaluate']:.3f} | {per_q(t_e2e)} | |",
        "",
        f"Agreement: acc {acc:.3f} vs lm-eval {lm_metrics['acc,none']:.3f}, acc_norm {acc_norm:.3f} vs "
        f"{lm_metrics['acc_norm,none']:.3f}; largest log-likelihood difference {max_diff:.2e} "
        f"({'agree' if agree else 'DISAGREE'}).",
        "",
        "Ratio > 1: lm-eval is slower than infuse for the same work. Reproduce: "
        "`.venv/bin/python benchmarks/mc_scoring_speed.py`.",
    ]
    (args.out / "mc_scoring_speed.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
