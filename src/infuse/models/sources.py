"""Where a model's files come from: a local folder, a Hugging Face id, or a GGUF file.

Every place that loads a network or tokenizer (serving, scoring, fine-tuning, merging, dataset
building) asks :func:`model_source` for something ``from_pretrained`` can read, so a model
reference means the same thing everywhere. Accepted references:

- a local model folder (``config.json`` + weights + tokenizer files), ``~`` expanded;
- a Hugging Face id (``google/gemma-3-270m``), fetched by ``transformers`` as usual;
- a GGUF file (``models/gemma-3-270m-q4_k_m.gguf``), a folder holding exactly one ``.gguf``
  file, or a Hub id with a file name (``owner/repo:file.gguf``).

Why convert: ``transformers`` reads GGUF by de-quantizing every tensor and rebuilding the
tokenizer from the file's vocabulary, which takes minutes (mostly the tokenizer) on each load.
:func:`model_source` does that once and caches an ordinary model folder (safetensors +
``tokenizer.json``) keyed by the GGUF file's SHA-256, under ``$INFUSE_GGUF_CACHE`` or
``~/.cache/infuse/gguf``. Invariants: the cached folder appears complete or not at all (staged,
then renamed; a kill leaves only a ``.tmp`` folder), two processes converting the same file wait
for each other instead of both converting, and a changed GGUF file (new hash) gets a new folder.
The original file is recorded in the folder's ``infuse-gguf.json`` so an export can reuse its
metadata (see :mod:`infuse.tuning.gguf_export`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from infuse.files import file_sha256, read_json, staged_folder, user_cache_dir, utc_now, write_json_atomic
from infuse.models.base import ModelError
from infuse.progress import PrintProgress, Progress

CACHE_ENV = "INFUSE_GGUF_CACHE"
GGUF_SUFFIX = ".gguf"
PROVENANCE_FILE = "infuse-gguf.json"
HASH_INDEX = "hashes.json"


def supported_architectures() -> list[str]:
    """GGUF ``general.architecture`` values the installed transformers can de-quantize and load."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


@dataclass(frozen=True)
class GgufFile:
    """A resolved GGUF file and what it was called by the user."""

    path: Path
    reference: str


def default_cache_dir() -> Path:
    return user_cache_dir("gguf", CACHE_ENV)


def is_gguf_reference(name: str) -> bool:
    """Whether `name` names a GGUF file (a path, a folder holding one, or ``owner/repo:file.gguf``)."""
    if name.lower().endswith(GGUF_SUFFIX):
        return True
    path = Path(name).expanduser()
    return path.is_dir() and not (path / "config.json").exists() and any(path.glob("*" + GGUF_SUFFIX))


def find_gguf(name: str) -> GgufFile:
    """The GGUF file `name` refers to; a clear error when there is none or more than one."""
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*" + GGUF_SUFFIX))
        if len(files) != 1:
            listed = ", ".join(f.name for f in files) or "none"
            raise ModelError(
                f"{name!r} holds {len(files)} .gguf files ({listed}); pass the file itself, e.g. --model {path / (files[0].name if files else 'model.gguf')}"
            )
        return GgufFile(files[0], name)
    if path.is_file():
        return GgufFile(path, name)
    repo, sep, filename = name.partition(":")
    if sep and repo.count("/") == 1 and filename.lower().endswith(GGUF_SUFFIX):
        return GgufFile(_download(repo, filename), name)
    raise ModelError(
        f"GGUF model {name!r} not found: give a local .gguf file, a folder holding one, "
        "or a Hub id with the file name (owner/repo:file.gguf)"
    )


def _download(repo: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # hub errors come in many types (offline, 404, auth): all mean "cannot fetch"
        raise ModelError(
            f"cannot fetch {filename!r} from the Hub repo {repo!r} ({type(exc).__name__}: {exc}); "
            "download it yourself and pass the local path"
        ) from exc


def converted_folder(gguf: GgufFile, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The cached model folder converted from `gguf` (converting it first when needed)."""
    from filelock import FileLock

    root = cache_dir or default_cache_dir()
    digest = _known_digest(gguf.path, root)
    target = root / f"{gguf.path.stem}-{digest[:16]}"
    if (target / PROVENANCE_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{target.name}.lock")):
        if (target / PROVENANCE_FILE).is_file():  # another process converted it while we waited
            return target
        progress = progress or PrintProgress()
        progress.start(f"converting {gguf.path.name} to a model folder (once; cached in {target})", None)
        with staged_folder(target) as staging:
            _convert(gguf.path, staging)
            write_json_atomic(
                staging / PROVENANCE_FILE,
                {
                    "gguf": str(gguf.path.resolve()),
                    "reference": gguf.reference,
                    "sha256": digest,
                    "converted": utc_now(),
                },
            )
        progress.note("done")
    return target


def _known_digest(path: Path, root: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) in ``root/hashes.json``: hashing a
    multi-gigabyte GGUF file on every load would cost seconds each time."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = root / HASH_INDEX
    try:
        index = read_json(index_path) or {}
    except ValueError:  # unreadable: start afresh (it is only a cache of hashes)
        index = {}
    if key not in index:
        index[key] = file_sha256(path)
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(index_path, index)
    digest: str = index[key]
    return digest


def _convert(path: Path, out: Path) -> None:
    try:
        import gguf  # noqa: F401  (transformers needs it; importing here gives a clear error)
    except ImportError as exc:
        raise ModelError(
            f"loading {path.name} needs the gguf package: pip install 'infuse[gguf]' (or pip install gguf)"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infuse.hf_logging import quiet_hf_progress

    quiet_hf_progress()
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        network = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        architecture, supported = gguf_architecture(path), supported_architectures()
        hint = (
            f"its architecture {architecture!r} is not one transformers can read from GGUF "
            f"(supported: {', '.join(supported)})"
            if architecture not in supported
            else "the file may be damaged or use a quantization transformers cannot de-quantize"
        )
        raise ModelError(f"cannot load {path}: {exc}; {hint}") from exc
    # The weights are de-quantized fp32 tensors now; the GGUF quantizer marker only blocks saving.
    network.hf_quantizer = None  # type: ignore[assignment]  # declared as set; None is what a plain model has
    if hasattr(network.config, "quantization_config"):
        del network.config.quantization_config
    network.save_pretrained(out)
    tokenizer.save_pretrained(out)


def gguf_architecture(path: Path) -> str | None:
    """``general.architecture`` of a GGUF file (None when unreadable)."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields.get("general.architecture")
        if field is None:
            return None
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except Exception:  # best effort: only used to word an error message
        return None


def gguf_provenance(folder: str | Path) -> dict[str, str] | None:
    """Where a converted folder came from (None for ordinary model folders)."""
    marker = Path(folder) / PROVENANCE_FILE
    if not marker.is_file():
        return None
    data: dict[str, str] = json.loads(marker.read_text(encoding="utf-8"))
    return data


def model_source(name: str, progress: Progress | None = None) -> str:
    """What ``from_pretrained`` should read for the model reference `name` (see the module docstring).

    >>> model_source("google/gemma-3-270m")
    'google/gemma-3-270m'
    """
    if is_gguf_reference(name):
        return str(converted_folder(find_gguf(name), progress=progress))
    path = Path(name).expanduser()
    return str(path) if path.exists() else name
