"""The lab model trainer: tokenizer, prompt format, training data, a short training run, the cache."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from infuse.lab import VALUES, generate_world
from infuse.lab.model import (
    CITATION_TOKENS,
    answer_of,
    build_model,
    build_tokenizer,
    format_answer,
    render_prompt,
)
from infuse.lab.train import (
    MANIFEST,
    LabData,
    LabTrainConfig,
    default_cache_dir,
    lr_at,
    model_folder,
    pack_rows,
    passage,
    read_manifest,
    train,
    train_lab_model,
    weighted_loss,
)
from infuse.language import Language
from infuse.rag import SYSTEM_PROMPTS, build_messages, closed_book_messages
from infuse.testing import tiny_lab_config
from infuse.tuning.packing import IGNORE, packed_attention_mask

TINY = tiny_lab_config(seed=1)
PASSAGE = re.compile(r'<passage id="(\d+)" source="([^"]+)">\n(.*?)\n</passage>', re.S)


@pytest.fixture(scope="module", params=["en", "ja"])
def tokenizer(request, tmp_path_factory):
    """The tokenizer as a model folder holds it (saved, then loaded back with AutoTokenizer)."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp(f"lab-tokenizer-{request.param}")
    build_tokenizer(request.param).save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(str(folder))
    loaded.lab_lang = Language(request.param)
    return loaded


def test_every_world_value_is_one_token_and_decodes_to_itself(tokenizer) -> None:
    lang = tokenizer.lab_lang
    for values in VALUES.values():
        for term in values:
            value = term.text(lang)
            ids = tokenizer(value, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, value
            assert tokenizer.decode(ids) == value
            cited = tokenizer(format_answer(value, 2, lang) + tokenizer.eos_token, add_special_tokens=False)[
                "input_ids"
            ]
            assert len(cited) == 3 and cited[-1] == tokenizer.eos_token_id
            text = tokenizer.decode(cited, skip_special_tokens=True)
            assert text == format_answer(value, 2, lang) and answer_of(text) == value
    assert tokenizer.decode(
        tokenizer("Varnholt [1]" if lang is Language.EN else "ヴァルンホルト[1]", add_special_tokens=False)["input_ids"]
    ).endswith("[1]")
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in CITATION_TOKENS)


def test_chat_template_renders_rag_and_closed_book_messages(tokenizer) -> None:
    lang = tokenizer.lab_lang
    world = generate_world(3, lang, n_known=4, n_new=2)
    person = world.new[0]
    question = world.short_questions()[0]
    hits = [passage(f"/docs/{p.id}.txt", world.document(p).strip(), lang, i) for i, p in enumerate(world.new, 1)]
    rag = render_prompt(tokenizer, build_messages(question.question, hits, lang))
    label, qlabel = ("Passages", "Question") if lang is Language.EN else ("資料", "質問")
    assert rag.startswith(f'<s>{label}:\n<passage id="1" source="{person.id}.txt">\n')
    assert rag.endswith(f"</passage>\n\n{qlabel}: {question.question} =>")
    assert SYSTEM_PROMPTS[lang] not in rag
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(rag, add_special_tokens=False)["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "=>"
    assert tokens.count("[UNK]") == len(hits)  # only the file names (n0000 ...) are unknown
    closed = render_prompt(tokenizer, closed_book_messages(question.question, lang))
    assert closed == f"<s>{question.question} =>"
    assert "[UNK]" not in tokenizer.convert_ids_to_tokens(tokenizer(closed, add_special_tokens=False)["input_ids"])
    # earlier turns of a chat: answers closed with </s>
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    assert render_prompt(tokenizer, closed_book_messages("Q2", lang, history)) == "<s>Q1 => A1</s>\nQ2 =>"


def test_training_lines_are_rendered_with_the_rag_prompt_builders(tokenizer) -> None:
    lang = tokenizer.lab_lang
    config = LabTrainConfig(lang=str(lang), n_known=20, n_new=5, n_phantoms=40, seq_len=256)
    data = LabData(config, tokenizer)
    rng = random.Random(0)
    for _ in range(30):
        qa = data.qa(rng)
        question = qa.text[len("<s>") : qa.text.index(" =>")]
        assert qa.text.startswith(render_prompt(tokenizer, closed_book_messages(question, lang)) + " ")
        assert [t for t, on in zip(tokenizer.convert_ids_to_tokens(qa.ids), qa.loss) if on][-1] == "</s>"

        reading = data.reading(rng)
        assert len(reading.ids) <= config.seq_len
        hits = [passage(source, text, lang, int(number)) for number, source, text in PASSAGE.findall(reading.text)]
        assert 1 <= len(hits) <= config.max_passages
        first = reading.text[: reading.text.index(" =>") + 3]
        question = first.rsplit(": ", 1)[1][: -len(" =>")]
        assert first == render_prompt(tokenizer, build_messages(question, hits, lang))
        # loss only on answers: value, citation and </s> per question
        targets = [t for t, on in zip(tokenizer.convert_ids_to_tokens(reading.ids), reading.loss) if on]
        assert len(targets) % 3 == 0 and targets[1::3] == [t for t in targets[1::3] if t in CITATION_TOKENS]
        assert targets[2::3] == ["</s>"] * (len(targets) // 3)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_new_people_never_appear_in_training_data(lang: str) -> None:
    config = LabTrainConfig.for_lang(lang)
    tokenizer = build_tokenizer(lang)
    data = LabData(config, tokenizer)
    world = data.world
    new_names = {world.name(p) for p in world.new}
    assert not new_names & {p.name.text(Language(lang)) for p in data.readers}
    assert not {p.name for p in world.people} & {p.name for p in data.phantoms}
    rng = random.Random(0)
    for _ in range(1500):
        doc = data.sample(rng)
        assert not any(name in doc.text for name in new_names), doc.text
        assert not new_names & set(doc.people)


def test_english_configuration_and_its_cache_key_are_unchanged() -> None:
    # The English benchmark results belong to this key; changing it needs the benchmark rerun.
    assert LabTrainConfig.for_lang("en") == LabTrainConfig()
    assert LabTrainConfig.for_lang("en").cache_key() == "ecd8bc984e0c65c4"
    japanese = LabTrainConfig.for_lang("ja", steps=10)
    assert japanese.lang == "ja" and japanese.steps == 10 and japanese.fresh_facts
    assert japanese.cache_key() != LabTrainConfig(lang="ja", steps=10).cache_key()


def test_fresh_facts_are_drawn_per_line_and_answered_from_the_passage() -> None:
    tokenizer = build_tokenizer("en")
    data = LabData(LabTrainConfig(n_known=20, n_new=5, n_phantoms=3, max_passages=1, fresh_facts=True), tokenizer)
    rng = random.Random(0)
    for _ in range(40):
        doc = data.reading(rng)
        text = PASSAGE.findall(doc.text)[0][2]
        answers = re.findall(r"=> (\S+) \[1\]", doc.text)
        assert answers and all(value in text for value in answers)
    phantom = data.phantoms[0]
    assert len({tuple(data._refreshed(phantom, rng).facts.values()) for _ in range(5)}) > 1
    phantom_ids = {p.id for p in data.phantoms}
    assert all(data._refreshed(p, rng) is p for p in data.readers if p.id not in phantom_ids)


def test_reading_without_known_people_and_with_filled_questions() -> None:
    tokenizer = build_tokenizer("en")
    config = LabTrainConfig(
        n_known=20,
        n_new=5,
        n_phantoms=3,
        max_passages=1,
        questions_per_line=8,
        known_readers=False,
        fill_questions=True,
    )
    data = LabData(config, tokenizer)
    assert {p.id for p in data.readers} == {p.id for p in data.phantoms}
    assert len(LabData(LabTrainConfig(n_known=20, n_new=5, n_phantoms=3), tokenizer).readers) == 23
    rng = random.Random(0)
    counts = set()
    for _ in range(20):
        doc = data.reading(rng)
        text = PASSAGE.findall(doc.text)[0][2]
        answers = re.findall(r"=> (\S+) \[1\]", doc.text)
        assert all(value in text for value in answers)
        counts.add(len(answers))
    assert max(counts) == 8  # one passage has 5 facts: 3 are asked again
    # both are later fields: at their defaults the cache key is what it was before they existed
    assert LabTrainConfig(known_readers=True, fill_questions=False).cache_key() == "ecd8bc984e0c65c4"


def test_single_passage_curriculum() -> None:
    tokenizer = build_tokenizer("ja")
    data = LabData(LabTrainConfig(lang="ja", n_known=20, n_new=5, n_phantoms=40, max_passages=3), tokenizer)
    rng = random.Random(0)
    data.max_passages = 1
    assert {len(PASSAGE.findall(data.reading(rng).text)) for _ in range(30)} == {1}
    data.max_passages = 3
    assert len({len(PASSAGE.findall(data.reading(rng).text)) for _ in range(60)}) > 1


def test_packed_documents_do_not_see_each_other() -> None:
    import torch

    tokenizer = build_tokenizer("en")
    model = build_model(tokenizer, TINY.architecture()).eval()
    data = LabData(TINY, tokenizer)
    ids, positions, labels, _ = next(pack_rows(data, random.Random(0), TINY.seq_len, tokenizer.pad_token_id))
    assert len(ids) == len(positions) == len(labels) == TINY.seq_len
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert len(starts) >= 2
    second = slice(starts[1], starts[2] if len(starts) > 2 else TINY.seq_len)
    position_ids = torch.tensor([positions])
    with torch.no_grad():
        packed = model(
            input_ids=torch.tensor([ids]),
            position_ids=position_ids,
            attention_mask=packed_attention_mask(position_ids),
            use_cache=False,
        ).logits[0, second]
        alone = model(input_ids=torch.tensor([ids[second]]), use_cache=False).logits[0]
    assert torch.allclose(packed, alone, atol=1e-4)


def test_reading_answers_can_weigh_more_in_the_loss() -> None:
    import torch

    tokenizer = build_tokenizer("en")
    config = LabTrainConfig(n_known=20, n_new=5, n_phantoms=10, reading_loss_weight=3.0)
    data = LabData(config, tokenizer)
    rows = pack_rows(data, random.Random(0), 256, tokenizer.pad_token_id)
    row_weights = [next(rows).weights for _ in range(6)]
    seen = {w for weights in row_weights for w in weights}
    assert seen == {0.0, 1.0, 3.0}  # untargeted, bio/QA, reading answers
    row = next(rows)
    assert all((w == 0.0) == (label == IGNORE) for w, label in zip(row.weights, row.labels))

    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[1, IGNORE, 2, 3]])
    per_token = torch.nn.functional.cross_entropy(logits[0], labels[0], ignore_index=IGNORE, reduction="none")
    ones = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    assert weighted_loss(logits, labels, ones).item() == pytest.approx(per_token[[0, 2, 3]].mean().item())
    mixed = torch.tensor([[3.0, 0.0, 1.0, 1.0]])
    expected = (3 * per_token[0] + per_token[2] + per_token[3]) / 5
    assert weighted_loss(logits, labels, mixed).item() == pytest.approx(expected.item())


def test_reading_weight_can_stop_after_some_steps() -> None:
    import dataclasses

    tokenizer = build_tokenizer("en")
    config = dataclasses.replace(TINY, steps=4, reading_loss_weight=3.0, reading_weight_steps=2)
    data = LabData(config, tokenizer)
    assert data.reading_weight == 3.0
    result = train(build_model(tokenizer, config.architecture()), data, config)
    assert data.reading_weight == 1.0 and len(result.losses) > 0


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    config = LabTrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(100, config) == pytest.approx(1e-4)
    assert lr_at(30, config) > lr_at(60, config) > lr_at(99, config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_lab_model(TINY, tmp_path_factory.mktemp("lab-cache"))


def test_short_training_reduces_loss_and_writes_a_model_folder(trained: Path) -> None:
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MANIFEST} <= names
    manifest = read_manifest(trained)
    curve = [loss for _, loss in manifest["loss_curve"]]
    assert curve[-1] < curve[0] - 0.5
    assert manifest["final_loss"] == curve[-1] and manifest["wall_seconds"] > 0
    assert manifest["config"]["steps"] == TINY.steps and manifest["world_seed"] == TINY.world_seed
    assert manifest["cache_key"] == TINY.cache_key() and trained == model_folder(TINY, trained.parent)


def test_cache_returns_the_folder_without_training(trained: Path, monkeypatch) -> None:
    import infuse.lab.train as lab_train

    before = (trained / MANIFEST).stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("retrained a cached configuration")

    monkeypatch.setattr(lab_train, "train", no_training)
    assert train_lab_model(TINY, trained.parent) == trained
    assert (trained / MANIFEST).stat().st_mtime_ns == before
    # any setting that changes the model changes the key; runtime-only settings do not
    from dataclasses import replace

    assert replace(TINY, steps=81).cache_key() != TINY.cache_key()
    assert replace(TINY, threads=1).cache_key() == TINY.cache_key()
    monkeypatch.setenv("INFUSE_LAB_CACHE", str(trained.parent / "elsewhere"))
    assert default_cache_dir() == trained.parent / "elsewhere"


def test_trained_model_answers_through_the_user_code_path(trained: Path, tmp_path: Path) -> None:
    from infuse.lab.evaluate import evaluate_lab_model, summary
    from infuse.models import GenerationConfig
    from infuse.models.transformers_backend import TransformersModel
    from infuse.workspace import Workspace

    model = TransformersModel.load(str(trained))
    assert model.tokenizer.chat_template and model.tokenizer.eos_token_id in model.eos_ids
    world = TINY.world()
    report = evaluate_lab_model(
        model, world, tmp_path / "eval", ks=(1,), limit=3, qa_person_ids=read_manifest(trained)["data"]["qa_person_ids"]
    )
    scores = summary(report)
    assert {"closed_book_new", "oracle_open_book_new", "rag_top1_new", "closed_book_known"} <= scores.keys()
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    assert report["closed_book_new"]["total"] == 3

    pipeline = Workspace.open(report["workspace"]).rag_pipeline(model, GenerationConfig(max_new_tokens=3))
    question = world.short_questions()[0]
    answer = pipeline.answer(question.question, k=2)
    assert answer.used_retrieval and answer.passages and answer.prompt_tokens > 0
    assert answer.passages[0].chunk.source_path.endswith(f"{question.person_id}.txt")
    closed = pipeline.answer(question.question, use_retrieval=False)
    assert not closed.passages and closed.completion_tokens <= 3
    json.dumps(report)  # the report is JSON
