"""Sentence-transformers models run by ONNX Runtime on the CPU: the same vectors, faster.

Measured on 2 CPU cores (docs/retrieval.md, benchmarks/ingest_peers.py): fp32 ingests 1.13-1.25x
faster than PyTorch, int8 (each text alone) 2x and more; SQuAD parity of int8 against PyTorch
on the full question set is in docs/retrieval.md.

Why: ingest is embedding-bound (98% of its time) and PyTorch's eager BERT on 2 CPU cores is
slow. The export is passed through ONNX Runtime's transformer optimizer, so attention,
LayerNorm and GELU each run as one fused kernel; int8 weights (dynamic quantisation of the
MatMuls, per channel) cut the time further. Dynamic quantisation scales each MatMul's input by
the range of the whole input tensor, so in a batch a text's vector would depend on its
batch-mates and their padding: int8 runs each text alone (no padding at all), one thread per
run and as many runs at once as there are cores, which on 2 cores was as fast as batches on an
idle machine and faster under load (no hand-over between threads inside a run); new English
workspaces get it (``quantize = true`` in infuse.toml). sentence-transformers' own
``backend="onnx"`` needs ``optimum-onnx``, which pins transformers below 5, so infuse exports the
model itself: once per model, locally, with ``torch.onnx.export`` (nothing is downloaded).

Invariants:

- The export is cached under ``$INFUSE_ONNX_CACHE`` or ``~/.cache/infuse/onnx``, in a folder
  keyed by the model folder's files (names, sizes, times) and this module's export version;
  it appears complete or not at all (staged, then renamed; two processes wait for each other).
- Only models made of a Transformer, a mean or CLS Pooling and optionally Normalize are
  exported; any other model raises :class:`OnnxUnsupported` and the ``auto`` runtime falls
  back to PyTorch (:func:`infuse.embedders.factory.make_embedder`).
- Vectors are L2-normalised like every embedder's. The fp32 model gives PyTorch's vectors
  (cosine > 0.9999), so a knowledge base built with either is searched by the other; the int8
  model's vectors differ slightly (cosine ~0.99), and its identity says ``int8``
  (:class:`~infuse.embedders.base.EmbedderPrecision`): switching ``embedder.quantize`` needs
  ``infuse reindex`` like any embedder change.
- An int8 vector is a function of its text alone: bit for bit the same whatever it is embedded
  with and whatever ``batch_size`` is.
- fp32 batches are formed by token count (after tokenising everything once), so short passages
  are not padded to the length of long ones; each batch runs as one slice per core, side by side.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infuse.config import EmbedderRuntime, EmbedderSettings
from infuse.documents.chunking import HFTokenCounter
from infuse.embedders.base import EmbedderPrecision, PrefixedEmbedder, ProgressCallback
from infuse.errors import ConfigError
from infuse.files import read_json, staged_folder, user_cache_dir, write_json_atomic

if TYPE_CHECKING:
    import onnxruntime

CACHE_ENV = "INFUSE_ONNX_CACHE"
EXPORT_VERSION = 2  # bump when the exported graph or its metadata change
META_FILE = "infuse-onnx.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
_SESSIONS: dict[str, onnxruntime.InferenceSession] = {}
_SESSIONS_LOCK = threading.Lock()


class OnnxUnsupported(ConfigError):
    """The model cannot be exported by this module (another architecture or pooling)."""


@dataclass(frozen=True)
class ExportMeta:
    """What the exported folder holds besides the graph: how to feed it and pool its output."""

    model: str  # the folder it was exported from
    pooling: str  # "mean" or "cls"
    max_seq_length: int
    dimension: int
    input_names: list[str]
    version: int = EXPORT_VERSION


def available() -> bool:
    """Whether ONNX Runtime (to run) and onnx (to quantise) are installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def export_folder(model_path: str, cache_dir: Path | None = None) -> Path:
    """The cache folder for ``model_path``'s export (exporting first when needed)."""
    from filelock import FileLock

    source = Path(model_path)
    if not source.is_dir():
        raise OnnxUnsupported(
            f"the ONNX runtime needs a local model folder, not {model_path!r}; set embedder.runtime = "
            '"torch" or embedder.model to a folder'
        )
    root = cache_dir or user_cache_dir("onnx", CACHE_ENV)
    target = root / f"{source.name}-{_source_key(source)}"
    if (target / META_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{target.name}.lock")):
        if not (target / META_FILE).is_file():  # else another process exported it while we waited
            with staged_folder(target) as staging:
                _export(source, staging)
    return target


def _source_key(source: Path) -> str:
    """Names, sizes and modification times of the model's files, and the export version."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}|{source.resolve()}".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"|{path.relative_to(source)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _export(source: Path, out: Path) -> None:
    """Export the transformer to ONNX (fp32), quantise its MatMuls to int8, save the tokenizer."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    from infuse.hf_logging import quiet_hf_progress

    quiet_hf_progress()
    # Eager attention exports the classic MatMul/Softmax pattern that ONNX Runtime's transformer
    # optimizer fuses into its Attention kernel (the SDPA export is left unfused, and slower).
    try:
        st = SentenceTransformer(str(source), device="cpu", model_kwargs={"attn_implementation": "eager"})
    except (ValueError, TypeError):  # a model without an eager attention: export what it has
        st = SentenceTransformer(str(source), device="cpu")
    modules = list(st)
    kinds = [type(m).__name__ for m in modules]
    pooling = modules[1] if len(modules) > 1 else None
    mode = pooling.pooling_mode if isinstance(pooling, Pooling) else None
    extra_ok = all(isinstance(m, Normalize) for m in modules[2:])
    if not (isinstance(modules[0], Transformer) and mode in ("mean", "cls") and extra_ok):
        raise OnnxUnsupported(
            f"embedder {str(source)!r} ({' + '.join(kinds)}) is not Transformer + mean/CLS "
            'pooling (+ Normalize); set embedder.runtime = "torch"'
        )
    tokenizer = st.tokenizer
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    network = modules[0].auto_model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.network(**dict(zip(names, inputs, strict=True))).last_hidden_state
            return hidden

    sample = tokenizer(["an export sample", "two"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    raw = out / "model-raw.onnx"
    with torch.no_grad():
        torch.onnx.export(
            LastHidden(),
            tuple(sample[n] for n in names),
            str(raw),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    _optimize(raw, out / FP32_FILE, network.config)
    raw.unlink()
    # Per-channel int8 weights of the MatMuls only (embeddings stay fp32): cosine to the fp32
    # vectors stays ~0.99, where per-tensor or all-op quantisation drops to 0.91-0.93. The fused
    # graph's contrib ops have no inferred types, hence DefaultTensorType (float).
    quantize_dynamic(
        str(out / FP32_FILE),
        str(out / INT8_FILE),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        extra_options={"DefaultTensorType": 1},
    )
    tokenizer.save_pretrained(str(out))
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dimension = getter()
    meta = ExportMeta(str(source), mode, int(st.max_seq_length or 512), int(dimension or 0), names)
    write_json_atomic(out / META_FILE, asdict(meta))


def _optimize(raw: Path, target: Path, config: Any) -> None:
    """ONNX Runtime's transformer optimizer (``model_type="bert"``): embeddings + LayerNorm,
    attention, bias + GELU and residual + LayerNorm each become one fused kernel (MiniLM: 1.3-1.7x
    faster on CPU, same vectors). A graph the optimizer cannot handle is kept as exported."""
    import shutil

    from onnxruntime.transformers.optimizer import optimize_model

    try:
        model = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0),
        )
        model.save_model_to_file(str(target))
    except Exception:  # noqa: BLE001 - an optimizer failure only costs speed
        shutil.copyfile(raw, target)


def _session(path: Path) -> onnxruntime.InferenceSession:
    """A process-wide, one-thread inference session per graph file (several run side by side:
    :meth:`OnnxSentenceTransformerEmbedder.session`)."""
    import onnxruntime

    key = str(path)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            # One thread: no intra-op pool, so nothing spins or hands work over between threads.
            options.log_severity_level = 3
            _SESSIONS[key] = onnxruntime.InferenceSession(key, options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


class OnnxSentenceTransformerEmbedder(PrefixedEmbedder):
    """A sentence-transformers model (a local folder, e.g. the bundled MiniLM) run by ONNX Runtime."""

    def __init__(self, settings: EmbedderSettings, model_path: str) -> None:
        self.settings = settings
        self.model_path = model_path

    @cached_property
    def folder(self) -> Path:
        return export_folder(self.model_path)

    @cached_property
    def fallback(self) -> PrefixedEmbedder | None:
        """PyTorch, when the runtime is ``auto`` and this model cannot be exported (else None)."""
        try:
            _ = self.folder
        except OnnxUnsupported:
            if self.settings.runtime is EmbedderRuntime.ONNX:
                raise
            from infuse.embedders.sentence_transformers import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder(self.settings)
        return None

    @cached_property
    def meta(self) -> ExportMeta:
        data: dict[str, Any] = read_json(self.folder / META_FILE) or {}
        return ExportMeta(**data)

    @cached_property
    def session(self) -> onnxruntime.InferenceSession:
        """One thread per run, as many runs at once as there are cores (:meth:`_runs`): no
        hand-over between threads inside a run, which costs most on a loaded machine (fp32
        batches on one 2-thread run stalled at 4x PyTorch's time at load 4-5); a vector never
        depends on the thread count."""
        return _session(self.folder / (INT8_FILE if self.settings.quantize else FP32_FILE))

    @cached_property
    def runners(self) -> ThreadPoolExecutor:
        """Threads that run side by side (ONNX Runtime releases the GIL while it runs)."""
        return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="infuse-onnx")

    def _runs(self, batch: list[int]) -> list[list[int]]:
        """How one batch (text indexes, longest first) is run. int8: one text per run, so its
        activation scales are its own. fp32: one run per core, each a slice of neighbours in
        length (little padding)."""
        if self.settings.quantize:
            return [[i] for i in batch]
        step = -(-len(batch) // (os.cpu_count() or 1))
        return [batch[start : start + step] for start in range(0, len(batch), step)]

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder))

    @cached_property
    def token_counter(self) -> HFTokenCounter:
        """The model's tokenizer (from the model folder: chunking needs no export)."""
        from infuse.embedders.sentence_transformers import folder_token_counter

        if "tokenizer" in self.__dict__:
            return HFTokenCounter(self.tokenizer)
        return folder_token_counter(self.model_path, self.settings.model)

    @property
    def dimension(self) -> int:
        return self.fallback.dimension if self.fallback is not None else self.meta.dimension

    @property
    def precision(self) -> EmbedderPrecision:
        quantized = self.settings.quantize and self.fallback is None
        return EmbedderPrecision.INT8 if quantized else EmbedderPrecision.FP32

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        """Vectors of one batch of token id lists (padded to the batch's longest)."""
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = self.session.run(None, {name: feeds[name] for name in self.meta.input_names})[0]
        if self.meta.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(vectors / norms, dtype=np.float32)

    def _encode(self, texts: list[str], prefix: str, on_batch: ProgressCallback | None = None) -> np.ndarray:
        if self.fallback is not None:
            return self.fallback._encode(texts, prefix, on_batch)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(
            [prefix + text for text in texts], truncation=True, max_length=self.meta.max_seq_length, verbose=False
        )["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)
        size = self.settings.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            runs = self._runs(batch)
            for run, vectors in zip(runs, self.runners.map(lambda run: self._run([ids[i] for i in run]), runs)):
                out[run] = vectors
            if on_batch is not None:
                on_batch(len(batch))
        return out
