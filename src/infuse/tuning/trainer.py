"""LoRA, QLoRA and full fine-tuning of a local causal LM: one visible training loop.

The loop (:func:`train`) runs the same under ``python``, ``torchrun`` and ``accelerate launch``:
:class:`accelerate.Accelerator` supplies the process group (DDP; FSDP or DeepSpeed from an
accelerate config file, see ``configs/accelerate/``), mixed precision and gradient sync.

* **Data**: rows are encoded (:func:`infuse.tuning.packing.encode_row`), a held-out slice
  (``eval_fraction``) is set aside for the evaluation loss, and the rest is packed into
  ``seq_len`` rows with per-document position ids. Step ``s`` always trains on the same rows:
  the row stream is a fixed permutation per epoch (seeded), and each optimizer step takes the next
  ``micro_batch_size x grad_accum x world_size`` rows, rank r taking its share of each micro step.
  The loss is summed over target tokens and divided by the step's *global* target count, so one
  process and N processes compute the same gradient for the same global batch.
* **Checkpoints** every ``save_every`` steps (default: about ten per run): trainable weights,
  optimizer, RNG state and the loss log, written to a temporary folder and renamed (a kill leaves
  the previous checkpoint intact). ``resume=True`` continues from the newest one with the same
  data order. The registry removes them once the run is complete (``keep_final_checkpoints``).
* **Progress** goes to a :class:`infuse.progress.Progress` (stage ``tune``, one unit per step, a
  note with loss and tokens/s about every 5% of the run); the loop itself never draws.
* **Outputs** in the run folder: ``adapter/`` (PEFT) or ``model/`` (full fine-tune),
  ``manifest.json`` and ``train_log.jsonl`` (one line per step).

>>> result = train("Qwen/Qwen2.5-0.5B", load_dataset(ws.datasets_dir, "cpt"), ws.adapters_dir / "cpt-lora",
...                TuneConfig(method=TuneMethod.LORA, epochs=3))          # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from infuse.errors import InfuseError
from infuse.files import staged_folder
from infuse.progress import Progress, or_null
from infuse.tuning.datasets import Dataset
from infuse.tuning.packing import (
    IGNORE,
    Example,
    PackedRow,
    encode_row,
    pack_examples,
    packed_logits,
)
from infuse.tuning.schedule import warmup_cosine, warmup_steps

if TYPE_CHECKING:
    import torch
    from transformers import BitsAndBytesConfig, PreTrainedTokenizerBase

    from infuse.models.transformers_backend import Network

# ``Accelerator.autocast``: a context manager factory that turns on the run's mixed precision (or does nothing).
Autocast: TypeAlias = Callable[[], AbstractContextManager[object]]

CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
MANIFEST_FILE = "manifest.json"
LOG_FILE = "train_log.jsonl"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


class TuneMethod(StrEnum):
    LORA = "lora"  # low-rank adapters on every linear layer; the base stays frozen
    FULL = "full"  # every weight trained; the output is a whole model folder
    QLORA = "qlora"  # LoRA on a 4-bit quantised base (CUDA + bitsandbytes)


class RunStatus(StrEnum):
    TRAINING = "training"  # a live process is training it (it holds the run's lock)
    INTERRUPTED = "interrupted"  # the manifest says training but no process holds the lock: killed (--resume continues)
    FAILED = "failed"  # training raised an error (recorded in the manifest); --resume or a new tune replaces it
    COMPLETE = "complete"


class TuneError(InfuseError):
    """Fine-tuning cannot start or continue; the message says what to change."""


DEFAULT_LR = {TuneMethod.LORA: 2e-4, TuneMethod.QLORA: 2e-4, TuneMethod.FULL: 2e-5}


@dataclass(frozen=True)
class TuneConfig:
    """Every knob of a run (all of them are recorded in the run's manifest)."""

    method: TuneMethod = TuneMethod.LORA
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs
    lr: float | None = None  # None: 2e-4 for (Q)LoRA, 2e-5 for full
    micro_batch_size: int = 4  # packed rows per forward pass per process
    grad_accum: int = 1
    seq_len: int = 1024
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1  # cosine decay to lr * this
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | str = "all-linear"  # PEFT: every linear layer but the output head
    eval_fraction: float = 0.05  # examples held out for the evaluation loss (0: none)
    eval_every: int | None = None  # None: about 10 times per run
    save_every: int | None = None  # checkpoint interval in steps (None: about 10 per run; 0: none, so no --resume)
    keep_checkpoints: int = 2  # newest checkpoints kept while training
    keep_final_checkpoints: bool = False  # keep checkpoints/ once the run is complete (default: removed)
    skip_bad_rows: bool = False  # train on the usable rows when some are unusable (else an error naming them)
    gradient_checkpointing: bool = False
    seed: int = 0
    device: str | None = None  # None: CUDA, then MPS, then CPU
    threads: int | None = None  # CPU threads (None: torch's default)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @staticmethod
    def parse_targets(text: str | None) -> tuple[str, ...] | str:
        """``lora_targets`` from text (``--lora-targets q_proj,v_proj``); None or blank: every linear layer."""
        targets = tuple(t.strip() for t in (text or "").split(",") if t.strip())
        return targets or TuneConfig.lora_targets

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["method"] = str(self.method)
        data["lora_targets"] = list(self.lora_targets) if not isinstance(self.lora_targets, str) else self.lora_targets
        data["learning_rate"] = self.learning_rate
        return data


@dataclass
class TuneResult:
    run_dir: Path
    output_dir: Path  # adapter/ or model/
    steps: int
    final_train_loss: float
    final_eval_loss: float | None
    tokens: int
    tokens_per_second: float
    wall_seconds: float
    peak_memory_mb: float
    resumed_from: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


# --- data plan -------------------------------------------------------------------------------


@dataclass
class DataPlan:
    """Which packed rows each optimizer step trains on: a pure function of the step."""

    rows: list[PackedRow]
    eval_rows: list[PackedRow]
    global_batch: int
    seed: int
    _order_cache: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def step_rows(self, step: int) -> list[PackedRow]:
        picked = []
        for position in range(step * self.global_batch, (step + 1) * self.global_batch):
            epoch, index = divmod(position, len(self.rows))
            picked.append(self.rows[self._order(epoch)[index]])
        return picked

    def _order(self, epoch: int) -> list[int]:
        """Epoch `epoch`'s permutation of the rows (only the latest one is kept)."""
        if epoch not in self._order_cache:
            order = list(range(len(self.rows)))
            random.Random(f"tune-order|{self.seed}|{epoch}").shuffle(order)
            self._order_cache.clear()
            self._order_cache[epoch] = order
        return self._order_cache[epoch]


def split_examples(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded held-out slice (none when there are fewer than 20 examples or the fraction is 0)."""
    if eval_fraction <= 0 or len(examples) < 20:
        return examples, []
    order = list(range(len(examples)))
    random.Random(f"tune-split|{seed}").shuffle(order)
    n_eval = max(1, round(len(examples) * eval_fraction))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def fitting_examples(examples: list[Example], seq_len: int, skip_bad: bool, name: str) -> list[Example]:
    """`examples`, refusing prompted examples (chat, prompt/completion) longer than `seq_len`.

    Packing cuts a long example into `seq_len` windows. That is right for plain text (``cpt``),
    where every token is a target; a prompted example's later window would train its answer
    without the start of its prompt (a RAFT row without its passages), teaching the wrong thing
    quietly. So such examples are an error naming the longest, or with `skip_bad` left out."""

    def cut(example: Example) -> bool:
        return len(example.ids) > seq_len and not all(example.target[1:])

    too_long = [(n, len(e.ids)) for n, e in enumerate(examples, start=1) if cut(e)]
    if not too_long:
        return examples
    if skip_bad:
        return [e for e in examples if not cut(e)]
    longest = max(length for _, length in too_long)
    shown = ", ".join(f"row {n}: {length} tokens" for n, length in too_long[:3])
    raise TuneError(
        f"dataset {name!r}: {len(too_long)} of {len(examples)} prompted rows are longer than seq_len {seq_len} "
        f"({shown}{', ...' if len(too_long) > 3 else ''}); cut into windows, their answers would be trained "
        f"without the start of their prompt. Use --seq-len {longest} or more, shorten those rows, or leave "
        "them out with --skip-bad-rows"
    )


def build_plan(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, config: TuneConfig, world_size: int) -> DataPlan:
    examples = [encode_row(row, tokenizer) for row in dataset.rows(skip_bad=config.skip_bad_rows)]
    examples = fitting_examples(examples, config.seq_len, config.skip_bad_rows, dataset.manifest.name)
    examples = [e for e in examples if e.n_targets > 0]
    if not examples:
        raise TuneError(
            f"dataset {dataset.manifest.name!r} has no tokens to learn from (every row is empty after tokenisation)"
        )
    train_examples, eval_examples = split_examples(examples, config.eval_fraction, config.seed)
    random.Random(f"tune-pack|{config.seed}").shuffle(train_examples)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return DataPlan(
        pack_examples(train_examples, config.seq_len, pad_id),
        pack_examples(eval_examples, config.seq_len, pad_id),
        config.micro_batch_size * config.grad_accum * world_size,
        config.seed,
    )


def total_steps(plan: DataPlan, config: TuneConfig) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.epochs * len(plan.rows) / plan.global_batch))


def lr_at(step: int, steps: int, config: TuneConfig) -> float:
    """Linear warmup over warmup_ratio of the run, then cosine decay to lr * min_lr_ratio
    (:func:`infuse.tuning.schedule.warmup_cosine`)."""
    return warmup_cosine(
        step,
        peak=config.learning_rate,
        total=steps,
        warmup=warmup_steps(steps, config.warmup_ratio),
        min_ratio=config.min_lr_ratio,
    )


# --- model -----------------------------------------------------------------------------------


def load_for_training(
    model_name: str, config: TuneConfig, device: torch.device
) -> tuple[Network, PreTrainedTokenizerBase]:
    """(model, tokenizer) ready to train for `config.method`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infuse.hf_logging import quiet_hf_progress
    from infuse.models.sources import model_source

    quiet_hf_progress()
    source = model_source(model_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise TuneError(
            f"cannot load a tokenizer from {model_name!r} ({exc}); a model folder needs tokenizer files "
            "(tokenizer.json or tokenizer.model + tokenizer_config.json) next to the weights"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    kwargs: dict[str, Any] = {}
    if config.method is TuneMethod.QLORA:
        kwargs["quantization_config"] = _qlora_quantization(device)
        kwargs["device_map"] = {"": device.index or 0}
    elif device.type == "cuda" and config.method is TuneMethod.LORA:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32  # full fine-tuning keeps fp32 master weights (autocast does bf16)
    try:
        model: Network = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise TuneError(f"cannot load model {model_name!r}: {exc}") from exc
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.method is TuneMethod.FULL:
        return model, tokenizer
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method is TuneMethod.QLORA:
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]  # unannotated in peft
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    elif config.gradient_checkpointing:
        model.enable_input_require_grads()
    targets = config.lora_targets if isinstance(config.lora_targets, str) else list(config.lora_targets)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora), tokenizer
    except ValueError as exc:
        raise TuneError(
            f"cannot put LoRA adapters on {model_name!r}: {exc}; pass --lora-targets with module names of this model"
        ) from exc


def _qlora_quantization(device: torch.device) -> BitsAndBytesConfig:
    import torch

    if device.type != "cuda":
        raise TuneError("QLoRA needs a CUDA GPU (4-bit bitsandbytes kernels); on this machine use --method lora")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise TuneError("QLoRA needs bitsandbytes: pip install bitsandbytes (or use --method lora)") from exc
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # unannotated in transformers
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def trainable_state(model: Network) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_interval(config: TuneConfig, steps: int) -> int:
    """Steps between checkpoints: ``save_every``, or about ten per run when it is None (a killed
    run then loses at most a tenth of its steps), 0 for none."""
    if config.save_every is not None:
        return config.save_every
    return max(1, steps // 10)


def remove_checkpoints(run_dir: Path) -> int:
    """Delete a finished run's checkpoints (and any temporary folder of an interrupted save);
    returns how many complete checkpoints there were."""
    count = len(checkpoint_dirs(run_dir))
    shutil.rmtree(run_dir / CHECKPOINTS_DIR, ignore_errors=True)
    return count


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(
    run_dir: Path,
    model: Network,
    optimizer: torch.optim.Optimizer,
    step: int,
    log: list[dict[str, Any]],
    fingerprint: dict[str, Any],
    keep: int,
) -> Path:
    import torch
    from safetensors.torch import save_file

    final = run_dir / CHECKPOINTS_DIR / f"step-{step:07d}"
    with staged_folder(final) as staging:  # ".step-N.tmp-PID" until complete: checkpoint_dirs skips it
        save_file(trainable_state(model), str(staging / WEIGHTS_FILE))
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        rng: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, staging / "rng.pt")
        state = {"step": step, "log": log, "fingerprint": fingerprint}
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    folder: Path, model: Network, optimizer: torch.optim.Optimizer, fingerprint: dict[str, Any]
) -> tuple[int, list[dict[str, Any]]]:
    import torch
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    changed = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
    if changed:
        raise TuneError(
            f"{folder} was made with different {', '.join(changed)}; resume with the same model, dataset "
            "and settings, or start a new run under another --name"
        )
    weights = load_file(str(folder / WEIGHTS_FILE))
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise TuneError(
            f"{folder} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}); it is not from this run"
        )
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, weights_only=False))
    rng = torch.load(folder / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"]), list(state["log"])


# --- the loop --------------------------------------------------------------------------------


def _batch_tensors(rows: list[PackedRow], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    input_ids = torch.tensor([r.input_ids for r in rows], device=device)
    position_ids = torch.tensor([r.position_ids for r in rows], device=device)
    labels = torch.tensor([r.labels for r in rows], device=device)
    return input_ids, position_ids, labels


def _summed_loss(model: Network, rows: list[PackedRow], device: torch.device, autocast: Autocast) -> torch.Tensor:
    """Cross-entropy summed over target tokens (normalised by the caller)."""
    import torch.nn.functional as F

    input_ids, position_ids, labels = _batch_tensors(rows, device)
    with autocast():
        logits = packed_logits(model, input_ids, position_ids)
    return F.cross_entropy(
        logits.view(-1, logits.size(-1)).float(), labels.view(-1), ignore_index=IGNORE, reduction="sum"
    )


def _targets(rows: list[PackedRow]) -> int:
    return sum(sum(1 for label in r.labels if label != IGNORE) for r in rows)


def evaluate_loss(
    model: Network, rows: list[PackedRow], device: torch.device, autocast: Autocast, batch_size: int
) -> float | None:
    import torch

    if not rows:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(rows), batch_size):
            chunk = rows[begin : begin + batch_size]
            total += float(_summed_loss(model, chunk, device, autocast))
            count += _targets(chunk)
    model.train(was_training)
    return total / max(count, 1)


def peak_memory_mb(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's peak RSS


def train(
    model_name: str,
    dataset: Dataset,
    run_dir: Path,
    config: TuneConfig,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TuneResult:
    """Fine-tune `model_name` on `dataset` into `run_dir`; see the module docstring.

    `progress` hears about the steps (main process only; None: nothing is reported).
    `on_step(step, loss)` is called after every optimizer step (tests use it to time a kill).
    """
    import torch
    from accelerate import Accelerator

    from infuse.devices import default_device

    if config.threads:
        torch.set_num_threads(config.threads)
    device_name = config.device or default_device()
    cpu = device_name == "cpu"
    mixed = "no"
    if not cpu and torch.cuda.is_available() and config.method is TuneMethod.FULL:
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    mixed = os.environ.get("ACCELERATE_MIXED_PRECISION") or mixed  # an accelerate config file decides
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed)
    device = accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(config.seed)

    model, tokenizer = load_for_training(model_name, config, device)
    plan = build_plan(dataset, tokenizer, config, world)
    steps = total_steps(plan, config)
    fingerprint = {
        "model": model_name,
        "dataset_sha256": dataset.manifest.sha256,
        "config": {
            k: v
            for k, v in config.to_dict().items()
            if k not in ("save_every", "keep_checkpoints", "keep_final_checkpoints", "threads", "device")
        },
        "world_size": world,
    }
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.999),
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)

    start_step = 0
    log: list[dict[str, Any]] = []
    resumed_from: int | None = None
    checkpoints = checkpoint_dirs(run_dir)
    if resume and checkpoints:
        start_step, log = load_checkpoint(checkpoints[-1], unwrapped, optimizer, fingerprint)
        resumed_from = start_step
    elif checkpoints and not resume:
        raise TuneError(
            f"{run_dir} already has checkpoints from an earlier run; pass --resume to continue it "
            "or choose another --name"
        )
    if accelerator.is_main_process:
        _write_log(run_dir, log)
    eval_every = config.eval_every or max(1, steps // 10)
    save_every = checkpoint_interval(config, steps)
    micro = config.micro_batch_size
    tokens_done = 0
    started = time.perf_counter()
    report = or_null(progress if accelerator.is_main_process else None)
    report.start("tune", steps)
    if start_step:
        report.advance(start_step)
    note_every = max(1, steps // 20)
    model.train()
    eval_loss: float | None = None
    for step in range(start_step, steps):
        rows = plan.step_rows(step)
        global_targets = max(1, _targets(rows))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, config)
        step_loss = torch.zeros((), device=device)
        for a in range(config.grad_accum):
            block = rows[a * micro * world : (a + 1) * micro * world]
            mine = block[rank * micro : (rank + 1) * micro]
            sync = nullcontext() if a == config.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                summed = _summed_loss(model, mine, device, accelerator.autocast)
                # DDP averages gradients over processes: scale so the result is the global mean.
                accelerator.backward(summed * world / global_targets)
            step_loss += summed.detach()
        if config.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = float(accelerator.reduce(step_loss, reduction="sum")) / global_targets
        tokens_done += sum(len(r.input_ids) for r in rows)
        entry: dict[str, Any] = {"step": step + 1, "loss": round(loss, 6), "lr": lr_at(step, steps, config)}
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            eval_loss = evaluate_loss(unwrapped, plan.eval_rows, device, accelerator.autocast, micro)
            if eval_loss is not None:
                entry["eval_loss"] = round(eval_loss, 6)
        log.append(entry)
        if accelerator.is_main_process:
            _append_log(run_dir, entry)
        elapsed = time.perf_counter() - started
        report.advance()
        if (step + 1) % note_every == 0 or step + 1 == steps:
            report.note(f"step {step + 1}/{steps} loss {loss:.4f} {tokens_done / max(elapsed, 1e-9):,.0f} tok/s")
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            if accelerator.is_main_process:
                save_checkpoint(run_dir, unwrapped, optimizer, step + 1, log, fingerprint, config.keep_checkpoints)
            accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(step + 1, loss)
    wall = time.perf_counter() - started
    accelerator.wait_for_everyone()
    output = run_dir / (MODEL_DIR if config.method is TuneMethod.FULL else ADAPTER_DIR)
    state = accelerator.get_state_dict(model)  # collective: gathers FSDP / DeepSpeed shards
    if accelerator.is_main_process:
        _save_output(unwrapped, state, tokenizer, output)
    accelerator.wait_for_everyone()
    final = log[-1]["loss"] if log else float("nan")
    return TuneResult(
        run_dir=run_dir,
        output_dir=output,
        steps=steps,
        final_train_loss=final,
        final_eval_loss=eval_loss,
        tokens=tokens_done,
        tokens_per_second=tokens_done / max(wall, 1e-9),
        wall_seconds=wall,
        peak_memory_mb=peak_memory_mb(device),
        resumed_from=resumed_from,
        manifest={
            "world_size": world,
            "device": str(device),
            "mixed_precision": mixed,
            "train_rows": len(plan.rows),
            "eval_rows": len(plan.eval_rows),
            "global_batch_rows": plan.global_batch,
            "is_main_process": accelerator.is_main_process,
        },
    )


def _save_output(model: Network, state: dict[str, Any], tokenizer: PreTrainedTokenizerBase, output: Path) -> None:
    """The adapter (PEFT folder) or the whole model, written under a temporary name and renamed."""
    with staged_folder(output) as staging:
        model.save_pretrained(staging, state_dict=state)
        tokenizer.save_pretrained(staging)


def _write_log(run_dir: Path, log: list[dict[str, Any]]) -> None:
    """The loss log as of the checkpoint resumed from (steps after it are trained again)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_FILE).write_text("".join(json.dumps(e) + "\n" for e in log), encoding="utf-8")


def _append_log(run_dir: Path, entry: dict[str, Any]) -> None:
    with (run_dir / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = [
    "DataPlan",
    "RunStatus",
    "TuneConfig",
    "TuneError",
    "TuneMethod",
    "TuneResult",
    "build_plan",
    "checkpoint_dirs",
    "checkpoint_interval",
    "remove_checkpoints",
    "lr_at",
    "read_log",
    "train",
]
