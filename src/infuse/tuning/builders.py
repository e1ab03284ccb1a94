"""Training sets built from the knowledge base, the ways the literature says work.

* ``cpt`` (Ovadia et al. 2023, unsupervised continued pretraining): every document re-cut into
  pieces of ``block_tokens`` tokens of the target model's tokenizer; BOS on a document's first
  piece, EOS on its last (the ``bos``/``eos`` row fields), so packing keeps document boundaries.
* ``paraphrase``: each chunk plus N rewrites (the paper's accuracy rose with N), deduplicated.
* ``qa``: question -> short answer chat rows per chunk, each recording its source chunk.
* ``raft`` (Zhang et al. 2024): a question with its oracle chunk among distractor chunks (a share
  of rows without the oracle), in infuse's own RAG prompt, answered ``answer [n]`` citing the
  oracle; rows without the oracle are answered without a citation, as in RAFT. Distractors are
  drawn at random from the other chunks (``random``) or are the best-ranked other chunks the
  knowledge base's search returns for the question (``hard``: what a RAG prompt would show, the
  distribution the reader meets at answer time, as in the RAFT paper).

Optional replay mixes rows of another JSONL file (general or earlier data) into the set, to limit
forgetting.

>>> ds = build_dataset(Workspace.open("ws"), BuildRequest(DatasetKind.CPT, tokenizer="Qwen/Qwen2.5-0.5B"))  # doctest: +SKIP
>>> ds.manifest.rows, ds.manifest.tokens                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from infuse.config import local_model_overrides
from infuse.documents.models import Chunk, Document
from infuse.progress import NullProgress, Progress, or_null
from infuse.rag import build_messages, closed_book_messages
from infuse.rag.style import HouseStyle
from infuse.retrieval.search import SearchHit
from infuse.tuning.datasets import (
    Dataset,
    DatasetError,
    DatasetKind,
    DatasetManifest,
    check_name,
    next_free_name,
    partial_folder,
    read_rows,
    row_format,
    save_dataset,
    usable_rows,
)
from infuse.tuning.generators import (
    ModelWriter,
    QAPair,
    TrainingTextWriter,
    WriterChoice,
    choose_writer,
    chunk_language,
)
from infuse.tuning.quality import QualityGate
from infuse.tuning.writing import BatchedModel, BatchGenerator, PartialBuild, Record, write_chunks

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from infuse.config import ModelSettings
    from infuse.store.base import KnowledgeStore
    from infuse.workspace import Workspace

Row = dict[str, Any]
#: The knowledge base's search for a batch of questions: per question, the best `k` hits in rank order.
Search = Callable[[Sequence[str], int], list[list[SearchHit]]]


class DistractorChoice(StrEnum):
    """Which other chunks a ``raft`` row shows with its question."""

    RANDOM = "random"  # drawn uniformly from the other documents' chunks
    HARD = "hard"  # the best-ranked other documents' chunks the search returns for the question


@dataclass(frozen=True)
class BuildRequest:
    """Everything ``infuse dataset build`` takes; unused fields are ignored by other kinds.

    The defaults here are the CLI's defaults (the CLI reads them from this class)."""

    kind: DatasetKind
    name: str | None = None  # default: the kind, then -2, -3...
    model: str | None = None  # the model that writes (paraphrase/qa/raft) and whose tokenizer cuts (cpt) and
    # counts tokens; None: the workspace's [model] name
    writer: WriterChoice = WriterChoice.AUTO  # who writes: a registered corpus writer (lab worlds) or the model
    tokenizer: str | None = None  # model id/folder whose tokenizer cuts (cpt) and counts tokens; None: see
    # tokenizer_source (the model's, when it runs locally)
    block_tokens: int = 256  # cpt piece length, BOS/EOS included
    paraphrases: int = 3  # paraphrase: rewrites per chunk
    include_original: bool = True  # paraphrase: keep the chunk itself as a row too
    questions_per_chunk: int = 3  # qa, raft
    distractors: int = 3  # raft: other chunks shown with the question
    distractor_choice: DistractorChoice = DistractorChoice.RANDOM  # raft: random or search-ranked (hard)
    no_oracle_share: float = 0.2  # raft: share of rows whose oracle chunk is left out
    questions_from: str | None = None  # raft: a qa dataset to take questions from instead of writing them
    replay: Path | None = None  # JSONL rows to mix in
    replay_share: float = 0.1  # share of the final rows that come from `replay` (when given)
    limit_chunks: int | None = None  # paraphrase/qa/raft: write for the first N chunks only (a trial run)
    max_new_tokens: int | None = None  # the writer's reply length; None: [model] max_new_tokens
    concurrency: int = 1  # writer requests in flight (1 for a local model; 8-32 against a vLLM-like server)
    quality_gate: bool = True  # model-written text must keep the chunk's key terms, language, grounding
    style: HouseStyle | None = None  # qa, raft: answers written in this house style (the behaviour to teach)
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.kind is DatasetKind.IMPORTED:
            raise DatasetError(
                "--kind imported is not built: pass your JSONL file to `infuse tune --dataset FILE` directly"
            )


def tokenizer_source(request: BuildRequest, model: ModelSettings) -> str | None:
    """Whose tokenizer cuts (cpt) and counts tokens: the request's tokenizer, else the writing
    model's when it runs locally (a server-side model has none here) or the kind is cpt."""
    from infuse.config import ModelBackendKind

    if request.tokenizer is not None:
        return request.tokenizer
    if request.kind is DatasetKind.CPT or model.backend is ModelBackendKind.TRANSFORMERS:
        return model.name
    return None


# --- the four kinds --------------------------------------------------------------------------


def cpt_rows(documents: Sequence[Document], tokenizer: PreTrainedTokenizerBase, block_tokens: int) -> list[Row]:
    """Documents cut into pieces of at most `block_tokens` tokens (BOS/EOS counted in), cut on
    token boundaries of the original text (character offsets), so no text is lost or altered."""
    if block_tokens < 8:
        raise DatasetError(f"block_tokens {block_tokens} is too small; use at least 8 (default 256)")
    rows: list[Row] = []
    for document in documents:
        text = document.text
        if not text.strip():
            continue
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        n = len(offsets)
        starts, i = [], 0
        while True:
            starts.append(i)
            room = block_tokens - (1 if i == 0 else 0)  # the first piece carries BOS
            if n - i <= room - 1:  # the rest fits, with EOS
                break
            i += room if n - i > room else room - 1  # never leave an empty last piece
        pieces = []
        for piece, start in enumerate(starts):
            begin = 0 if piece == 0 else offsets[start][0]
            finish = len(text) if piece == len(starts) - 1 else offsets[starts[piece + 1]][0]
            pieces.append(text[begin:finish])
        # A piece of only whitespace (a Markdown file's final "\n", a run of blank lines) teaches
        # nothing and is an unusable row: it is left out, and BOS/EOS go to the pieces around it.
        pieces = [p for p in pieces if p.strip()]
        rows.extend(
            {
                "text": piece_text,
                "bos": piece == 0,
                "eos": piece == len(pieces) - 1,
                "doc_id": document.doc_id,
                "source": document.source_path,
                "piece": piece,
            }
            for piece, piece_text in enumerate(pieces)
        )
    return rows


@dataclass
class ChunkWriting:
    """How writer calls are made for a build: who writes, the quality gate a model's text passes
    attempt by attempt (None: not gated, e.g. a lab world's exact templates), where progress is
    checkpointed, how many requests are in flight, and who hears about each chunk."""

    writer: TrainingTextWriter
    gate: QualityGate | None = None
    partial: PartialBuild | None = None
    concurrency: int = 1
    progress: Progress = field(default_factory=NullProgress)
    resumed: int = 0  # chunks read back from an interrupted build
    rejected: Counter[str] = field(default_factory=Counter)  # rejections by reason, over all chunks

    def run(self, chunks: Sequence[Chunk], work: Callable[[Chunk], Record]) -> list[Record]:
        writer = self.writer
        if isinstance(writer, ModelWriter) and self.concurrency > 1 and hasattr(writer.model, "generate_batch"):
            # A local model: the workers' simultaneous requests are decoded together, in batches.
            local = writer.model
            with BatchedModel(cast(BatchGenerator, local), max_batch=self.concurrency) as batched:
                writer.model = batched
                try:
                    return self._run(chunks, work)
                finally:
                    writer.model = local
        return self._run(chunks, work)

    def _run(self, chunks: Sequence[Chunk], work: Callable[[Chunk], Record]) -> list[Record]:
        records, self.resumed = write_chunks(
            chunks, work, self.partial, concurrency=self.concurrency, progress=self.progress
        )
        for record in records:
            self.rejected.update(record.get("rejected", {}))
        return records

    def paraphrases(self, chunks: Sequence[Chunk], n: int, seed: int) -> list[list[str]]:
        """Each chunk's usable rewrites (up to `n`)."""

        def work(chunk: Chunk) -> Record:
            if isinstance(self.writer, ModelWriter):  # gated attempt by attempt, so rejects are retried
                check = self.gate.paraphrase_problem if self.gate else None
                texts, rejected = self.writer.checked_paraphrases(chunk, n, seed, check)
            else:
                texts, rejected = self.writer.paraphrases(chunk, n, seed), Counter[str]()
            return {"texts": texts, "rejected": dict(rejected)}

        return [record["texts"] for record in self.run(chunks, work)]

    def qa_pairs(self, chunks: Sequence[Chunk], n: int, seed: int) -> list[list[QAPair]]:
        """Each chunk's usable question-answer pairs (up to `n`)."""

        def work(chunk: Chunk) -> Record:
            if isinstance(self.writer, ModelWriter):
                check = self.gate.qa_problem if self.gate else None
                pairs, rejected = self.writer.checked_qa_pairs(chunk, n, seed, check)
            else:
                pairs, rejected = self.writer.qa_pairs(chunk, n, seed), Counter[str]()
            return {"pairs": [[p.question, p.answer] for p in pairs], "rejected": dict(rejected)}

        return [[QAPair(q, a) for q, a in record["pairs"]] for record in self.run(chunks, work)]

    def counts(self) -> dict[str, int]:
        counts = {f"rejected_{reason}": n for reason, n in sorted(self.rejected.items())}
        if self.resumed:
            counts["chunks_resumed"] = self.resumed
        return counts


def paraphrase_rows(
    chunks: Sequence[Chunk], written: Sequence[Sequence[str]], n: int, include_original: bool
) -> tuple[list[Row], dict[str, int]]:
    """Text rows: each chunk (unless not `include_original`) and its rewrites `written[i]`."""
    rows: list[Row] = []
    short = 0
    for chunk, texts in zip(chunks, written, strict=True):
        short += len(texts) < n
        if include_original:
            rows.append({"text": chunk.text, "chunk_id": chunk.chunk_id, "source": chunk.source_path, "variant": 0})
        rows.extend(
            {"text": t, "chunk_id": chunk.chunk_id, "source": chunk.source_path, "variant": i}
            for i, t in enumerate(texts, start=1)
        )
    return rows, {"chunks_with_fewer_paraphrases": short}


def qa_rows(
    chunks: Sequence[Chunk], written: Sequence[Sequence[QAPair]], style: HouseStyle | None = None
) -> tuple[list[Row], dict[str, int]]:
    """Closed-book chat rows, in the prompt infuse asks closed-book questions with; the reply is
    the answer, or the answer in `style` (the row's ``answer`` field stays the bare answer)."""
    rows: list[Row] = []
    without = 0
    for chunk, pairs in zip(chunks, written, strict=True):
        without += not pairs
        lang = chunk_language(chunk)
        for pair in pairs:
            reply = style.render(pair.answer, None, lang) if style else pair.answer
            messages = [*closed_book_messages(pair.question, lang), {"role": "assistant", "content": reply}]
            rows.append(
                {
                    "messages": messages,
                    "question": pair.question,
                    "answer": pair.answer,
                    "chunk_id": chunk.chunk_id,
                    "source": chunk.source_path,
                }
            )
    return rows, {"chunks_without_pairs": without}


def _hit(chunk: Chunk, rank: int) -> SearchHit:
    return SearchHit(rank=rank, chunk=chunk, score=0.0)


def raft_rows(
    questions: Sequence[tuple[QAPair, Chunk]],
    chunks: Sequence[Chunk],
    distractors: int,
    no_oracle_share: float,
    seed: int,
    style: HouseStyle | None = None,
    ranked: Sequence[Sequence[Chunk]] | None = None,
) -> list[Row]:
    """RAFT rows: the oracle at a random position among `distractors` other chunks (left out in
    `no_oracle_share` of rows); the answer cites the oracle's position (written in `style` when given).

    Without `ranked` the distractors are drawn at random from `chunks`. With it (one list per
    question, the search's hits in rank order) they are the first chunks of other documents in that
    order (hard distractors), topped up at random when the search found too few.
    """
    if not 0 <= no_oracle_share <= 1:
        raise DatasetError(f"no_oracle_share must be between 0 and 1, got {no_oracle_share}")
    if ranked is not None and len(ranked) != len(questions):
        raise DatasetError(f"ranked hits for {len(ranked)} questions, but {len(questions)} questions")
    rng = random.Random(f"raft|{seed}")
    rows: list[Row] = []
    for number, (pair, oracle) in enumerate(questions):
        others = [c for c in chunks if c.doc_id != oracle.doc_id]
        if ranked is None:
            shown = rng.sample(others, min(distractors, len(others)))
        else:
            shown = []
            for chunk in ranked[number]:
                if len(shown) < distractors and chunk.doc_id != oracle.doc_id and chunk not in shown:
                    shown.append(chunk)
            rest = [c for c in others if c not in shown]
            shown += rng.sample(rest, min(distractors - len(shown), len(rest)))
        with_oracle = rng.random() >= no_oracle_share
        if with_oracle:
            shown.insert(rng.randrange(len(shown) + 1), oracle)
        hits = [_hit(c, i) for i, c in enumerate(shown, start=1)]
        lang = chunk_language(oracle)
        source = shown.index(oracle) + 1 if with_oracle else None
        if style is not None:
            answer = style.render(pair.answer, source, lang)
        else:
            answer = pair.answer if source is None else f"{pair.answer} [{source}]"
        messages = [*build_messages(pair.question, hits, lang), {"role": "assistant", "content": answer}]
        rows.append(
            {
                "messages": messages,
                "question": pair.question,
                "answer": pair.answer,
                "chunk_id": oracle.chunk_id,
                "oracle_included": with_oracle,
                "passages": [c.chunk_id for c in shown],
            }
        )
    return rows


def mix_replay(rows: list[Row], replay: Path, share: float, seed: int) -> tuple[list[Row], int]:
    """`rows` plus replay rows making up `share` of the result (sampled with replacement if the
    replay file is smaller), shuffled together. Replay rows must have the rows' format."""
    if not 0 < share < 1:
        raise DatasetError(f"replay share must be between 0 and 1 (exclusive), got {share}")
    pool = read_rows(replay)
    wanted = {row_format(r, "dataset") for r in rows}
    for number, row in enumerate(pool, start=1):
        if row_format(row, f"{replay}:{number}") not in wanted:
            raise DatasetError(
                f"{replay}:{number}: replay rows must be {'/'.join(sorted(wanted))} rows like the dataset's"
            )
    rng = random.Random(f"replay|{seed}")
    count = max(1, round(share / (1 - share) * len(rows)))
    picked = rng.sample(pool, count) if count <= len(pool) else [rng.choice(pool) for _ in range(count)]
    mixed = [*rows, *({**r, "replay": True} for r in picked)]
    rng.shuffle(mixed)
    return mixed, count


# --- orchestration ---------------------------------------------------------------------------


def kb_source(workspace: str, documents: Sequence[Document], chunks: Sequence[Chunk]) -> dict[str, Any]:
    """Which knowledge-base state the rows come from (`workspace`: where it lives): a digest of
    (document id, content hash), and every distinct access list its documents and chunks carried
    (``access``): a model trained on them knows them, whoever asks it, so a server refuses the
    model to a caller who may not read all of them (:mod:`infuse.server.context`)."""
    digest = hashlib.sha256("\n".join(sorted(f"{d.doc_id}\t{d.content_hash}" for d in documents)).encode()).hexdigest()
    access = {tuple(d.access) for d in documents} | {tuple(c.access) for c in chunks}
    return {
        "workspace": workspace,
        "kb_digest": digest[:16],
        "documents": len(documents),
        "chunks": len(chunks),
        "access": [list(column) for column in sorted(access)],
    }


def count_tokens(rows: Sequence[Row], tokenizer: PreTrainedTokenizerBase) -> int:
    from infuse.tuning.packing import encode_row

    return sum(len(encode_row(row, tokenizer).ids) for row in rows)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    from infuse.hf_logging import quiet_hf_progress
    from infuse.models.sources import model_source

    quiet_hf_progress()
    source = model_source(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetError(
            f"cannot load a tokenizer from {name!r} ({exc}); pass a model id or folder with tokenizer files"
        ) from exc


def build_dataset(
    workspace: Workspace,
    request: BuildRequest,
    writer: TrainingTextWriter | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Build the dataset `request` asks for from the workspace's knowledge base and save it in the
    workspace's datasets folder: :func:`build_dataset_from` with what the workspace holds (and
    its search, for hard RAFT distractors).

    This is the whole of ``infuse dataset build``.
    """
    return build_dataset_from(
        workspace.knowledge_snapshot(),
        workspace.settings.model,
        workspace.datasets_dir,
        request,
        writer,
        progress,
        source_label=str(workspace.path),
        search=workspace.search_many,
    )


def build_dataset_from(
    store: KnowledgeStore,
    model_settings: ModelSettings,
    datasets_dir: Path,
    request: BuildRequest,
    writer: TrainingTextWriter | None = None,
    progress: Progress | None = None,
    *,
    source_label: str = "",
    search: Search | None = None,
) -> Dataset:
    """Build the dataset `request` asks for from `store`'s documents and chunks into `datasets_dir`.

    `writer` writes paraphrases and questions (paraphrase, qa, raft); when None,
    :func:`infuse.tuning.generators.choose_writer` picks one from ``request.writer`` and
    ``request.model`` (default: `model_settings`, the ``[model]`` section): a registered corpus
    writer such as a lab world's templates, else the model. `progress` gets a stage per model load
    and one for the rows, advanced per chunk. `source_label` says where the knowledge base lives
    (recorded in the manifest). `search` ranks the hard distractors of a ``raft`` build
    (``distractor_choice=hard``); without it such a build is refused.
    """
    tick = or_null(progress)
    documents = sorted((r.document for r in store.iter_documents()), key=lambda d: (d.source_path, d.doc_id))
    chunks = sorted(store.iter_chunks(), key=lambda c: (c.source_path, c.index, c.chunk_id))
    if request.limit_chunks is not None and request.limit_chunks < 1:
        raise DatasetError(f"--limit-chunks must be at least 1, got {request.limit_chunks}")
    written_from = chunks[: request.limit_chunks]  # the chunks a writer writes for (all without a limit)
    updates: dict[str, Any] = local_model_overrides(request.model)  # a local --model loads here
    if request.max_new_tokens is not None:
        updates["max_new_tokens"] = request.max_new_tokens
    model = model_settings.model_copy(update=updates) if updates else model_settings
    source = tokenizer_source(request, model)
    tokenizer = load_tokenizer(source) if source else None
    kind = request.kind
    if request.name:
        name = check_name(request.name)
    else:  # --overwrite without a name replaces the kind's default dataset
        name = str(kind) if request.overwrite else next_free_name(datasets_dir, str(kind))
    kb = kb_source(source_label, documents, chunks)
    writes_text = kind in (DatasetKind.PARAPHRASE, DatasetKind.QA) or (
        kind is DatasetKind.RAFT and not request.questions_from
    )
    if writes_text and writer is None:
        writes = "paraphrases" if kind is DatasetKind.PARAPHRASE else "questions"
        writer = choose_writer(
            written_from,
            request.writer,
            model,
            task=f"a {kind} dataset",
            writes=writes,
            loading=lambda name: tick.start(f"loading {name}", None),
        )
    writing: ChunkWriting | None = None
    if writes_text:
        assert writer is not None
        gate = QualityGate(written_from) if request.quality_gate and isinstance(writer, ModelWriter) else None
        fingerprint = {
            "kind": str(kind),
            "writer": writer.name,
            "max_new_tokens": getattr(writer, "max_new_tokens", None),
            "gate": gate is not None,
            "seed": request.seed,
            "paraphrases": request.paraphrases if kind is DatasetKind.PARAPHRASE else None,
            "questions_per_chunk": request.questions_per_chunk if kind is not DatasetKind.PARAPHRASE else None,
            "kb_digest": kb["kb_digest"],
        }
        writing = ChunkWriting(
            writer,
            gate,
            PartialBuild(partial_folder(datasets_dir, name), fingerprint),
            concurrency=request.concurrency,
            progress=tick,
        )
    tick.start(f"{kind}", len(written_from) if writing else len(chunks))
    counts: dict[str, int] = {}
    parameters: dict[str, Any] = {}
    if kind is DatasetKind.CPT:
        if tokenizer is None:
            raise DatasetError(
                "a cpt dataset is cut in the target model's tokens: pass --model ID_OR_FOLDER "
                "(or set [model] name in infuse.toml)"
            )
        rows = cpt_rows(documents, tokenizer, request.block_tokens)
        tick.advance(len(chunks))
        parameters = {"block_tokens": request.block_tokens}
    elif kind is DatasetKind.PARAPHRASE:
        assert writing is not None
        written = writing.paraphrases(written_from, request.paraphrases, request.seed)
        rows, counts = paraphrase_rows(written_from, written, request.paraphrases, request.include_original)
        parameters = {"paraphrases": request.paraphrases, "include_original": request.include_original}
    elif kind is DatasetKind.QA:
        assert writing is not None
        pairs = writing.qa_pairs(written_from, request.questions_per_chunk, request.seed)
        rows, counts = qa_rows(written_from, pairs, request.style)
        parameters = {"questions_per_chunk": request.questions_per_chunk}
    elif kind is DatasetKind.RAFT:
        asked = _raft_questions(datasets_dir, request, written_from, writing)
        questions = [(p, c) for p, c in asked if p.question.strip() and p.answer.strip()]
        ranked = None
        if request.distractor_choice is DistractorChoice.HARD:
            if search is None:
                raise DatasetError(
                    "hard RAFT distractors need the knowledge base's search: build from a workspace "
                    "(or use --distractor-choice random)"
                )
            # one more than needed: the oracle's own document is usually the best hit
            found = search([p.question for p, _ in questions], request.distractors + 1)
            ranked = [[hit.chunk for hit in hits] for hits in found]
        rows = raft_rows(
            questions, chunks, request.distractors, request.no_oracle_share, request.seed, request.style, ranked
        )
        counts = {"questions": len(questions), "rows_without_oracle": sum(not r["oracle_included"] for r in rows)}
        if len(asked) > len(questions):  # a blank answer would still get its "[n]" citation
            counts["unusable_pairs_dropped"] = len(asked) - len(questions)
        parameters = {
            "distractors": request.distractors,
            "distractor_choice": str(request.distractor_choice),
            "no_oracle_share": request.no_oracle_share,
            "questions_per_chunk": request.questions_per_chunk,
            "questions_from": request.questions_from,
        }
    else:
        raise DatasetError(f"cannot build a dataset of kind {kind!r}; use cpt, paraphrase, qa or raft")
    if writing is not None:
        counts.update(writing.counts())
        parameters.update(concurrency=request.concurrency, quality_gate=writing.gate is not None)
        if isinstance(writer, ModelWriter):
            parameters["max_new_tokens"] = writer.max_new_tokens
    if request.limit_chunks is not None:
        parameters["limit_chunks"] = request.limit_chunks
    if request.style is not None and kind in (DatasetKind.QA, DatasetKind.RAFT):
        parameters["style"] = request.style.name
    rows, unusable = usable_rows(rows)  # the one gate every kind's rows pass: never an empty row
    if unusable:
        counts["unusable_rows_dropped"] = unusable
    if not rows:
        rejected = ", ".join(
            f"{k.removeprefix('rejected_')} {v}" for k, v in counts.items() if k.startswith("rejected_")
        )
        raise DatasetError(
            f"the {kind} builder produced no rows from {len(written_from)} chunks"
            + (f" ({writer.name} wrote nothing usable; try a stronger model)" if writer else "")
            + (f"; the quality gate rejected: {rejected}" if rejected else "")
        )
    if request.replay is not None and request.replay_share > 0:
        rows, counts["replay_rows"] = mix_replay(rows, request.replay, request.replay_share, request.seed)
        parameters.update(replay=str(request.replay), replay_share=request.replay_share)
    manifest = DatasetManifest(
        name=name,
        kind=kind,
        format=row_format(rows[0], name),
        rows=len(rows),
        tokens=count_tokens(rows, tokenizer) if tokenizer is not None else None,
        tokenizer=source,
        generator=writer.name if writer and kind is not DatasetKind.CPT else None,
        seed=request.seed,
        source=kb,
        parameters=parameters,
        counts=counts,
    )
    dataset = save_dataset(datasets_dir, manifest, rows, overwrite=request.overwrite)
    if writing is not None and writing.partial is not None:
        writing.partial.discard()  # the dataset is saved: its progress is no longer needed
    return dataset


def _raft_questions(
    datasets_dir: Path,
    request: BuildRequest,
    chunks: Sequence[Chunk],
    writing: ChunkWriting | None,
) -> list[tuple[QAPair, Chunk]]:
    by_id = {c.chunk_id: c for c in chunks}
    if request.questions_from:
        from infuse.tuning.datasets import load_dataset

        source = load_dataset(datasets_dir, request.questions_from)
        if source.manifest.kind is not DatasetKind.QA:
            raise DatasetError(
                f"--questions-from {request.questions_from!r} is a {source.manifest.kind} dataset; RAFT needs a qa dataset"
            )
        pairs = [
            (QAPair(r["question"], r["answer"]), by_id[r["chunk_id"]])
            for r in source.rows()
            if r.get("chunk_id") in by_id
        ]
        if not pairs:
            raise DatasetError(
                f"none of the questions in {request.questions_from!r} come from chunks still in the knowledge base"
            )
        return pairs
    assert writing is not None
    written = writing.qa_pairs(chunks, request.questions_per_chunk, request.seed)
    return [(pair, chunk) for chunk, pairs in zip(chunks, written, strict=True) for pair in pairs]


__all__ = [
    "BuildRequest",
    "ChunkWriting",
    "DistractorChoice",
    "build_dataset",
    "tokenizer_source",
    "cpt_rows",
    "mix_replay",
    "paraphrase_rows",
    "qa_rows",
    "raft_rows",
]
