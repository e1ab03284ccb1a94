"""The compare runner, report and advisor end to end on the tiny lab configuration (what CI runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infuse.cli import app
from infuse.config import EmbedderBackend, EmbedderSettings
from infuse.evaluation.compare import (
    CompareError,
    CompareRequest,
    UpdateScenario,
    Variant,
    VariantSpec,
    evaluate_variants,
    gold_rank,
    parse_variants,
    run_compare,
    strip_citations,
)
from infuse.evaluation.questions import ImportFormat, Question, QuestionKind, import_questions, save_question_set
from infuse.models.base import GenerationConfig
from infuse.rag import RagPipeline
from infuse.testing import ScriptedModel, tiny_lab_config
from infuse.tuning.builders import BuildRequest, build_dataset
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig
from infuse.workspace import Workspace


@pytest.fixture
def lab_compare_ws(lab_ws: Workspace, lab_workspace_template: Path, tiny_lab_model_dir: str) -> tuple[Workspace, Path]:
    world = lab_workspace_template.parent / "world"
    for relative, fmt in (
        ("questions/new_mc.jsonl", ImportFormat.MC),
        ("questions/new_short.jsonl", ImportFormat.QA),
        ("updates/questions_mc.jsonl", ImportFormat.MC),
    ):
        save_question_set(lab_ws.questions_dir, import_questions(world / relative, fmt))
    build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, name="v3", paraphrases=2))
    tune(lab_ws, "v3", tiny_lab_model_dir, TuneConfig(max_steps=4, lr=1e-2, seq_len=128, threads=1, device="cpu"))
    return lab_ws, world


def test_parse_variants_expands_adapters_and_ks() -> None:
    specs = parse_variants("base,rag,ft,ft+rag", adapters=["a", "b"], ks=[1, 3])
    assert [s.label for s in specs] == [
        "base",
        "rag@1",
        "rag@3",
        "ft:a",
        "ft:b",
        "ft:a+rag@1",
        "ft:a+rag@3",
        "ft:b+rag@1",
        "ft:b+rag@3",
    ]
    with pytest.raises(CompareError, match="needs a fine-tuned run: pass --adapter"):
        parse_variants("ft")
    with pytest.raises(CompareError, match="unknown variant 'rga'"):
        parse_variants("base,rga")


def test_gold_rank_and_citation_stripping() -> None:
    question = Question("q", QuestionKind.SHORT, "Where?", "en", answers=("Gorsk",), gold_doc="docs/n0001.txt")
    assert gold_rank(question, ["/w/world/docs/n0002.txt", "/w/world/docs/n0001.txt"]) == 2
    assert gold_rank(question, ["/w/world/docs/n0002.txt"]) is None
    assert strip_citations("Gorsk [1]") == "Gorsk" and strip_citations("ゴルスク［２］") == "ゴルスク"
    assert strip_citations("Gorsk [1, 2].") == "Gorsk."


def test_compare_runs_every_variant_on_the_same_questions(lab_compare_ws, tiny_lab_model_dir: str) -> None:
    ws, world = lab_compare_ws
    from infuse.evaluation.questions import load_question_set

    mc = load_question_set(ws.questions_dir, "new_mc")
    request = CompareRequest(
        parse_variants("base,rag,ft,ft+rag", adapters=["v3-lora"], ks=[1, 2]),
        model=tiny_lab_model_dir,
        limit=10,
        max_new_tokens=4,
        run_name="mc",
        update=UpdateScenario(world / "updates" / "docs", load_question_set(ws.questions_dir, "questions_mc")),
    )
    run = run_compare(ws, mc, request)
    summary = run.summary.to_json()  # the fields as summary.json and --json name them
    labels = [v["label"] for v in summary["variants"]]
    assert labels == ["base", "rag@1", "rag@2", "ft:v3-lora", "ft:v3-lora+rag@1", "ft:v3-lora+rag@2"]
    results = [json.loads(line) for line in (run.path / "results.jsonl").read_text().splitlines()]
    main = [r for r in results if not r.get("update")]
    assert len(main) == 6 * 10
    for label in labels:  # identical questions for every variant
        assert [r["question_id"] for r in main if r["label"] == label] == [q.id for q in mc.questions[:10]]
    for variant in summary["variants"]:
        records = [r for r in main if r["label"] == variant["label"]]
        assert variant["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / 10)
        assert variant["ci"][0] <= variant["accuracy"] <= variant["ci"][1]
        assert variant["acc_norm"] is not None and variant["f1"] is None
        if "rag" in variant["label"]:
            assert variant["retrieval"]["questions"] == 10 and 0 <= variant["retrieval"]["recall_at_k"] <= 1
            assert all(len(r["retrieved"]) <= variant["k"] for r in records)
        else:
            assert variant["retrieval"] is None and all(r["retrieved"] == [] for r in records)
    # how the timings were taken, and the chance of guessing (4 options), are in the run
    timing = summary["timing"]
    assert timing["warmup"] is True and timing["order"] == "interleaved in blocks of 10" and timing["cpu_count"] >= 1
    assert len(timing["load_before"]) == 3 and len(timing["load_after"]) == 3
    assert timing["repeats"] == 3 * 6 and timing["repeat_spread"] >= 0
    assert summary["questions"]["chance"] == 0.25
    # the passages each retrieval variant saw are kept with the question (their start)
    for r in main:
        assert len(r.get("passages", [])) == len(r["retrieved"])
    assert any(r["passages"] for r in main if r["label"] == "rag@1")
    assert all(0 < len(text) <= 400 for r in main for text in r.get("passages", []))
    ft = next(v for v in summary["variants"] if v["label"] == "ft:v3-lora")
    assert ft["training"]["dataset"] == {"name": "v3", "kind": "paraphrase", "paraphrases": 2, "rows": 24}
    # Lab retrieval is near perfect: the gold document is retrieved at rank 1 for most questions.
    rag1 = [r for r in main if r["label"] == "rag@1"]
    assert sum(r["gold_rank"] == 1 for r in rag1) >= 8
    fresh = summary["freshness"]
    assert fresh["changed_facts"] == len(load_question_set(ws.questions_dir, "questions_mc").questions)
    assert fresh["reindex_seconds"] > 0 and [r["label"] for r in fresh["variants"]] == labels
    for row in fresh["variants"]:
        assert 0 <= row["stale_share"] <= 1 and row["n"] == fresh["changed_facts"]
    # The updated knowledge base holds the new documents instead of the old ones.
    updated = Workspace.open(run.path / "updated-kb")
    sources = [d.document.source_path for d in updated.knowledge_snapshot().iter_documents()]
    changed = {p.name for p in (world / "updates" / "docs").iterdir()}
    assert all("updates" in s for s in sources if Path(s).name in changed)
    assert len(sources) == len({Path(s).name for s in sources})


def test_short_answer_sets_are_scored_by_exact_match_and_f1(lab_compare_ws, tiny_lab_model_dir: str) -> None:
    ws, _ = lab_compare_ws
    from infuse.evaluation.questions import load_question_set

    run = run_compare(
        ws,
        load_question_set(ws.questions_dir, "new_short"),
        CompareRequest(
            [VariantSpec(Variant.BASE), VariantSpec(Variant.RAG, k=1)],
            model=tiny_lab_model_dir,
            limit=5,
            max_new_tokens=4,
        ),
    )
    for variant in run.summary.to_json()["variants"]:
        assert variant["f1"] is not None and variant["acc_norm"] is None and variant["completion_tokens_mean"] > 0


def test_cli_compare_report_advise(lab_compare_ws, tiny_lab_model_dir: str) -> None:
    ws, _ = lab_compare_ws
    runner = CliRunner()
    common = ["-w", str(ws.path)]
    result = runner.invoke(
        app,
        [
            *common,
            "compare",
            "--questions",
            "new_mc",
            "--variants",
            "base,rag,ft",
            "--adapter",
            "v3-lora",
            "-k",
            "1",
            "--limit",
            "6",
            "--name",
            "cli",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [v["label"] for v in summary["variants"]] == ["base", "rag@1", "ft:v3-lora"]
    assert summary["model"] == tiny_lab_model_dir  # taken from the adapter's base model
    report = runner.invoke(app, [*common, "report", "cli", "--json"])
    assert report.exit_code == 0, report.output
    paths = json.loads(report.stdout)
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "rag@1" in html and Path(paths["markdown"]).is_file()
    advice = runner.invoke(app, [*common, "advise", "--updates", "daily", "--json"])
    assert advice.exit_code == 0, advice.output
    data = json.loads(advice.stdout)
    assert data["run"] == "cli" and data["approach"] and data["reasons"]
    bad = runner.invoke(app, [*common, "compare", "--questions", "nope"])
    assert bad.exit_code == 1 and "nope" in bad.stderr


@pytest.mark.slow
def test_the_lab_story_runs_end_to_end_on_a_tiny_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infuse.lab.story import StoryConfig, run_lab_story

    monkeypatch.setenv("INFUSE_LAB_CACHE", str(tmp_path / "cache"))
    lab = tiny_lab_config(steps=40)
    result = run_lab_story(tmp_path / "story", StoryConfig(lab=lab, tune_steps=3, batch_rows=2, limit=10))
    summary = result.summary.to_json()
    labels = [v["label"] for v in summary["variants"]]
    assert labels == ["base", "rag@1", "ft:ft-house", "ft:ft-house+rag@1"]  # one run for the facts and the style
    # every variant's style adherence and its leak rate for the guest, who may not read n0000's document
    for v in result.summary.variants:
        assert v.style is not None and v.style.n == 10 and v.leak is not None and v.leak.user == "guest"
        assert v.leak.n == 5
    assert summary["freshness"]["changed_facts"] > 0
    assert result.report_html.is_file() and result.report_markdown.is_file()
    assert result.recommendation["approach"] and result.recommendation["reasons"]
    ft = next(v for v in summary["variants"] if v["label"] == "ft:ft-house")
    assert ft["training"]["dataset"]["kind"] == "qa"


def test_freshness_table_shows_each_variant_and_is_absent_without_an_update() -> None:
    from rich.console import Console

    from infuse.evaluation.console import freshness_table
    from infuse.evaluation.runs import CompareSummary

    assert freshness_table(CompareSummary.from_json({"variants": []})) is None
    summary = CompareSummary.from_json(
        {
            "freshness": {
                "changed_facts": 15,
                "reindex_seconds": 0.4,
                "variants": [
                    {"label": "rag@1", "accuracy": 1.0, "stale_share": 0.0},
                    {"label": "ft:v4-lora", "accuracy": 0.133, "stale_share": 0.867},
                ],
            }
        }
    )
    console = Console(record=True, width=120)
    console.print(freshness_table(summary))
    text = console.export_text()
    assert "after 15 facts changed (re-index 0.4s)" in text
    assert "rag@1" in text and "100.0%" in text and "ft:v4-lora" in text and "86.7%" in text


class _FirstCallSlow(ScriptedModel):
    """Answers at once, except its very first call (a first-call cost: compilation, caches);
    logs every call's model name in one shared list, so the order of variants can be read."""

    def __init__(self, name: str, log: list[str], first_call_s: float = 0.25) -> None:
        super().__init__("Paris", name=name)
        self.log, self.first_call_s, self.called = log, first_call_s, False

    def stream(self, prompt, config=GenerationConfig()):  # type: ignore[no-untyped-def]
        self.log.append(self.name)
        if not self.called:
            self.called = True
            time.sleep(self.first_call_s)
        return super().stream(prompt, config)


def test_variants_are_warmed_up_interleaved_and_timed_twice_for_the_noise_check() -> None:
    from infuse.config import RagSettings, SearchSettings
    from infuse.embedders.hashing import HashingEmbedder
    from infuse.retrieval.lexical import EnglishTokenizer
    from infuse.retrieval.search import HybridSearcher
    from infuse.store.memory import InMemoryStore

    log: list[str] = []
    specs = [VariantSpec(Variant.BASE), VariantSpec(Variant.FT, adapter="a"), VariantSpec(Variant.FT, adapter="b")]
    models = {spec: _FirstCallSlow(spec.label, log) for spec in specs}
    store = InMemoryStore(dimension=128)
    embedder = HashingEmbedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-128"))

    def pipeline_for(spec: VariantSpec) -> RagPipeline:
        searcher = HybridSearcher(store.snapshot(), embedder, EnglishTokenizer(), SearchSettings())
        return RagPipeline(searcher, models[spec], RagSettings(), EnglishTokenizer())

    questions = [
        Question(id=f"q{i}", kind=QuestionKind.SHORT, question=f"Capital number {i}?", lang="en", answers=("Paris",))
        for i in range(4)
    ]
    spreads: list[float] = []
    gen = GenerationConfig(max_new_tokens=4)
    out = evaluate_variants(pipeline_for, questions, specs, gen, timing=spreads, block=1)
    labels = [s.label for s in specs]
    # one warm-up per variant, then per question every variant, the order rotated by one each time
    assert log[:3] == labels
    assert log[3:15] == [*labels, *labels[1:], labels[0], labels[2], *labels[:2], *labels]
    # then the first questions again for the noise check; every spread is recorded
    assert log[15:] == labels * 3 and len(spreads) == 9
    # the first-call cost went to the warm-up, not to whichever variant ran first
    assert all(r.latency_ms is not None and r.latency_ms < 200 for records in out.values() for r in records)
    assert [[r.prediction for r in out[s]] for s in specs] == [["Paris"] * 4] * 3
    assert [r.question_id for r in out[specs[0]]] == ["q0", "q1", "q2", "q3"]
    # blocks of two questions: each variant answers a block in a row, the order rotated per block;
    # without a timing list there is no second pass (the freshness stage)
    log.clear()
    evaluate_variants(pipeline_for, questions, specs, gen, block=2)
    a, b, c = labels
    assert log[3:] == [a, a, b, b, c, c, b, b, c, c, a, a]


def test_timing_record_flags_noise_from_load_or_repeats() -> None:
    from infuse.evaluation.runs import Timing

    quiet = Timing(cpu_count=4, load_before=(0.5, 0.5, 0.5), load_after=(1.0, 0.5, 0.5), repeat_spread=0.1)
    assert not quiet.noisy and quiet.caveat() is None
    loaded = Timing(cpu_count=2, load_before=(1.0, 1.0, 1.0), load_after=(3.5, 1.0, 1.0), repeat_spread=0.1)
    assert loaded.noisy and "load (3.5) was above its 2 cores" in (loaded.caveat() or "")
    jumpy = Timing(cpu_count=8, repeat_spread=0.8)
    assert jumpy.noisy and "differed by 80%" in (jumpy.caveat() or "")
    assert Timing.from_json(loaded.to_json()) == loaded
