#!/usr/bin/env python
"""Retrieval benchmark of the infuse knowledge base on real QA data (SQuAD 2.0 dev, JaQuAD dev).

Every paragraph of a dataset is one document (written to a JSONL file under
``benchmarks/.cache`` and ingested through ``Workspace.ingest``); every answerable question is
a query whose only relevant document is its own paragraph. The script reports:

- recall@1/5/10, MRR@10 and nDCG@10 for dense, lexical and hybrid search on both datasets;
- Japanese keyword search with the morphological tokenizer vs the regex and whitespace
  baselines (one workspace per tokenizer, the same store and BM25 index);
- a sweep of the dense fusion weight (lexical fixed at 1.0) chosen on a tuning split and
  reported on the held-out split, per language;
- ingest throughput (first ingest in a fresh folder, then an unchanged re-run);
- single-query search latency (median, p95) per mode, after warm-up.

Usage::

    .venv/bin/python benchmarks/retrieval.py                       # full run (10-25 min on 2 cores)
    .venv/bin/python benchmarks/retrieval.py --limit-questions 200 # quick run
    .venv/bin/python benchmarks/retrieval.py --reuse               # reuse cached workspaces

The data stays in ``../shared/data`` (override with ``--data``); nothing is copied into the repo.
Results go to ``benchmarks/results/retrieval.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_OUT = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"

try:
    import infuse  # noqa: F401
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(REPO / "src"))

from infuse.config import FusionWeights, SearchMode  # noqa: E402
from infuse.evaluation.metrics import ndcg_at_k, recall_at_k, reciprocal_rank  # noqa: E402
from infuse.language import Language, detect_language  # noqa: E402
from infuse.retrieval.lexical import LanguageAwareTokenizer, RegexTokenizer, WhitespaceTokenizer  # noqa: E402
from infuse.workspace import Workspace  # noqa: E402

CUTOFF = 10  # documents scored per query
DEFAULT_K_CHUNKS = 30  # chunks retrieved before de-duplicating by document
DENSE_WEIGHTS = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
TOKENIZERS: dict[str, Callable[[], Any]] = {
    "morphological": LanguageAwareTokenizer,  # the library default (SudachiPy for Japanese)
    "regex": RegexTokenizer,
    "whitespace": WhitespaceTokenizer,
}
MODES = [SearchMode.DENSE, SearchMode.LEXICAL, SearchMode.HYBRID]

_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Question:
    qid: str
    text: str
    gold: str  # paragraph (document) id
    split: str  # "tune" or "heldout"


@dataclass
class Dataset:
    name: str
    lang: str
    source: list[str]
    paragraphs: list[dict[str, str]]  # {"id", "text", "title"}
    questions: list[Question]
    duplicates_removed: int = 0
    questions_total: int = 0
    unanswerable_skipped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_squad_format(name: str, lang: str, files: list[Path]) -> Dataset:
    """Paragraphs (deduplicated by exact text) and answerable questions of SQuAD-format files.

    The tuning / held-out split is by paragraph (even / odd position among the unique
    paragraphs), so no paragraph's questions are on both sides.
    """
    by_text: dict[str, str] = {}
    paragraphs: list[dict[str, str]] = []
    questions: list[Question] = []
    duplicates = total = skipped = 0
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        for article in data["data"]:
            title = article.get("title", "")
            for paragraph in article["paragraphs"]:
                text = paragraph["context"]
                if text in by_text:
                    duplicates += 1
                    pid = by_text[text]
                else:
                    pid = f"{name}-p{len(paragraphs):05d}"
                    by_text[text] = pid
                    paragraphs.append({"id": pid, "text": text, "title": title})
                position = int(pid.rsplit("p", 1)[1])
                for qa in paragraph["qas"]:
                    total += 1
                    if qa.get("is_impossible", False):
                        skipped += 1
                        continue
                    questions.append(
                        Question(qa["id"], qa["question"].strip(), pid, "tune" if position % 2 == 0 else "heldout")
                    )
    return Dataset(name, lang, [str(f) for f in files], paragraphs, questions, duplicates, total, skipped)


def load_datasets(data_dir: Path) -> list[Dataset]:
    squad = data_dir / "squad-v2-dev" / "dev-v2.0.json"
    jaquad = sorted(Path(p) for p in glob.glob(str(data_dir / "jaquad-dev" / "jaquad_dev_000*.json")))
    if not squad.exists() or not jaquad:
        raise SystemExit(f"data not found under {data_dir} (expected squad-v2-dev/ and jaquad-dev/); use --data DIR")
    return [load_squad_format("squad-v2-dev", "en", [squad]), load_squad_format("jaquad-dev", "ja", jaquad)]


def limit_questions(questions: list[Question], limit: int | None) -> list[Question]:
    """An evenly spaced, deterministic sample (keeps every article represented)."""
    if not limit or limit >= len(questions):
        return questions
    step = len(questions) / limit
    return [questions[int(i * step)] for i in range(limit)]


def write_corpus(dataset: Dataset) -> tuple[Path, str]:
    corpus_dir = CACHE / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    path = corpus_dir / f"{dataset.name}.jsonl"
    body = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in dataset.paragraphs)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    if not path.exists() or path.read_text(encoding="utf-8") != body:
        path.write_text(body, encoding="utf-8")
    return path, digest


def library_fingerprint() -> str:
    """Hash of the library sources that decide what an ingested workspace contains."""
    digest = hashlib.sha256()
    src = REPO / "src" / "infuse"
    paths = [*src.glob("documents/*.py"), *src.glob("retrieval/*.py")]
    paths += [src / name for name in ("workspace.py", "config.py", "language.py") if (src / name).exists()]
    for path in sorted(paths):
        digest.update(path.relative_to(src).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# --- workspaces and ingest ---------------------------------------------------------------------


def open_workspace(path: Path, tokenizer: str, create: bool = False) -> Workspace:
    ws = Workspace.open(path, create=create)
    # Workspace uses self.tokenizer both for chunk tokens (Syncer in ingest) and for query tokens
    # (HybridSearcher in searcher()), so replacing it changes both sides of keyword search.
    ws.tokenizer = TOKENIZERS[tokenizer]()
    return ws


def count_chunks(ws: Workspace) -> int:
    return ws.status().chunks


def timed_first_ingest(ws: Workspace, corpus: Path, key: str) -> tuple[float, dict[str, Any]]:
    """(seconds to load the model, measures of the first ingest of ``corpus`` into ``ws``).

    The embedding model, the tokenizer's dictionary and the store engine's module (LanceDB's
    import alone takes ~3 s) load before the clock starts: the throughput is the pipeline's, not
    Python's import time (reported separately). The peers' imports happen before their clock too."""
    clock = time.perf_counter()
    ws.embedder.embed_passages(["warm-up: load the model"])
    ws.tokenizer.tokenize("東京で機械学習を研究した。The runners were running.")
    importlib.import_module(f"infuse.store.{ws.settings.store.backend.value}")
    load_seconds = round(time.perf_counter() - clock, 3)
    load_before = os.getloadavg()[0]
    cpu, clock = time.process_time(), time.perf_counter()
    report = ws.ingest([corpus], id_field="id")
    seconds = time.perf_counter() - clock
    cpu = time.process_time() - cpu
    if not report.ok:
        raise SystemExit(f"{key}: ingest failed: {report.errors[:5]}")
    log(f"{key}: {report.chunks_written} chunks in {seconds:.1f}s ({report.chunks_written / seconds:.1f} chunks/s)")
    return load_seconds, {
        "seconds": round(seconds, 3),
        "documents_added": report.added,
        "chunks_written": report.chunks_written,
        "chunks_per_second": round(report.chunks_written / seconds, 2),
        "documents_per_second": round(report.added / seconds, 2),
        # CPU seconds of this process per wall second: well below the core count while the
        # load average is above it means other processes were competing for the CPU.
        "process_cpu_seconds": round(cpu, 2),
        "cpu_utilisation": round(cpu / seconds, 2),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def prepare_workspace(
    dataset: Dataset, tokenizer: str, corpus: Path, corpus_sha: str, lib_fp: str, fresh: bool
) -> tuple[Workspace, dict[str, Any]]:
    """Open the cached workspace for (dataset, tokenizer), rebuilding it (timed) when asked or stale."""
    key = f"{dataset.name}--{tokenizer}"
    path = CACHE / "workspaces" / key
    marker = CACHE / "workspaces" / f"{key}.json"
    wanted = {"corpus_sha256": corpus_sha, "library": lib_fp, "tokenizer": tokenizer}
    cached = json.loads(marker.read_text()) if marker.exists() else None
    stale = cached != wanted
    info: dict[str, Any] = {"workspace": str(path.relative_to(REPO)), "tokenizer": tokenizer}
    if fresh or stale or not path.exists():
        info["rebuilt_because"] = "fresh run" if fresh else "cache missing or stale"
        shutil.rmtree(path, ignore_errors=True)
        marker.unlink(missing_ok=True)
        ws = open_workspace(path, tokenizer, create=True)
        log(f"{key}: first ingest of {len(dataset.paragraphs)} paragraphs into a fresh workspace")
        info["model_load_seconds"], info["first"] = timed_first_ingest(ws, corpus, key)
        marker.write_text(json.dumps(wanted))
    else:
        info["reused_cache"] = True
    # Unchanged re-run, as a new Workspace object would see it (e.g. the next CLI invocation).
    ws = open_workspace(path, tokenizer)
    clock = time.perf_counter()
    report = ws.ingest([corpus], id_field="id")
    seconds = time.perf_counter() - clock
    chunks = count_chunks(ws)
    if report.added or report.updated or report.failed:
        raise SystemExit(f"{key}: re-run of an unchanged corpus changed something: {report.to_dict()}")
    info["rerun"] = {
        "seconds": round(seconds, 3),
        "documents_unchanged": report.unchanged,
        "chunks_in_kb": chunks,
        "chunks_per_second_equivalent": round(chunks / seconds, 2),
    }
    info["chunks"] = chunks
    info["documents"] = ws.status().documents
    if "first" in info:
        info["rerun_speedup"] = round(info["first"]["seconds"] / seconds, 1)
    log(f"{key}: unchanged re-run {seconds:.2f}s; {chunks} chunks, {info['documents']} documents")
    return ws, info


# --- metrics -----------------------------------------------------------------------------------


def first_docs(doc_ids: Iterable[str]) -> list[str]:
    """The first CUTOFF distinct documents of a ranked list of chunks' documents, in order."""
    return list(dict.fromkeys(doc_ids))[:CUTOFF]


def gold_ranks(
    ws: Workspace, questions: list[Question], mode: SearchMode, k_chunks: int, batch: int = 256
) -> tuple[list[int | None], int]:
    """Rank (1-based, within the first CUTOFF distinct documents) of each question's gold paragraph."""
    ranks: list[int | None] = []
    short = 0
    for start in range(0, len(questions), batch):
        part = questions[start : start + batch]
        results = ws.search_many([q.text for q in part], k=k_chunks, mode=mode)
        for question, hits in zip(part, results):
            docs = first_docs(hit.chunk.doc_id for hit in hits)
            short += len(docs) < CUTOFF
            ranks.append(docs.index(question.gold) + 1 if question.gold in docs else None)
    return ranks, short


def ranking(rank: int | None) -> list[str]:
    """A document ranking with the gold document at ``rank`` (1-based; None: not retrieved)."""
    return [""] * (rank - 1) + ["gold"] if rank else []


def metrics(ranks: list[int | None]) -> dict[str, float]:
    """recall@1/5/10, MRR@10 and nDCG@10 (infuse.evaluation.metrics; one gold document per question)."""
    n = len(ranks)
    if n == 0:
        return {"n": 0}
    rankings = [ranking(r) for r in ranks]

    def mean(metric: Callable[[list[str], str, int], float], k: int) -> float:
        return sum(metric(r, "gold", k) for r in rankings) / n

    return {
        "n": n,
        "recall@1": mean(recall_at_k, 1),
        "recall@5": mean(recall_at_k, 5),
        "recall@10": mean(recall_at_k, 10),
        "mrr@10": mean(reciprocal_rank, 10),
        "ndcg@10": mean(ndcg_at_k, 10),
    }


def subset(ranks: list[int | None], questions: list[Question], split: str) -> list[int | None]:
    return [r for r, q in zip(ranks, questions) if q.split == split]


def paired_delta(a: list[int | None], b: list[int | None], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """nDCG@10 of ``a`` minus ``b`` over the same questions, with a paired bootstrap 95% interval."""
    gain = lambda ranks: np.array([ndcg_at_k(ranking(r), "gold", CUTOFF) for r in ranks])  # noqa: E731
    diff = gain(a) - gain(b)
    if len(diff) == 0:
        return {"delta_ndcg@10": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return {
        "delta_ndcg@10": round(float(diff.mean()), 4),
        "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
        "n": len(diff),
    }


def fmt_delta(d: dict[str, Any]) -> str:
    return f"{d['delta_ndcg@10']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


# --- latency -----------------------------------------------------------------------------------


def latency(ws: Workspace, queries: list[str], mode: SearchMode, warmup: int = 10) -> dict[str, float]:
    for query in queries[:warmup]:
        ws.search(query, k=CUTOFF, mode=mode)
    times = []
    for query in queries:
        clock = time.perf_counter()
        ws.search(query, k=CUTOFF, mode=mode)
        times.append((time.perf_counter() - clock) * 1000)
    # How much of it is opening the searcher (store snapshot, embedder check) on every call.
    opens = []
    for _ in range(min(50, len(queries))):
        clock = time.perf_counter()
        ws.searcher(mode)
        opens.append((time.perf_counter() - clock) * 1000)
    arr = np.asarray(times)
    return {
        "n": len(times),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "median_ms": round(float(np.median(arr)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "mean_ms": round(float(arr.mean()), 2),
        "max_ms": round(float(arr.max()), 2),
        "searcher_open_median_ms": round(float(np.median(opens)), 2),
    }


# --- machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in ("torch", "lancedb", "sentence_transformers", "transformers", "sudachipy", "pyarrow", "numpy"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name] = "not installed"
    try:
        import torch

        threads = torch.get_num_threads()
        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        threads, device = None, "cpu"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "src_modified_since_commit": dirty,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --- report ------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:.3f}"


def metric_cells(m: dict[str, float]) -> str:
    return " | ".join(fmt(m[k]) for k in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"))


METRIC_HEADER = "R@1 | R@5 | R@10 | MRR@10 | nDCG@10"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    lines = [
        "# Retrieval benchmark",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['cpu_cores']} cores · {m['device']} · Python {m['versions']['python']} · "
        f"torch {m['versions']['torch']} · lancedb {m['versions']['lancedb']} · commit {m['git_commit']}"
        + (" (src modified)" if m["src_modified_since_commit"] else ""),
        "",
        f"Embedder `{cfg['embedder']}`; chunks of {cfg['chunk_size']} tokens (overlap {cfg['chunk_overlap']}); "
        f"each query retrieves {cfg['k_chunks']} chunks, de-duplicated by document and cut to {CUTOFF} documents; "
        "one relevant document per query (its paragraph).",
        "",
        "## Datasets",
        "",
        "| dataset | lang | documents (paragraphs) | chunks | queries (answerable) | tune / held-out | queries detected JA / EN |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in results["datasets"].items():
        ingest = results["ingest"][name]["morphological"]
        langs = d["query_languages"]
        lines.append(
            f"| {name} | {d['lang']} | {d['paragraphs']} | {ingest['chunks']} | {d['questions_used']} of {d['questions_answerable']} "
            f"| {d['tune']} / {d['heldout']} | {langs.get('ja', 0)} / {langs.get('en', 0)} |"
        )
    lines += [
        "",
        "## Retrieval quality (default settings)",
        "",
        f"| dataset | mode | {METRIC_HEADER} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, modes in results["retrieval"].items():
        for mode, mm in modes.items():
            lines.append(f"| {name} | {mode} | {metric_cells(mm)} |")
    lines.append("")
    for name, modes in results["retrieval"].items():
        h = modes["hybrid"]
        lines.append(
            f"- {name}: hybrid - lexical nDCG@10 {fmt_delta(h['hybrid_minus_lexical'])}, hybrid - dense "
            f"{fmt_delta(h['hybrid_minus_dense'])} (paired bootstrap, 95% interval)"
        )
    lines += [
        "",
        "## Japanese keyword search: tokenizer comparison (JaQuAD, lexical BM25 only)",
        "",
        f"| tokenizer | {METRIC_HEADER} | tokens / query | morphological - this, nDCG@10 [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tok, entry in results["tokenizers"].items():
        delta = fmt_delta(entry["morphological_minus_this"]) if "morphological_minus_this" in entry else "–"
        lines.append(
            f"| {tok} (`{entry['tokenizer']}`) | {metric_cells(entry['metrics'])} | {entry['mean_query_tokens']:.1f} | {delta} |"
        )
    lines += ["", "## Fusion weight sweep (hybrid; lexical weight 1.0)", ""]
    for name, sweep in results["fusion_sweep"].items():
        lang = sweep["language"]
        lines += [
            f"### {name} ({lang.upper()} queries; default dense weight {sweep['default_dense_weight']})",
            "",
            "| dense weight | tune nDCG@10 | tune MRR@10 | tune R@10 | held-out nDCG@10 | held-out MRR@10 | held-out R@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in sweep["rows"]:
            mark = " (chosen)" if row["dense_weight"] == sweep["chosen_dense_weight"] else ""
            mark += " (default)" if row["dense_weight"] == sweep["default_dense_weight"] else ""
            t, h = row["tune"], row["heldout"]
            lines.append(
                f"| {row['dense_weight']}{mark} | {fmt(t['ndcg@10'])} | {fmt(t['mrr@10'])} | {fmt(t['recall@10'])} "
                f"| {fmt(h['ndcg@10'])} | {fmt(h['mrr@10'])} | {fmt(h['recall@10'])} |"
            )
        for mode, ref in sweep["reference"].items():
            t, h = ref["tune"], ref["heldout"]
            lines.append(
                f"| {mode} only (reference) | {fmt(t['ndcg@10'])} | {fmt(t['mrr@10'])} | {fmt(t['recall@10'])} "
                f"| {fmt(h['ndcg@10'])} | {fmt(h['mrr@10'])} | {fmt(h['recall@10'])} |"
            )
        ch, de = sweep["chosen_heldout"], sweep["default_heldout"]
        delta_default = sweep["heldout_chosen_minus_default"]
        lines += [
            "",
            f"Chosen on the tuning split (best nDCG@10): dense weight **{sweep['chosen_dense_weight']}**; held-out "
            f"nDCG@10 {fmt(ch['ndcg@10'])}, MRR@10 {fmt(ch['mrr@10'])}, R@10 {fmt(ch['recall@10'])} "
            f"(default {sweep['default_dense_weight']}: nDCG@10 {fmt(de['ndcg@10'])}, MRR@10 {fmt(de['mrr@10'])}, R@10 {fmt(de['recall@10'])}). "
            f"Held-out nDCG@10, chosen - default: {fmt_delta(delta_default)}; chosen - lexical only: "
            f"{fmt_delta(sweep['heldout_chosen_minus_lexical'])} (paired bootstrap, 95% interval).",
            "",
        ]
    lines += [
        "## Ingest throughput",
        "",
        "| workspace | chunks | first ingest (s) | chunks/s | CPU cores used / load avg | unchanged re-run (s) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, toks in results["ingest"].items():
        for tok, info in toks.items():
            first = info.get("first")
            first_s = f"{first['seconds']:.1f}" if first else "cached"
            rate = f"{first['chunks_per_second']:.1f}" if first else "–"
            speed = f"{info['rerun_speedup']:.0f}x" if "rerun_speedup" in info else "–"
            use = (
                f"{first['cpu_utilisation']:.2f} / {max(first['load_average_1min_before_after']):.1f}" if first else "–"
            )
            lines.append(
                f"| {name} / {tok} | {info['chunks']} | {first_s} | {rate} | {use} | {info['rerun']['seconds']:.2f} | {speed} |"
            )
    lines += [
        "",
        "First ingest is timed with the embedding model already loaded (load time is in the JSON); the re-run "
        "opens a new `Workspace` on the same folder and ingests the unchanged JSONL again.",
        "",
        "## Search latency (one `ws.search` call per query, after warm-up)",
        "",
        "| dataset | mode | queries | median (ms) | p95 (ms) | opening the searcher (median ms) | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, modes in results["latency"].items():
        for mode, lat in modes.items():
            lines.append(
                f"| {name} | {mode} | {lat['n']} | {lat['median_ms']:.1f} | {lat['p95_ms']:.1f} "
                f"| {lat['searcher_open_median_ms']:.1f} | {lat['load_average_1min_after']:.1f} |"
            )
    lines += [
        "",
        f"Load avg: the machine's 1-minute load average right after the measurement; above {os.cpu_count()} (the core "
        "count) other processes were competing for the CPU and the timings are inflated.",
        "",
    ]
    lines += ["## Targets", "", "| target | met | detail |", "|---|---|---|"]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {'yes' if target['met'] else 'NO'} | {target['detail']} |")
    lines.append("")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data folder (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--limit-questions", type=int, default=None, help="evenly spaced sample of N questions per dataset"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse cached workspaces (skips the timed first ingest)")
    parser.add_argument(
        "--k-chunks", type=int, default=DEFAULT_K_CHUNKS, help="chunks retrieved per query before de-duplication"
    )
    parser.add_argument("--latency-queries", type=int, default=200, help="queries per mode for the latency measurement")
    args = parser.parse_args(argv)

    info = machine()
    log(f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, torch threads {info['torch_threads']}")
    datasets = load_datasets(args.data.resolve())
    lib_fp = library_fingerprint()

    results: dict[str, Any] = {
        "machine": info,
        "config": {},
        "datasets": {},
        "ingest": {},
        "retrieval": {},
        "tokenizers": {},
        "fusion_sweep": {},
        "latency": {},
        "targets": [],
    }
    default_weights: dict[str, FusionWeights] = {}
    for dataset in datasets:
        answerable = len(dataset.questions)
        dataset.questions = limit_questions(dataset.questions, args.limit_questions)
        questions = dataset.questions
        query_langs: dict[str, int] = {}
        for q in questions:
            lang = detect_language(q.text).value
            query_langs[lang] = query_langs.get(lang, 0) + 1
        results["datasets"][dataset.name] = {
            "lang": dataset.lang,
            "files": [str(Path(f).relative_to(args.data.resolve())) for f in dataset.source],
            "paragraphs": len(dataset.paragraphs),
            "duplicate_paragraphs_removed": dataset.duplicates_removed,
            "questions_total": dataset.questions_total,
            "unanswerable_skipped": dataset.unanswerable_skipped,
            "questions_answerable": answerable,
            "questions_used": len(questions),
            "tune": sum(q.split == "tune" for q in questions),
            "heldout": sum(q.split == "heldout" for q in questions),
            "query_languages": query_langs,
        }
        corpus, corpus_sha = write_corpus(dataset)
        tokenizers = ["morphological"] + (["regex", "whitespace"] if dataset.lang == "ja" else [])
        results["ingest"][dataset.name] = {}
        workspaces: dict[str, Workspace] = {}
        for tok in tokenizers:
            # The main (library default) workspace is always rebuilt, so each run times a first
            # ingest; the baseline-tokenizer workspaces come from the cache when it is current.
            fresh = tok == "morphological" and not args.reuse
            ws, ingest_info = prepare_workspace(dataset, tok, corpus, corpus_sha, lib_fp, fresh)
            workspaces[tok] = ws
            results["ingest"][dataset.name][tok] = ingest_info
        ws = workspaces["morphological"]
        if not results["config"]:
            s = ws.settings
            results["config"] = {
                "embedder": s.embedder.model,
                "chunk_size": s.chunking.size,
                "chunk_overlap": s.chunking.overlap,
                "rrf_k": s.search.rrf_k,
                "candidates": s.search.candidates,
                "reranker": s.search.reranker,
                "k_chunks": args.k_chunks,
                "cutoff_documents": CUTOFF,
                "limit_questions": args.limit_questions,
                "default_weights": {lang.value: w.model_dump() for lang, w in s.search.weights.items()},
                "settings": json.loads(s.model_dump_json()),
                "data": str(args.data.resolve()),
            }
        default_weights = {lang: w.model_copy() for lang, w in ws.settings.search.weights.items()}

        # Quality per mode with the default settings.
        results["retrieval"][dataset.name] = {}
        ranks_by_mode: dict[str, list[int | None]] = {}
        for mode in MODES:
            clock = time.perf_counter()
            ranks, short = gold_ranks(ws, questions, mode, args.k_chunks)
            ranks_by_mode[mode.value] = ranks
            m = metrics(ranks)
            m["queries_with_fewer_than_10_docs"] = short
            results["retrieval"][dataset.name][mode.value] = m
            if mode is SearchMode.HYBRID:
                for other in (SearchMode.DENSE, SearchMode.LEXICAL):
                    m[f"hybrid_minus_{other.value}"] = paired_delta(ranks, ranks_by_mode[other.value])
            log(
                f"{dataset.name} {mode.value}: nDCG@10 {m['ndcg@10']:.3f} R@10 {m['recall@10']:.3f} ({time.perf_counter() - clock:.0f}s)"
            )

        # Tokenizer comparison (Japanese only): the same store, a workspace per tokenizer.
        if dataset.lang == "ja":
            tok_ranks: dict[str, list[int | None]] = {}
            for tok in tokenizers:
                tok_ws = workspaces[tok]
                if tok == "morphological":
                    ranks = ranks_by_mode[SearchMode.LEXICAL.value]
                else:
                    ranks, _ = gold_ranks(tok_ws, questions, SearchMode.LEXICAL, args.k_chunks)
                lengths = [len(tok_ws.tokenizer.tokenize(q.text)) for q in questions]
                tok_ranks[tok] = ranks
                results["tokenizers"][tok] = {
                    "tokenizer": type(tok_ws.tokenizer).__name__,
                    "metrics": metrics(ranks),
                    "mean_query_tokens": float(np.mean(lengths)),
                    "example": {"query": questions[0].text, "tokens": tok_ws.tokenizer.tokenize(questions[0].text)},
                }
                log(f"{dataset.name} lexical/{tok}: nDCG@10 {results['tokenizers'][tok]['metrics']['ndcg@10']:.3f}")
            for tok in tokenizers[1:]:
                results["tokenizers"][tok]["morphological_minus_this"] = paired_delta(
                    tok_ranks["morphological"], tok_ranks[tok]
                )

        # Fusion weight sweep for this dataset's query language.
        lang = Language(dataset.lang)
        default_dense = default_weights[lang].dense
        rows = []
        sweep_ranks: dict[float, list[int | None]] = {}
        for weight in DENSE_WEIGHTS:
            for other, w in default_weights.items():  # the other language keeps its default
                ws.settings.search.weights[other] = w.model_copy()
            ws.settings.search.weights[lang] = FusionWeights(dense=weight, lexical=1.0)
            if weight == default_dense and default_weights[lang].lexical == 1.0:
                ranks = ranks_by_mode[SearchMode.HYBRID.value]  # identical settings: already measured
            else:
                ranks, _ = gold_ranks(ws, questions, SearchMode.HYBRID, args.k_chunks)
            row = {
                "dense_weight": weight,
                "lexical_weight": 1.0,
                "tune": metrics(subset(ranks, questions, "tune")),
                "heldout": metrics(subset(ranks, questions, "heldout")),
                "all": metrics(ranks),
            }
            rows.append(row)
            sweep_ranks[weight] = ranks
            log(
                f"{dataset.name} hybrid dense={weight}: tune nDCG@10 {row['tune']['ndcg@10']:.3f} held-out {row['heldout']['ndcg@10']:.3f}"
            )
        ws.settings.search.weights.update({k: v.model_copy() for k, v in default_weights.items()})
        best = max(rows, key=lambda r: (r["tune"]["ndcg@10"], r["tune"]["mrr@10"], -r["dense_weight"]))
        default_row = next((r for r in rows if r["dense_weight"] == default_dense), None)
        heldout = lambda ranks: subset(ranks, questions, "heldout")  # noqa: E731
        chosen_ranks = sweep_ranks[best["dense_weight"]]
        lexical_ranks = ranks_by_mode[SearchMode.LEXICAL.value]
        dense_ranks = ranks_by_mode[SearchMode.DENSE.value]
        results["fusion_sweep"][dataset.name] = {
            "language": lang.value,
            "selection": "highest nDCG@10 on the tuning split (ties: MRR@10, then the smaller weight)",
            "default_dense_weight": default_dense,
            "rows": rows,
            "reference": {
                mode: {
                    "tune": metrics(subset(ranks_by_mode[mode], questions, "tune")),
                    "heldout": metrics(heldout(ranks_by_mode[mode])),
                }
                for mode in (SearchMode.DENSE.value, SearchMode.LEXICAL.value)
            },
            "chosen_dense_weight": best["dense_weight"],
            "chosen_heldout": best["heldout"],
            "default_heldout": default_row["heldout"] if default_row else None,
            "heldout_chosen_minus_default": (
                paired_delta(heldout(chosen_ranks), heldout(sweep_ranks[default_dense])) if default_row else None
            ),
            "heldout_chosen_minus_lexical": paired_delta(heldout(chosen_ranks), heldout(lexical_ranks)),
            "heldout_chosen_minus_dense": paired_delta(heldout(chosen_ranks), heldout(dense_ranks)),
        }

        # Latency: one ws.search call per query.
        sample = [q.text for q in limit_questions(questions, args.latency_queries)]
        results["latency"][dataset.name] = {}
        for mode in MODES:
            lat = latency(ws, sample, mode)
            results["latency"][dataset.name][mode.value] = lat
            log(f"{dataset.name} latency {mode.value}: median {lat['median_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms")

    # Targets.
    keys = ("ndcg@10", "mrr@10", "recall@10")
    for name, modes in results["retrieval"].items():
        h, d, lx = modes["hybrid"], modes["dense"], modes["lexical"]
        results["targets"].append(
            {
                "target": f"{name}: hybrid (default weights) >= max(dense, lexical)",
                "met": all(h[k] >= max(d[k], lx[k]) for k in keys),
                "detail": "nDCG@10 / MRR@10 / R@10: hybrid "
                + " / ".join(fmt(h[k]) for k in keys)
                + ", dense "
                + " / ".join(fmt(d[k]) for k in keys)
                + ", lexical "
                + " / ".join(fmt(lx[k]) for k in keys)
                + f"; hybrid - lexical nDCG@10 {fmt_delta(h['hybrid_minus_lexical'])}",
            }
        )
        sweep = results["fusion_sweep"][name]
        best = next(r for r in sweep["rows"] if r["dense_weight"] == sweep["chosen_dense_weight"])["heldout"]
        ref = sweep["reference"]
        results["targets"].append(
            {
                "target": f"{name}: hybrid (chosen dense weight {sweep['chosen_dense_weight']}) >= max(dense, lexical), held-out",
                "met": all(best[k] >= max(ref["dense"]["heldout"][k], ref["lexical"]["heldout"][k]) for k in keys),
                "detail": "nDCG@10 / MRR@10 / R@10: hybrid "
                + " / ".join(fmt(best[k]) for k in keys)
                + ", dense "
                + " / ".join(fmt(ref["dense"]["heldout"][k]) for k in keys)
                + ", lexical "
                + " / ".join(fmt(ref["lexical"]["heldout"][k]) for k in keys)
                + f"; hybrid - lexical nDCG@10 {fmt_delta(sweep['heldout_chosen_minus_lexical'])}",
            }
        )
    if results["tokenizers"]:
        tk = results["tokenizers"]
        deltas = [tk[t]["morphological_minus_this"] for t in ("regex", "whitespace")]
        results["targets"].append(
            {
                "target": "JaQuAD: morphological lexical clearly above regex / whitespace",
                "met": all(d["delta_ndcg@10"] >= 0.02 and d["ci95"][0] > 0 for d in deltas),
                "detail": f"nDCG@10 {fmt(tk['morphological']['metrics']['ndcg@10'])} vs regex {fmt(tk['regex']['metrics']['ndcg@10'])} "
                f"({fmt_delta(deltas[0])}), whitespace {fmt(tk['whitespace']['metrics']['ndcg@10'])} ({fmt_delta(deltas[1])}); "
                "clear = at least +0.02 with the 95% interval above 0",
            }
        )
    speedups = {
        f"{name}/{tok}": info["rerun_speedup"]
        for name, toks in results["ingest"].items()
        for tok, info in toks.items()
        if "rerun_speedup" in info
    }
    if speedups:
        results["targets"].append(
            {
                "target": "unchanged re-ingest >= 20x faster than the first ingest",
                "met": all(v >= 20 for v in speedups.values()),
                "detail": ", ".join(f"{k} {v:.0f}x" for k, v in speedups.items()),
            }
        )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    report = markdown(results)
    (args.out / "retrieval.md").write_text(report, encoding="utf-8")
    log(f"wrote {args.out / 'retrieval.json'} and {args.out / 'retrieval.md'}")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
