"""Model-written datasets at real scale: --limit-chunks, max_new_tokens, concurrent requests, a
build that resumes after kill -9, and the quality gate (EN and JA) with rejections counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import kill_9_when
from infuse.config import ModelSettings
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetError, DatasetKind, partial_folder
from infuse.tuning.generators import ModelWriter, QAPair, WriterChoice, choose_writer
from infuse.tuning.quality import QualityGate
from infuse.workspace import Workspace
from tuning_fakes import EchoWriterModel


def _texts(dataset) -> list[str]:
    return [json.loads(line)["text"] for line in dataset.rows_path.read_text(encoding="utf-8").splitlines()]


def test_the_writer_honours_max_new_tokens(lab_ws: Workspace, tiny_chat_llama_dir: str) -> None:
    chunks = list(lab_ws.knowledge_snapshot().iter_chunks())
    writer = choose_writer(chunks, WriterChoice.MODEL, ModelSettings(name=tiny_chat_llama_dir, max_new_tokens=7))
    assert isinstance(writer, ModelWriter) and writer.max_new_tokens == 7  # was a fixed 512
    assert writer._generate("Say something.", 0).completion_tokens <= 7
    # --max-new-tokens overrides [model]; a random model's replies are all cut off at 5 tokens,
    # so none is used and the error says why.
    request = BuildRequest(
        DatasetKind.PARAPHRASE,
        writer=WriterChoice.MODEL,
        model=tiny_chat_llama_dir,
        max_new_tokens=5,
        limit_chunks=1,
        paraphrases=1,
        include_original=False,
    )
    with pytest.raises(DatasetError, match=r"produced no rows from 1 chunks.*rejected: cut_off 2"):
        build_dataset(lab_ws, request)


def test_limit_chunks_and_concurrent_requests_give_the_same_rows(lab_ws: Workspace) -> None:
    slow = EchoWriterModel(delay=0.2)
    started = time.perf_counter()
    concurrent = build_dataset(
        lab_ws,
        BuildRequest(DatasetKind.PARAPHRASE, name="fast", paraphrases=2, limit_chunks=4, concurrency=4),
        ModelWriter(slow),
    )
    seconds = time.perf_counter() - started
    assert slow.max_active >= 3 and len(slow.calls) == 8
    assert seconds < 8 * 0.2 * 0.75  # calls overlapped (sequential: 1.6 s of sleeping alone)
    sequential = build_dataset(
        lab_ws,
        BuildRequest(DatasetKind.PARAPHRASE, name="slow", paraphrases=2, limit_chunks=4),
        ModelWriter(EchoWriterModel()),
    )
    assert _texts(concurrent) == _texts(sequential)  # same rows, same order
    rows = [json.loads(line) for line in concurrent.rows_path.read_text(encoding="utf-8").splitlines()]
    assert len({r["chunk_id"] for r in rows}) == 4 and len(rows) == 4 * 3
    assert concurrent.manifest.parameters["limit_chunks"] == 4 and concurrent.manifest.parameters["concurrency"] == 4
    assert not partial_folder(lab_ws.datasets_dir, "fast").exists()  # progress is dropped once saved


def test_the_quality_gate_rejects_garbage_and_counts_each_reason(lab_ws: Workspace) -> None:
    writer = ModelWriter(EchoWriterModel(garbage=True))
    paraphrases = build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, paraphrases=2, limit_chunks=3), writer)
    texts = _texts(paraphrases)
    assert not any("about a person and some events" in t for t in texts)
    assert paraphrases.manifest.counts["rejected_too_short"] == 3  # one garbage rewrite per chunk...
    assert paraphrases.manifest.counts["chunks_with_fewer_paraphrases"] == 0  # ...retried with another seed
    assert len(texts) == 3 * 3
    qa = build_dataset(lab_ws, BuildRequest(DatasetKind.QA, questions_per_chunk=2, limit_chunks=3), writer)
    answers = [json.loads(line)["answer"] for line in qa.rows_path.read_text(encoding="utf-8").splitlines()]
    assert "Olympus City" not in answers and len(answers) == 3
    assert qa.manifest.counts["rejected_answer_not_in_chunk"] == 3
    ungated = build_dataset(
        lab_ws,
        BuildRequest(DatasetKind.QA, name="ungated", questions_per_chunk=2, limit_chunks=3, quality_gate=False),
        writer,
    )
    assert ungated.manifest.rows == 6  # the gate is what removed them


@pytest.fixture
def en_ja_chunks(workspace: Workspace, corpus: Path) -> dict[str, object]:
    assert workspace.ingest([corpus]).ok
    return {Path(c.source_path).name: c for c in workspace.knowledge_snapshot().iter_chunks()}


def test_quality_gate_on_english_and_japanese(en_ja_chunks: dict) -> None:
    gate = QualityGate(list(en_ja_chunks.values()))
    backups, vacation = en_ja_chunks["backups.txt"], en_ja_chunks["vacation_ja.txt"]
    assert (
        gate.paraphrase_problem(backups, "Backups of the databases are made every 6 hours and kept for 35 days.")
        is None
    )
    assert (
        gate.paraphrase_problem(backups, "Backups of the databases are made regularly and kept for quite a while.")
        == "missing_key_terms"
    )
    assert (
        gate.paraphrase_problem(backups, "データベースは6時間ごとにバックアップされ、35日間保存されます。")
        == "wrong_language"
    )
    assert gate.paraphrase_problem(backups, "Backups.") == "too_short"
    assert (
        gate.paraphrase_problem(
            vacation, "入社6か月後に年次有給休暇が10日付与されます。また、夏季休暇は3日取得できます。"
        )
        is None
    )
    assert (
        gate.paraphrase_problem(vacation, "休暇についての社内の決まりが書かれている文章です。") == "missing_key_terms"
    )
    assert (
        gate.paraphrase_problem(vacation, "Ten days of paid leave are granted after six months of work.")
        == "wrong_language"
    )
    assert gate.qa_problem(backups, QAPair("How long are backups kept?", "35 days")) is None
    assert gate.qa_problem(backups, QAPair("How long are backups kept?", "42 days")) == "answer_not_in_chunk"
    assert gate.qa_problem(vacation, QAPair("夏季休暇は何日取得できますか？", "3日")) is None
    assert gate.qa_problem(vacation, QAPair("How many days of summer leave?", "3日")) == "wrong_language"
    assert gate.qa_problem(vacation, QAPair("夏季休暇は何日取得できますか？", "5日")) == "answer_not_in_chunk"


BUILD_SCRIPT = """
import sys
from pathlib import Path
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.generators import ModelWriter
from infuse.workspace import Workspace
from tuning_fakes import EchoWriterModel

model = EchoWriterModel(delay=float(sys.argv[2]), log_path=Path(sys.argv[3]))
build_dataset(Workspace.open(sys.argv[1]), BuildRequest(DatasetKind.PARAPHRASE, paraphrases=2), ModelWriter(model))
"""


def test_a_build_killed_with_kill_9_resumes_where_it_stopped(lab_ws: Workspace, tmp_path: Path) -> None:
    chunks = list(lab_ws.knowledge_snapshot().iter_chunks())
    records = partial_folder(lab_ws.datasets_dir, "paraphrase") / "chunks.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    victim = subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(lab_ws.path), "0.25", str(tmp_path / "killed.log")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_9_when(
        victim,
        lambda: records.is_file() and len(records.read_text(encoding="utf-8").splitlines()) >= 3,
        what="the dataset build",
    )
    done = len(records.read_text(encoding="utf-8").splitlines())
    assert 3 <= done < len(chunks), "kill earlier: the build finished"
    assert not (lab_ws.datasets_dir / "paraphrase").exists()  # no half dataset

    again = EchoWriterModel()
    dataset = build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, paraphrases=2), ModelWriter(again))
    assert dataset.manifest.counts["chunks_resumed"] == done
    assert len(again.calls) == 2 * (len(chunks) - done)  # only the chunks not done yet were written
    assert not records.parent.exists()
    reference = build_dataset(
        lab_ws, BuildRequest(DatasetKind.PARAPHRASE, name="reference", paraphrases=2), ModelWriter(EchoWriterModel())
    )
    assert _texts(dataset) == _texts(reference)  # nothing lost, nothing twice


def test_local_batched_generation_matches_one_at_a_time(tiny_chat_llama_dir: str) -> None:
    from infuse.models.base import GenerationConfig
    from infuse.models.transformers_backend import TransformersModel
    from infuse.tuning.writing import BatchedModel

    model = TransformersModel.load(tiny_chat_llama_dir, device="cpu")
    prompts = [
        [{"role": "user", "content": "Rewrite: Alda Ashby was born in Gorsk in 1990."}],
        [{"role": "user", "content": "Hi"}],
        "A plain prompt of a different length than the others",
    ]
    for configs in (
        [GenerationConfig(max_new_tokens=n) for n in (12, 5, 9)],  # greedy, different budgets
        [GenerationConfig(max_new_tokens=10, temperature=0.7, seed=s) for s in (1, 2, 3)],  # seeded sampling
    ):
        batch = model.generate_batch(prompts, configs)
        single = [model.generate(p, c) for p, c in zip(prompts, configs)]
        assert [(g.text, g.finish_reason, g.completion_tokens) for g in batch] == [
            (g.text, g.finish_reason, g.completion_tokens) for g in single
        ]
    # Requests made at once from several threads are decoded together.
    from concurrent.futures import ThreadPoolExecutor

    configs = [GenerationConfig(max_new_tokens=6, seed=i) for i in range(6)]
    with BatchedModel(model, max_batch=3, gather_seconds=0.2) as batched:
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda i: batched.generate(prompts[i % 3], configs[i]), range(6)))
    assert max(batched.batch_sizes) >= 2 and sum(batched.batch_sizes) == 6
    assert [g.text for g in got] == [model.generate(prompts[i % 3], configs[i]).text for i in range(6)]


def test_a_local_model_writes_in_batches_with_concurrency(lab_ws: Workspace, tiny_chat_llama_dir: str) -> None:
    from infuse.models.transformers_backend import TransformersModel

    class Recording(TransformersModel):
        sizes: list[int] = []

        def generate_batch(self, prompts, configs):
            self.sizes.append(len(prompts))
            return super().generate_batch(prompts, configs)

    base = TransformersModel.load(tiny_chat_llama_dir, device="cpu")
    model = Recording(base.model, base.tokenizer, base.name, base.device)
    writer = ModelWriter(model, max_new_tokens=4)
    request = BuildRequest(DatasetKind.PARAPHRASE, paraphrases=1, limit_chunks=4, concurrency=4, include_original=False)
    with pytest.raises(DatasetError, match="rejected: cut_off 8"):  # a random model never stops in 4 tokens
        build_dataset(lab_ws, request, writer)
    assert sum(model.sizes) == 8 and max(model.sizes) >= 2
    assert writer.model is model  # the batching wrapper is gone after the build


def test_english_and_japanese_chunks_written_concurrently_pass_the_gate(workspace: Workspace, corpus: Path) -> None:
    assert workspace.ingest([corpus]).ok
    chunks = list(workspace.knowledge_snapshot().iter_chunks())
    model = EchoWriterModel(delay=0.05)
    request = BuildRequest(DatasetKind.PARAPHRASE, paraphrases=3, concurrency=4)
    dataset = build_dataset(workspace, request, ModelWriter(model))
    rows = [json.loads(line) for line in dataset.rows_path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 * len(chunks) and model.max_active >= 2  # every rewrite kept the key terms
    assert not any(k.startswith("rejected_") for k in dataset.manifest.counts)
    assert any("年次有給休暇" in r["text"] and r["variant"] > 0 for r in rows)


def test_a_batch_with_a_missing_answer_or_a_closed_batcher_raises_instead_of_hanging(tmp_path: Path) -> None:
    from typing import Any

    from infuse.tuning.writing import BatchedModel

    class ShortBatches:  # a backend whose generate_batch drops the last answer
        name, context_length = "short", 512

        def generate_batch(self, prompts: Any, configs: Any) -> list[Any]:
            return [object() for _ in prompts][:-1]

    batcher = BatchedModel(ShortBatches(), max_batch=4)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="returned 0 results for 1 prompts"):
        batcher.generate("a prompt")
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.generate("after close")
