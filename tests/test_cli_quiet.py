"""Library warnings and bars stay off the user's terminal: a real `infuse` process (stderr is a pipe,
as in a log) whose model load triggers a transformers FutureWarning prints only infuse's own
progress; the warning is in WS/logs/warnings.log (`-v` would show it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
