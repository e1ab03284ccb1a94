"""The transformers backend on a tiny random-weight Llama: generation, stop strings, streaming,
log-likelihoods (checked against a plain forward pass), adapters and clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from infuse.config import ModelBackendKind, ModelSettings
from infuse.models import GenerationConfig, LoglikelihoodRequest, ModelError, load_model
from infuse.models.base import PLAIN_TURN_STOPS, FinishReason, plain_chat_prompt
from infuse.models.transformers_backend import TransformersModel


@pytest.fixture(scope="module")
def model(tiny_llama_dir: str) -> TransformersModel:
    return TransformersModel.load(tiny_llama_dir)


def test_generation_respects_max_new_tokens(model: TransformersModel) -> None:
    result = model.generate("The quick brown", GenerationConfig(max_new_tokens=7))
    assert result.completion_tokens == 7 and result.finish_reason is FinishReason.LENGTH
    assert result.prompt_tokens == len(model.tokenizer("The quick brown")["input_ids"])


def test_greedy_generation_is_deterministic_and_streams_the_same_text(model: TransformersModel) -> None:
    config = GenerationConfig(max_new_tokens=12)
    first = model.generate("API keys are", config)
    stream = model.stream("API keys are", config)
    deltas = list(stream)
    assert "".join(deltas) == first.text == stream.result.text
    assert len(deltas) > 1


def test_stop_string_cuts_the_text(model: TransformersModel) -> None:
    free = model.generate("Backups are kept", GenerationConfig(max_new_tokens=20)).text
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    assert stop.strip(), f"pick a visible stop string from {free!r}"
    stopped = model.generate("Backups are kept", GenerationConfig(max_new_tokens=20, stop=(stop,)))
    assert stopped.text == free[: free.find(stop)] and stopped.finish_reason is FinishReason.STOP
    streamed = "".join(model.stream("Backups are kept", GenerationConfig(max_new_tokens=20, stop=(stop,))))
    assert streamed == stopped.text


def test_sampling_is_reproducible_with_a_seed(model: TransformersModel) -> None:
    config = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=3)
    assert model.generate("The", config).text == model.generate("The", config).text


def _forward_logprob_sum(model: TransformersModel, context: str, continuation: str) -> float:
    context_ids = model.tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = model.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([whole])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return float(sum(logprobs[i - 1, whole[i]] for i in range(len(context_ids), len(whole))))


def test_loglikelihood_equals_sum_of_token_logprobs(model: TransformersModel) -> None:
    pairs = [("The quick brown", " fox jumps"), ("Backups are kept for", " 35 days."), ("API", " keys")]
    scores = model.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    for (context, continuation), score in zip(pairs, scores):
        assert score.logprob == pytest.approx(_forward_logprob_sum(model, context, continuation), abs=1e-4)
        assert score.n_tokens >= 1 and score.logprob < 0


def test_loglikelihood_batching_does_not_change_results(model: TransformersModel) -> None:
    requests = [
        LoglikelihoodRequest("The quick brown", " fox"),
        LoglikelihoodRequest("A much longer context about backups and keys", " rotate"),
    ]
    batched = model.loglikelihood(requests, batch_size=2)
    single = [model.loglikelihood([r], batch_size=1)[0] for r in requests]
    assert [b.logprob for b in batched] == pytest.approx([s.logprob for s in single], abs=1e-4)


def test_choices_sharing_a_context_score_as_if_each_were_alone(tiny_llama_dir: str, tmp_path: Path) -> None:
    """Multiple-choice options share their context's KV cache: same numbers as one sequence each,
    with continuations of different lengths (one token, several, none) and through an adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    context = "Question: how long are backups kept for in the archive of the company?\nAnswer:"
    choices = [" 35 days", " a week", " forever and ever, until the heat death of the universe", " x", ""]
    for loaded in (
        TransformersModel.load(tiny_llama_dir),
        TransformersModel.load(tiny_llama_dir, adapters=[str(tmp_path / "adapter")]),
    ):
        shared = loaded.loglikelihood([LoglikelihoodRequest(context, c) for c in choices])
        alone = [loaded.loglikelihood([LoglikelihoodRequest(context, c)])[0] for c in choices]
        assert [s.n_tokens for s in shared] == [a.n_tokens for a in alone]
        assert [s.logprob for s in shared] == pytest.approx([a.logprob for a in alone], abs=1e-4)
        assert [s.is_greedy for s in shared] == [a.is_greedy for a in alone]
        for choice, score in zip(choices[:-1], shared):
            assert score.logprob == pytest.approx(_forward_logprob_sum(loaded, context, choice), abs=1e-4)
        assert shared[-1].n_tokens == 0 and shared[-1].logprob == 0.0


def test_trailing_space_moves_to_the_continuation(model: TransformersModel) -> None:
    a = model.loglikelihood([LoglikelihoodRequest("The quick brown ", "fox")])[0]
    b = model.loglikelihood([LoglikelihoodRequest("The quick brown", " fox")])[0]
    assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_greedy_continuation_is_greedy(model: TransformersModel) -> None:
    context = "The quick brown"
    continuation = model.generate(context, GenerationConfig(max_new_tokens=3)).text
    context_ids = model.tokenizer(context, add_special_tokens=False)["input_ids"]
    whole_ids = model.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    assert whole_ids[: len(context_ids)] == context_ids, "the continuation must not merge into the context"
    assert model.loglikelihood([LoglikelihoodRequest(context, continuation)])[0].is_greedy
    assert not model.loglikelihood([LoglikelihoodRequest(context, " zzz qqq")])[0].is_greedy


def test_token_counting(model: TransformersModel) -> None:
    assert model.count_tokens("The quick brown fox") == len(
        model.tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    )
    assert model.count_tokens("") == 0


def test_chat_template_or_plain_prompt(tiny_llama_dir: str, tiny_chat_llama_dir: str) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    plain = TransformersModel.load(tiny_llama_dir)
    assert plain.render(messages) == plain_chat_prompt(messages) and plain.render(messages).endswith("Assistant:")
    chat = TransformersModel.load(tiny_chat_llama_dir)
    assert chat.render(messages) == "<s>system\nBe brief.</s><s>user\nHi</s><s>assistant\n"


def test_a_plain_chat_prompt_stops_where_the_next_turn_would_start(
    tiny_llama_dir: str, tiny_chat_llama_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base model continues "Assistant: ..." with a "User:" line of its own; that ends the answer."""
    seen: list[tuple[str, ...]] = []

    def record(
        self: TransformersModel, prompt_ids: list[int], config: GenerationConfig, state: object
    ) -> Iterator[str]:
        seen.append(config.stop)
        yield "ok"

    monkeypatch.setattr(TransformersModel, "_decode_loop", record)
    messages = [{"role": "user", "content": "Hi"}]
    TransformersModel.load(tiny_llama_dir).generate(messages, GenerationConfig(stop=("###",)))
    TransformersModel.load(tiny_llama_dir).generate("Hi", GenerationConfig(stop=("###",)))
    TransformersModel.load(tiny_chat_llama_dir).generate(messages, GenerationConfig(stop=("###",)))
    assert seen == [("###", *PLAIN_TURN_STOPS), ("###",), ("###",)]
    assert "\nUser:" in PLAIN_TURN_STOPS


def test_prompt_longer_than_the_context_is_a_clear_error(model: TransformersModel) -> None:
    with pytest.raises(ModelError, match="reads at most 1024"):
        model.generate("word " * 2000)


def test_lora_adapter_is_applied(tiny_llama_dir: str, tmp_path: Path, model: TransformersModel) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    inputs = torch.tensor([model.tokenizer("API keys are rotated")["input_ids"]])
    with torch.no_grad():
        expected = peft_model(input_ids=inputs).logits

    adapted = TransformersModel.load(tiny_llama_dir, adapters=[str(tmp_path / "adapter")])
    with torch.no_grad():
        got = adapted.model(input_ids=inputs).logits
        base_logits = model.model(input_ids=inputs).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base_logits, atol=1e-3)
    assert adapted.name.endswith("+adapter")


def test_model_folder_without_tokenizer_is_a_clear_error(tiny_llama_dir: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_llama_dir).save_pretrained(tmp_path / "weights-only")
    with pytest.raises(ModelError, match="tokenizer"):
        TransformersModel.load(str(tmp_path / "weights-only"))


def test_missing_adapter_is_a_clear_error(tiny_llama_dir: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="adapter"):
        TransformersModel.load(tiny_llama_dir, adapters=[str(tmp_path / "no-such-adapter")])


def test_load_model_needs_a_name_and_a_server_url() -> None:
    with pytest.raises(ModelError, match="--model"):
        load_model(ModelSettings())
    with pytest.raises(ModelError, match="base_url"):
        load_model(ModelSettings(name="m", backend=ModelBackendKind.OPENAI))
