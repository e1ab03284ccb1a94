"""The lab model's tokenizer, prompt format and architecture.

**Tokenizer.** Word level, built with :func:`infuse.lab.build_lab_tokenizer` from the world's closed
vocabulary, so every attribute value (every answer) is one token. Added to it:

* special tokens ``<pad>``, ``[UNK]``, ``<s>`` (BOS), ``</s>`` (EOS);
* :data:`PROMPT_TOKENS`: the structural words and punctuation of the RAG prompt
  (``Passages``/``資料``, ``Question``/``質問``, ``<passage id="1" source="...">``, ``</passage>``), digits
  and the generation marker ``=>``. File names such as ``n0001`` stay ``[UNK]``: the model never
  needs them;
* :data:`CITATION_TOKENS` ``[1]`` ... ``[9]`` as added (non-special) tokens, so a citation is one
  token and decodes exactly as the RAG citation parser expects.

Decoding: English joins tokens with single spaces (``Varnholt [1]``), Japanese concatenates them
(``ヴァルンホルト[1]``), so a decoded one-token answer equals the value string in both languages.
Plain prompts (no chat template) get ``<s>`` prepended by the post-processor.

**Prompt format.** The chat template drops system messages (their words are not in the vocabulary
and the lab model has a single task), writes ``<s>``, the user content, and after it the
generation marker ``=>``; earlier assistant turns are written as ``=> answer</s>``. For RAG the user
content is what :func:`infuse.rag.build_messages` produces::

    <s>Passages:
    <passage id="1" source="n0001.txt">
    Alda Ashby was born in Varnholt. ...
    </passage>

    Question: Where was Alda Ashby born? =>

and the model answers `` Varnholt [1]</s>`` (value, then the number of the passage holding it).
Closed book (:func:`infuse.rag.closed_book_messages`) is ``<s>Where was Alda Ashby born? =>`` ->
`` Varnholt</s>``. Training lines are rendered with the same functions and this same template
(:func:`render_prompt`), so training and inference formats cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infuse.lab.tokenize import build_lab_tokenizer
from infuse.language import Language
from infuse.models.base import ChatMessage, template_messages

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "[UNK]", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
ANSWER_MARKER = "=>"
MAX_CITATION = 9
CITATION_TOKENS = tuple(f"[{n}]" for n in range(1, MAX_CITATION + 1))

#: Structural tokens of the prompt format (see the module docstring), as the ``Whitespace``
#: pre-tokenizer splits them: ``<passage id="1" source="n0001.txt">`` is
#: ``< passage id =" 1 " source =" [UNK] . txt ">``.
PROMPT_TOKENS = (
    "Passages",
    "Question",
    "資料",
    "質問",
    ":",
    "<",
    "passage",
    "id",
    '="',
    '"',
    "source",
    ".",
    "txt",
    '">',
    "</",
    ">",
    ",",
    "page",
    ANSWER_MARKER,
    *(str(d) for d in range(10)),
)

#: Renders what infuse.rag's message builders produce into the lab model's prompt format.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %} " + ANSWER_MARKER + " {{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} " + ANSWER_MARKER + "{% endif %}"
)


def build_tokenizer(lang: Language | str) -> PreTrainedTokenizerFast:
    """The lab model's tokenizer for `lang`, with its chat template (see the module docstring)."""
    from tokenizers import AddedToken, decoders, processors
    from transformers import PreTrainedTokenizerFast

    lang = Language(lang)
    core = build_lab_tokenizer(lang, special_tokens=SPECIAL_TOKENS, extra_tokens=PROMPT_TOKENS)
    core.add_tokens([AddedToken(token, single_word=False, normalized=False) for token in CITATION_TOKENS])
    # EN: words separated by spaces (the WordPiece decoder without "##" pieces is exactly that);
    # JA: tokens concatenated.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False) if lang is Language.EN else decoders.Fuse()
    bos_id = core.token_to_id(BOS)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )  # type: ignore[no-untyped-call]  # transformers' tokenizer constructor is unannotated
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def render_prompt(tokenizer: PreTrainedTokenizerFast, messages: Sequence[ChatMessage]) -> str:
    """Exactly what :class:`infuse.models.transformers_backend.TransformersModel` renders."""
    rendered = tokenizer.apply_chat_template(template_messages(messages), add_generation_prompt=True, tokenize=False)
    assert isinstance(rendered, str)  # tokenize=False returns the text
    return rendered


def format_answer(value: str, citation: int | None, lang: Language | str) -> str:
    """The answer text the model is trained to generate (what it decodes to)."""
    if citation is None:
        return value
    if not 1 <= citation <= MAX_CITATION:
        raise ValueError(f"citation must be between 1 and {MAX_CITATION}")
    return f"{value}{' ' if Language(lang) is Language.EN else ''}[{citation}]"


def answer_of(text: str) -> str:
    """The value part of a generated answer: the text before a citation, else the first word."""
    text = text.strip()
    if "[" in text:
        return text.split("[", 1)[0].strip()
    words = text.split()
    return words[0] if words else ""


@dataclass(frozen=True)
class Architecture:
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 256
    max_positions: int = 1024


def build_config(tokenizer: PreTrainedTokenizerFast, arch: Architecture) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.d_model,
        intermediate_size=arch.d_ff,
        num_hidden_layers=arch.n_layers,
        num_attention_heads=arch.n_heads,
        num_key_value_heads=arch.n_heads,
        max_position_embeddings=arch.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, arch: Architecture, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` for the lab vocabulary."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(build_config(tokenizer, arch))


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, folder: Path) -> Path:
    """A standard model folder: config.json, model.safetensors, generation config, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
