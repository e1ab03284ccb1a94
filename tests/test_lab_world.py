"""The lab world generator: determinism, templates, tokenisation, questions, update set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infuse.lab import (
    ATTRIBUTES,
    KNOWN,
    MUTABLE_ATTRIBUTES,
    NEW,
    VALUES,
    World,
    build_lab_tokenizer,
    generate_world,
    lab_tokenize,
    lab_vocabulary,
    load_world,
    question_templates,
    statement_templates,
)
from infuse.lab.vocabulary import GIVEN_NAMES, SURNAMES, Name, all_names
from infuse.language import Language

LANGS = (Language.EN, Language.JA)


@pytest.fixture(scope="module", params=LANGS, ids=str)
def world(request: pytest.FixtureRequest) -> World:
    return generate_world(seed=7, lang=request.param)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _contains(tokens: list[str], sub: list[str]) -> bool:
    return any(tokens[i : i + len(sub)] == sub for i in range(len(tokens) - len(sub) + 1))


def _value_texts(attribute, lang: Language) -> list[str]:
    return [v.text(lang) for v in VALUES[attribute]]


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS, ids=str)
def test_same_seed_writes_byte_identical_files(tmp_path: Path, lang: Language) -> None:
    generate_world(seed=3, lang=lang).write(tmp_path / "a")
    generate_world(seed=3, lang=lang).write(tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert "world.json" in a and len([p for p in a if p.startswith("docs/")]) == 50


def test_different_seed_gives_a_different_world(tmp_path: Path) -> None:
    generate_world(seed=1).write(tmp_path / "a")
    generate_world(seed=2).write(tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a["people.jsonl"] != b["people.jsonl"]
    assert a["questions/new_short.jsonl"] != b["questions/new_short.jsonl"]


def test_facts_do_not_depend_on_the_language() -> None:
    en, ja = generate_world(seed=5, lang="en"), generate_world(seed=5, lang="ja")
    assert [(p.id, p.name, dict(p.facts)) for p in en.people] == [(p.id, p.name, dict(p.facts)) for p in ja.people]
    assert en.changes == ja.changes


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS, ids=str)
def test_template_counts(lang: Language) -> None:
    for attribute in ATTRIBUTES:
        statements = statement_templates(lang, attribute)
        assert len(statements) >= 5
        assert any(t.value_first for t in statements) and any(not t.value_first for t in statements)
        assert len({t.pattern for t in statements}) == len(statements)
        assert len(question_templates(lang, attribute)) >= 2


@pytest.mark.parametrize("lang", LANGS, ids=str)
def test_every_template_renders_a_sentence_with_the_value_and_the_name(lang: Language) -> None:
    """Every statement template with every value: the sentence holds both as whole tokens,
    and the lab tokenizer splits it into exactly the tokens it was written with."""
    end = "." if lang is Language.EN else "。"
    for attribute in ATTRIBUTES:
        for t_index, template in enumerate(statement_templates(lang, attribute)):
            for v_index, value in enumerate(VALUES[attribute]):
                for s_index, surname in enumerate(SURNAMES):
                    name = Name(GIVEN_NAMES[(t_index + v_index + s_index) % len(GIVEN_NAMES)], surname)
                    text = template.render(name, value)
                    tokens = lab_tokenize(text, lang)
                    assert tokens == template.tokens(name, value), text
                    assert value.text(lang) in tokens and _contains(tokens, name.tokens(lang)), text
                    assert text.endswith(end) and text.count(end) == 1, text
                    if lang is Language.EN:
                        assert (text[0].isupper() or text[0].isdigit()) and "  " not in text, text
                    else:
                        assert " " not in text, text


@pytest.mark.parametrize("lang", LANGS, ids=str)
def test_every_question_template_tokenises_as_written(lang: Language) -> None:
    mark = "?" if lang is Language.EN else "？"
    for attribute in ATTRIBUTES:
        for template in question_templates(lang, attribute):
            for name in all_names():
                text = template.render(name)
                assert lab_tokenize(text, lang) == template.tokens(name), text
                assert text.endswith(mark) and _contains(lab_tokenize(text, lang), name.tokens(lang))


def test_examples_read_naturally() -> None:
    name = Name(GIVEN_NAMES[0], SURNAMES[0])
    city = VALUES[ATTRIBUTES[0]][0]
    en, ja = statement_templates("en", "birth_city")[1], statement_templates("ja", "birth_city")[1]
    assert en.render(name, city) == "Varnholt is where Alda Ashby was born."
    assert ja.render(name, city) == "ヴァルンホルトはアルダ・アッシュビーの出身地だ。"


# --- tokenisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS, ids=str)
def test_every_value_and_name_part_is_one_token(lang: Language) -> None:
    vocabulary = set(lab_vocabulary(lang))
    seen: dict[str, str] = {}
    for attribute in ATTRIBUTES:
        for value in _value_texts(attribute, lang):
            assert lab_tokenize(value, lang) == [value]
            assert value in vocabulary
            assert seen.setdefault(value, attribute) == attribute, f"{value} in two vocabularies"
    for part in (*GIVEN_NAMES, *SURNAMES):
        assert lab_tokenize(part.text(lang), lang) == [part.text(lang)]
        assert part.text(lang) not in seen, "a name part is also a value"


def test_vocabulary_is_small() -> None:
    assert len(lab_vocabulary("en")) < 300
    assert len(lab_vocabulary("ja")) < 300
    assert len(lab_vocabulary(None)) < 500
    assert lab_tokenize("Alda Ashby likes zebras.", "en") == ["Alda", "Ashby", "likes", "zebras", "."]


def test_tokenizers_library_agrees_with_lab_tokenize(world: World) -> None:
    lang = world.lang
    tokenizer = build_lab_tokenizer(lang)
    texts = [
        *world.documents().values(),
        *(b.text for b in world.known_bios(2)[:100]),
        *(q.question for q in world.short_questions(NEW)),
    ]
    for text in texts:
        assert tokenizer.encode(text).tokens == lab_tokenize(text, lang), text
    assert tokenizer.encode("zebras").tokens == ["[UNK]"]


# --- splits, documents and questions -----------------------------------------------------------


def test_splits_are_disjoint_and_sized() -> None:
    world = generate_world(seed=11, n_known=30, n_new=12)
    assert len(world.known) == 30 and len(world.new) == 12
    assert not {p.id for p in world.known} & {p.id for p in world.new}
    assert len({p.name for p in world.people}) == len(world.people)
    assert {b.person_id for b in world.known_bios(2)} == {p.id for p in world.known}
    assert {b.person_id for b in world.variants(2)} == {p.id for p in world.new}
    assert set(world.documents()) == {f"docs/{p.id}.txt" for p in world.new}
    assert {q.person_id for q in world.short_questions(KNOWN)} == {p.id for p in world.known}
    assert all(q.doc is None and q.split == KNOWN for q in world.mc_questions(KNOWN))


def test_every_answer_comes_from_exactly_one_document(world: World) -> None:
    """Values repeat across people, so "derivable" means: exactly one document mentions the
    person, it is the question's document, and it states the value in a sentence naming them."""
    lang = world.lang
    texts = world.documents()
    documents = {path: lab_tokenize(text, lang) for path, text in texts.items()}
    for path, tokens in documents.items():
        person = world.person(Path(path).stem)
        mentioned = [p.id for p in world.people if _contains(tokens, p.name.tokens(lang))]
        assert mentioned == [person.id]
    for question in world.short_questions(NEW):
        person = world.person(question.person_id)
        name = person.name.tokens(lang)
        assert _contains(lab_tokenize(question.question, lang), name)
        assert lab_tokenize(question.answer, lang) == [question.answer]
        holders = [path for path, tokens in documents.items() if _contains(tokens, name)]
        assert holders == [question.doc]
        text = texts[question.doc]
        end = "." if lang is Language.EN else "。"
        sentences = [s for s in text.strip().split(end) if s]
        stating = [s for s in sentences if question.answer in lab_tokenize(s, lang)]
        assert stating and all(_contains(lab_tokenize(s, lang), name) for s in stating)
        assert question.answer == person.value(question.attribute, lang)
    # known people are never mentioned by a document
    for person in world.known:
        assert not any(_contains(tokens, person.name.tokens(lang)) for tokens in documents.values())


def test_multiple_choice_questions(world: World) -> None:
    questions = world.mc_questions(NEW) + world.mc_questions(KNOWN)
    assert len(questions) == len(world.people) * len(ATTRIBUTES)
    positions = [0, 0, 0, 0]
    for q in questions:
        person = world.person(q.person_id)
        assert len(q.choices) == 4 and len(set(q.choices)) == 4
        assert q.choices[q.answer_index] == q.answer == person.value(q.attribute, world.lang)
        assert set(q.choices) <= set(_value_texts(q.attribute, world.lang))
        positions[q.answer_index] += 1
    assert min(positions) > len(questions) / 8  # the answer's position is spread out


def test_variants_are_full_paraphrases(world: World) -> None:
    lang = world.lang
    variants = world.variants(6)
    assert variants[:6] == world.bios(world.new[0], 6)
    assert world.variants(3) == [b for b in variants if b.variant < 3]
    for person in world.new:
        bios = [b for b in variants if b.person_id == person.id]
        assert len({b.text for b in bios}) == 6
        document = world._render(person, -1)
        for bio in bios:
            tokens = lab_tokenize(bio.text, lang)
            assert all(person.value(a, lang) in tokens for a in ATTRIBUTES)
            assert sorted(bio.order) == sorted(ATTRIBUTES) and bio.text != document.text
        for position, attribute in enumerate(ATTRIBUTES):
            count = len(statement_templates(lang, attribute))
            used = [document.templates[position]]
            used += [b.templates[b.order.index(attribute)] for b in bios[: count - 1]]
            assert len(set(used)) == count  # document and first variants never repeat a template


def test_update_set(world: World, tmp_path: Path) -> None:
    lang = world.lang
    assert world.changes and len(world.updated) == 10
    updated_docs = world.updated_documents()
    for change in world.changes:
        assert change.new != change.old and change.attribute in MUTABLE_ATTRIBUTES
        before = world.person(change.person_id)
        assert before.facts[change.attribute] == change.old
        tokens = lab_tokenize(updated_docs[world.updated_doc_path(change.person_id)], lang)
        assert change.new.text(lang) in tokens and change.old.text(lang) not in tokens
        assert all(
            before.value(a, lang) in tokens
            for a in ATTRIBUTES
            if not any(c.person_id == before.id and c.attribute == a for c in world.changes)
        )
    short, mc = world.update_short_questions(), world.update_mc_questions()
    assert len(short) == len(mc) == len(world.changes)
    for change, s, m in zip(world.changes, short, mc):
        assert s.answer == m.answer == change.new.text(lang) != s.old_answer == change.old.text(lang)
        assert m.choices[m.answer_index] == m.answer and m.choices[m.old_answer_index] == m.old_answer
        assert len(set(m.choices)) == 4 and s.doc == m.doc == f"updates/docs/{change.person_id}.txt"
    world.write(tmp_path)
    assert sorted(p.name for p in (tmp_path / "updates" / "docs").iterdir()) == sorted(
        f"{p.id}.txt" for p in world.updated
    )
    assert all((tmp_path / "docs" / p.name).exists() for p in (tmp_path / "updates" / "docs").iterdir())
    records = [json.loads(line) for line in (tmp_path / "updates/questions_mc.jsonl").read_text("utf-8").splitlines()]
    assert [r["old_answer"] for r in records] == [c.old.text(lang) for c in world.changes]


# --- files -------------------------------------------------------------------------------------


def test_written_world_layout_and_manifest(world: World, tmp_path: Path) -> None:
    manifest = json.loads(world.write(tmp_path).read_text("utf-8"))
    assert manifest["seed"] == 7 and manifest["lang"] == str(world.lang)
    assert manifest["sizes"]["known"] == 200 and manifest["sizes"]["new"] == 50
    for key, relative in manifest["files"].items():
        path = tmp_path / relative
        if relative.endswith("/"):
            assert path.is_dir()
        elif key != "people":
            lines = path.read_text("utf-8").splitlines()
            assert len(lines) == manifest["counts"][key], key
    for person in world.new:
        assert (tmp_path / world.doc_path(person)).read_text("utf-8") == world.document(person)
    first = json.loads((tmp_path / "questions/new_short.jsonl").read_text("utf-8").splitlines()[0])
    assert set(first) == {"id", "question", "answer", "person_id", "attribute", "split", "lang", "doc", "template"}
    reloaded = load_world(tmp_path)
    assert reloaded.people == world.people and reloaded.changes == world.changes


def test_write_refuses_a_non_empty_folder_unless_overwriting(tmp_path: Path) -> None:
    generate_world(seed=0, n_known=5, n_new=6).write(tmp_path)
    with pytest.raises(FileExistsError):
        generate_world(seed=0, n_known=5, n_new=3).write(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    generate_world(seed=0, n_known=5, n_new=3).write(tmp_path, overwrite=True)
    assert len(list((tmp_path / "docs").iterdir())) == 3
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError):
        generate_world(n_known=900, n_new=1)
    with pytest.raises(ValueError):
        generate_world(n_new=3, n_updated=4)
    with pytest.raises(ValueError):
        generate_world(n_known=-1)
    assert generate_world(n_known=3, n_new=0).changes == ()


def test_fresh_people_are_new_names_in_a_world_that_regenerates(tmp_path: Path) -> None:
    from infuse.lab.reading import fresh_people, reader_training_docs

    world = generate_world(3, "en", n_known=20, n_new=10)
    extended, fresh = fresh_people(world, 40)
    assert len(fresh) == 40 and len({p.id for p in fresh}) == 40
    assert not {p.name for p in fresh} & {p.name for p in world.people}
    assert all(p.split == NEW for p in fresh)
    folder = reader_training_docs(extended, fresh, tmp_path / "raft-world", "raft-train")
    assert sorted(f.stem for f in folder.iterdir()) == sorted(p.id for p in fresh)
    reloaded = load_world(tmp_path / "raft-world")  # what the lab writer does to write questions
    for person in fresh:
        assert reloaded.person(person.id).facts == person.facts
        assert (folder / f"{person.id}.txt").read_text(encoding="utf-8") == reloaded.document(person)
    assert fresh_people(world, 40) == (extended, fresh)  # deterministic
    free = len(all_names()) - len(world.people)
    assert len(fresh_people(world, free)[1]) == free
    with pytest.raises(ValueError, match=f"between 1 and {free}"):
        fresh_people(world, free + 1)
