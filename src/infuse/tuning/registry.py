"""Fine-tuning runs in a workspace, by name: run, list, show, remove, merge, and resolve for inference.

A run is training (a live process holds its lock ``WS/adapters/.NAME.lock``), interrupted (its
manifest says training but nobody holds the lock: killed), failed (the error is in its manifest;
the name is free for a new run) or complete.

Each run is a folder ``WS/adapters/NAME/``::

    manifest.json       base model, dataset (name, kind, sha256), hyperparameters, status, steps,
                        final train/eval loss, tokens/s, wall time, peak memory
    train_log.jsonl     one line per step (loss, lr, eval loss)
    adapter/            the PEFT adapter (LoRA, QLoRA) - or model/ for a full fine-tune
    checkpoints/        step-N/ folders while training (--resume continues from the newest);
                        removed when the run completes, unless --keep-checkpoints
    merged/             after `infuse adapters merge`: base + adapter as one model folder
    NAME-TYPE.gguf      after `infuse adapters export NAME --format gguf` (see :mod:`.gguf_export`)

``ask``/``serve``/``compare`` take a run's name wherever they take an adapter folder.

>>> run = tune(ws, "cpt", "Qwen/Qwen2.5-0.5B", TuneConfig(epochs=3))   # doctest: +SKIP
>>> merge_adapter(ws, run.name)                                        # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from infuse.devices import default_device
from infuse.files import ArtifactFolders, read_json, staged_folder, utc_now, write_json_atomic
from infuse.models.sources import gguf_provenance, is_gguf_reference, model_source
from infuse.progress import Progress
from infuse.tuning.datasets import SKIP_BAD_ROWS, Dataset, check_rows, load_dataset, require_usable
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
    remove_checkpoints,
    train,
)

if TYPE_CHECKING:
    import torch
    from accelerate import PartialState
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
        """The manifest's status, except that a run it calls "training" which no live process
        holds (killed, or the machine went down) is INTERRUPTED."""
        status = RunStatus(self.manifest.get("status", RunStatus.TRAINING))
        if status in (RunStatus.TRAINING, RunStatus.INTERRUPTED):
            return RunStatus.TRAINING if run_is_live(self.path) else RunStatus.INTERRUPTED
        return status

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
        data["status"] = str(self.status)
        data["error"] = self.manifest.get("error")
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


class RunBusyError(TuneError):
    """Another live process is training this run."""

    http_status = 409  # not the caller's fault: wait for the other process, or pick another name


def run_lock(run_dir: Path) -> FileLock:
    """The lock a process holds while it trains the run in `run_dir`: ``.NAME.lock`` beside the
    run's folder (so removing the folder never removes the lock of a live trainer). It is an OS
    file lock, so a killed process releases it: a run whose manifest says "training" and whose
    lock is free was interrupted."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(run_dir.parent / f".{run_dir.name}.lock"), timeout=0)


def run_is_live(run_dir: Path) -> bool:
    """Whether a process (this one included) is training the run in `run_dir` now."""
    lock = run_lock(run_dir)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _hold(run_dir: Path, name: str) -> FileLock:
    lock = run_lock(run_dir)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(
            f"run {name!r} is being trained by another process right now; wait for it to finish "
            "or choose another --name"
        ) from None
    return lock


def remove_run(workspace: Workspace, name: str) -> dict[str, Any]:
    """Delete the fine-tuning run `name` (manifest, log, adapter or model, checkpoints, merged
    model, exports). A run that a live process is training is refused (:class:`RunBusyError`);
    an unknown name is an error listing the known ones."""
    folders = run_folders(workspace)
    path = folders.path(name)
    if not path.is_dir():
        raise folders.missing(name)
    lock = _hold(path, name)
    try:
        manifest = read_json(path / MANIFEST_FILE) or {}
        shutil.rmtree(path)
    finally:
        lock.release()
    return {"removed": name, "kind": "fine-tuning run", "path": str(path), "status": manifest.get("status")}


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
    of that name is an error (pick --name or remove it), an interrupted one needs ``resume=True``,
    a failed one is replaced (or resumed). Every row of the dataset is checked first: unusable rows
    are one error naming them, unless ``config.skip_bad_rows``. The run is locked while it trains
    (:func:`run_is_live`); an exception marks it failed with the error in its manifest. A complete
    run's checkpoints are removed unless ``config.keep_final_checkpoints``.

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
    dataset = load_dataset(workspace.datasets_dir, dataset_name, skip_bad_rows=config.skip_bad_rows)
    rows = check_rows(dataset.rows_path)  # every row, before anything is created: all bad rows in one message
    require_usable(rows, skip_bad=config.skip_bad_rows, skip_option=SKIP_BAD_ROWS)
    name = name or f"{dataset.manifest.name}-{config.method}"
    run_dir = run_folders(workspace).path(name)
    lock = _hold(run_dir, name) if processes.is_main_process else None
    try:
        return _tune_locked(
            workspace, dataset, model_name, config, name, run_dir, len(rows.bad), resume, progress, on_step, processes
        )
    finally:
        if lock is not None:
            lock.release()


def _tune_locked(
    workspace: Workspace,
    dataset: Dataset,
    model_name: str,
    config: TuneConfig,
    name: str,
    run_dir: Path,
    bad_rows: int,
    resume: bool,
    progress: Progress | None,
    on_step: Callable[[int, float], None] | None,
    processes: PartialState,
) -> Run:
    previous = read_json(run_dir / MANIFEST_FILE)
    status = previous.get("status") if previous is not None else None
    if status == RunStatus.COMPLETE:
        raise TuneError(
            f"run {name!r} is already complete; choose another --name, or remove it with `infuse adapters rm {name}`"
        )
    if status == RunStatus.FAILED and not resume:  # a failed run never blocks its name: start over
        processes.wait_for_everyone()
        if processes.is_main_process:
            shutil.rmtree(run_dir)
        previous = None
    elif previous is not None and not resume:
        raise TuneError(
            f"run {name!r} was interrupted; pass --resume to continue it from its last checkpoint, choose "
            f"another --name, or remove it with `infuse adapters rm {name}`"
        )
    elif previous is None and resume:
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
            "bad_rows_skipped": bad_rows,
        },
        # The access lists of the training documents (None: the dataset recorded none); see training_access.
        "training_access": dataset.manifest.source.get("access"),
        "hyperparameters": config.to_dict(),
        "created": previous["created"] if previous else utc_now(),
    }
    if is_gguf_reference(model_name):  # the export copies this file's metadata: remember which file it was
        provenance = gguf_provenance(model_source(model_name, progress))
        if provenance is not None:
            manifest["base_gguf"] = {"path": provenance["gguf"], "sha256": provenance["sha256"]}
    processes.wait_for_everyone()  # every rank has checked the folder before rank 0 writes to it
    if processes.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_manifest(run_dir, manifest)  # a resumed failed run is "training" again
    try:
        result = train(model_name, dataset, run_dir, config, resume=resume, progress=progress, on_step=on_step)
    except Exception as exc:  # recorded, so the run shows as failed (not "training" forever) and its name is free
        if processes.is_main_process:
            manifest.update(status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", failed=utc_now())
            _write_manifest(run_dir, manifest)
        raise
    if result.manifest.get("is_main_process", True):
        manifest.update(_result_fields(result))
        _write_manifest(run_dir, manifest)  # complete first: a kill now leaves a complete run with checkpoints
        if not config.keep_final_checkpoints:
            manifest["checkpoints_removed"] = remove_checkpoints(run_dir)
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
        for row in read_rows(path, skip_bad=True)[:8]:
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


def training_access(workspace: Workspace, model: str | None, adapters: Sequence[str]) -> list[dict[str, Any]]:
    """The fine-tuning runs of this workspace that a served model is made of (``model`` and
    ``adapters`` as folders, e.g. ``settings.model.name``/``.adapters`` after
    :func:`inference_overrides`): a run's adapter, full model, merged folder or GGUF file. Each is
    ``{"run", "access"}``: the access lists its training documents carried (None: not recorded).
    Weights from elsewhere (another workspace, the Hub) are not recognised."""
    runs_root = workspace.adapters_dir.resolve()
    found: dict[str, dict[str, Any]] = {}
    for served in [model, *adapters]:
        if not served:
            continue
        path = Path(served).expanduser().resolve()
        if not path.is_relative_to(runs_root) or path == runs_root:
            continue
        name = path.relative_to(runs_root).parts[0]
        if name not in found:
            run = open_run(workspace, name)
            found[name] = {"run": name, "access": run.manifest.get("training_access")}
    return list(found.values())


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
    "RunBusyError",
    "merge_adapter",
    "open_run",
    "remove_run",
    "run_is_live",
    "resolve_for_inference",
    "training_access",
    "tune",
    "tuned_network",
]
