"""Embedded LanceDB implementation of :class:`~infuse.store.base.KnowledgeStore` (the default).

Why it is safe to kill: every write is one LanceDB commit (a new manifest written atomically
after its data files), so a reader or a restarted process sees either the state before or
after, never half a document. Replacing a document's chunks is a single ``merge_insert`` that
upserts the new chunks and deletes the document's other chunks in the same commit. Keyword
search uses LanceDB's BM25 full-text index over the project's own tokens (whitespace-joined),
with LanceDB's own text processing switched off; rows written since the last index update are
still searched (unindexed rows are scanned).

Indexes keep up (:meth:`LanceDBStore.optimize`, called after every ingest): new rows join the
keyword index and the vector index incrementally; the vector index (``[store.index] vector``) is
built once the table reaches ``min_rows`` (below that an exact scan is fast) and retrained when
the table outgrows the rows it was trained on by ``retrain_growth`` (the count is kept in the
vector column's field metadata, committed with the table). Dense searches on an indexed table
probe ``nprobes`` partitions, and as many as it takes when a filter leaves fewer than ``k`` rows in them.

One column table per collection (:data:`CHUNK_COLUMNS`, :data:`DOCUMENT_COLUMNS`) drives the
schema, the rows written and the records read back: a new chunk attribute is one line there.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, IvfHnswSq, IvfPq, IvfSq

from infuse.config import IndexSettings, VectorIndexKind
from infuse.documents.models import Chunk, Document, FileType, Section
from infuse.language import Language
from infuse.store.base import (
    TIE_MARGIN,
    DocumentRecord,
    DocumentState,
    IndexedChunk,
    IndexState,
    ScoredChunk,
    access_column,
    best_first,
    bm25,
)
from infuse.store.filters import ACCESS_FIELD, CHUNK_FIELDS, AllOf, AnyOf, Eq, Filter, FilterValue, NoneOf, names_field
from infuse.store.terms import TermStatistics

R = TypeVar("R")
_HEADING_SEPARATOR = " > "
_VECTOR = "vector"  # its type depends on the store's dimension
_TOKENS = "tokens"
VECTOR_INDEX = "vector_idx"
TRAINED_ROWS_KEY = "infuse.vector_index_trained_rows"  # vector field metadata: rows the index was trained on
# The dense leg of a hybrid search runs here while the calling thread runs the keyword leg.
_LEG_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="infuse-dense")
SCOPES_CACHED = 256  # filters (callers' views) whose keyword statistics are kept per table version


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Column(Generic[R]):
    """One stored column: how to write it from a record and which record attribute it reads into.

    ``added`` columns came after the first release: tables without them get them on the next
    write (null until a document is re-ingested, which the pipeline version forces); reads
    tolerate their absence (the attribute keeps its default).
    """

    name: str
    type: pa.DataType | None
    write: Callable[[R], Any]
    attr: str | None = None
    read: Callable[[Any], Any] = _identity
    added: bool = False


def _attr_column(
    part: Callable[[R], Any],
    name: str,
    type_: pa.DataType,
    attr: str | None = None,
    *,
    write: Callable[[Any], Any] = _identity,
    read: Callable[[Any], Any] = _identity,
    added: bool = False,
) -> Column[R]:
    """A column holding one attribute of a record's chunk or document (``part`` picks which);
    ``write`` converts it for storage, ``read`` back."""
    attr = attr or name
    return Column(name, type_, lambda record: write(getattr(part(record), attr)), attr, read, added)


def _chunk_column(name: str, type_: pa.DataType, attr: str | None = None, **options: Any) -> Column[IndexedChunk]:
    return _attr_column(lambda c: c.chunk, name, type_, attr, **options)


def _document_column(name: str, type_: pa.DataType, attr: str | None = None, **options: Any) -> Column[DocumentRecord]:
    return _attr_column(lambda r: r.document, name, type_, attr, **options)


def _split_heading(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(_HEADING_SEPARATOR)) if value else ()


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value or ())


def _json_dict(value: str | None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(value or "{}")
    return data


def metadata_tag(key: str, value: object) -> str:
    """The ``key=value`` string under which a metadata field is filterable."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{key}={value}"


CHUNK_COLUMNS: tuple[Column[IndexedChunk], ...] = (
    _chunk_column("chunk_id", pa.string()),
    _chunk_column("doc_id", pa.string()),
    _chunk_column("source_path", pa.string()),
    _chunk_column("file_type", pa.string(), write=lambda t: t.value, read=FileType),
    _chunk_column("chunk_index", pa.int32(), "index", read=int),
    _chunk_column("text", pa.string()),
    _chunk_column("start", pa.int64(), read=int),
    _chunk_column("end", pa.int64(), read=int),
    _chunk_column("page", pa.int32()),
    _chunk_column("heading_path", pa.string(), write=_HEADING_SEPARATOR.join, read=_split_heading),
    _chunk_column("lang", pa.string(), write=lambda lang: lang.value, read=Language),
    _chunk_column("n_tokens", pa.int32(), read=int),
    Column(_TOKENS, pa.string(), lambda c: " ".join(c.tokens)),
    Column(
        "tags",
        pa.list_(pa.string()),
        lambda c: [metadata_tag(k, v) for k, v in c.chunk.metadata.items() if v is not None],
    ),
    _chunk_column(
        "metadata_json",
        pa.string(),
        "metadata",
        write=lambda m: json.dumps(dict(m), ensure_ascii=False),
        read=_json_dict,
    ),
    _chunk_column("content_hash", pa.string()),
    Column(_VECTOR, None, lambda c: c.vector),
    _chunk_column("flags", pa.list_(pa.string()), write=list, read=_tuple, added=True),
    _chunk_column(ACCESS_FIELD, pa.list_(pa.string()), write=list, read=_tuple, added=True),
)


def _sections(value: str | None) -> tuple[Section, ...]:
    return tuple(Section(s["start"], s["end"], tuple(s["heading_path"]), s["page"]) for s in json.loads(value or "[]"))


# Columns of the document's own attributes (read into a Document) ...
DOCUMENT_COLUMNS: tuple[Column[DocumentRecord], ...] = (
    _document_column("doc_id", pa.string()),
    _document_column("source_path", pa.string()),
    _document_column("file_type", pa.string(), write=lambda t: t.value, read=FileType),
    _document_column("title", pa.string()),
    _document_column("content_hash", pa.string()),
    _document_column("text", pa.string()),
    _document_column(
        "metadata_json",
        pa.string(),
        "metadata",
        write=lambda m: json.dumps(dict(m), ensure_ascii=False),
        read=_json_dict,
    ),
    _document_column(
        "sections_json",
        pa.string(),
        "sections",
        write=lambda s: json.dumps([dataclasses.asdict(x) for x in s], ensure_ascii=False),
        read=_sections,
    ),
    _document_column(
        "hidden_text_json",
        pa.string(),
        "hidden_text",
        write=lambda h: json.dumps(list(h), ensure_ascii=False),
        read=lambda v: tuple(json.loads(v or "[]")),
        added=True,
    ),
    _document_column(ACCESS_FIELD, pa.list_(pa.string()), write=list, read=_tuple, added=True),
)
# ... and of how it was ingested (read into the DocumentRecord).
INGEST_COLUMNS: tuple[Column[DocumentRecord], ...] = (
    Column("pipeline", pa.string(), lambda r: r.pipeline, "pipeline"),
    Column("n_chunks", pa.int32(), lambda r: r.n_chunks, "n_chunks", int),
    Column("ingested_at", pa.string(), lambda r: r.ingested_at, "ingested_at"),
)


def _schema(columns: Sequence[Column[Any]], dimension: int = 0) -> pa.Schema:
    return pa.schema([(c.name, c.type if c.type is not None else pa.list_(pa.float32(), dimension)) for c in columns])


def _sql_literal(value: FilterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql_list(values: Sequence[FilterValue]) -> str:
    return ", ".join(_sql_literal(v) for v in values)


def filter_to_sql(
    filter_: Filter | None, columns: frozenset[str] = frozenset({ACCESS_FIELD}), non_null: frozenset[str] = frozenset()
) -> str | None:
    """LanceDB SQL for a typed filter (``columns``: which optional columns the table has).

    Chunk columns compare directly; the access list by array overlap; any other field through the
    ``tags`` column of ``key=value`` strings. ``non_null``: stored columns that another clause of
    the same conjunction already requires to be non-null (see below).
    """
    if filter_ is None:
        return None
    if isinstance(filter_, AllOf):
        # A positive clause (Eq, AnyOf) on a column holds only where the column is non-null, so a
        # NoneOf on that column needs no null guard in the same conjunction: ``NOT array_has_any``
        # alone is answered by the access column's LABEL_LIST index, the guarded form is a scan
        # (an access prefilter at 1M chunks: 1 ms against 36 ms, docs/scale.md).
        required = non_null | {_column_of(c.field) for c in filter_.clauses if isinstance(c, (Eq, AnyOf))}
        parts = [filter_to_sql(clause, columns, frozenset(required)) for clause in filter_.clauses]
        return " AND ".join(f"({p})" for p in parts if p) or None
    values = (filter_.value,) if isinstance(filter_, Eq) else filter_.values
    if isinstance(filter_, NoneOf):
        if not values:
            return "true"
        shares = _any_of_sql(filter_.field, values, columns)
        if _column_of(filter_.field) in non_null:
            return f"NOT ({shares})"
        # Shares none of the values: a null (a row from before the column) shares none.
        return f"coalesce(NOT ({shares}), true)"
    return _any_of_sql(filter_.field, values, columns) if values else "false"


def _column_of(field: str) -> str:
    """The stored column a filter field is answered from."""
    return field if field == ACCESS_FIELD or field in CHUNK_FIELDS else "tags"


def _any_of_sql(field: str, values: Sequence[FilterValue], columns: frozenset[str]) -> str:
    """``field`` holds one of ``values`` (not empty); null when the field is null."""
    if field == ACCESS_FIELD:
        # A table from before access lists has no access column: nobody is listed on any chunk.
        return f"array_has_any({ACCESS_FIELD}, [{_sql_list(values)}])" if ACCESS_FIELD in columns else "false"
    if field in CHUNK_FIELDS:
        return f"{field} IN ({_sql_list(values)})"
    tags = [metadata_tag(field, v) for v in values]
    return f"array_has_any(tags, [{_sql_list(tags)}])"


def _in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({_sql_list(values)})"


# A chunk that screening did not flag (flags is null on rows written before screening existed).
UNFLAGGED_SQL = "coalesce(array_length(flags), 0) = 0"
FLAGGED_SQL = "array_length(flags) > 0"


CHUNK_TABLE_PREFIX = "chunks"  # the workspace names chunk tables "chunks" and "chunks_<stamp>" (reindex)


class LanceDBStore:
    """Chunks and documents in two LanceDB tables under ``path``.

    >>> store = LanceDBStore(Path(".infuse/kb/lancedb"), chunks_table="chunks", dimension=384)  # doctest: +SKIP
    >>> store.dense_search(vector, k=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: Path | str,
        chunks_table: str,
        dimension: int,
        documents_table: str = "documents",
        index: IndexSettings | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        """``path``: a folder, or an object-store URI (``s3://bucket/kb``) reached with
        ``storage_options`` (:meth:`infuse.config.ObjectStoreSettings.storage_options`)."""
        self.path = path
        self.chunks_name = chunks_table
        self.documents_name = documents_table
        self.dimension = dimension
        self.index = index or IndexSettings()
        self._db = connect(path, storage_options)
        self._chunks = self._open_or_create(chunks_table, _schema(CHUNK_COLUMNS, dimension))
        self._documents = self._open_or_create(documents_table, _schema((*DOCUMENT_COLUMNS, *INGEST_COLUMNS)))
        self._read_only = False
        self._term_statistics: dict[int, TermStatistics] = {}  # by chunk table version; shared with snapshots
        self._metadata_keys: dict[int, frozenset[str]] = {}  # by documents table version; shared with snapshots
        self._scopes: dict[tuple[int, str | None], tuple[int, float]] = {}  # see _scope; shared with snapshots
        # Server threads share these caches: every look-up and update happens under this lock (the
        # scan itself runs outside it; two threads may both count, one result is kept).
        self._cache_lock = threading.Lock()

    def _open_or_create(self, name: str, schema: pa.Schema) -> Any:
        try:
            return self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            table = self._db.create_table(name, schema=schema, exist_ok=True)
            if name == self.chunks_name and not table.list_indices():
                _create_keyword_index(table)
            return table

    # --- writes --------------------------------------------------------------------------------

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[IndexedChunk]) -> None:
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
        doc_rows = [{c.name: c.write(d) for c in (*DOCUMENT_COLUMNS, *INGEST_COLUMNS)} for d in documents]
        table = pa.Table.from_pylist(doc_rows, schema=self._documents.schema)
        self._documents.merge_insert("doc_id").when_matched_update_all().when_not_matched_insert_all().execute(table)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self._check_writable()
        for start in range(0, len(doc_ids), 500):
            batch = doc_ids[start : start + 500]
            self._chunks.delete(_in_list("doc_id", batch))
            self._documents.delete(_in_list("doc_id", batch))

    def set_access(self, doc_ids: Sequence[str], access: Sequence[str]) -> None:
        """One ``update`` commit of the chunks' access column (rows are rewritten with their vectors
        as stored, nothing is embedded), then one of the document rows; a crash in between leaves
        only the document rows' copy stale (the chunks are what search filters on), which
        :meth:`reconcile_access` (called by every writer first) rewrites from the chunks."""
        self._check_writable()
        column = access_column(access)
        if not doc_ids:
            return
        self._add_missing_columns()
        value = {ACCESS_FIELD: f"[{_sql_list(column)}]"}
        where = _in_list("doc_id", list(dict.fromkeys(doc_ids)))
        self._chunks.update(where=where, values_sql=value)
        self._documents.update(where=where, values_sql=value)

    def reconcile_access(self) -> int:
        self._check_writable()
        if ACCESS_FIELD not in self._chunk_names() or ACCESS_FIELD not in self._documents.schema.names:
            return 0
        by_chunks = {
            row["doc_id"]: _tuple(row[ACCESS_FIELD])
            for row in self._columns(self._chunks, ["doc_id", ACCESS_FIELD]).to_pylist()
        }
        stale: dict[tuple[str, ...], list[str]] = {}
        for row in self._columns(self._documents, ["doc_id", ACCESS_FIELD]).to_pylist():
            column = by_chunks.get(row["doc_id"])
            if column is not None and column != _tuple(row[ACCESS_FIELD]):
                stale.setdefault(column, []).append(row["doc_id"])
        for column, doc_ids in stale.items():
            self._documents.update(
                where=_in_list("doc_id", doc_ids), values_sql={ACCESS_FIELD: f"[{_sql_list(column)}]"}
            )
        return sum(len(ids) for ids in stale.values())

    def optimize(self) -> None:
        """Compact, add new rows to the keyword and vector indexes (incremental), then build or
        retrain the vector index where :class:`~infuse.config.IndexSettings` ask for it."""
        self._check_writable()
        if not any(_TOKENS in i.columns for i in self._chunks.list_indices()):
            _create_keyword_index(self._chunks)  # a table whose first index build was interrupted
        retry_commit_conflicts(lambda: _create_scalar_indexes(self._chunks, CHUNK_SCALAR_INDEXES), self._chunks)
        retry_commit_conflicts(
            lambda: _create_scalar_indexes(self._documents, DOCUMENT_SCALAR_INDEXES), self._documents
        )
        retry_commit_conflicts(self._chunks.optimize, self._chunks)
        retry_commit_conflicts(self._maintain_vector_index, self._chunks)
        retry_commit_conflicts(self._documents.optimize, self._documents)

    def _maintain_vector_index(self) -> None:
        current = self._vector_index_type()
        wanted = self.index.vector
        if wanted is VectorIndexKind.NONE:
            if current is not None:
                self._chunks.drop_index(VECTOR_INDEX)
            return
        rows = int(self._chunks.count_rows())
        if rows < self.index.min_rows:
            return  # an index built earlier is kept (and kept current) when rows are deleted
        trained = int((self._chunks.schema.field(_VECTOR).metadata or {}).get(TRAINED_ROWS_KEY.encode(), b"0"))
        if current == _INDEX_TYPES[wanted] and rows <= self.index.retrain_growth * trained:
            return
        self.build_vector_index()

    def build_vector_index(self) -> None:
        """(Re)train the vector index on every row now (``infuse optimize --retrain``); the new
        index replaces the old one in one commit, so searches use one or the other."""
        self._check_writable()
        kind = self.index.vector
        if kind is VectorIndexKind.NONE:
            raise ValueError('store.index.vector is "none": there is no vector index to build')
        rows = int(self._chunks.count_rows())
        if rows < 256:
            raise ValueError(f"a vector index needs at least 256 chunks to train on; the table has {rows}")
        self._chunks.create_index(_VECTOR, config=_INDEX_CONFIGS[kind](), name=VECTOR_INDEX, replace=True)
        self._chunks.update_field_metadata({"path": _VECTOR, "metadata": {TRAINED_ROWS_KEY: str(rows)}})

    def index_states(self) -> list[IndexState]:
        by_column = {tuple(config.columns): config.name for config in self._chunks.list_indices()}
        states = []
        for column in (_VECTOR, _TOKENS):
            name = by_column.get((column,))
            stats = self._chunks.index_stats(name) if name else None
            if stats is None:
                states.append(IndexState(column, None, 0, int(self._chunks.count_rows())))
            else:
                states.append(IndexState(column, stats.index_type, stats.num_indexed_rows, stats.num_unindexed_rows))
        return states

    def _vector_index_type(self) -> str | None:
        for config in self._chunks.list_indices():
            if config.name == VECTOR_INDEX:
                stats = self._chunks.index_stats(VECTOR_INDEX)
                return stats.index_type if stats else None
        return None

    def drop_other_collections(self) -> list[str]:
        self._check_writable()
        others = [
            name for name in self._table_names() if name.startswith(CHUNK_TABLE_PREFIX) and name != self.chunks_name
        ]
        for name in others:
            self._db.drop_table(name)
        return others

    def drop(self) -> None:
        self._check_writable()
        self._db.drop_table(self.chunks_name)

    def _table_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._db.list_tables(page_token=token, limit=1000)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def _add_missing_columns(self) -> None:
        """Upgrade tables created by an older infuse (one commit per added column; safe to repeat)."""
        for table, columns in ((self._chunks, CHUNK_COLUMNS), (self._documents, DOCUMENT_COLUMNS)):
            names = set(table.schema.names)
            missing = [pa.field(c.name, c.type) for c in columns if c.added and c.name not in names]
            if missing:
                table.add_columns(missing)

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("this store is a read-only snapshot")

    def _chunk_row(self, chunk: IndexedChunk) -> dict[str, Any]:
        vector = np.asarray(chunk.vector, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise ValueError(
                f"chunk {chunk.chunk.chunk_id}: vector of shape {vector.shape}, store expects ({self.dimension},)"
            )
        row = {c.name: c.write(chunk) for c in CHUNK_COLUMNS}
        row[_VECTOR] = vector
        return row

    # --- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> LanceDBStore:
        view = object.__new__(LanceDBStore)
        view.path, view.chunks_name, view.documents_name = self.path, self.chunks_name, self.documents_name
        view.dimension, view._db, view._read_only, view.index = self.dimension, self._db, True, self.index
        view._term_statistics, view._metadata_keys = self._term_statistics, self._metadata_keys
        view._scopes, view._cache_lock = self._scopes, self._cache_lock
        view._chunks = self._db.open_table(self.chunks_name)
        view._chunks.checkout(view._chunks.version)
        view._documents = self._db.open_table(self.documents_name)
        view._documents.checkout(view._documents.version)
        return view

    def _chunk_names(self) -> frozenset[str]:
        return frozenset(self._chunks.schema.names)

    def _where(self, filters: Filter | None, exclude_flagged: bool) -> str | None:
        names = self._chunk_names()
        clauses = [c for c in (filter_to_sql(filters, names),) if c]
        # A table from before screening has no flags column and nothing flagged to exclude.
        if exclude_flagged and "flags" in names:
            clauses.append(UNFLAGGED_SQL)
        return " AND ".join(f"({c})" for c in clauses) if clauses else None

    def _read_columns(self) -> list[Column[IndexedChunk]]:
        names = self._chunk_names()
        return [c for c in CHUNK_COLUMNS if c.attr is not None and c.name in names]

    @staticmethod
    def _chunk(row: dict[str, Any]) -> Chunk:
        """The chunk of a row read with :meth:`_read_columns` (columns the table lacks keep their default)."""
        return Chunk(**{c.attr: c.read(row[c.name]) for c in CHUNK_COLUMNS if c.attr is not None and c.name in row})

    def ranked_lists(
        self,
        vector: np.ndarray | None,
        tokens: Sequence[str] | None,
        k: int,
        filters: Filter | None = None,
        *,
        exclude_flagged: bool = False,
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        """Both lists of a hybrid search: the two index searches run at once (LanceDB releases the
        GIL), each returning row ids and scores only; then one read of the rows of both lists
        (:meth:`_read_rows`). Measured at 1M chunks in docs/scale.md: fetching every column inside
        each search cost more than the searches themselves."""
        where = self._where(filters, exclude_flagged)
        terms = list(dict.fromkeys(t for t in tokens or () if t.strip()))
        scoped = names_field(filters, ACCESS_FIELD)
        for attempt in range(2):
            dense_job = None
            if vector is not None and terms:
                dense_job = _LEG_POOL.submit(self._dense_hits, vector, k, where)
            lexical = self._lexical_hits(terms, k, where, scoped) if terms else []
            if dense_job is not None:
                dense = dense_job.result()
            else:
                dense = self._dense_hits(vector, k, where) if vector is not None else []
            wanted = {row_id for row_id, _ in (*dense, *lexical)}
            rows = self._read_rows(list(wanted))
            # A writer's table may have been compacted between search and read (the rows moved):
            # search once more. A snapshot's never is; a row deleted meanwhile is simply left out.
            if len(rows) == len(wanted) or self._read_only or attempt:
                break
        dense_list = best_first([ScoredChunk(rows[i], score) for i, score in dense if i in rows], k)
        lexical_list = [ScoredChunk(rows[i], score) for i, score in lexical if i in rows]
        return dense_list, lexical_list if scoped else best_first(lexical_list, k)

    def _dense_hits(self, vector: np.ndarray, k: int, where: str | None) -> list[tuple[int, float]]:
        """Row ids and cosine similarities of the ``k`` (plus a tie margin) nearest chunks.

        An indexed table is searched in ``nprobes`` partitions; only when that leaves fewer rows
        than asked for (a narrow filter) is the search repeated over as many partitions as it takes.
        (LanceDB given a minimum and no maximum searched every partition, filter or not.)"""

        def search(maximum_nprobes: int) -> list[tuple[int, float]]:
            query = (
                self._chunks.search(np.asarray(vector, dtype=np.float32), vector_column_name=_VECTOR)
                .distance_type("cosine")
                .minimum_nprobes(self.index.nprobes)
                .maximum_nprobes(maximum_nprobes)
                .refine_factor(self.index.refine_factor)
                .ef(max(self.index.ef, k * self.index.refine_factor))  # HNSW needs ef >= the candidates refined
            )
            return self._hits(query, where, k + TIE_MARGIN, "_distance")

        found = search(self.index.nprobes)
        if len(found) < k + TIE_MARGIN and where:
            found = search(0)  # 0: no maximum
        return [(row_id, 1.0 - distance) for row_id, distance in found]

    def _lexical_hits(self, terms: list[str], k: int, where: str | None, scoped: bool) -> list[tuple[int, float]]:
        query = self._chunks.search(" ".join(terms), query_type="fts", fts_columns="tokens")
        if scoped:
            return self._scoped_lexical(query, terms, k, where)
        return self._hits(query, where, k + TIE_MARGIN, "_score")

    @staticmethod
    def _hits(query: Any, where: str | None, limit: int, score_column: str) -> list[tuple[int, float]]:
        if where:
            query = query.where(where, prefilter=True)
        found = query.limit(limit).select([score_column]).with_row_id(True).to_arrow()
        return list(zip(found.column("_rowid").to_pylist(), found.column(score_column).to_pylist()))

    def _read_rows(self, row_ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks at ``row_ids`` (ids a search of this table just returned), read in one take.

        Sound without pinning a version: a row id here is a row address (fragment, offset), and a
        Lance fragment is immutable (an update writes new rows, compaction new fragments with new
        ids), so an id names the very row the search filtered, or nothing if it was deleted since
        (its chunk is then left out)."""
        wanted = list(dict.fromkeys(row_ids))
        if not wanted:
            return {}
        columns = [c.name for c in self._read_columns()]
        found = self._chunks.take_row_ids(wanted).select(columns).with_row_id().to_arrow()
        return {row.pop("_rowid"): self._chunk(row) for row in found.to_pylist()}

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        return self.ranked_lists(vector, None, k, filters, exclude_flagged=exclude_flagged)[0]

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        return self.ranked_lists(None, tokens, k, filters, exclude_flagged=exclude_flagged)[1]

    def _scoped_lexical(self, query: Any, terms: list[str], k: int, where: str | None) -> list[tuple[int, float]]:
        """BM25 over the chunks passing ``where`` only (one caller's view): LanceDB's own scores use
        statistics of every chunk, so a term's weight would reveal chunks the caller cannot read.
        The index finds the matches (prefiltered); infuse scores them (:func:`bm25`, vectorised
        over the keyword tokens) and returns the best ``k`` (ties by chunk id) as row ids."""
        n_chunks, average = self._scope(where)
        if not n_chunks:
            return []
        if where:
            query = query.where(where, prefilter=True)
        found = query.limit(n_chunks).select(["chunk_id", "tokens", "_score"]).with_row_id(True).to_arrow()
        if not found.num_rows:
            return []
        split = pc.split_pattern(pc.fill_null(found.column("tokens"), ""), pattern=" ")
        lengths = np.asarray(pc.list_value_length(split).to_numpy(zero_copy_only=False), dtype=np.float64)
        rows = np.asarray(pc.list_parent_indices(split).to_numpy(zero_copy_only=False))
        which = pc.fill_null(pc.index_in(pc.list_flatten(split), value_set=pa.array(terms)), -1)
        term_of = np.asarray(which.to_numpy(zero_copy_only=False))
        hit = term_of >= 0
        cells = rows[hit] * len(terms) + term_of[hit]  # bincount: np.add.at is several times slower
        tf = np.bincount(cells, minlength=found.num_rows * len(terms)).reshape(found.num_rows, len(terms))
        stats = TermStatistics(n_chunks, dict(zip(terms, (int(n) for n in (tf > 0).sum(axis=0)))))
        scores = bm25(tf, lengths, np.array([stats.idf(t) for t in terms]), average)
        ids, row_ids = found.column("chunk_id").to_pylist(), found.column("_rowid").to_pylist()
        best = sorted(
            (-score, chunk_id, row_id) for chunk_id, row_id, score in zip(ids, row_ids, scores.tolist()) if score > 0
        )
        return [(row_id, -negative) for negative, _, row_id in best[:k]]

    def _scope(self, where: str | None) -> tuple[int, float]:
        """How many chunks pass ``where`` and their average keyword count; counted once per table
        version and filter (a server's callers each have one), then reused."""
        key = (self._chunks.version, where)
        with self._cache_lock:
            cached = self._scopes.get(key)
        if cached is not None:
            return cached
        query = self._chunks.search()
        if where:
            query = query.where(where)
        tokens = query.select(["tokens"]).limit(None).to_arrow().column("tokens").to_pylist()
        lengths = [len(str(t or "").split()) for t in tokens]
        scope = (len(lengths), sum(lengths) / len(lengths) if lengths else 0.0)
        with self._cache_lock:
            if len(self._scopes) >= SCOPES_CACHED or any(v != key[0] for v, _ in self._scopes):
                self._scopes.clear()  # only the latest version is asked for again
            self._scopes[key] = scope
        return scope

    def flagged_chunks(self, limit: int | None = None) -> list[Chunk]:
        if "flags" not in self._chunk_names():
            return []
        rows = (
            self._chunks.search()
            .where(FLAGGED_SQL)
            .select([c.name for c in self._read_columns()])
            .limit(None)
            .to_list()
        )
        chunks = sorted((self._chunk(r) for r in rows), key=lambda c: (c.source_path, c.index, c.chunk_id))
        return chunks[:limit]

    def count_flagged_chunks(self) -> int:
        return int(self._chunks.count_rows(FLAGGED_SQL)) if "flags" in self._chunk_names() else 0

    def count_chunks(self, filters: Filter | None = None) -> int:
        return int(self._chunks.count_rows(filter_to_sql(filters, self._chunk_names())))

    def count_documents(self) -> int:
        return int(self._documents.count_rows())

    def document_states(self) -> dict[str, DocumentState]:
        columns = ["doc_id", "content_hash", "pipeline", "source_path"]
        access = ACCESS_FIELD in self._documents.schema.names
        table = self._columns(self._documents, [*columns, ACCESS_FIELD] if access else columns)
        return {
            row["doc_id"]: DocumentState(
                row["content_hash"], row["pipeline"], row["source_path"], _tuple(row.get(ACCESS_FIELD))
            )
            for row in table.to_pylist()
        }

    def iter_documents(self) -> Iterator[DocumentRecord]:
        names = set(self._documents.schema.names)
        document_columns = [c for c in DOCUMENT_COLUMNS if c.name in names and c.attr is not None]
        for batch in self._documents.search().limit(None).to_batches(256):
            for row in batch.to_pylist():
                document = Document(**{c.attr: c.read(row[c.name]) for c in document_columns if c.attr is not None})
                ingest = {c.attr: c.read(row[c.name]) for c in INGEST_COLUMNS if c.attr is not None}
                yield DocumentRecord(document=document, **ingest)

    @staticmethod
    def _columns(table: Any, columns: list[str]) -> pa.Table:
        return table.search().select(columns).limit(None).to_arrow()

    def chunk_ids(self) -> list[str]:
        return list(self._columns(self._chunks, ["chunk_id"]).column("chunk_id").to_pylist())

    def iter_indexed(self, filters: Filter | None = None) -> Iterator[IndexedChunk]:
        query = self._chunks.search()
        where = filter_to_sql(filters, self._chunk_names())
        if where:
            query = query.where(where)
        columns = [*(c.name for c in self._read_columns()), "tokens", _VECTOR]
        for batch in query.select(columns).limit(None).to_batches(1024):
            for row in batch.to_pylist():
                tokens = tuple(str(row["tokens"] or "").split())
                yield IndexedChunk(self._chunk(row), tokens, np.asarray(row[_VECTOR], dtype=np.float32))

    def iter_chunks(self, filters: Filter | None = None) -> Iterator[Chunk]:
        query = self._chunks.search()
        where = filter_to_sql(filters, self._chunk_names())
        if where:
            query = query.where(where)
        rows = query.select([c.name for c in self._read_columns()]).limit(None).to_arrow().to_pylist()
        chunks = sorted((self._chunk(row) for row in rows), key=lambda c: (c.source_path, c.doc_id, c.index))
        yield from chunks

    def metadata_keys(self) -> frozenset[str]:
        """Read once per documents table version (one scan of the metadata column), then reused."""
        version = self._documents.version
        with self._cache_lock:
            cached = self._metadata_keys.get(version)
        if cached is not None:
            return cached
        values = self._columns(self._documents, ["metadata_json"]).column("metadata_json").to_pylist()
        keys = frozenset(key for value in values for key in _json_dict(value))
        with self._cache_lock:
            self._metadata_keys.clear()  # only the latest version is asked for again
            self._metadata_keys[version] = keys
        return keys

    def term_statistics(self, filters: Filter | None = None) -> TermStatistics:
        """Counted once per table version (one scan of the tokens column), then reused; with
        ``filters`` counted over the chunks passing them (the caller caches, see Workspace)."""
        if filters is not None:
            query = self._chunks.search()
            where = filter_to_sql(filters, self._chunk_names())
            if where:
                query = query.where(where)
            tokens = query.select(["tokens"]).limit(None).to_arrow().column("tokens").to_pylist()
            return TermStatistics.from_token_lists(str(t or "").split() for t in tokens)
        version = self._chunks.version
        with self._cache_lock:
            cached = self._term_statistics.get(version)
        if cached is not None:
            return cached
        tokens = self._columns(self._chunks, ["tokens"]).column("tokens").to_pylist()
        statistics = TermStatistics.from_token_lists(t.split() for t in tokens)
        with self._cache_lock:
            self._term_statistics.clear()  # only the latest version is asked for again
            self._term_statistics[version] = statistics
        return statistics

    def chunk_counts_by_language(self) -> dict[str, int]:
        langs = self._columns(self._chunks, ["lang"]).column("lang").to_pylist()
        counts: dict[str, int] = {}
        for lang in langs:
            counts[lang] = counts.get(lang, 0) + 1
        return counts


# How each kind is built, and the index type LanceDB then reports.
_INDEX_CONFIGS: dict[VectorIndexKind, Callable[[], Any]] = {
    VectorIndexKind.IVF_SQ: lambda: IvfSq(distance_type="cosine"),
    VectorIndexKind.IVF_PQ: lambda: IvfPq(distance_type="cosine"),
    VectorIndexKind.IVF_HNSW_SQ: lambda: IvfHnswSq(distance_type="cosine"),
}
_INDEX_TYPES: dict[VectorIndexKind, str] = {
    VectorIndexKind.IVF_SQ: "IVF_SQ",
    VectorIndexKind.IVF_PQ: "IVF_PQ",
    VectorIndexKind.IVF_HNSW_SQ: "IVF_HNSW_SQ",
}


# Scalar indexes, built by the first optimize of a non-empty table (older tables get them on their
# next ingest or ``infuse optimize``) and then kept current by every optimize, like the others:
# ids so that upserts (merge on chunk_id, delete by doc_id) and deletes find rows without scanning
# the table, the access list so that a caller's prefilter is answered from the index.
CHUNK_SCALAR_INDEXES = (("chunk_id", "BTREE"), ("doc_id", "BTREE"), (ACCESS_FIELD, "LABEL_LIST"))
DOCUMENT_SCALAR_INDEXES = (("doc_id", "BTREE"),)


def _create_scalar_indexes(table: Any, wanted: Sequence[tuple[str, str]]) -> None:
    """Create the scalar indexes of ``wanted`` that ``table`` lacks (a column it lacks is skipped)."""
    indexed = {tuple(config.columns) for config in table.list_indices()}
    missing = [(c, kind) for c, kind in wanted if (c,) not in indexed and c in table.schema.names]
    if missing and table.count_rows():
        for column, kind in missing:
            table.create_scalar_index(column, index_type=kind)


def _create_keyword_index(table: Any) -> None:
    """The BM25 index over infuse's own tokens (whitespace-joined): LanceDB's text processing off."""
    table.create_index(
        _TOKENS,
        config=FTS(
            base_tokenizer="whitespace",
            lower_case=False,
            stem=False,
            remove_stop_words=False,
            ascii_folding=False,
            with_position=False,
            max_token_length=None,
        ),
    )


COMMIT_ATTEMPTS = 6


def retry_commit_conflicts(action: Callable[[], object], table: Any) -> None:
    """Run a maintenance step on ``table`` again when another process committed first.

    Two ingest workers on one knowledge base (object storage) both compact and index after their
    writes; LanceDB cannot merge two concurrent rewrites of the same files, so the later one fails
    with a *retryable commit conflict*. Its data was committed before, so the step is simply run
    again on the latest version, after a short randomised pause (``tests/test_s3_store.py``).
    """
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            action()
            return
        except RuntimeError as error:
            if "retryable commit conflict" not in str(error).lower() or attempt == COMMIT_ATTEMPTS - 1:
                raise
        time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
        table.checkout_latest()


def is_remote(location: Path | str) -> bool:
    """Whether ``location`` is an object-store URI (``s3://...``) rather than a folder."""
    return isinstance(location, str) and "://" in location


def connect(location: Path | str, storage_options: dict[str, str] | None = None) -> Any:
    """A LanceDB connection to a folder (created when missing) or an object-store URI.

    On S3 every commit is a conditional put of the next version's manifest: of two writers
    committing at once one wins and the other re-reads, checks for conflicts and retries, so
    concurrent ingests lose nothing (``tests/test_s3_store.py`` runs two against SeaweedFS).
    """
    if is_remote(location):
        return lancedb.connect(str(location), storage_options=storage_options or {})
    Path(location).mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(location))


MANIFEST_TABLE = "kb_manifest"


def read_manifest_record(location: Path | str, storage_options: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The knowledge-base manifest kept beside the tables of a remote knowledge base (a one-row
    table, so every replica and ingest worker reads the same one); None before the first ingest."""
    db = connect(location, storage_options)
    try:
        table = db.open_table(MANIFEST_TABLE)
    except (ValueError, FileNotFoundError):
        return None
    rows = table.search().select(["json"]).limit(1).to_list()
    return json.loads(rows[0]["json"]) if rows else None


def write_manifest_record(
    location: Path | str, record: dict[str, Any], storage_options: dict[str, str] | None = None
) -> None:
    """Replace the remote manifest in one commit (an overwrite: readers see the old or the new one)."""
    data = pa.table({"json": [json.dumps(record, ensure_ascii=False)]})
    connect(location, storage_options).create_table(MANIFEST_TABLE, data, mode="overwrite")
