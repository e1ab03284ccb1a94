"""Embedded LanceDB implementation of :class:`KnowledgeStore`.

Why it is safe to kill: every write is one LanceDB commit (a new manifest written atomically
after its data files), so a reader or a restarted process sees either the state before or
after, never half a document. Replacing a document's chunks is a single ``merge_insert`` that
upserts the new chunks and deletes the document's other chunks in the same commit. Keyword
search uses LanceDB's BM25 full-text index over the project's own tokens (whitespace-joined),
with LanceDB's own text processing switched off; rows written since the last index update are
still searched (unindexed rows are scanned).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS

from infuse.documents.models import Section
from infuse.retrieval.relevance import TermStatistics
from infuse.retrieval.store import (
    CHUNK_FILTER_COLUMNS,
    ChunkRecord,
    DocumentRecord,
    DocumentState,
    FlaggedChunk,
    Filters,
    ScoredChunk,
)

_RESULT_COLUMNS = [
    "chunk_id", "doc_id", "source_path", "chunk_index", "text", "start", "end", "page",
    "heading_path", "lang", "metadata_json", "content_hash",
]
_HEADING_SEPARATOR = " > "
# Columns added after the first release: tables without them get them on the next write (null
# until the document is re-ingested, which PIPELINE_VERSION forces); reads tolerate their absence.
_ADDED_CHUNK_COLUMNS = (pa.field("flags", pa.list_(pa.string())),)
_ADDED_DOCUMENT_COLUMNS = (pa.field("hidden_text_json", pa.string()),)
# A chunk that screening did not flag (flags is null on rows written before screening existed).
UNFLAGGED_SQL = "coalesce(array_length(flags), 0) = 0"
FLAGGED_SQL = "array_length(flags) > 0"


def _chunk_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("source_path", pa.string()),
            ("file_type", pa.string()),
            ("chunk_index", pa.int32()),
            ("text", pa.string()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("page", pa.int32()),
            ("heading_path", pa.string()),
            ("lang", pa.string()),
            ("n_tokens", pa.int32()),
            ("tokens", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("metadata_json", pa.string()),
            ("content_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
            *((f.name, f.type) for f in _ADDED_CHUNK_COLUMNS),
        ]
    )


_DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("file_type", pa.string()),
        ("title", pa.string()),
        ("content_hash", pa.string()),
        ("pipeline", pa.string()),
        ("text", pa.string()),
        ("metadata_json", pa.string()),
        ("n_chunks", pa.int32()),
        ("ingested_at", pa.string()),
        ("sections_json", pa.string()),
        *((f.name, f.type) for f in _ADDED_DOCUMENT_COLUMNS),
    ]
)


def metadata_tag(key: str, value: object) -> str:
    """The ``key=value`` string under which a metadata field is filterable."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{key}={value}"


def _sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def filters_to_sql(filters: Filters | None) -> str | None:
    if not filters:
        return None
    clauses = []
    tags = []
    for key, value in filters.items():
        if key in CHUNK_FILTER_COLUMNS:
            clauses.append(f"{key} = {_sql_literal(value)}")
        else:
            tags.append(_sql_literal(metadata_tag(key, value)))
    if tags:
        clauses.append(f"array_has_all(tags, [{', '.join(tags)}])")
    return " AND ".join(clauses)


def _in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_sql_literal(v) for v in values)})"


class LanceDBStore:
    """Chunks and documents in two LanceDB tables under ``path``.

    >>> store = LanceDBStore(Path(".infuse/kb/lancedb"), chunks_table="chunks", dimension=384)  # doctest: +SKIP
    >>> store.dense_search(vector, k=5)  # doctest: +SKIP
    """

    def __init__(self, path: Path, chunks_table: str, dimension: int, documents_table: str = "documents") -> None:
        self.path = path
        self.chunks_name = chunks_table
        self.documents_name = documents_table
        self.dimension = dimension
        path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(path))
        self._chunks = self._open_or_create(chunks_table, _chunk_schema(dimension))
        self._documents = self._open_or_create(documents_table, _DOCUMENT_SCHEMA)
        self._read_only = False
        self._term_statistics: dict[int, TermStatistics] = {}  # by chunk table version; shared with snapshots

    def _open_or_create(self, name: str, schema: pa.Schema):
        try:
            return self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            table = self._db.create_table(name, schema=schema, exist_ok=True)
            if name == self.chunks_name and not table.list_indices():
                table.create_index(
                    "tokens",
                    config=FTS(
                        base_tokenizer="whitespace", lower_case=False, stem=False, remove_stop_words=False,
                        ascii_folding=False, with_position=False, max_token_length=None,
                    ),
                )
            return table

    # --- writes --------------------------------------------------------------------------------

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[ChunkRecord]) -> None:
        self._check_writable()
        if not documents:
            return
        self._add_missing_columns()
        doc_ids = [d.doc_id for d in documents]
        rows = pa.Table.from_pylist([self._chunk_row(c) for c in chunks], schema=self._chunks.schema)
        (
            self._chunks.merge_insert("chunk_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(_in_list("doc_id", doc_ids))
            .execute(rows)
        )
        # Documents are recorded after their chunks: a crash in between only makes the next
        # ingest redo these documents, which replaces their chunks with identical ones.
        doc_rows = pa.Table.from_pylist([self._document_row(d) for d in documents], schema=self._documents.schema)
        self._documents.merge_insert("doc_id").when_matched_update_all().when_not_matched_insert_all().execute(doc_rows)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self._check_writable()
        for start in range(0, len(doc_ids), 500):
            batch = doc_ids[start : start + 500]
            self._chunks.delete(_in_list("doc_id", batch))
            self._documents.delete(_in_list("doc_id", batch))

    def optimize(self) -> None:
        self._check_writable()
        self._chunks.optimize()
        self._documents.optimize()

    def _add_missing_columns(self) -> None:
        """Upgrade tables created by an older infuse (one commit per added column; safe to repeat)."""
        for table, added in ((self._chunks, _ADDED_CHUNK_COLUMNS), (self._documents, _ADDED_DOCUMENT_COLUMNS)):
            names = set(table.schema.names)
            missing = [f for f in added if f.name not in names]
            if missing:
                table.add_columns(missing)

    def _has_flags(self) -> bool:
        return "flags" in self._chunks.schema.names

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("this store is a read-only snapshot")

    def _chunk_row(self, chunk: ChunkRecord) -> dict:
        vector = np.asarray(chunk.vector, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise ValueError(f"chunk {chunk.chunk_id}: vector of shape {vector.shape}, store expects ({self.dimension},)")
        return {
            "chunk_id": chunk.chunk_id,
            "doc_id": chunk.doc_id,
            "source_path": chunk.source_path,
            "file_type": chunk.file_type,
            "chunk_index": chunk.chunk_index,
            "text": chunk.text,
            "start": chunk.start,
            "end": chunk.end,
            "page": chunk.page,
            "heading_path": _HEADING_SEPARATOR.join(chunk.heading_path),
            "lang": chunk.lang,
            "n_tokens": chunk.n_tokens,
            "tokens": " ".join(chunk.tokens),
            "tags": [metadata_tag(k, v) for k, v in chunk.metadata.items() if v is not None],
            "metadata_json": json.dumps(chunk.metadata, ensure_ascii=False),
            "content_hash": chunk.content_hash,
            "vector": vector,
            "flags": list(chunk.flags),
        }

    @staticmethod
    def _document_row(document: DocumentRecord) -> dict:
        return {
            "doc_id": document.doc_id,
            "source_path": document.source_path,
            "file_type": document.file_type,
            "title": document.title,
            "content_hash": document.content_hash,
            "pipeline": document.pipeline,
            "text": document.text,
            "metadata_json": json.dumps(document.metadata, ensure_ascii=False),
            "n_chunks": document.n_chunks,
            "ingested_at": document.ingested_at,
            "sections_json": json.dumps([dataclasses.asdict(s) for s in document.sections], ensure_ascii=False),
            "hidden_text_json": json.dumps(list(document.hidden_text), ensure_ascii=False),
        }

    # --- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> "LanceDBStore":
        view = object.__new__(LanceDBStore)
        view.path, view.chunks_name, view.documents_name = self.path, self.chunks_name, self.documents_name
        view.dimension, view._db, view._read_only = self.dimension, self._db, True
        view._term_statistics = self._term_statistics
        view._chunks = self._db.open_table(self.chunks_name)
        view._chunks.checkout(view._chunks.version)
        view._documents = self._db.open_table(self.documents_name)
        view._documents.checkout(view._documents.version)
        return view

    def _where(self, filters: Filters | None, exclude_flagged: bool) -> str | None:
        clauses = [c for c in (filters_to_sql(filters),) if c]
        # A table from before screening has no flags column and nothing flagged to exclude.
        if exclude_flagged and self._has_flags():
            clauses.append(UNFLAGGED_SQL)
        return " AND ".join(f"({c})" for c in clauses) if clauses else None

    def _result_columns(self) -> list[str]:
        return [*_RESULT_COLUMNS, "flags"] if self._has_flags() else list(_RESULT_COLUMNS)

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filters | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        query = self._chunks.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector").distance_type("cosine")
        where = self._where(filters, exclude_flagged)
        if where:
            query = query.where(where, prefilter=True)
        rows = query.limit(k).select([*self._result_columns(), "_distance"]).to_list()
        return [self._scored(row, 1.0 - float(row["_distance"])) for row in rows]

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filters | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        unique = list(dict.fromkeys(t for t in tokens if t.strip()))
        if not unique:
            return []
        query = self._chunks.search(" ".join(unique), query_type="fts", fts_columns="tokens")
        where = self._where(filters, exclude_flagged)
        if where:
            query = query.where(where, prefilter=True)
        rows = query.limit(k).select([*self._result_columns(), "_score"]).to_list()
        return [self._scored(row, float(row["_score"])) for row in rows]

    def flagged_chunks(self, limit: int | None = None) -> list[FlaggedChunk]:
        if not self._has_flags():
            return []
        columns = ["chunk_id", "doc_id", "source_path", "chunk_index", "text", "heading_path", "flags"]
        rows = self._chunks.search().where(FLAGGED_SQL).select(columns).limit(None).to_list()
        rows.sort(key=lambda r: (r["source_path"], int(r["chunk_index"]), r["chunk_id"]))
        return [
            FlaggedChunk(
                chunk_id=r["chunk_id"],
                doc_id=r["doc_id"],
                source_path=r["source_path"],
                chunk_index=int(r["chunk_index"]),
                text=r["text"],
                heading_path=tuple(r["heading_path"].split(_HEADING_SEPARATOR)) if r["heading_path"] else (),
                flags=tuple(r["flags"] or ()),
            )
            for r in rows[:limit]
        ]

    def count_flagged_chunks(self) -> int:
        return self._chunks.count_rows(FLAGGED_SQL) if self._has_flags() else 0

    @staticmethod
    def _scored(row: dict, score: float) -> ScoredChunk:
        return ScoredChunk(
            chunk_id=row["chunk_id"],
            doc_id=row["doc_id"],
            source_path=row["source_path"],
            chunk_index=int(row["chunk_index"]),
            text=row["text"],
            start=int(row["start"]),
            end=int(row["end"]),
            page=row["page"],
            heading_path=tuple(row["heading_path"].split(_HEADING_SEPARATOR)) if row["heading_path"] else (),
            lang=row["lang"],
            metadata=json.loads(row["metadata_json"] or "{}"),
            content_hash=row["content_hash"],
            score=score,
            flags=tuple(row.get("flags") or ()),
        )

    def count_chunks(self, filters: Filters | None = None) -> int:
        return self._chunks.count_rows(filters_to_sql(filters))

    def count_documents(self) -> int:
        return self._documents.count_rows()

    def document_states(self) -> dict[str, DocumentState]:
        table = self._columns(self._documents, ["doc_id", "content_hash", "pipeline", "source_path"])
        return {
            row["doc_id"]: DocumentState(row["content_hash"], row["pipeline"], row["source_path"])
            for row in table.to_pylist()
        }

    def iter_documents(self) -> Iterator[DocumentRecord]:
        for batch in self._documents.search().limit(None).to_batches(256):
            for row in batch.to_pylist():
                yield DocumentRecord(
                    doc_id=row["doc_id"],
                    source_path=row["source_path"],
                    file_type=row["file_type"],
                    title=row["title"],
                    content_hash=row["content_hash"],
                    pipeline=row["pipeline"],
                    text=row["text"],
                    metadata=json.loads(row["metadata_json"] or "{}"),
                    n_chunks=int(row["n_chunks"]),
                    ingested_at=row["ingested_at"],
                    sections=tuple(
                        Section(s["start"], s["end"], tuple(s["heading_path"]), s["page"])
                        for s in json.loads(row["sections_json"] or "[]")
                    ),
                    hidden_text=tuple(json.loads(row.get("hidden_text_json") or "[]")),
                )

    @staticmethod
    def _columns(table, columns: list[str]) -> pa.Table:
        return table.search().select(columns).limit(None).to_arrow()

    def chunk_ids(self) -> list[str]:
        return self._columns(self._chunks, ["chunk_id"]).column("chunk_id").to_pylist()

    def iter_chunks(self) -> Iterator[ScoredChunk]:
        rows = self._columns(self._chunks, self._result_columns()).to_pylist()
        rows.sort(key=lambda r: (r["source_path"], r["doc_id"], int(r["chunk_index"])))
        for row in rows:
            yield self._scored(row, 0.0)

    def term_statistics(self) -> TermStatistics:
        """Counted once per table version (one scan of the tokens column), then reused."""
        version = self._chunks.version
        if version not in self._term_statistics:
            tokens = self._columns(self._chunks, ["tokens"]).column("tokens").to_pylist()
            self._term_statistics.clear()  # only the latest version is asked for again
            self._term_statistics[version] = TermStatistics.from_token_lists(t.split() for t in tokens)
        return self._term_statistics[version]

    def chunk_counts_by_language(self) -> dict[str, int]:
        langs = self._columns(self._chunks, ["lang"]).column("lang").to_pylist()
        counts: dict[str, int] = {}
        for lang in langs:
            counts[lang] = counts.get(lang, 0) + 1
        return counts

    def drop(self) -> None:
        """Delete the chunk table (used when a reindex replaces it)."""
        self._db.drop_table(self.chunks_name)
