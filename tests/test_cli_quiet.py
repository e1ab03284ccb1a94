"""Library warnings and bars stay off the user's terminal: a real `infuse` process (stderr is a pipe,
as in a log) whose model load triggers a transformers FutureWarning prints only infuse's own
progress; the warning is in WS/logs/warnings.log (`-v` would show it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infuse.hf_logging import QUIET_ENVIRONMENT
from infuse.workspace import Workspace

# `tune --gradient-checkpointing` calls transformers' gradient_checkpointing_enable, which warns
# (FutureWarning: deprecated, use activation_checkpointing_enable).
WARNING_TEXT = "gradient_checkpointing_enable"


def run_tune(workspace: Path, data: Path, model: str, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT}  # as a user's shell has it
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "infuse", "-w", str(workspace), *flags, "tune", "--dataset", str(data)]
    command += ["--model", model, "--max-steps", "1", "--seq-len", "32", "--device", "cpu"]
    command += ["--name", name, "--gradient-checkpointing", "--json"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_library_warning_goes_to_the_workspace_log_not_to_stderr(tmp_path: Path, tiny_llama_dir: str) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True).path
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"Fact {i}: the sky is blue."}) + "\n" for i in range(8)))

    quiet = run_tune(ws, data, tiny_llama_dir, "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "Warning" not in quiet.stderr and WARNING_TEXT not in quiet.stderr, quiet.stderr
    events = [json.loads(line) for line in quiet.stderr.splitlines()]  # nothing but infuse's progress events
    assert events[0] == {"event": "start", "stage": "tune", "total": 1}
    assert WARNING_TEXT in (ws / "logs" / "warnings.log").read_text(encoding="utf-8")
    # (the log proves the warning was raised in this run, so the clean stderr is not a vacuous pass)


@pytest.mark.slow  # two fresh interpreters importing transformers (about 15 s of CPU)
def test_the_missing_weights_report_of_transformers_is_not_printed(tmp_path: Path) -> None:
    """A head missing from a checkpoint (a plain BERT loaded as a classifier, as a cross-encoder
    reranker folder can be) makes transformers print a load report on stderr; quieted, it does not."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from conftest import MINILM_PATH

    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    BertModel(config).save_pretrained(tmp_path / "bert")
    load = (
        "from transformers import BertForSequenceClassification as B; "
        f"B.from_pretrained({str(tmp_path / 'bert')!r}, num_labels=1)"
    )
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT} | {"OMP_NUM_THREADS": "1"}
    noisy = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, env=env, timeout=300)
    assert noisy.returncode == 0 and "classifier.weight" in noisy.stderr  # the noise exists...
    quiet_load = "from infuse.hf_logging import quiet_library_output; quiet_library_output(); " + load
    quiet = subprocess.run([sys.executable, "-c", quiet_load], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # ...and the CLI's quieting removes it
