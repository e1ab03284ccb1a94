"""Rows -> token ids with a loss mask -> packed training rows with per-document position ids.

Packing instead of padding: examples are laid end to end in rows of ``seq_len`` tokens; position
ids restart at 0 for each example and :func:`packed_attention_mask` keeps examples from seeing
each other, so a packed row trains exactly like its examples would separately, without the
compute padding wastes.

>>> example = encode_row({"messages": [{"role": "user", "content": "Hi"},
...                                    {"role": "assistant", "content": "Hello"}]}, tokenizer)  # doctest: +SKIP
>>> rows = pack_examples([example], seq_len=256, pad_id=0)                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infuse.models.base import ChatMessage, plain_chat_prompt
from infuse.tuning.datasets import DatasetError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training example: token ids and, per token, whether it is predicted (loss) or context."""

    ids: list[int]
    target: list[bool]

    @property
    def n_targets(self) -> int:
        return sum(self.target[1:])


@dataclass(frozen=True)
class PackedRow:
    input_ids: list[int]
    position_ids: list[int]
    labels: list[int]  # shifted: labels[t] is the token at t + 1 when it is a target, else IGNORE


def _chat_messages(messages: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    """Row messages as :class:`ChatMessage` (:func:`infuse.tuning.datasets.row_format` checked the
    role and content); the chat template gets the rows' own dicts, with any extra fields."""
    return [ChatMessage(role=m["role"], content=m["content"]) for m in messages]


def _render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=generation_prompt, tokenize=False
        )
        assert isinstance(rendered, str)  # tokenize=False returns the text
        return rendered
    if generation_prompt:
        return plain_chat_prompt(_chat_messages(messages))
    *context, last = messages
    reply: str = last["content"]
    return (
        (plain_chat_prompt(_chat_messages(context)) if context else "Assistant:")
        + " "
        + reply
        + (tokenizer.eos_token or "")
    )


def _chat_spans(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant replies in it."""
    messages = row["messages"]
    text = _render(tokenizer, messages, generation_prompt=False) if messages[-1]["role"] == "assistant" else ""
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not through.startswith(before) or not text.startswith(through):
            raise DatasetError(
                "the tokenizer's chat template does not render a conversation as a prefix of its continuation, "
                "so the assistant replies cannot be located; use text rows or a model with a standard chat template"
            )
        spans.append((len(before), len(through)))
    return text, spans


def encode_row(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> Example:
    """Token ids and loss mask of one dataset row (see :mod:`infuse.tuning.datasets` for formats).

    Text rows: ``[BOS] text [EOS]`` (as the row's ``bos``/``eos`` say), every token a target.
    Chat rows: rendered with the tokenizer's chat template (the plain ``User:``/``Assistant:``
    format without one), targets are the tokens of the assistant replies (and what the template
    closes them with, e.g. the end-of-turn token).
    """
    if "text" in row:
        ids = list(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
        if row.get("bos", True) and tokenizer.bos_token_id is not None:
            ids.insert(0, tokenizer.bos_token_id)
        if row.get("eos", True) and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return Example(ids, [True] * len(ids))
    text, spans = _chat_spans(row, tokenizer)
    templated = bool(getattr(tokenizer, "chat_template", None))
    encoded = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    target = [any(start < end and a <= start < b for a, b in spans) for start, end in encoded["offset_mapping"]]
    # Special tokens written by the template (e.g. </s> after a reply) have empty offsets in some
    # tokenizers: they are targets when they directly follow a target token.
    for t in range(1, len(ids)):
        start, end = encoded["offset_mapping"][t]
        if start == end and target[t - 1] and ids[t] == tokenizer.eos_token_id:
            target[t] = True
    return Example(ids, target)


def pack_examples(examples: Sequence[Example], seq_len: int, pad_id: int, window: int = 64) -> list[PackedRow]:
    """Examples packed into rows of exactly `seq_len` tokens (first fit over the `window` most
    recently opened rows, so little is left to padding and the order stays mixed).

    An example longer than `seq_len` is split into `seq_len` windows (each trained as its own
    document). Deterministic: the same examples give the same rows.
    """
    finished: list[PackedRow] = []
    open_rows: list[tuple[list[int], list[int], list[int]]] = []  # ids, positions, labels

    def close(row: tuple[list[int], list[int], list[int]]) -> None:
        ids, positions, labels = row
        gap = seq_len - len(ids)
        finished.append(PackedRow(ids + [pad_id] * gap, positions + list(range(gap)), labels + [IGNORE] * gap))

    for example in examples:
        for begin in range(0, len(example.ids), seq_len):
            piece_ids = example.ids[begin : begin + seq_len]
            piece_target = example.target[begin : begin + seq_len]
            if len(piece_ids) < 2:
                continue
            row = next((r for r in open_rows if len(r[0]) + len(piece_ids) <= seq_len), None)
            if row is None:
                if len(open_rows) == window:
                    close(open_rows.pop(0))
                row = ([], [], [])
                open_rows.append(row)
            ids, positions, labels = row
            ids.extend(piece_ids)
            positions.extend(range(len(piece_ids)))
            labels.extend(piece_ids[t + 1] if piece_target[t + 1] else IGNORE for t in range(len(piece_ids) - 1))
            labels.append(IGNORE)
            if len(ids) == seq_len:
                close(open_rows.pop(next(i for i, r in enumerate(open_rows) if r is row)))
    for row in open_rows:
        close(row)
    return finished


def packed_attention_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Block-diagonal causal mask (boolean, batch x 1 x seq x seq, True = may attend) from
    restarting position ids.

    Explicit rather than left to transformers' packed-sequence detection, which runs only without
    a KV cache and only for some attention implementations. A boolean 4D mask is passed through as
    is by transformers 5 (measured as fast as plain causal attention on CPU, where an additive
    float mask was several times slower).
    """
    import torch

    segments = (position_ids == 0).cumsum(-1)
    n = position_ids.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=position_ids.device).tril()
    return ((segments[:, :, None] == segments[:, None, :]) & causal)[:, None]


__all__ = ["Example", "IGNORE", "PackedRow", "encode_row", "pack_examples", "packed_attention_mask", "packed_logits"]


def packed_logits(model: Any, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Logits for packed rows: every document restarts its positions and attends only to itself
    (:func:`packed_attention_mask`). `model` is a causal LM (transformers or PEFT-wrapped)."""
    output = model(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=packed_attention_mask(position_ids),
        use_cache=False,
    )
    logits: torch.Tensor = output.logits
    return logits
