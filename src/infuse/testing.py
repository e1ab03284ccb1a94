"""Small random-weight models built from a config, for tests and benchmarks that must run offline.

>>> path = build_random_llama(Path("/tmp/tiny-llama"), chat_template=True)  # doctest: +SKIP
>>> TransformersModel.load(path)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.models import base as model_api

if TYPE_CHECKING:
    from infuse.lab.train import LabTrainConfig

TOKENIZER_TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. API keys are rotated every 90 days.",
    "Backups are kept for 35 days. The on-call engineer acknowledges pages within 5 minutes.",
    "年次有給休暇は入社6か月後に10日付与されます。リモートワークは週3日まで認められています。",
    "Question: Answer: System: User: Assistant: [1] [2] [3] passages sources cite",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_random_llama(
    root: Path,
    *,
    chat_template: bool = False,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 400,
    max_positions: int = 1024,
    training_text: list[str] | None = None,
) -> str:
    """Save a random-weight ``LlamaForCausalLM`` plus a byte-level BPE tokenizer to ``root``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator((training_text or TOKENIZER_TRAINING_TEXT) * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")  # type: ignore[no-untyped-call]  # unannotated in transformers
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


class ScriptedModel:
    """A :class:`~infuse.models.base.LanguageModel` that answers every prompt with ``reply`` and
    keeps the prompts it was given: RAG and serving logic get millisecond tests without weights.

    >>> model = ScriptedModel("Backups are kept for 35 days [1].")
    >>> model.generate("When?").text
    'Backups are kept for 35 days [1].'
    """

    def __init__(self, reply: str, name: str = "scripted", context_length: int | None = None) -> None:
        self.reply = reply
        self.name = name
        self.context_length = context_length
        self.prompts: list[object] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _generation(self, prompt: object, text: str) -> model_api.Generation:
        return model_api.Generation(
            text, model_api.FinishReason.STOP, self.count_tokens(str(prompt)), self.count_tokens(text), 0.0
        )

    def generate(
        self, prompt: model_api.Prompt, config: model_api.GenerationConfig = model_api.GenerationConfig()
    ) -> model_api.Generation:
        self.prompts.append(prompt)
        return self._generation(prompt, self.reply)

    def stream(
        self, prompt: model_api.Prompt, config: model_api.GenerationConfig = model_api.GenerationConfig()
    ) -> model_api.GenerationStream:
        self.prompts.append(prompt)
        words = self.reply.split(" ")
        deltas = iter([w if i == 0 else " " + w for i, w in enumerate(words)])
        return model_api.GenerationStream(deltas, lambda text: self._generation(prompt, text))

    def loglikelihood(self, requests: Sequence[model_api.LoglikelihoodRequest]) -> list[model_api.Loglikelihood]:
        raise NotImplementedError("ScriptedModel only generates; use a tiny random model for scoring tests")


def tiny_lab_config(**overrides: Any) -> LabTrainConfig:
    """A lab configuration that trains in seconds (20 known people, 5 new, a 2-layer 32-wide
    model): the one place tests and the demo's tests take it from; ``overrides`` set any field."""
    from infuse.lab.train import LabTrainConfig

    tiny: dict[str, Any] = dict(
        n_known=20,
        n_new=5,
        n_known_variants=3,
        n_phantoms=40,
        d_model=32,
        n_layers=2,
        n_heads=2,
        d_ff=64,
        steps=60,
        batch_size=4,
        seq_len=128,
        lr=3e-3,
        warmup_steps=5,
        max_positions=512,
    )
    return LabTrainConfig(**{**tiny, **overrides})
