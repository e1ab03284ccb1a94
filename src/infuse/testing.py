"""Small random-weight models built from a config, for tests and benchmarks that must run offline.

>>> path = build_random_llama(Path("/tmp/tiny-llama"), chat_template=True)  # doctest: +SKIP
>>> TransformersModel.load(path)  # doctest: +SKIP
>>> build_random_llama_gguf(Path("/tmp/tiny-gguf"))  # the same model as a GGUF file  # doctest: +SKIP
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


def build_random_llama_gguf(root: Path, **options: Any) -> Path:
    """:func:`build_random_llama` (``options`` passed on) written as ``root/tiny-llama.gguf``, laid out
    the way llama.cpp's converter writes a llama (f32 tensors, Q/K rows permuted, the byte-level BPE
    vocabulary as a ``gpt2`` tokenizer with its merges): a GGUF base that converts, tunes and exports
    in seconds. The HF folder it came from stays in ``root/hf``."""
    import json

    import torch
    from gguf import GGUFValueType
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infuse.tuning.gguf_export import GgufType, encode, gguf_names, gguf_weights, write_gguf

    folder = build_random_llama(root / "hf", **options)
    network = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = network.config
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]]
    special = set(tokenizer.all_special_ids)
    u32, f32, text, array = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING, GGUFValueType.ARRAY
    metadata = [
        ("general.name", "tiny random llama", text, None),
        ("llama.context_length", config.max_position_embeddings, u32, None),
        ("llama.embedding_length", config.hidden_size, u32, None),
        ("llama.block_count", config.num_hidden_layers, u32, None),
        ("llama.feed_forward_length", config.intermediate_size, u32, None),
        ("llama.attention.head_count", config.num_attention_heads, u32, None),
        ("llama.attention.head_count_kv", config.num_key_value_heads, u32, None),
        ("llama.attention.layer_norm_rms_epsilon", config.rms_norm_eps, f32, None),
        ("llama.rope.freq_base", config.rope_parameters["rope_theta"], f32, None),
        ("llama.rope.dimension_count", config.hidden_size // config.num_attention_heads, u32, None),
        ("tokenizer.ggml.model", "gpt2", text, None),
        ("tokenizer.ggml.tokens", tokens, array, text),
        (
            "tokenizer.ggml.token_type",
            [3 if i in special else 1 for i in range(len(tokens))],
            array,
            GGUFValueType.INT32,
        ),
        ("tokenizer.ggml.merges", merges, array, text),
        ("tokenizer.ggml.bos_token_id", tokenizer.bos_token_id, u32, None),
        ("tokenizer.ggml.eos_token_id", tokenizer.eos_token_id, u32, None),
        ("tokenizer.ggml.padding_token_id", tokenizer.pad_token_id, u32, None),
    ]
    params = network.state_dict()
    names = {g: h for g, h in gguf_names(network).items() if not (g == "output.weight" and config.tie_word_embeddings)}
    tensors = ((g, *encode(gguf_weights("llama", g, params[h], config), GgufType.F32)) for g, h in names.items())
    path = root / "tiny-llama.gguf"
    write_gguf(path, "llama", iter(metadata), tensors, GgufType.F32)
    return path


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
