"""Local Hugging Face causal LMs (ids or folders), optionally with PEFT adapters on top.

Generation is one visible token loop with a KV cache, so streaming, stop strings and token
accounting need no threads. Log-likelihoods follow lm-evaluation-harness: context and
continuation are encoded the way its ``HFLM`` does (trailing spaces of the context move to the
continuation; the tokenizer's special tokens such as BOS unless the text starts with BOS; an
empty context is replaced by the BOS/EOS token; checked against lm-eval 0.4.13 in the tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from infuse.devices import default_device
from infuse.hf_logging import quiet_hf_progress
from infuse.models.base import (
    PLAIN_TURN_STOPS,
    ChatMessage,
    FinishReason,
    Generation,
    GenerationConfig,
    GenerationStream,
    Loglikelihood,
    LoglikelihoodRequest,
    ModelError,
    Prompt,
    plain_chat_prompt,
    template_messages,
    truncate_at_stop,
)
from infuse.models.sources import model_source

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A transformers PreTrainedModel, or a peft PeftModel around one: they share no typed base class
# that has both ``.config`` and the forward call, so the network stays untyped at this boundary.
Network: TypeAlias = Any


def pick_device(requested: str | None = None) -> torch.device:
    return torch.device(requested or default_device())


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """bf16 on GPUs that support it, fp16 on other accelerators, fp32 on CPU."""
    if requested and requested != "auto":
        try:
            return {
                "float32": torch.float32,
                "fp32": torch.float32,
                "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16,
                "float16": torch.float16,
                "fp16": torch.float16,
            }[requested]
        except KeyError as exc:
            raise ModelError(f"unknown dtype {requested!r}; use auto, float32, bfloat16 or float16") from exc
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


@dataclass
class _DecodeState:
    """What the decode loop learns as it goes, read when the stream is collected."""

    finish: FinishReason = FinishReason.LENGTH
    tokens: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)  # set by GenerationStream.cancel


@dataclass(frozen=True)
class TokenLogprob:
    """One token of a scored text: what ``/v1/completions`` returns with ``echo`` and ``logprobs``."""

    token: str
    logprob: float | None  # None for the first token (nothing predicts it)
    offset: int  # character offset of the token in the text
    top: dict[str, float]  # the most likely tokens at this position


class TransformersModel:
    """A causal LM from a Hugging Face id or local folder.

    >>> model = TransformersModel.load("Qwen/Qwen2.5-0.5B-Instruct", adapters=["runs/lora-1"])  # doctest: +SKIP
    >>> model.generate([{"role": "user", "content": "Hi"}]).text  # doctest: +SKIP
    """

    def __init__(self, model: Network, tokenizer: PreTrainedTokenizerBase, name: str, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.context_length: int | None = self.max_length
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos_ids, tokenizer.eos_token_id] if i is not None}

    @classmethod
    def load(
        cls,
        model: str,
        adapters: Sequence[str] = (),
        device: str | None = None,
        dtype: str | None = None,
        name: str | None = None,
    ) -> TransformersModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_hf_progress()
        target = pick_device(device)
        source = model_source(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(
                f"cannot load a tokenizer from {model!r} ({exc}); a model folder needs tokenizer files "
                "(tokenizer.json or tokenizer.model + tokenizer_config.json) next to the weights"
            ) from exc
        try:
            network = AutoModelForCausalLM.from_pretrained(source, dtype=pick_dtype(target, dtype))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load model {model!r}: {exc}") from exc
        network = _apply_adapters(network, adapters)
        network.to(target).eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        display = name or (Path(model).name if Path(model).expanduser().exists() else model)
        if adapters:
            display += "+" + "+".join(Path(a).name for a in adapters)
        return cls(network, tokenizer, display, target)

    # --- prompts -------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        """The text the model sees: the chat template when the tokenizer has one."""
        if isinstance(prompt, str):
            return prompt
        messages: list[ChatMessage] = list(prompt)
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                template_messages(messages), add_generation_prompt=True, tokenize=False
            )
            assert isinstance(rendered, str)  # tokenize=False returns the text
            return rendered
        return plain_chat_prompt(messages)

    def _encode_prompt(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        # A chat template writes its own special tokens; a plain prompt gets the tokenizer's BOS.
        with_special = isinstance(prompt, str) or not getattr(self.tokenizer, "chat_template", None)
        ids: list[int] = self.tokenizer(text, add_special_tokens=with_special)["input_ids"]
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- generation ----------------------------------------------------------------------------

    def generate(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> Generation:
        return self.stream(prompt, config).collect()

    def stream(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> GenerationStream:
        prompt_ids = self._encode_prompt(prompt)
        if not isinstance(prompt, str) and not getattr(self.tokenizer, "chat_template", None):
            config = replace(config, stop=(*config.stop, *PLAIN_TURN_STOPS))
        if len(prompt_ids) + 1 > self.max_length:
            raise ModelError(
                f"the prompt has {len(prompt_ids)} tokens but {self.name} reads at most {self.max_length}; "
                "retrieve fewer passages (-k) or shorten the question"
            )
        started = time.perf_counter()
        state = _DecodeState()

        def finish(text: str) -> Generation:
            return Generation(text, state.finish, len(prompt_ids), state.tokens, time.perf_counter() - started)

        return GenerationStream(self._decode_loop(prompt_ids, config, state), finish, state.cancelled)

    @torch.inference_mode()
    def _decode_loop(self, prompt_ids: list[int], config: GenerationConfig, state: _DecodeState) -> Iterator[str]:
        budget = min(config.max_new_tokens, self.max_length - len(prompt_ids))
        generator = torch.Generator(device="cpu")
        if config.seed is not None:
            generator.manual_seed(config.seed)
        inputs = torch.tensor([prompt_ids], device=self.device)
        past = None
        generated: list[int] = []
        emitted = ""
        hold = max((len(s) for s in config.stop), default=0)
        for _ in range(budget):
            if state.cancelled.is_set():  # the stream was cancelled (e.g. from the server's thread): no further step
                state.finish = FinishReason.CANCELLED
                return
            output = self.model(input_ids=inputs, cache=past, use_cache=True)
            past = output.cache
            next_id = self._pick(output.logits[0, -1].float(), config, generator)
            if next_id in self.eos_ids:
                state.finish = FinishReason.STOP
                break
            generated.append(next_id)
            state.tokens = len(generated)
            text = self._decode(generated, skip_special_tokens=True)
            cut, stopped = truncate_at_stop(text, config.stop)
            if stopped:
                state.finish = FinishReason.STOP
                if len(cut) > len(emitted):
                    yield cut[len(emitted) :]
                return
            # Hold back an incomplete character and anything that may be the start of a stop string.
            safe = len(text) - hold if hold else len(text)
            if text.endswith("\ufffd"):
                safe = min(safe, len(text) - 1)
            if safe > len(emitted):
                yield text[len(emitted) : safe]
                emitted = text[:safe]
            inputs = torch.tensor([[next_id]], device=self.device)
        text = self._decode(generated, skip_special_tokens=True)
        if len(text) > len(emitted):
            yield text[len(emitted) :]

    @torch.inference_mode()
    def generate_batch(self, prompts: Sequence[Prompt], configs: Sequence[GenerationConfig]) -> list[Generation]:
        """Several prompts decoded together (left-padded, one forward pass per step for all of
        them): what a dataset writer with several requests in flight uses. Each prompt keeps its
        own config (seed, temperature, stop strings, budget); greedy results equal
        :meth:`generate`'s, sampled ones up to the rounding that padding brings."""
        started = time.perf_counter()
        encoded, configs = [], list(configs)
        for i, prompt in enumerate(prompts):
            ids = self._encode_prompt(prompt)
            if not isinstance(prompt, str) and not getattr(self.tokenizer, "chat_template", None):
                configs[i] = replace(configs[i], stop=(*configs[i].stop, *PLAIN_TURN_STOPS))
            if len(ids) + 1 > self.max_length:
                raise ModelError(f"a prompt has {len(ids)} tokens but {self.name} reads at most {self.max_length}")
            encoded.append(ids)
        budgets = [min(c.max_new_tokens, self.max_length - len(ids)) for c, ids in zip(configs, encoded)]
        generators = [torch.Generator(device="cpu") for _ in encoded]
        for generator, config in zip(generators, configs):
            if config.seed is not None:
                generator.manual_seed(config.seed)
        width, pad = max(len(ids) for ids in encoded), self.tokenizer.pad_token_id or 0
        inputs = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generated: list[list[int]] = [[] for _ in encoded]
        texts = [""] * len(encoded)
        finish = [FinishReason.LENGTH] * len(encoded)
        done = [budget <= 0 for budget in budgets]
        past = None
        while not all(done):
            output = self.model(
                input_ids=inputs, attention_mask=mask, position_ids=positions, cache=past, use_cache=True
            )
            past = output.cache
            next_ids = []
            for row, config in enumerate(configs):
                next_id = pad if done[row] else self._pick(output.logits[row, -1].float(), config, generators[row])
                if not done[row]:
                    if next_id in self.eos_ids:
                        done[row], finish[row] = True, FinishReason.STOP
                    else:
                        generated[row].append(next_id)
                        texts[row], stopped = truncate_at_stop(
                            self._decode(generated[row], skip_special_tokens=True), config.stop
                        )
                        if stopped:
                            done[row], finish[row] = True, FinishReason.STOP
                        elif len(generated[row]) >= budgets[row]:
                            done[row] = True
                next_ids.append(next_id)
            inputs = torch.tensor([[i] for i in next_ids], device=self.device)
            mask = torch.cat([mask, torch.ones((len(encoded), 1), dtype=mask.dtype, device=self.device)], dim=1)
            positions = positions[:, -1:] + 1
        seconds = time.perf_counter() - started
        return [
            Generation(text, reason, len(ids), len(tokens), seconds)
            for text, reason, ids, tokens in zip(texts, finish, encoded, generated)
        ]

    @staticmethod
    def _pick(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator) -> int:
        if config.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / config.temperature, dim=-1).cpu()
        if config.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < config.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))

    # --- scoring -------------------------------------------------------------------------------

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            continuation = context[-spaces:] + continuation
            context = context[:-spaces]
        if not context:
            prefix = (
                self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
            )
            return [prefix], self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        whole = self._encode_scored(context + continuation)
        context_ids = self._encode_scored(context)
        return context_ids, whole[len(context_ids) :]

    def _encode_scored(self, text: str) -> list[int]:
        """lm-evaluation-harness 0.4's ``HFLM.tok_encode``: the tokenizer's own special tokens
        (e.g. BOS) unless the text already starts with the BOS string (a chat template wrote it)."""
        bos = self.tokenizer.bos_token
        with_special = not (bos and text.startswith(bos))
        ids: list[int] = self.tokenizer(text, add_special_tokens=with_special)["input_ids"]
        return ids

    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], batch_size: int = 8) -> list[Loglikelihood]:
        """Requests that share a context (the choices of a multiple-choice question) are scored
        with one pass over the context and its KV cache reused for every continuation; the rest
        in batches of `batch_size`. Only the continuation positions go through the output layer,
        which is most of the work for large vocabularies (Gemma 3: 262k tokens)."""
        encoded = [self._encode_pair(r.context, r.continuation) for r in requests]
        results: list[Loglikelihood | None] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (context_ids, _) in enumerate(encoded):
            groups.setdefault(tuple(context_ids), []).append(i)
        singles: list[int] = []
        for context, members in groups.items():
            longest = max(len(encoded[i][1]) for i in members)
            if len(members) > 1 and longest and len(context) + longest <= self.max_length:
                for i, result in zip(
                    members, self._score_shared_context(list(context), [encoded[i][1] for i in members])
                ):
                    results[i] = result
            else:
                singles.extend(members)
        order = sorted(singles, key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            for i, result in zip(indices, self._score_batch([encoded[i] for i in indices])):
                results[i] = result
        return [r for r in results if r is not None]

    def _score_batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[Loglikelihood]:
        """Each (context, continuation) as one sequence, right-padded, truncated from the left to
        the model's length (lm-eval's rule)."""
        sequences = [
            (context_ids + continuation_ids)[-(self.max_length + 1) :][:-1] for context_ids, continuation_ids in pairs
        ]
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id or 0
        batch = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=self.device)
        # The positions that predict continuation tokens, over the whole batch.
        first = min(len(s) - len(pair[1]) for s, pair in zip(sequences, pairs))
        keep = torch.arange(first, width, device=self.device)
        logits = self.model(input_ids=batch, attention_mask=mask, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for row, (sequence, (_, continuation_ids)) in enumerate(zip(sequences, pairs)):
            n = len(continuation_ids)
            end = len(sequence) - first
            out.append(self._continuation_score(logprobs[row, end - n : end], continuation_ids))
        return out

    def _score_shared_context(self, context_ids: list[int], continuations: Sequence[list[int]]) -> list[Loglikelihood]:
        """One pass over `context_ids`, then all `continuations` at once on copies of its KV cache.

        Same numbers as scoring each ``context + continuation`` sequence on its own (the tests
        check it against :meth:`_score_batch` and lm-evaluation-harness), for one context pass
        instead of one per continuation."""
        prefix = self.model(input_ids=torch.tensor([context_ids], device=self.device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(prefix.logits[0, -1].float(), dim=-1)
        if max(len(c) for c in continuations) == 1:
            return [self._continuation_score(first.unsqueeze(0), c) for c in continuations]
        cache = prefix.cache
        cache.batch_repeat_interleave(len(continuations))
        width = max(len(c) for c in continuations) - 1
        pad = self.tokenizer.pad_token_id or 0
        # Each continuation but its last token, right-padded: padding comes after every real
        # token, so causal attention keeps it out of the positions that are read.
        inputs = [c[:-1] for c in continuations]  # an empty continuation has no input
        batch = torch.tensor([i + [pad] * (width - len(i)) for i in inputs], device=self.device)
        positions = torch.arange(len(context_ids), len(context_ids) + width, device=self.device)
        rest = self.model(
            input_ids=batch,
            cache=cache,
            use_cache=True,
            cache_position=positions,
            position_ids=positions.unsqueeze(0).expand(len(continuations), -1),
        )
        rest_logprobs = torch.log_softmax(rest.logits.float(), dim=-1)
        return [
            self._continuation_score(torch.cat([first.unsqueeze(0), rest_logprobs[row, : len(c) - 1]]), c)
            for row, c in enumerate(continuations)
        ]

    def _continuation_score(self, logprobs: torch.Tensor, continuation_ids: list[int]) -> Loglikelihood:
        """`logprobs[j]` is the distribution that predicts ``continuation_ids[j]``."""
        n = len(continuation_ids)
        if n == 0:
            return Loglikelihood(0.0, True, 0)
        target = torch.tensor(continuation_ids, device=logprobs.device)
        token_logprobs = logprobs.gather(1, target.unsqueeze(1)).squeeze(1)
        greedy = bool((logprobs.argmax(dim=-1) == target).all())
        return Loglikelihood(float(token_logprobs.sum()), greedy, n)

    @torch.inference_mode()
    def token_logprobs(self, text: str, top: int = 1) -> list[TokenLogprob]:
        """Per-token log-probabilities of ``text`` (``/v1/completions`` with ``echo``)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        if not ids:
            return []
        if len(ids) > self.max_length:
            raise ModelError(f"the text has {len(ids)} tokens but {self.name} reads at most {self.max_length}")
        logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        result = [TokenLogprob(self._token_text(ids[0]), None, offsets[0][0], {})]
        for position in range(1, len(ids)):
            row = logprobs[position - 1]
            values, candidates = torch.topk(row, k=max(1, top))
            result.append(
                TokenLogprob(
                    self._token_text(ids[position]),
                    float(row[ids[position]]),
                    offsets[position][0],
                    {self._token_text(int(c)): float(v) for v, c in zip(values, candidates)},
                )
            )
        return result

    def _token_text(self, token_id: int) -> str:
        return self._decode([token_id])

    def _decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        assert isinstance(text, str)  # a flat list of ids decodes to one string
        return text


def _apply_adapters(model: Network, adapters: Sequence[str]) -> Network:
    """One adapter stays a PeftModel (exact base + adapter); several are merged in order."""
    if not adapters:
        return model
    from peft import PeftModel

    for adapter in adapters:
        if not Path(adapter).expanduser().exists() and "/" not in adapter:
            raise ModelError(f"adapter {adapter!r} not found: give a folder with adapter_config.json or a Hub id")
        try:
            model = PeftModel.from_pretrained(
                model, str(Path(adapter).expanduser()) if Path(adapter).expanduser().exists() else adapter
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load adapter {adapter!r}: {exc}") from exc
        if len(adapters) > 1:
            model = model.merge_and_unload()
    return model
