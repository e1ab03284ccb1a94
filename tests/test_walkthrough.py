"""The README's "From your documents to a recommendation" block, run as written (slow).

The block is read from README.md between its ``walkthrough`` markers, so the documentation cannot
drift from what works. Three changes keep it to minutes, each appending options to a line and
never replacing one: the lab model trains for 10 steps (a cache in the test's folder), the question
set is cut to 20 questions, and the fine-tune to 3 steps. Nothing here checks how good the models
are (the lab and tuning tests do): only that each command runs and hands on what the next needs.
The last line (``serve``) runs in the background on a free port until the server answers a chat
request from the knowledge base.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = {
    "infuse lab train)": "infuse lab train --steps 10)",
    "--name quiz": "--name quiz --limit 20",
    '--method lora --model "$MODEL"': '--method lora --model "$MODEL" --max-steps 3',
}


def walkthrough_lines() -> list[str]:
    """The commands of the README's walkthrough block, comments stripped."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- walkthrough")
    block = text[start : text.index("<!-- /walkthrough -->")]
    body = block.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = []
    for raw in body.splitlines():
        command = raw.split("  #", 1)[0].rstrip()
        if command:
            lines.append(command)
    return lines


def speed_up(line: str) -> str:
    for old, new in FAST.items():
        line = line.replace(old, new)
    return line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_block_is_the_journey() -> None:
    lines = walkthrough_lines()
    verbs = [line.split()[3] if line.startswith("infuse -w") else line.split()[0] for line in lines]
    assert verbs == [
        "infuse",
        "MODEL=$(infuse",
        "ingest",
        "questions",
        "dataset",
        "tune",
        "compare",
        "report",
        "advise",
        "serve",
    ]
    assert all(speed_up(line) != line for line in lines if any(key in line for key in FAST))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    lines = walkthrough_lines()
    *steps, serve = lines
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "INFUSE_LAB_CACHE": str(tmp_path / "lab-cache"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("INFUSE_WORKSPACE", None)
    timed = [f'SECONDS=0; {speed_up(line)}; echo "step {i}: $SECONDS s" >&2' for i, line in enumerate(steps)]
    script = "set -euo pipefail\n" + "\n".join(timed) + '\necho "MODEL=$MODEL"\n'
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = done.stdout.strip().splitlines()[-1].removeprefix("MODEL=")
    assert Path(tmp_path, model).joinpath("config.json").is_file() or Path(model, "config.json").is_file()
    kb = tmp_path / "kb"
    reports = list((kb / "runs").glob("*/report.html"))
    assert len(reports) == 1 and "<html" in reports[0].read_text(encoding="utf-8")[:500].lower()
    assert (kb / "adapters" / "paraphrase-lora" / "manifest.json").is_file()
    assert "Recommendation" in done.stdout + done.stderr
    print("\n".join(line for line in done.stderr.splitlines() if line.startswith("step ")))

    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", f"export MODEL={model}\nexec {serve} --port {port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
            assert time.monotonic() < deadline, "serve did not come up in 180 s"
            # (loading the embedder and the model takes seconds on an idle machine)
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(
                {"model": "infuse-rag", "messages": [{"role": "user", "content": "Where was n0001 born?"}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            reply = json.load(response)
        assert reply["choices"][0]["message"]["role"] == "assistant"
    finally:
        server.terminate()
        server.wait(timeout=30)
