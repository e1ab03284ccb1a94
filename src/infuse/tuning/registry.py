"""Fine-tuning runs in a workspace, by name: run, list, show, merge, and resolve for inference.

Each run is a folder ``WS/adapters/NAME/``::

    manifest.json       base model, dataset (name, kind, sha256), hyperparameters, status, steps,
                        final train/eval loss, tokens/s, wall time, peak memory
    train_log.jsonl     one line per step (loss, lr, eval loss)
    adapter/            the PEFT adapter (LoRA, QLoRA) - or model/ for a full fine-tune
    checkpoints/        step-N/ folders while training (--resume continues from the newest)
    merged/             after `infuse adapters merge`: base + adapter as one model folder
    NAME-TYPE.gguf      after `infuse adapters export NAME --format gguf` (see :mod:`.gguf_export`)

``ask``/``serve``/``compare`` take a run's name wherever they take an adapter folder.

>>> run = tune(ws, "cpt", "Qwen/Qwen2.5-0.5B", TuneConfig(epochs=3))   # doctest: +SKIP
>>> merge_adapter(ws, run.name)                                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.devices import default_device
from infuse.files import ArtifactFolders, read_json, staged_folder, utc_now, write_json_atomic
from infuse.models.sources import model_source
from infuse.progress import Progress
from infuse.tuning.datasets import load_dataset
from infuse.tuning.trainer import (
    ADAPTER_DIR,
    MANIFEST_FILE,
    MODEL_DIR,
    RunStatus,
    TuneConfig,
    TuneError,
    TuneMethod,
    TuneResult,
    checkpoint_dirs,
    train,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from infuse.models.transformers_backend import Network
    from infuse.workspace import Workspace

MERGED_DIR = "merged"


@dataclass(frozen=True)
class Run:
    """A fine-tuning run in the registry."""

    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def status(self) -> RunStatus:
        return RunStatus(self.manifest.get("status", RunStatus.TRAINING))

    @property
    def method(self) -> TuneMethod:
        return TuneMethod(self.manifest["method"])

    @property
    def base_model(self) -> str:
        model: str = self.manifest["base_model"]
        return model

    @property
    def output_dir(self) -> Path:
        return self.path / (MODEL_DIR if self.method is TuneMethod.FULL else ADAPTER_DIR)

    def require_finished(self) -> None:
        """The error for a run whose training has not completed (nothing to merge or export yet)."""
        if self.status is not RunStatus.COMPLETE or not self.output_dir.is_dir():
            raise TuneError(
                f"run {self.name!r} has not finished; resume it with `infuse tune --name {self.name} --resume` first"
            )

    def summary(self) -> dict[str, Any]:
        keys = (
            "name",
            "status",
            "method",
            "base_model",
            "dataset",
            "steps",
            "final_train_loss",
            "final_eval_loss",
            "tokens_per_second",
            "wall_seconds",
            "created",
        )
        data = {k: self.manifest.get(k) for k in keys}
        data["dataset"] = (self.manifest.get("dataset") or {}).get("name")
        data["path"] = str(self.path)
        data["checkpoints"] = [int(p.name.split("-")[1]) for p in checkpoint_dirs(self.path)]
        data["merged"] = (self.path / MERGED_DIR / "config.json").is_file()
        return data


def run_folders(workspace: Workspace) -> ArtifactFolders:
    """The workspace's runs, ``WS/adapters/NAME/`` (a run exists once its manifest is written)."""
    return ArtifactFolders(
        workspace.adapters_dir,
        kind="fine-tuning run",
        error=TuneError,
        hint="train one with `infuse tune`",
        marker=MANIFEST_FILE,
    )


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)


def open_run(workspace: Workspace, name: str) -> Run:
    folders = run_folders(workspace)
    path = folders.require(name)
    manifest = read_json(path / MANIFEST_FILE)
    if manifest is None:  # deleted since require() saw it
        raise folders.missing(name)
    return Run(name, path, manifest)


def list_runs_names(workspace: Workspace) -> list[str]:
    return run_folders(workspace).names()


def list_runs(workspace: Workspace) -> list[Run]:
    return [open_run(workspace, name) for name in list_runs_names(workspace)]


def tune(
    workspace: Workspace,
    dataset_name: str,
    model_name: str | None,
    config: TuneConfig,
    *,
    name: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Run:
    """Train and register a run. The default name is ``DATASET-METHOD``; an existing complete run
    of that name is an error (pick --name), an interrupted one needs ``resume=True``.

    `model_name` None is the workspace's ``[model] name``, and ``config.device`` None its
    ``[model] device`` (then the best available)."""
    from dataclasses import replace

    from accelerate import PartialState

    model_name = model_name or workspace.settings.model.name
    if not model_name:
        raise TuneError("no base model: pass --model ID_OR_FOLDER or set [model] name in infuse.toml")
    if config.device is None and workspace.settings.model.device:
        config = replace(config, device=workspace.settings.model.device)
    processes = PartialState(cpu=(config.device or default_device()) == "cpu")  # one per rank under torchrun
    dataset = load_dataset(workspace.datasets_dir, dataset_name)
    name = name or f"{dataset.manifest.name}-{config.method}"
    run_dir = run_folders(workspace).path(name)
    previous = read_json(run_dir / MANIFEST_FILE)
    if previous is not None:
        if previous.get("status") == RunStatus.COMPLETE:
            raise TuneError(f"run {name!r} is already complete; choose another --name (or delete {run_dir})")
        if not resume:
            raise TuneError(
                f"run {name!r} was interrupted; pass --resume to continue it from its last checkpoint "
                f"or choose another --name"
            )
    elif resume:
        raise TuneError(f"nothing to resume: there is no run {name!r} in {workspace.adapters_dir}")
    manifest: dict[str, Any] = {
        "name": name,
        "status": RunStatus.TRAINING,
        "method": str(config.method),
        "base_model": model_name,
        "dataset": {
            "name": dataset.manifest.name,
            "kind": str(dataset.manifest.kind),
            "sha256": dataset.manifest.sha256,
            "rows": dataset.manifest.rows,
            "path": str(dataset.rows_path),
        },
        "hyperparameters": config.to_dict(),
        "created": previous["created"] if previous else utc_now(),
    }
    processes.wait_for_everyone()  # every rank has checked the folder before rank 0 writes to it
    if previous is None and processes.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_manifest(run_dir, manifest)
    result = train(model_name, dataset, run_dir, config, resume=resume, progress=progress, on_step=on_step)
    if result.manifest.get("is_main_process", True):
        manifest.update(_result_fields(result))
        _write_manifest(run_dir, manifest)
    return Run(name, run_dir, manifest)


def _result_fields(result: TuneResult) -> dict[str, Any]:
    extra = {k: v for k, v in result.manifest.items() if k != "is_main_process"}
    return {
        "status": RunStatus.COMPLETE,
        "steps": result.steps,
        "final_train_loss": result.final_train_loss,
        "final_eval_loss": result.final_eval_loss,
        "tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "wall_seconds": round(result.wall_seconds, 2),
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "resumed_from_step": result.resumed_from,
        "finished": utc_now(),
        **extra,
    }


# --- merge -----------------------------------------------------------------------------------


def sample_inputs(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_tokens: int = 64) -> list[torch.Tensor]:
    import torch

    ids = [tokenizer(t, add_special_tokens=True)["input_ids"][:max_tokens] for t in texts if t.strip()]
    return [torch.tensor([i]) for i in ids if i]


def logits(model: Network, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    import torch

    with torch.no_grad():
        return [model(input_ids=ids).logits.float() for ids in inputs]


def check_same_logits(
    expected: list[torch.Tensor],
    model: Network,
    inputs: list[torch.Tensor],
    tolerance: float,
    what: str,
    *,
    reference: str = "base + adapter",
    advice: str = "keep using the adapter unmerged",
) -> float:
    """The largest |difference| between `model`'s logits and `expected` (those of `reference`);
    above `tolerance` it is a :class:`TuneError` naming `what` and ending with `advice`."""
    return require_close_logits(expected, logits(model, inputs), tolerance, what, reference=reference, advice=advice)


def require_close_logits(
    expected: list[torch.Tensor],
    got: list[torch.Tensor],
    tolerance: float,
    what: str,
    *,
    reference: str = "base + adapter",
    advice: str = "keep using the adapter unmerged",
) -> float:
    """:func:`check_same_logits` on logits already computed."""
    worst = max((float((g - want).abs().max()) for g, want in zip(got, expected)), default=0.0)
    if worst > tolerance:
        raise TuneError(
            f"{what} changed the model: logits differ by up to {worst:.3g} (> {tolerance}) from {reference}; {advice}"
        )
    return worst


@dataclass(frozen=True)
class TunedNetwork:
    """A finished run as one network in fp32 on CPU, with the evidence its copies are checked against:
    `expected` holds the logits of what was trained (base + adapter before merging, or the full
    fine-tune) on `inputs`, sample rows of the run's own dataset."""

    network: Network
    tokenizer: PreTrainedTokenizerBase
    inputs: list[torch.Tensor]
    expected: list[torch.Tensor]


def tuned_network(run: Run, texts: list[str] | None = None) -> TunedNetwork:
    """`run` as one network: a LoRA/QLoRA adapter merged into its base (loaded in fp32, so QLoRA's
    4-bit training base is not what is merged into), a full fine-tune as saved. `texts` (default:
    the first rows of the run's dataset) become the sample inputs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run.require_finished()
    tokenizer = AutoTokenizer.from_pretrained(str(run.output_dir))
    inputs = sample_inputs(tokenizer, texts or _sample_texts(run))
    if run.method is TuneMethod.FULL:
        network: Network = AutoModelForCausalLM.from_pretrained(str(run.output_dir), dtype=torch.float32)
        network.eval()
        return TunedNetwork(network, tokenizer, inputs, logits(network, inputs))
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(model_source(run.base_model), dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(run.output_dir)).eval()
    expected = logits(with_adapter, inputs)
    return TunedNetwork(with_adapter.merge_and_unload(), tokenizer, inputs, expected)


def merge_adapter(
    workspace: Workspace, name: str, out: Path | None = None, *, tolerance: float = 1e-3, texts: list[str] | None = None
) -> dict[str, Any]:
    """Write base + adapter as one model folder and prove it: the merged folder, loaded fresh, must
    give the same logits as base + adapter on sample inputs (max |difference| <= `tolerance`, in
    fp32 on CPU); otherwise the folder is removed and this is an error."""
    import torch
    from transformers import AutoModelForCausalLM

    run = open_run(workspace, name)
    if run.method is TuneMethod.FULL:
        raise TuneError(f"run {name!r} is a full fine-tune: {run.output_dir} already is a complete model folder")
    target = Path(out) if out is not None else run.path / MERGED_DIR
    tuned = tuned_network(run, texts)
    with staged_folder(target) as staging:  # a merge that fails the check leaves nothing behind
        tuned.network.save_pretrained(staging)
        tuned.tokenizer.save_pretrained(staging)
        reloaded: Network = AutoModelForCausalLM.from_pretrained(str(staging), dtype=torch.float32)
        reloaded.eval()
        worst = check_same_logits(tuned.expected, reloaded, tuned.inputs, tolerance, f"merging {name!r}")
    return {
        "name": name,
        "merged": str(target),
        "max_logit_difference": worst,
        "tolerance": tolerance,
        "samples": len(tuned.inputs),
    }


def _sample_texts(run: Run) -> list[str]:
    from infuse.tuning.datasets import read_rows

    path = Path((run.manifest.get("dataset") or {}).get("path", ""))
    texts: list[str] = []
    if path.is_file():
        for row in read_rows(path)[:8]:
            texts.append(row["text"] if "text" in row else " ".join(m["content"] for m in row["messages"]))
    return texts or ["The quick brown fox jumps over the lazy dog.", "年次有給休暇は入社6か月後に付与されます。"]


# --- inference -------------------------------------------------------------------------------


def resolve_for_inference(workspace: Workspace, model: str | None, adapters: list[str]) -> tuple[str | None, list[str]]:
    """`--model`/`--adapter` values with run names replaced by folders.

    A LoRA run's name becomes its adapter folder (and supplies the base model when none is given);
    a full fine-tune's name becomes the model. Anything that is not a run name is passed through
    (a folder or a Hub id).
    """
    names = set(list_runs_names(workspace))
    resolved: list[str] = []
    for adapter in adapters:
        if adapter not in names:
            resolved.append(adapter)
            continue
        run = open_run(workspace, adapter)
        run.require_finished()
        if run.method is TuneMethod.FULL:
            if model and model != run.base_model:
                raise TuneError(f"run {adapter!r} is a full fine-tune of {run.base_model}; it replaces --model {model}")
            model = str(run.output_dir)
            continue
        if model is None:
            model = run.base_model
        resolved.append(str(run.output_dir))
    return model, resolved


def inference_overrides(workspace: Workspace | None, model: str | None, adapters: list[str] | None) -> dict[str, Any]:
    """Workspace settings overrides for ``--model``/``--adapter`` (``Workspace.open(..., **overrides)``),
    with fine-tuning run names resolved to their folders (:func:`resolve_for_inference`); the
    workspace that holds the runs is needed only when there are adapters. A local model folder
    or adapters load with the transformers backend (:func:`infuse.config.local_model_overrides`)."""
    if adapters:
        if workspace is None:
            raise TuneError("--adapter needs the workspace that holds its fine-tuning runs")
        model, adapters = resolve_for_inference(workspace, model, adapters)
    from infuse.config import local_model_overrides

    overrides = local_model_overrides(model, adapters)
    return {"model": overrides} if overrides else {}


__all__ = [
    "Run",
    "TunedNetwork",
    "inference_overrides",
    "list_runs",
    "merge_adapter",
    "open_run",
    "resolve_for_inference",
    "tune",
    "tuned_network",
]
