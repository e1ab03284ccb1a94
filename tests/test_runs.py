"""The typed compare run records: round trip, runs written before the schema field, a newer schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infuse.errors import InfuseError
from infuse.evaluation.runs import (
    SCHEMA,
    CompareSummary,
    QuestionRecord,
    RunFileError,
    Variant,
    read_run,
    write_run,
)

# summary.json as infuse wrote it before the schema field existed (fields exactly as then)
OLD_SUMMARY = {
    "run": "20261121-031500-lab",
    "created": "2026-11-21T03:15:00+0000",
    "workspace": "/abs/ws",
    "model": "/abs/lab-model",
    "questions": {"name": "new_mc", "count": 2, "kinds": {"mc": 2}},
    "cost_model": {
        "machine_hour_usd": 0.5,
        "input_usd_per_mtok": None,
        "output_usd_per_mtok": None,
        "basis": "machine_time",
    },
    "variants": [
        {
            "label": "base",
            "variant": "base",
            "adapter": None,
            "k": None,
            "n": 2,
            "accuracy": 0.5,
            "ci": [0.0, 1.0],
            "f1": None,
            "acc_norm": 0.5,
            "latency_ms": {"mean": 10.5, "median": 10.5, "p90": 11.0},
            "retrieval_ms_mean": 0.0,
            "prompt_tokens_mean": 9.0,
            "completion_tokens_mean": 0.0,
            "retrieval": None,
            "found_relevant_share": None,
            "cost_per_1k_usd": 0.001458,
            "training": None,
        },
        {
            "label": "ft:v3-lora+rag@1",
            "variant": "ft+rag",
            "adapter": "v3-lora",
            "k": 1,
            "n": 2,
            "accuracy": 1.0,
            "ci": [1.0, 1.0],
            "f1": None,
            "acc_norm": 1.0,
            "latency_ms": {"mean": 20.0, "median": 20.0, "p90": 21.0},
            "retrieval_ms_mean": 3.5,
            "prompt_tokens_mean": 49.0,
            "completion_tokens_mean": 0.0,
            "retrieval": {"questions": 2, "recall_at_k": 1.0, "mrr": 1.0, "ndcg": 1.0},
            "found_relevant_share": 1.0,
            "cost_per_1k_usd": 0.002778,
            "training": {
                "adapter": "v3-lora",
                "method": "lora",
                "wall_seconds": 12.3,
                "cost_usd": 0.001708,
                "dataset": {"name": "v3", "kind": "paraphrase", "paraphrases": 2, "rows": 24},
            },
        },
    ],
    "freshness": {
        "questions": "questions_mc",
        "documents": "/abs/updates",
        "changed_facts": 2,
        "reindex_seconds": 1.2,
        "reindex_cost_usd": 0.000167,
        "variants": [
            {
                "label": "base",
                "variant": "base",
                "adapter": None,
                "n": 2,
                "accuracy": 0.0,
                "ci": [0.0, 0.0],
                "stale_share": 1.0,
            },
            {
                "label": "ft:v3-lora+rag@1",
                "variant": "ft+rag",
                "adapter": "v3-lora",
                "n": 2,
                "accuracy": 1.0,
                "ci": [1.0, 1.0],
                "stale_share": 0.0,
                "retrain_seconds": 12.3,
            },
        ],
    },
}
OLD_RECORD = {
    "question_id": "q1",
    "label": "ft:v3-lora+rag@1",
    "kind": "mc",
    "question": "Who?",
    "answers": ["Tarn"],
    "prediction": "Tarn",
    "correct": True,
    "acc_norm": True,
    "f1": None,
    "stale": None,
    "prompt_tokens": 49,
    "completion_tokens": 0,
    "retrieved": ["world/docs/n0001.txt"],
    "gold_rank": 1,
    "found_relevant": True,
    "retrieval_ms": 3.5,
    "latency_ms": 20.0,
    "gold_known": True,
}


def _write(folder: Path, summary: dict, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def test_summary_and_records_round_trip_through_their_json(tmp_path: Path) -> None:
    summary = CompareSummary.from_json(OLD_SUMMARY)
    assert summary.schema == SCHEMA and summary.to_json()["schema"] == "infuse-compare/1"
    assert CompareSummary.from_json(summary.to_json()) == summary
    # the JSON field names are the ones summary.json always had: only "schema" is new
    assert {k: v for k, v in summary.to_json().items() if k != "schema"} == OLD_SUMMARY
    record = QuestionRecord.from_json(OLD_RECORD)
    assert record.to_json() == OLD_RECORD and QuestionRecord.from_json(record.to_json()) == record
    update = record.after_update()
    assert update.label == "update:ft:v3-lora+rag@1" and update.to_json()["update"] is True

    write_run(tmp_path, summary, [record, update])
    run = read_run(tmp_path)
    assert run.summary == summary and run.records == [record, update]
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["schema"] == SCHEMA


def test_a_run_written_without_the_schema_field_loads(tmp_path: Path) -> None:
    run = read_run(_write(tmp_path / "old", OLD_SUMMARY, [OLD_RECORD]))
    assert run.summary.schema == SCHEMA and run.summary.run == "20261121-031500-lab"
    hybrid = run.summary.variant("ft:v3-lora+rag@1")
    assert hybrid is not None and hybrid.kind is Variant.FT_RAG and hybrid.ci == (1.0, 1.0)
    assert hybrid.latency_ms is not None and hybrid.latency_ms.median == 20.0
    assert hybrid.training is not None and hybrid.training.dataset is not None
    assert hybrid.training.dataset.paraphrases == 2 and hybrid.training.dataset.paraphrase_count == 2.0
    assert run.summary.freshness is not None and run.summary.freshness.variants[1].retrain_seconds == 12.3
    assert [r.question_id for r in run.records] == ["q1"] and run.records[0].correct is True
    assert not run.results_missing and run.bad_result_lines == 0


def test_a_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "future", {**OLD_SUMMARY, "schema": "infuse-compare/2"}, [OLD_RECORD])
    with pytest.raises(RunFileError) as info:
        read_run(folder)
    message = str(info.value)
    assert str(folder / "summary.json") in message and "'infuse-compare/2'" in message and SCHEMA in message
    assert "upgrade infuse" in message and "infuse compare" in message
    assert isinstance(info.value, InfuseError)


def test_odd_values_read_as_missing_instead_of_failing() -> None:
    summary = CompareSummary.from_json(
        {
            "variants": [
                {
                    "variant": "rag",
                    "k": "three",
                    "accuracy": "n/a",
                    "ci": [0.1],
                    "latency_ms": None,
                    "training": "oops",
                    "retrieval": [],
                },
                "not a variant",
                {"variant": "mystery", "accuracy": 0.5},
            ],
            "questions": "free text",
            "freshness": {"variants": None},
            "cost_model": None,
        }
    )
    rag, mystery = summary.variants
    assert (rag.label, rag.kind, rag.k, rag.accuracy, rag.ci, rag.training) == (
        "rag",
        Variant.RAG,
        None,
        None,
        None,
        None,
    )
    assert mystery.kind is None and mystery.label == "mystery"
    assert summary.questions is not None and summary.questions.name == "free text"
    assert summary.freshness is not None and summary.freshness.variants == ()
