"""The fine-tuning trainer and run registry on tiny real models: loss goes down, outputs load,
kill -9 + --resume continues the same trajectory, merge == base + adapter, DDP == one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from infuse.models.transformers_backend import TransformersModel
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetError, DatasetKind
from infuse.tuning.packing import IGNORE, Example, encode_row, pack_examples
from infuse.tuning.registry import (
    RunBusyError,
    check_same_logits,
    list_runs,
    merge_adapter,
    open_run,
    remove_run,
    resolve_for_inference,
    run_is_live,
    sample_inputs,
    tune,
)
from infuse.tuning.trainer import RunStatus, TuneConfig, TuneError, TuneMethod, read_log
from infuse.workspace import Workspace

FAST = dict(seq_len=128, micro_batch_size=4, threads=1, device="cpu")


@pytest.fixture
def lab_cpt(lab_ws: Workspace, tiny_lab_model_dir: str) -> Workspace:
    build_dataset(lab_ws, BuildRequest(DatasetKind.CPT, tokenizer=tiny_lab_model_dir))
    return lab_ws


def test_lora_on_the_new_peoples_documents_lowers_the_loss(lab_cpt: Workspace, tiny_lab_model_dir: str) -> None:
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=60, lr=1e-2, eval_fraction=0, **FAST))
    log = read_log(run.path)
    assert [e["step"] for e in log] == list(range(1, 61))
    first, last = (sum(e["loss"] for e in part) / 5 for part in (log[:5], log[-5:]))
    assert last < 0.92 * first  # about 0.89 measured
    manifest = open_run(lab_cpt, "cpt-lora").manifest
    assert manifest["status"] == "complete" and manifest["steps"] == 60 and manifest["method"] == "lora"
    assert manifest["dataset"]["name"] == "cpt" and manifest["dataset"]["sha256"]
    assert (
        manifest["hyperparameters"]["learning_rate"] == 1e-2
        and manifest["hyperparameters"]["lora_targets"] == "all-linear"
    )
    for key in ("final_train_loss", "tokens_per_second", "wall_seconds", "peak_memory_mb"):
        assert manifest[key] > 0
    assert (run.path / "adapter" / "adapter_config.json").is_file()
    # The adapter loads through the same backend `ask` and `serve` use, and changes the model.
    base = TransformersModel.load(tiny_lab_model_dir, device="cpu")
    tuned = TransformersModel.load(tiny_lab_model_dir, adapters=[str(run.output_dir)], device="cpu")
    ids = torch.tensor([base.tokenizer("Alda Ashby was born in")["input_ids"]])
    assert not torch.allclose(base.model(input_ids=ids).logits, tuned.model(input_ids=ids).logits)


def test_eval_loss_is_measured_on_held_out_rows(lab_ws: Workspace, tiny_lab_model_dir: str) -> None:
    build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, paraphrases=4))
    run = tune(
        lab_ws, "paraphrase", tiny_lab_model_dir, TuneConfig(max_steps=6, eval_fraction=0.1, eval_every=3, **FAST)
    )
    log = read_log(run.path)
    assert [e["step"] for e in log if "eval_loss" in e] == [3, 6]
    assert run.manifest["eval_rows"] >= 1 and run.manifest["final_eval_loss"] == pytest.approx(
        log[-1]["eval_loss"], abs=1e-5
    )


def test_full_fine_tune_writes_a_model_folder_that_ask_uses_by_name(
    lab_cpt: Workspace, tiny_lab_model_dir: str
) -> None:
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(method=TuneMethod.FULL, max_steps=3, lr=1e-3, **FAST))
    assert (run.path / "model" / "config.json").is_file() and (run.path / "model" / "tokenizer.json").is_file()
    model, adapters = resolve_for_inference(lab_cpt, None, ["cpt-full"])
    assert model == str(run.path / "model") and adapters == []
    TransformersModel.load(model, device="cpu")
    with pytest.raises(TuneError, match="full fine-tune: .* already is a complete model folder"):
        merge_adapter(lab_cpt, "cpt-full")


def test_chat_rows_train_only_on_the_answers(tiny_lab_model_dir: str) -> None:
    tokenizer = TransformersModel.load(tiny_lab_model_dir, device="cpu").tokenizer
    row = {
        "messages": [
            {"role": "system", "content": "Answer the question concisely."},
            {"role": "user", "content": "Where was Alda Ashby born?"},
            {"role": "assistant", "content": "Gorsk"},
        ]
    }
    example = encode_row(row, tokenizer)
    targets = [tokenizer.convert_ids_to_tokens(i) for i, t in zip(example.ids, example.target) if t]
    assert targets == ["Gorsk", "</s>"]


def test_packing_restarts_positions_and_never_crosses_examples() -> None:
    examples = [
        Example([1, 2, 3], [True] * 3),
        Example([4, 5, 6, 7], [False, False, True, True]),
        Example([8, 9], [True, True]),
    ]
    rows = pack_examples(examples, seq_len=8, pad_id=0)
    assert [r.input_ids for r in rows] == [[1, 2, 3, 4, 5, 6, 7, 0], [8, 9, 0, 0, 0, 0, 0, 0]]
    assert rows[0].position_ids == [0, 1, 2, 0, 1, 2, 3, 0]
    assert rows[0].labels == [2, 3, IGNORE, IGNORE, 6, 7, IGNORE, IGNORE]  # no label crosses 3 -> 4


def test_packing_fills_earlier_rows_first() -> None:
    five, three = Example([1] * 5, [True] * 5), Example([2] * 3, [True] * 3)
    rows = pack_examples([five, five, three], seq_len=8, pad_id=0)
    assert [r.input_ids for r in rows] == [[1] * 5 + [2] * 3, [1] * 5 + [0] * 3]  # the 3 fills the first row
    long = pack_examples([Example(list(range(1, 12)), [True] * 11)], seq_len=8, pad_id=0)
    assert [r.position_ids for r in long] == [list(range(8)), [0, 1, 2, 0, 1, 2, 3, 4]]  # split, then padding


def test_merged_model_gives_the_logits_of_base_plus_adapter(lab_cpt: Workspace, tiny_lab_model_dir: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=5, lr=1e-2, **FAST))
    report = merge_adapter(lab_cpt, "cpt-lora")
    assert report["max_logit_difference"] <= 1e-3 and report["samples"] > 0
    run = open_run(lab_cpt, "cpt-lora")
    merged = AutoModelForCausalLM.from_pretrained(report["merged"])
    combined = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lab_model_dir), str(run.output_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_lab_model_dir)
    tokenizer = TransformersModel.load(report["merged"], device="cpu").tokenizer
    inputs = sample_inputs(tokenizer, ["Alda Ashby was born in Gorsk.", "Question: Where was Alda Ashby born?"])
    with torch.no_grad():
        expected = [combined(input_ids=i).logits for i in inputs]
        base_logits = [base(input_ids=i).logits for i in inputs]
    assert check_same_logits(expected, merged, inputs, 1e-4, "merge") <= 1e-4
    assert max(float((a - b).abs().max()) for a, b in zip(expected, base_logits)) > 1e-3  # the adapter mattered
    with pytest.raises(TuneError, match="changed the model: logits differ"):
        check_same_logits(expected, base, inputs, 1e-4, "a broken merge")
    assert open_run(lab_cpt, "cpt-lora").summary()["merged"]


def test_registry_refuses_to_clobber_or_resume_the_wrong_run(lab_cpt: Workspace, tiny_lab_model_dir: str) -> None:
    config = TuneConfig(max_steps=2, **FAST)
    tune(lab_cpt, "cpt", tiny_lab_model_dir, config)
    with pytest.raises(TuneError, match="already complete; choose another --name"):
        tune(lab_cpt, "cpt", tiny_lab_model_dir, config)
    with pytest.raises(TuneError, match="nothing to resume"):
        tune(lab_cpt, "cpt", tiny_lab_model_dir, config, name="other", resume=True)
    assert [r.name for r in list_runs(lab_cpt)] == ["cpt-lora"]


def test_bad_inputs_give_clear_errors(lab_cpt: Workspace, tiny_lab_model_dir: str, tmp_path: Path) -> None:
    no_tokenizer = tmp_path / "weights-only"
    shutil.copytree(tiny_lab_model_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(TuneError, match="(?s)cannot load a tokenizer .* needs tokenizer files"):
        tune(lab_cpt, "cpt", str(no_tokenizer), TuneConfig(max_steps=1, **FAST))
    with pytest.raises(TuneError, match="QLoRA needs a CUDA GPU"):
        tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(method=TuneMethod.QLORA, max_steps=1, **FAST), name="q")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="empty.jsonl: the dataset is empty"):
        tune(lab_cpt, str(empty), tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"prompt": "q", "completion": "a"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r'missing.jsonl: 1 of 1 rows .*line 1: missing field "text".*"messages"'):
        tune(lab_cpt, str(missing), tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))


def test_bad_rows_are_reported_together_before_a_run_exists_and_can_be_skipped(
    lab_cpt: Workspace, tiny_lab_model_dir: str
) -> None:
    rows_path = lab_cpt.datasets_dir / "cpt" / "train.jsonl"
    lines = rows_path.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"text": "\n", "bos": False, "eos": True})  # what the old cpt builder wrote
    lines[3] = "{broken"
    rows_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    good = len(lines) - 2
    with pytest.raises(DatasetError) as caught:
        tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))
    message = str(caught.value)
    assert f"2 of {len(lines)} rows are unusable (line 2: " in message and "line 4: not valid JSON" in message
    assert message.endswith(f"pass --skip-bad-rows to train on the other {good}.")
    assert list_runs(lab_cpt) == [] and not (lab_cpt.adapters_dir / "cpt-lora").exists()
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=1, skip_bad_rows=True, **FAST))
    assert run.status is RunStatus.COMPLETE and run.manifest["dataset"]["bad_rows_skipped"] == 2


def test_a_failed_run_records_its_error_and_frees_its_name(
    lab_cpt: Workspace, tiny_lab_model_dir: str, tmp_path: Path
) -> None:
    no_tokenizer = tmp_path / "weights-only"
    shutil.copytree(tiny_lab_model_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(TuneError, match="cannot load a tokenizer"):
        tune(lab_cpt, "cpt", str(no_tokenizer), TuneConfig(max_steps=2, **FAST), name="attempt")
    failed = open_run(lab_cpt, "attempt")
    assert failed.status is RunStatus.FAILED and "cannot load a tokenizer" in failed.manifest["error"]
    assert failed.summary()["status"] == "failed" and failed.summary()["error"] == failed.manifest["error"]
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=2, **FAST), name="attempt")  # replaces it
    assert run.status is RunStatus.COMPLETE and "error" not in run.manifest
    assert open_run(lab_cpt, "attempt").manifest["base_model"] == tiny_lab_model_dir


def test_a_finished_run_drops_its_checkpoints_unless_asked_to_keep_them(
    lab_cpt: Workspace, tiny_lab_model_dir: str
) -> None:
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=4, save_every=1, **FAST))
    assert run.manifest["checkpoints_removed"] == 2 and not (run.path / "checkpoints").exists()
    assert (run.path / "adapter" / "adapter_config.json").is_file()
    kept = tune(
        lab_cpt,
        "cpt",
        tiny_lab_model_dir,
        TuneConfig(max_steps=4, save_every=1, keep_final_checkpoints=True, **FAST),
        name="kept",
    )
    assert kept.summary()["checkpoints"] == [2, 3] and "checkpoints_removed" not in kept.manifest


HOLD_LOCK = """
import sys, time
from pathlib import Path
from infuse.tuning.registry import run_lock
lock = run_lock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_rm_removes_a_run_but_not_one_a_live_process_is_training(lab_cpt: Workspace, tiny_lab_model_dir: str) -> None:
    run = tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert run_is_live(run.path)
        with pytest.raises(RunBusyError, match="being trained by another process"):
            remove_run(lab_cpt, "cpt-lora")
        with pytest.raises(RunBusyError):
            tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))
        assert run.path.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert not run_is_live(run.path)  # a killed holder releases the lock
    report = remove_run(lab_cpt, "cpt-lora")
    assert report["removed"] == "cpt-lora" and report["status"] == "complete" and not run.path.exists()
    assert list_runs(lab_cpt) == []
    with pytest.raises(TuneError, match="no fine-tuning run 'cpt-lora'"):
        remove_run(lab_cpt, "cpt-lora")
    tune(lab_cpt, "cpt", tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))  # the name is free again


def test_a_plain_jsonl_file_is_a_dataset(lab_ws: Workspace, tiny_lab_model_dir: str, tmp_path: Path) -> None:
    rows = tmp_path / "mine.jsonl"
    rows.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Where was Alda Ashby born {i}?"},
                        {"role": "assistant", "content": "Gorsk"},
                    ]
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    run = tune(lab_ws, str(rows), tiny_lab_model_dir, TuneConfig(max_steps=2, **FAST))
    assert run.name == "mine-lora" and run.manifest["dataset"]["kind"] == "imported"


def test_a_prompted_row_longer_than_seq_len_is_refused_not_cut(
    lab_ws: Workspace, tiny_lab_model_dir: str, tmp_path: Path
) -> None:
    """Cut into windows, a chat row's answer would be trained without the start of its prompt
    (a RAFT row without its passages); plain text rows are still cut (``lab_cpt`` rows are 256
    tokens, trained at seq_len 128 in the other tests)."""

    def row(passage: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": f"{passage}\nWhere was Alda Ashby born?"},
                {"role": "assistant", "content": "Gorsk"},
            ]
        }

    rows = tmp_path / "raft.jsonl"
    long_passage = "Alda Ashby was born in Gorsk and lives in Vell. " * 20
    rows.write_text("".join(json.dumps(r) + "\n" for r in [row("Short."), row(long_passage), row("Brief.")]))
    with pytest.raises(TuneError) as caught:
        tune(lab_ws, str(rows), tiny_lab_model_dir, TuneConfig(max_steps=1, **FAST))
    message = str(caught.value)
    assert "1 of 3 prompted rows are longer than seq_len 128 (row 2: " in message
    longest = int(message.split("row 2: ")[1].split(" tokens")[0])
    assert longest > 128 and f"--seq-len {longest} or more" in message and "--skip-bad-rows" in message
    run = tune(lab_ws, str(rows), tiny_lab_model_dir, TuneConfig(max_steps=1, skip_bad_rows=True, **FAST))
    assert run.status is RunStatus.COMPLETE
    run = tune(
        lab_ws, str(rows), tiny_lab_model_dir, TuneConfig(max_steps=1, **{**FAST, "seq_len": longest}), name="fits"
    )
    assert run.status is RunStatus.COMPLETE


# --- subprocess tests: kill -9 and resume, DDP ----------------------------------------------------

TRAIN_SCRIPT = """
import sys
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig
from infuse.workspace import Workspace
ws = Workspace.open(sys.argv[1])
config = TuneConfig(max_steps=40, lr=3e-3, save_every=5, seq_len=128, micro_batch_size=4, threads=1, device="cpu", lora_dropout=0.1)
tune(ws, "cpt", sys.argv[2], config, name=sys.argv[3], resume=len(sys.argv) > 4)
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kill_9_then_resume_continues_the_same_trajectory(
    lab_cpt: Workspace, tiny_lab_model_dir: str, tmp_path: Path
) -> None:
    # The uninterrupted reference is a run of its own: it trains beside the victim (one thread each).
    reference_errors = tmp_path / "reference.stderr"
    with reference_errors.open("w") as errors:  # a file: a pipe nobody reads yet could fill up
        reference = subprocess.Popen(
            [sys.executable, "-c", TRAIN_SCRIPT, str(lab_cpt.path), tiny_lab_model_dir, "reference"],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        victim = subprocess.Popen(
            [sys.executable, "-c", TRAIN_SCRIPT, str(lab_cpt.path), tiny_lab_model_dir, "victim"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = lab_cpt.adapters_dir / "victim" / "train_log.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and victim.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 17:
                break
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        killed_at = len(log.read_text().splitlines())
        assert 17 <= killed_at < 40, "the run finished before it could be killed"
        assert open_run(lab_cpt, "victim").manifest["status"] == "training"
        assert open_run(lab_cpt, "victim").status is RunStatus.INTERRUPTED  # nobody holds its lock
        resumed = _run(str(lab_cpt.path), tiny_lab_model_dir, "victim", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert reference.wait(timeout=300) == 0, reference_errors.read_text()[-3000:]
    finally:
        reference.kill()  # only if an assertion above stopped the test before it finished
        reference.wait()
    run = open_run(lab_cpt, "victim")
    assert run.manifest["status"] == "complete" and run.manifest["steps"] == 40
    assert run.manifest["resumed_from_step"] in (15, 20) and run.manifest["resumed_from_step"] <= killed_at
    got, want = read_log(run.path), read_log(lab_cpt.adapters_dir / "reference")
    assert [e["step"] for e in got] == list(range(1, 41))  # each step once, none lost
    for a, b in zip(got, want):  # same data order, RNG, optimizer state
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4), a["step"]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_same_global_batch(
    lab_cpt: Workspace, tiny_lab_model_dir: str
) -> None:
    common = [
        "-w",
        str(lab_cpt.path),
        "tune",
        "--dataset",
        "cpt",
        "--model",
        tiny_lab_model_dir,
        "--max-steps",
        "4",
        "--seq-len",
        "128",
        "--lora-dropout",
        "0",
        "--lr",
        "3e-3",
        "--device",
        "cpu",
    ]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "infuse", *common, "--batch-size", "2", "--name", "ddp"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "infuse", *common, "--batch-size", "4", "--name", "single"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert open_run(lab_cpt, "ddp").manifest["world_size"] == 2
    assert open_run(lab_cpt, "single").manifest["world_size"] == 1
    got, want = read_log(lab_cpt.adapters_dir / "ddp"), read_log(lab_cpt.adapters_dir / "single")
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2"])
def test_shipped_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    repo = Path(__file__).resolve().parents[1]
    config = load_config_from_file(str(repo / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 1 and config.mixed_precision == "bf16"


def _tune_cli(ws: Path, model: str, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "infuse", "-w", str(ws), "tune", "--dataset", "cpt", "--model", model, "--name", name,
        "--max-steps", "40", "--save-every", "5", "--seq-len", "128", "--lr", "3e-3", "--device", "cpu", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_kill_9_trials_of_the_tune_command(lab_cpt: Workspace, tiny_lab_model_dir: str) -> None:
    """`infuse tune` killed with SIGKILL at several points (before the first checkpoint, and
    between later ones): the run is never corrupt, is listed as interrupted, `--resume` finishes
    it with every step logged once, and the registry then lists it complete without checkpoints.
    The counts go into docs/fine-tuning.md ("Reliability").

    The four trials are separate runs, so their processes run side by side (each one thread: most
    of a process's time is importing torch and transformers), and each is killed at its own point."""
    from typer.testing import CliRunner

    from conftest import kill_9_each_when
    from infuse.cli import app
    from infuse.tuning.trainer import checkpoint_dirs

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kill_points = (1, 12, 23, 34)  # logged steps when the kill comes
    names = {kill_after: f"victim-{kill_after}" for kill_after in kill_points}
    logs = {n: lab_cpt.adapters_dir / name / "train_log.jsonl" for n, name in names.items()}
    victims = {
        n: subprocess.Popen(
            _tune_cli(lab_cpt.path, tiny_lab_model_dir, name),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n, name in names.items()
    }
    kill_9_each_when(
        {
            f"tune {names[n]}": (
                victims[n],
                lambda log=logs[n], n=n: log.is_file() and len(log.read_text().splitlines()) >= n,
            )
            for n in kill_points
        }
    )
    trials = corrupt = lost = 0
    to_resume = []
    for name in names.values():
        trials += 1
        run = open_run(lab_cpt, name)  # the manifest reads back
        listed = CliRunner().invoke(app, ["-w", str(lab_cpt.path), "adapters", "list", "--json"])
        assert {r["name"]: r["status"] for r in json.loads(listed.stdout)}[name] == "interrupted"
        try:
            read_log(run.path)
            for checkpoint in checkpoint_dirs(run.path):  # every complete checkpoint loads
                json.loads((checkpoint / "trainer_state.json").read_text())
                assert (checkpoint / "trainable.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
            assert not (run.path / "adapter").exists()  # no half-written output
        except (ValueError, AssertionError, OSError):
            corrupt += 1
            continue
        to_resume.append(run)
    errors = {run.name: lab_cpt.path.parent / f"{run.name}.stderr" for run in to_resume}
    resumes = []
    try:
        for run in to_resume:
            with errors[run.name].open("w") as stderr:  # a file: a pipe nobody reads yet could fill up
                command = _tune_cli(lab_cpt.path, tiny_lab_model_dir, run.name, "--resume")
                resumes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr))
        for run, resumed in zip(to_resume, resumes):
            assert resumed.wait(timeout=300) == 0, errors[run.name].read_text()[-3000:]
            steps = [e["step"] for e in read_log(run.path)]
            lost += len(set(range(1, 41)) - set(steps)) + (len(steps) - len(set(steps)))
            listed = CliRunner().invoke(app, ["-w", str(lab_cpt.path), "adapters", "show", run.name, "--json"])
            shown = json.loads(listed.stdout)
            assert shown["status"] == "complete" and shown["steps"] == 40 and shown["checkpoints"] == []
    finally:
        for process in resumes:
            process.kill()
            process.wait()
    assert (trials, corrupt, lost) == (4, 0, 0)
