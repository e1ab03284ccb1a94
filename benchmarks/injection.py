#!/usr/bin/env python
"""Prompt-injection detector benchmark: precision / recall on a hand-labelled EN/JA set.

``benchmarks/data/injection_labelled.jsonl`` holds passages written by hand (one JSON object per
line: ``id``, ``lang``, ``label`` 1 = injection / 0 = clean, ``split`` dev/test, ``text``,
``note``). The set was written before the detector and split in halves per language and label
(seeded shuffle); the rules were tuned looking at the dev half only, so the test half is the
honest number. Clean passages are mostly hard negatives (security docs quoting attacks,
"ignore this step if...", 「この警告は無視してください」, YAML with ``system:``...).

A labelled set with half injections says little about false alarms on ordinary documents,
where injections are rare, so the script also scans real text that is assumed clean when
``../shared/data`` is present (SQuAD and JaQuAD Wikipedia paragraphs, RealTimeQA news search
results) and reports how many passages were flagged, with the flagged ones for inspection.

Usage::

    .venv/bin/python benchmarks/injection.py              # writes benchmarks/results/injection.{json,md}
    .venv/bin/python benchmarks/injection.py --split dev  # print the dev errors only (for tuning)
    .venv/bin/python benchmarks/injection.py --extra mine.jsonl  # also score passages of your own (same fields)
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SET = REPO / "benchmarks" / "data" / "injection_labelled.jsonl"
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "benchmarks" / "results"

try:
    import infuse  # noqa: F401
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(REPO / "src"))

from infuse.screening.injection import InjectionDetector  # noqa: E402


def load_set(path: Path = DEFAULT_SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(1 for r in rows if r["label"] == 1 and r["predicted"] == 1)
    fp = sum(1 for r in rows if r["label"] == 0 and r["predicted"] == 1)
    fn = sum(1 for r in rows if r["label"] == 1 and r["predicted"] == 0)
    tn = sum(1 for r in rows if r["label"] == 0 and r["predicted"] == 0)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(rows),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
    }


def evaluate(items: list[dict[str, Any]], detector: InjectionDetector | None = None) -> dict[str, Any]:
    """Scores per split (dev, test, all) and language (en, ja, all), plus the misclassified items."""
    detector = detector or InjectionDetector()
    rows = []
    for item in items:
        rules = detector.flags(item["text"])
        rows.append({**item, "rules": rules, "predicted": int(bool(rules))})
    table: dict[str, dict[str, Any]] = {}
    for split in ("dev", "test", "all"):
        for lang in ("en", "ja", "all"):
            subset = [r for r in rows if split in ("all", r.get("split")) and lang in ("all", r["lang"])]
            table[f"{split}/{lang}"] = scores(subset)
    errors = [
        {
            "id": r["id"],
            "split": r.get("split"),
            "lang": r["lang"],
            "label": r["label"],
            "rules": r["rules"],
            "note": r.get("note", ""),
            "text": r["text"],
        }
        for r in rows
        if r["predicted"] != r["label"]
    ]
    return {"scores": table, "misclassified": errors}


# --- passages assumed clean: real Wikipedia and news text ----------------------------------------


def wild_passages(data: Path, limit_news: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """(id, text) passages per source; missing sources are skipped."""
    sources: dict[str, list[tuple[str, str]]] = {}
    squad = data / "squad-v2-dev" / "dev-v2.0.json"
    if squad.exists():
        doc = json.loads(squad.read_text(encoding="utf-8"))
        sources["squad-v2-dev (en)"] = [
            (f"{a['title']}#{i}", p["context"]) for a in doc["data"] for i, p in enumerate(a["paragraphs"])
        ]
    ja = sorted(glob.glob(str(data / "jaquad-dev" / "jaquad_dev_*.json")))
    if ja:
        seen: dict[str, tuple[str, str]] = {}
        for path in ja:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            for a in doc["data"]:
                for i, p in enumerate(a["paragraphs"]):
                    seen.setdefault(p["context"], (f"{a['title']}#{i}", p["context"]))
        sources["jaquad-dev (ja)"] = list(seen.values())
    news = sorted(glob.glob(str(data / "realtimeqa" / "*_gcs.jsonl")))
    if news:
        passages: dict[str, tuple[str, str]] = {}
        for path in news:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                for j, result in enumerate(record.get("search_result") or []):
                    text = result.get("text") or ""
                    # Articles are long: scan them in paragraph-sized pieces, like chunks.
                    for k, para in enumerate(p for p in text.split("\n") if len(p.strip()) > 40):
                        passages.setdefault(para, (f"{record.get('question_id', '?')}/{j}/{k}", para))
        sources["realtimeqa news (en)"] = list(passages.values())[:limit_news]
    return sources


def scan_wild(sources: dict[str, list[tuple[str, str]]], detector: InjectionDetector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, passages in sources.items():
        start = time.perf_counter()
        flagged = []
        chars = 0
        for pid, text in passages:
            chars += len(text)
            findings = detector.scan(text)
            if findings:
                f = findings[0]
                flagged.append(
                    {
                        "id": pid,
                        "rules": sorted({x.rule for x in findings}),
                        "match": f.text,
                        "context": text[max(0, f.start - 80) : f.end + 80],
                    }
                )
        seconds = time.perf_counter() - start
        out[name] = {
            "passages": len(passages),
            "flagged": len(flagged),
            "flagged_rate": round(len(flagged) / len(passages), 5) if passages else 0.0,
            "chars_per_second": round(chars / seconds) if seconds else None,
            "examples": flagged[:50],
        }
    return out


def _pct(x: float) -> str:
    return f"{x:.3f}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    s = result["scores"]
    lines = [
        "# Prompt-injection screening benchmark",
        "",
        f"{result['meta']['date']} · Python {result['meta']['python']} · commit {result['meta']['commit']}",
        "",
        f"Labelled set `{result['meta']['set']}`: {result['meta']['items']} hand-written passages "
        "(EN and JA, injected and clean, most clean ones hard negatives). Written before the detector; "
        "rules were tuned looking only at **dev** errors (and at third-party strings kept outside the repository, see README); **test** was never used for tuning. A passage counts as flagged when any rule matches.",
        "",
        "| split | lang | n | TP | FP | FN | TN | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in s.items():
        split, lang = key.split("/")
        lines.append(
            f"| {split} | {lang} | {row['n']} | {row['tp']} | {row['fp']} | {row['fn']} | {row['tn']} | "
            f"{_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} |"
        )
    lines += [
        "",
        "Caveat: the passages and the rules were written by the same person, so both halves share one idea of what "
        "an injection looks like; the held-out half guards against over-fitting single items, not against that bias. "
        "Score passages written by others with `--extra FILE.jsonl` (see README, *Prompt-injection screening*).",
    ]
    lines += ["", "## Misclassified", ""]
    if not result["misclassified"]:
        lines.append("none")
    else:
        lines += ["| id | split | label | rules | note |", "|---|---|---|---|---|"]
        for e in result["misclassified"]:
            kind = "missed injection" if e["label"] == 1 else "false alarm"
            lines.append(f"| {e['id']} | {e['split']} | {kind} | {', '.join(e['rules']) or '-'} | {e['note']} |")
    for name, extra in (result.get("extra") or {}).items():
        lines += [
            "",
            f"## Extra set `{name}`",
            "",
            "| lang | n | TP | FP | FN | TN | precision | recall | F1 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lang, row in extra["scores"].items():
            lines.append(
                f"| {lang} | {row['n']} | {row['tp']} | {row['fp']} | {row['fn']} | {row['tn']} | "
                f"{_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} |"
            )
    wild = result.get("wild")
    if wild:
        lines += [
            "",
            "## Real text assumed clean",
            "",
            "Passages from the evaluation data in `../shared/data` (Wikipedia paragraphs, news search results). "
            "None is expected to be an injection, so every flag is a false alarm unless the text really is one.",
            "",
            "| source | passages | flagged | rate | chars/s |",
            "|---|---|---|---|---|",
        ]
        for name, row in wild.items():
            lines.append(
                f"| {name} | {row['passages']} | {row['flagged']} | {row['flagged_rate']:.4%} | {row['chars_per_second']:,} |"
            )
        examples = [(name, e) for name, row in wild.items() for e in row["examples"]]
        if examples:
            lines += ["", "Flagged passages:", ""]
            for name, e in examples[:20]:
                context = e["context"].replace("\n", " ").replace("|", "\\|")
                lines.append(f"- {name} `{e['id']}` ({', '.join(e['rules'])}): …{context}…")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data (real text assumed clean)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--split", choices=("dev", "test", "all"), help="only print this split's errors; write nothing")
    parser.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="another labelled JSONL (id, lang, label, text) to score separately, e.g. passages written by others",
    )
    args = parser.parse_args(argv)

    items = load_set(args.set)
    detector = InjectionDetector()
    result = evaluate(items, detector)
    if args.split:
        for key, row in result["scores"].items():
            if key.startswith(args.split + "/"):
                print(key, row)
        for e in result["misclassified"]:
            if args.split in ("all", e["split"]):
                print(f"{e['id']:14} label={e['label']} rules={e['rules']} {e['text'][:110]!r}")
        return 0

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    result["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "commit": commit or "?",
        "set": str(args.set.relative_to(REPO) if args.set.is_relative_to(REPO) else args.set),
        "items": len(items),
    }
    if args.extra:
        result["extra"] = {}
        for path in args.extra:
            extra = [{**item, "split": "extra"} for item in load_set(path)]
            scored = evaluate(extra, detector)
            result["extra"][path.name] = {
                "scores": {k.replace("all/", ""): v for k, v in scored["scores"].items() if k.startswith("all/")},
                "misclassified": scored["misclassified"],
            }
    if args.data.exists():
        result["wild"] = scan_wild(wild_passages(args.data), detector)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "injection.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    write_markdown(result, args.out / "injection.md")
    for key, row in result["scores"].items():
        print(f"{key:10} P={row['precision']:.3f} R={row['recall']:.3f} F1={row['f1']:.3f} (n={row['n']})")
    for name, row in (result.get("wild") or {}).items():
        print(f"{name}: {row['flagged']} of {row['passages']} flagged")
    print(f"wrote {args.out / 'injection.json'} and {args.out / 'injection.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
