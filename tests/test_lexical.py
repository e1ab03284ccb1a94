"""Keyword tokenisers (English, Japanese via SudachiPy, language routing, baselines) and language detection."""

from __future__ import annotations

import pytest

from infuse.language import Language, contains_japanese, detect_language
from infuse.retrieval.lexical import (
    ENGLISH_STOPWORDS,
    EnglishTokenizer,
    JapaneseTokenizer,
    LanguageAwareTokenizer,
    RegexTokenizer,
    WhitespaceTokenizer,
)


@pytest.fixture(scope="module")
def english() -> EnglishTokenizer:
    return EnglishTokenizer()


@pytest.fixture(scope="module")
def japanese() -> JapaneseTokenizer:
    return JapaneseTokenizer()


@pytest.fixture(scope="module")
def aware() -> LanguageAwareTokenizer:
    return LanguageAwareTokenizer()


# --- English ------------------------------------------------------------------------------------


def test_english_lower_cases_stems_and_drops_stop_words(english):
    assert english.tokenize("The Runners were running!") == ["runner", "run"]
    assert english.tokenize("Connections connected CONNECTING") == ["connect", "connect", "connect"]
    assert english.tokenize("Databases are backed up every 6 hours") == ["databas", "back", "up", "everi", "6", "hour"]


def test_english_stop_words_only_gives_nothing(english):
    assert english.tokenize("What is the it of and to? How did they do this") == []
    assert english.tokenize("") == []
    assert english.tokenize("!!! ... ---") == []


def test_english_possessives_and_curly_apostrophes(english):
    assert english.tokenize("John's cars") == ["john", "car"]
    assert english.tokenize("John’s car") == ["john", "car"]
    assert english.tokenize("don't") == english.tokenize("don’t")


def test_english_normalises_full_width_and_splits_underscores_and_hyphens(english):
    assert english.tokenize("ＡＢＣ Ｒｕｎｎｉｎｇ") == ["abc", "run"]
    assert english.tokenize("snake_case kebab-case") == ["snake", "case", "kebab", "case"]
    assert english.tokenize("version 3.14") == ["version", "3", "14"]


def test_english_keeps_accented_words(english):
    assert english.tokenize("Café résumé") == ["café", "résumé"]


def test_stop_word_list_is_lower_case_and_small():
    assert all(word == word.lower() for word in ENGLISH_STOPWORDS)
    assert {"the", "and", "is", "of"} <= ENGLISH_STOPWORDS
    assert "python" not in ENGLISH_STOPWORDS and "not" not in ENGLISH_STOPWORDS


def test_english_normalise_word(english):
    assert english.normalise_word("Running") == "run"
    assert english.normalise_word("THE") is None
    assert english.normalise_word("'s") is None


# --- Japanese -----------------------------------------------------------------------------------


def test_japanese_morphological_tokens_without_particles(japanese):
    assert japanese.tokenize("東京大学で機械学習を研究した。") == ["東京", "大学", "機械", "学習", "研究"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("私は猫が好きだ", ["猫", "好き"]),
        ("東京に行きました", ["東京", "行く"]),
        ("走った", ["走る"]),
        ("データベースは6時間ごとにバックアップされます。", ["データベース", "6", "時間", "毎", "バックアップ"]),
        ("日本語のテキスト、記号！？「」", ["日本", "語", "テキスト", "記号"]),
    ],
)
def test_japanese_normalised_forms_and_dropped_function_words(japanese, text, expected):
    assert japanese.tokenize(text) == expected


def test_japanese_drops_particles_auxiliaries_and_symbols(japanese):
    tokens = japanese.tokenize("彼は本を読みます。でも、それはペンです！")
    for function_word in ("は", "を", "ます", "です", "。", "、", "！"):
        assert function_word not in tokens
    assert "本" in tokens and "読む" in tokens and "ペン" in tokens


def test_japanese_normalises_width_variants(japanese):
    assert japanese.tokenize("ﾃｽﾄ") == japanese.tokenize("テスト") == ["テスト"]


def test_latin_words_inside_japanese_get_english_treatment(japanese, english):
    assert japanese.tokenize("私はPythonでプログラムを書きます") == ["python", "プログラム", "書く"]
    assert japanese.tokenize("Running Pythonのライブラリ") == ["run", "python", "ライブラリー"]
    assert japanese.tokenize("ＰｙｔｈｏｎとRustの比較") == ["python", "rust", "比較"]
    assert japanese.tokenize("Databasesは毎日バックアップされる")[0] == english.tokenize("Databases")[0] == "databas"
    assert japanese.tokenize("ＡＰＩキーは90日ごと")[:2] == ["api", "キー"]


def test_latin_word_with_katakana_normalised_form_keeps_english_form(japanese):
    # Sudachi normalises "library" to ライブラリー; the surface is Latin, so English rules win.
    assert japanese.tokenize("Pythonのlibrary") == ["python", "librari"]
    assert "offic" in japanese.tokenize("Microsoft Officeを使う")


@pytest.mark.parametrize("phrase", ["machine learning", "New York", "running shoes"])
def test_multi_word_latin_entries_inside_japanese_get_english_treatment(japanese, english, phrase):
    tokens = japanese.tokenize(f"{phrase}について調べた")
    assert tokens[: len(english.tokenize(phrase))] == english.tokenize(phrase)


def test_japanese_tokenizer_handles_text_longer_than_sudachis_limit(japanese):
    sentence = "東京大学で機械学習を研究した。"
    text = sentence * 4000  # 180 kB, above Sudachi's ~49 kB input limit
    tokens = japanese.tokenize(text)
    assert tokens.count("機械") == 4000
    assert tokens.count("研究") == 4000


def test_japanese_empty_text(japanese):
    assert japanese.tokenize("") == []


# --- routing and baselines ----------------------------------------------------------------------


def test_language_aware_routes_by_script(aware, english, japanese):
    assert (
        aware.tokenize("The Runners were running") == english.tokenize("The Runners were running") == ["runner", "run"]
    )
    assert aware.tokenize("東京大学で研究した") == japanese.tokenize("東京大学で研究した")
    # One Japanese character is enough to use the analyser (English words still stemmed).
    assert aware.tokenize("Running dogs の") == ["run", "dog"]
    assert aware.tokenize("Running dogs") == ["run", "dog"]
    # Without the Japanese path, a CJK run would be one opaque token.
    assert aware.tokenize("機械学習") == ["機械", "学習"]
    assert aware.japanese._english is aware.english


def test_english_terms_match_across_languages(aware):
    english_doc = set(aware.tokenize("Python libraries for machine translation"))
    japanese_doc = set(aware.tokenize("Pythonの翻訳ライブラリを紹介します"))
    assert "python" in english_doc & japanese_doc


def test_regex_tokenizer_splits_japanese_on_script_changes():
    assert RegexTokenizer().tokenize("東京大学で研究した。ＡＢＣ") == ["東京大学", "で", "研究", "した", "abc"]
    assert RegexTokenizer().tokenize("カタカナとひらがな") == ["カタカナ", "とひらがな"]
    assert RegexTokenizer().tokenize("Hello, World! snake_case") == ["hello", "world", "snake", "case"]


def test_regex_tokenizer_splits_latin_from_japanese():
    assert RegexTokenizer().tokenize("Pythonを研究した") == ["python", "を", "研究", "した"]


def test_whitespace_tokenizer_is_nfkc_lower_word_runs():
    assert WhitespaceTokenizer().tokenize("Ｈｅｌｌｏ　World ｶﾀｶﾅ snake_case") == [
        "hello",
        "world",
        "カタカナ",
        "snake",
        "case",
    ]
    # No script splitting: a Japanese clause is one token.
    assert WhitespaceTokenizer().tokenize("東京大学でPythonを研究した。") == ["東京大学でpythonを研究した"]


# --- language detection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("hello world", Language.EN),
        ("", Language.EN),
        ("123 !!! ...", Language.EN),
        ("Café résumé", Language.EN),
        ("日本語", Language.JA),
        ("ひらがな", Language.JA),
        ("カタカナ", Language.JA),
        ("ｶﾀｶﾅ", Language.JA),  # half-width katakana
        ("これは a pen です", Language.JA),
        ("PythonとRustとGoとJavaの比較", Language.JA),  # Latin product names in Japanese prose
        ("See 東京 for details in this English text.", Language.EN),  # one Japanese word quoted
        ("Python is great 日本", Language.EN),
    ],
)
def test_detect_language(text, expected):
    assert detect_language(text) is expected


def test_detect_language_threshold_boundary():
    # Japanese when japanese_chars >= 0.2 * (japanese_chars + 3 * latin_words): 3 chars vs 4 words is the edge.
    assert detect_language("one two three four 日本語") is Language.JA
    assert detect_language("one two three four 日本") is Language.EN
    assert detect_language("one two three four five 日本語") is Language.EN


def test_contains_japanese():
    assert contains_japanese("abc の def")
    assert contains_japanese("漢")
    assert contains_japanese("ｱ")
    assert not contains_japanese("abc def")
    assert not contains_japanese("Ｈｅｌｌｏ")  # full-width Latin is not Japanese script
    assert not contains_japanese("")


def test_japanese_light_verbs_and_pronouns_are_stop_words() -> None:
    """する/ある/いる and pronouns occur in nearly every sentence; keeping them made unrelated
    passages look relevant to the RAG keyword-coverage gate."""
    tokens = JapaneseTokenizer().tokenize("私はそこに何があるかを調べている。")
    assert "私" not in tokens and "有る" not in tokens and "居る" not in tokens and "何" not in tokens
    assert "調べる" in tokens


def test_one_tokenizer_serves_many_threads_at_once() -> None:
    """The server tokenizes searches in worker threads with the workspace's one tokenizer; a Sudachi
    tokenizer (and a PyStemmer stemmer) refuses concurrent use, so each thread gets its own."""
    import threading

    from infuse.retrieval.lexical import LanguageAwareTokenizer

    tokenizer = LanguageAwareTokenizer()
    text = "東京大学で機械学習を研究した。Running fast"
    expected = tokenizer.tokenize(text)
    errors: list[str] = []

    def work() -> None:
        try:
            for _ in range(100):
                assert tokenizer.tokenize(text) == expected
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and expected == ["東京", "大学", "機械", "学習", "研究", "run", "fast"]
