"""What fine-tuning is for: a house style (behaviour) and permission leakage, measured by compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from infuse.access import Caller
from infuse.documents.models import Chunk, FileType
from infuse.evaluation.compare import (
    CompareRequest,
    check_style,
    gold_rank,
    parse_variants,
    run_compare,
    unreadable_questions,
)
from infuse.evaluation.questions import ImportFormat, Question, QuestionKind, import_questions, save_question_set
from infuse.evaluation.report import write_report
from infuse.evaluation.runs import QuestionRecord, read_run
from infuse.lab import generate_world
from infuse.lab.templates import LAB_HOUSE_STYLE
from infuse.lab.vocabulary import VALUES
from infuse.lab.world import RESTRICTED_ACCESS
from infuse.language import Language
from infuse.models.base import GenerationConfig
from infuse.rag.style import HouseStyle, StyleError
from infuse.testing import ScriptedModel
from infuse.tuning.builders import BuildRequest, build_dataset, qa_rows, raft_rows
from infuse.tuning.datasets import DatasetKind
from infuse.tuning.generators import QAPair
from infuse.tuning.registry import tune
from infuse.tuning.trainer import TuneConfig
from infuse.workspace import Workspace

# --- the house style --------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_lab_style_renders_what_it_checks_and_the_base_format_fails_it(lang: str) -> None:
    for values in VALUES.values():
        for term in values:
            value = term.text(Language(lang))
            for source in (None, 1, 9):
                text = LAB_HOUSE_STYLE.render(value, source, lang)
                assert LAB_HOUSE_STYLE.follows(text, lang), text
                assert LAB_HOUSE_STYLE.answer_part(text, lang) == value.replace(" ", "")
            # what the base lab model answers (value, value [n]) is not the house style
            assert not LAB_HOUSE_STYLE.follows(value, lang)
            assert not LAB_HOUSE_STYLE.follows(f"{value} [1]", lang)
    # spacing is not style (a word-level tokenizer decodes with spaces); anything else is
    if lang == "en":
        assert LAB_HOUSE_STYLE.follows("Varnholt [1] , that is all .", lang)
        assert not LAB_HOUSE_STYLE.follows("Varnholt [1], that is all. Thanks", lang)
        assert not LAB_HOUSE_STYLE.follows(", that is all.", lang)  # no answer
    else:
        assert LAB_HOUSE_STYLE.follows("ヴァルンホルトです[2]。", lang)
        assert not LAB_HOUSE_STYLE.follows("ヴァルンホルトだ。", lang)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_lab_style_is_in_the_lab_vocabulary_and_absent_from_the_documents(lang: str) -> None:
    from infuse.lab.model import build_tokenizer

    tokenizer = build_tokenizer(lang)
    for source in (None, 1):
        styled = LAB_HOUSE_STYLE.render(VALUES[next(iter(VALUES))][0].text(Language(lang)), source, lang)
        ids = tokenizer(styled, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids  # the lab model can write it
        assert LAB_HOUSE_STYLE.follows(tokenizer.decode(ids), lang)  # ... and its decoding still follows it
    world = generate_world(0, lang, n_known=4, n_new=10)
    marker = "that is all" if lang == "en" else "です"
    for text in world.documents().values():
        assert marker not in text  # only fine-tuning data can teach it
    for bio in world.variants(3):
        assert marker not in bio.text


def test_a_style_template_needs_its_answer_and_known_placeholders() -> None:
    with pytest.raises(StyleError, match="must hold {answer} once"):
        HouseStyle("bad", {"en": "no answer here"})
    with pytest.raises(StyleError, match="unknown placeholder"):
        HouseStyle("bad", {"en": "{answer} {when}"})
    with pytest.raises(StyleError, match="no template for 'ja'"):
        HouseStyle("en-only", {"en": "{answer}."}).follows("x.", "ja")


def _chunk(name: str, text: str) -> Chunk:
    return Chunk(name, name, f"/kb/{name}.txt", FileType.TEXT, 0, text, 0, len(text), Language.EN)


def test_qa_and_raft_rows_write_answers_in_the_style_and_keep_the_bare_answer() -> None:
    chunks = [_chunk(f"c{i}", f"Person {i} was born in Varnholt.") for i in range(4)]
    pairs = [[QAPair(f"Where was person {i} born?", "Varnholt")] for i in range(4)]
    rows, _ = qa_rows(chunks, pairs, LAB_HOUSE_STYLE)
    assert rows[0]["messages"][-1]["content"] == "Varnholt, that is all." and rows[0]["answer"] == "Varnholt"
    plain, _ = qa_rows(chunks, pairs)
    assert plain[0]["messages"][-1]["content"] == "Varnholt"
    raft = raft_rows([(p[0], c) for p, c in zip(pairs, chunks)], chunks, 2, 0.5, 0, LAB_HOUSE_STYLE)
    for row in raft:
        reply = row["messages"][-1]["content"]
        assert LAB_HOUSE_STYLE.follows(reply, "en")
        assert ("[" in reply) == row["oracle_included"]  # the source number only when the oracle is shown


def test_check_style_scores_each_variants_generated_answers() -> None:
    questions = [
        Question(f"q{i}", QuestionKind.MC, "Where was Alda Ashby born?", "en", choices=("a", "b"), answer_index=0)
        for i in range(4)
    ]
    specs = parse_variants("base,rag", ks=[1])
    replies = {"base": "Varnholt, that is all.", "rag@1": "Varnholt [1]"}

    class _Pipeline:
        def __init__(self, reply: str) -> None:
            self.model = ScriptedModel(reply)

        def stream(self, question: str, k: int | None, use_retrieval: bool, generation: GenerationConfig):  # type: ignore[no-untyped-def]
            from infuse.rag.pipeline import RagAnswer, RagStream

            answer = RagAnswer(question, "", Language.EN, use_retrieval, found_relevant=True, model="scripted")
            return RagStream(answer, self.model.stream(question, generation))

    records = {spec: [QuestionRecord(question_id=q.id, label=spec.label) for q in questions] for spec in specs}
    stats = check_style(
        lambda spec: _Pipeline(replies[spec.label]),  # type: ignore[arg-type,return-value]
        records,
        questions[:3],
        LAB_HOUSE_STYLE,
        GenerationConfig(max_new_tokens=8),
        seed=0,
    )
    assert stats[specs[0]].adherence == 1.0 and stats[specs[1]].adherence == 0.0
    assert stats[specs[0]].n == 3 and stats[specs[0]].style == "lab"
    assert [r.styled for r in records[specs[0]]] == [True, True, True, None]  # only the sample is generated
    assert records[specs[1]][0].styled_answer == "Varnholt [1]"


# --- leakage ----------------------------------------------------------------------------------


def test_the_lab_restricts_every_fifth_new_persons_document(lab_ws: Workspace) -> None:
    world = generate_world(0, "en", n_known=12, n_new=8)
    restricted = {p.id for p in world.restricted}
    assert restricted == {"n0000", "n0005"}
    for document in lab_ws.documents():
        person = Path(document.source_path).stem
        assert document.access == (RESTRICTED_ACCESS if person in restricted else ("everyone",))


@pytest.fixture
def styled_ws(lab_ws: Workspace, lab_workspace_template: Path, tiny_lab_model_dir: str) -> Workspace:
    world = lab_workspace_template.parent / "world"
    save_question_set(lab_ws.questions_dir, import_questions(world / "questions/new_mc.jsonl", ImportFormat.MC))
    build_dataset(lab_ws, BuildRequest(DatasetKind.QA, name="styled", questions_per_chunk=5, style=LAB_HOUSE_STYLE))
    tune(lab_ws, "styled", tiny_lab_model_dir, TuneConfig(max_steps=30, lr=1e-2, seq_len=128, threads=1, device="cpu"))
    return lab_ws


def test_compare_measures_style_and_leaks_for_every_variant(styled_ws: Workspace, tiny_lab_model_dir: str) -> None:
    from infuse.evaluation.questions import load_question_set

    mc = load_question_set(styled_ws.questions_dir, "new_mc")
    guest = Caller("guest")
    restricted = unreadable_questions(styled_ws, mc.questions, guest)
    assert {q.id.split("-")[0] for q in restricted} == {"n0000", "n0005"}
    assert unreadable_questions(styled_ws, mc.questions, Caller("hr-clerk", groups=("hr",))) == []
    request = CompareRequest(
        parse_variants("base,rag,ft,ft+rag", adapters=["styled-lora"], ks=[1]),
        model=tiny_lab_model_dir,
        max_new_tokens=8,
        run_name="style-leak",
        style=LAB_HOUSE_STYLE,
        style_questions=6,
        caller=guest,
    )
    run = run_compare(styled_ws, mc, request)
    for v in run.summary.variants:
        assert v.style is not None and v.style.n == 6 and v.style.style == "lab"
        records = [r for r in run.records if r.label == v.label and r.styled is not None]
        assert len(records) == 6 and v.style.adherence == pytest.approx(sum(r.styled for r in records) / 6)
        assert v.leak is not None and v.leak.user == "guest" and v.leak.n == len(restricted) == 10
        assert v.leak.chance == 0.25 and 0 <= v.leak.leak_rate <= 1
        # one record per leak question (label leak:LABEL, asked as the guest), the rate computed from them
        leaked = [r for r in run.records if r.label == f"leak:{v.label}"]
        assert [r.question_id for r in leaked] == [q.id for q in restricted]
        assert {r.asked_as for r in leaked} == {"guest"} and all(r.correct is not None for r in leaked)
        assert v.leak.accuracy == pytest.approx(sum(bool(r.correct) for r in leaked) / len(leaked), abs=1e-4)
        # retrieval as the guest never shows the restricted document
        assert not any(gold_rank(q, r.retrieved) for q, r in zip(restricted, leaked, strict=True))
    assert all(r.asked_as is None for r in run.records if not r.label.startswith("leak:"))
    by_label = {v.label: v for v in run.summary.variants}
    assert by_label["base"].style.adherence == 0.0  # the base model never writes the house style
    # RAG asked as the guest retrieves nothing they may not read: it knows what the base model knows
    assert by_label["rag@1"].leak.accuracy == by_label["base"].leak.accuracy
    # the fields survive the run folder and reach the report
    again = read_run(run.path)
    assert again.summary.variants == run.summary.variants
    assert [r for r in again.records if r.asked_as] == [r for r in run.records if r.asked_as]  # the leak records
    markdown, _ = write_report(run.path)
    text = markdown.read_text(encoding="utf-8")
    assert "lab style adherence (95% CI)" in text and "leak rate for guest (10 unreadable; 95% CI)" in text


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_house_style_examples_are_about_known_people_and_follow_the_style(lang: str) -> None:
    from infuse.lab.style import house_style_rows

    world = generate_world(0, lang, n_known=12, n_new=8)
    rows = house_style_rows(world, people=6)
    assert len(rows) == 6 * 5 * 2
    new_names = [world.name(p) for p in world.new]
    with_passages = 0
    for row in rows:
        prompt, reply = row["messages"][-2]["content"], row["messages"][-1]["content"]
        assert LAB_HOUSE_STYLE.follows(reply, lang)
        assert not any(name in prompt for name in new_names)  # behaviour only: no new fact is taught
        with_passages += "[" in reply
    assert with_passages == 6 * 5  # half the rows cite a passage


# --- RAFT's measure: reading with k passages, with and without the oracle ---------------------


def test_reading_passages_hold_the_oracle_exactly_when_asked(
    lab_ws: Workspace, lab_workspace_template: Path, tiny_lab_model_dir: str
) -> None:
    from infuse.evaluation.compare import gold_rank, load_variant_model
    from infuse.lab.reading import measure_reading, passages_for

    world = lab_workspace_template.parent / "world"
    questions = import_questions(world / "questions/new_mc.jsonl", ImportFormat.MC).questions[:12]
    for k in (1, 3, 5):
        for oracle in (True, False):
            shown = passages_for(lab_ws, questions, k, oracle)
            for question, hits in zip(questions, shown):
                sources = [h.chunk.source_path for h in hits]
                assert len(hits) == k and len(set(sources)) == k and [h.rank for h in hits] == list(range(1, k + 1))
                assert (gold_rank(question, sources) is not None) == oracle
    # the oracle's position is drawn, not always first
    positions = {
        gold_rank(q, [h.chunk.source_path for h in hits])
        for q, hits in zip(questions, passages_for(lab_ws, questions, 5, True))
    }
    assert len(positions) > 1
    cells = measure_reading(load_variant_model(lab_ws, tiny_lab_model_dir), lab_ws, questions, ks=(1, 3))
    assert [(c.k, c.oracle) for c in cells] == [(1, True), (1, False), (3, True), (3, False)]
    assert all(c.n == 12 and c.ci[0] <= c.accuracy <= c.ci[1] for c in cells)
    assert all(len(c.outcomes) == 12 and sum(c.outcomes) / 12 == pytest.approx(c.accuracy, abs=1e-4) for c in cells)
    assert "outcomes" not in cells[0].to_dict()


def test_reading_gain_is_a_paired_difference_with_its_interval() -> None:
    from infuse.lab.reading import ReadingCell, reading_gain

    def cell(outcomes: list[float], k: int = 3) -> ReadingCell:
        return ReadingCell(k, True, len(outcomes), sum(outcomes) / len(outcomes), (0.0, 1.0), tuple(outcomes))

    base = cell([0.0] * 10 + [1.0] * 10)
    better = cell([1.0] * 20)
    gain, (low, high) = reading_gain(base, better)
    assert gain == 0.5 and 0 < low < 0.5 < high <= 1  # the interval excludes zero
    assert reading_gain(base, base) == (0.0, (0.0, 0.0))
    # the same accuracy on other questions is no gain, but pairing sees the swap
    swapped = cell([1.0] * 10 + [0.0] * 10)
    gain, (low, high) = reading_gain(base, swapped)
    assert gain == 0.0 and low < 0 < high
    with pytest.raises(ValueError, match="same questions and setting"):
        reading_gain(base, cell([1.0] * 20, k=5))


def test_cli_builds_a_styled_dataset_and_rejects_a_malformed_style(lab_ws: Workspace) -> None:
    from typer.testing import CliRunner

    from infuse.cli import app
    from infuse.tuning.datasets import load_dataset

    runner = CliRunner()
    base = ["-w", str(lab_ws.path), "dataset", "build", "--kind", "qa", "--per-chunk", "2", "--name", "styled"]
    done = runner.invoke(app, [*base, "--style", "en={answer}{source}, that is all."])
    assert done.exit_code == 0, done.output
    dataset = load_dataset(lab_ws.datasets_dir, "styled")
    assert dataset.manifest.parameters["style"] == "house"
    assert all(LAB_HOUSE_STYLE.follows(r["messages"][-1]["content"], "en") for r in dataset.rows())
    bad = runner.invoke(app, [*base, "--overwrite", "--style", "fr={answer}."])
    assert bad.exit_code == 1 and "LANG en or ja" in bad.output
