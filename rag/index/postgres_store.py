"""One published version in PostgreSQL, read-only: the same `Store` protocol as the local store.

What a process keeps in memory is small and per document (titles, dates, chunk counts, filters are
resolved against it); vectors, texts, postings and the vocabulary stay in the database. `signals` is
one SQL round trip (postgres_sql.signals_sql). The pool mirrors the local store's: under exact search
(a version, or a filter's chunks, within the exact-search limit) or when at most `pool_size` chunks
are allowed, every allowed chunk; else the union of the best `pool_size` by passage vector (pgvector's
HNSW index) and by BM25. Chunks, passages and question terms are cached per version (versions never change).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.index.lexical import _MIN_COMPOUND, _MIN_PART, stem, stems, words
from rag.index.local_store import EXACT_SEARCH_LIMIT, date_within
from rag.index.postgres_sql import PgVector, register_vector, signals_sql
from rag.index.protocol import POOL_SIZE, DocumentInfo, Passage, QueryTerms, SentenceRecord, Signals
from rag.types import Chunk, Filters, Signature

_CACHE = 20_000  # chunks, passages and questions kept per loaded version


@dataclass(slots=True)
class PostgresStore:
    pool: object  # psycopg_pool.ConnectionPool
    version_name: str
    schema: str
    manifest_row: dict
    infos: dict[str, DocumentInfo]
    doc_codes: dict[str, int]
    doc_dates: list[str | None]  # per document code, its date
    doc_chunks: np.ndarray  # per document code, its chunk count
    dates: tuple[str | None, ...]
    _cache: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, pool, version: str, schema: str, manifest: dict) -> PostgresStore:
        with pool.connection() as conn:
            docs = conn.execute(f"SELECT code, doc_id, title, date, diarienummer, sections, signed_by, chunks "
                                f"FROM {schema}.documents ORDER BY code").fetchall()  # fmt: skip
            dates = conn.execute(f"SELECT date FROM {schema}.dates ORDER BY code").fetchall()
        infos = {d[1]: DocumentInfo(d[1], d[2], d[3], d[4], tuple(d[5]), Signature(**d[6]) if d[6] else None)
                 for d in docs}  # fmt: skip
        return cls(pool, version, schema, manifest, infos, {d[1]: d[0] for d in docs}, [d[3] for d in docs],
                   np.array([d[7] for d in docs], dtype=np.int64), tuple(r[0] for r in dates))  # fmt: skip

    # -- the Store protocol --------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self.version_name

    @property
    def manifest(self) -> Mapping:
        return self.manifest_row

    @property
    def chunk_count(self) -> int:
        return int(self.doc_chunks.sum())

    @property
    def exact(self) -> bool:
        return self.manifest_row.get("faiss") == "exact"

    def documents(self) -> Mapping[str, DocumentInfo]:
        return self.infos

    def terms(self, question: str) -> QueryTerms:
        cached = self._get("terms", question)
        if cached is None:
            known, idf = self._lookup(question, with_idf=True)
            tokens = [t for t in dict.fromkeys(stems(question, known)) if t in idf]
            cached = self._put("terms", question, QueryTerms(tuple(tokens), {t: idf[t] for t in tokens},
                                                             float(sum(idf[t] for t in tokens))))  # fmt: skip
        return cached

    def stems(self, text: str) -> list[str]:
        """lexical.stems with the version's vocabulary: only the strings a compound split could test
        are looked up, so the result is the one the whole vocabulary would give."""
        known, _ = self._lookup(text, with_idf=False)
        return stems(text, known)

    def _lookup(self, text: str, with_idf: bool) -> tuple[frozenset[str], dict[str, float]]:
        """In one round trip: which compound-split candidates of `text` are in the vocabulary, and
        (with_idf) the idf of every stem the text could yield."""
        candidates = sorted({c for w in words(text) if len(w) >= _MIN_COMPOUND for c in _split_candidates(w)})
        if not candidates and not with_idf:
            return frozenset(), {}
        sql = f"SELECT stem, NULL::float8 FROM {self.schema}.vocabulary WHERE stem = ANY(%(c)s)"
        if with_idf:
            sql += f" UNION ALL SELECT term, idf FROM {self.schema}.terms WHERE term = ANY(%(t)s)"
        with self.pool.connection() as conn:
            rows = conn.execute(sql, {"c": candidates, "t": sorted(set(stems(text)) | set(candidates))}).fetchall()
        return frozenset(r[0] for r in rows if r[1] is None), {r[0]: r[1] for r in rows if r[1] is not None}

    def signals(self, query_vector: np.ndarray, terms: QueryTerms, filters: Filters | None,
                pool_size: int | None = None) -> Signals:  # fmt: skip
        pool_size = pool_size or POOL_SIZE
        docs = self._allowed_docs(filters)
        allowed = self.chunk_count if docs is None else int(self.doc_chunks[docs].sum()) if len(docs) else 0
        if allowed == 0:
            return _empty(self.dates)
        # A narrow filter on a large version is scored exactly too: no graph search can starve it.
        exact = self.exact or (docs is not None and allowed <= EXACT_SEARCH_LIMIT)
        sql = signals_sql(self.schema, docs is not None, exact or allowed <= pool_size)
        params = {"q": PgVector(np.asarray(query_vector, dtype=np.float32)), "terms": list(terms.tokens),
                  "docs": [int(d) for d in docs] if docs is not None else None, "pool": pool_size}  # fmt: skip
        with self.pool.connection() as conn:
            register_vector(conn)
            rows = conn.execute(sql, params).fetchall()
        if not rows:
            return _empty(self.dates)
        columns = np.array(rows, dtype=np.float64).T
        return Signals(numbers=columns[0].astype(np.int64), dense=columns[1].astype(np.float32),
                       sentence=columns[2].astype(np.float32), keyword=columns[3].astype(np.float32),
                       date_of=columns[4].astype(np.int64), dates=self.dates)  # fmt: skip

    def chunks(self, numbers: Sequence[int]) -> list[Chunk]:
        return self._passages(numbers, with_sentences=False)

    def passages(self, numbers: Sequence[int]) -> list[Passage]:
        return self._passages(numbers, with_sentences=True)

    def document_text(self, doc_id: str) -> str:
        if doc_id not in self.doc_codes:
            return ""
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT text FROM {self.schema}.documents WHERE code = %s",
                               (self.doc_codes[doc_id],)).fetchone()  # fmt: skip
        return row[0] if row else ""

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        if doc_id not in self.doc_codes:
            return []
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT fields FROM {self.schema}.chunks WHERE doc_code = %s ORDER BY number",
                                (self.doc_codes[doc_id],)).fetchall()  # fmt: skip
        return sorted((_chunk(r[0]) for r in rows), key=lambda c: c.start)

    # -- machinery -----------------------------------------------------------------------------

    def _allowed_docs(self, filters: Filters | None) -> np.ndarray | None:
        """Document codes the filters let through (None: no filter). A chunk's date is its report's."""
        if filters is None or not (filters.doc_ids or filters.date_from or filters.date_to):
            return None
        keep = np.ones(len(self.doc_dates), dtype=bool)
        if filters.doc_ids:
            wanted = {self.doc_codes[d] for d in filters.doc_ids if d in self.doc_codes}
            keep &= np.isin(np.arange(len(keep)), list(wanted))
        if filters.date_from or filters.date_to:
            keep &= np.fromiter((date_within(d, filters) for d in self.doc_dates), bool, len(keep))
        return np.flatnonzero(keep)

    def _passages(self, numbers: Sequence[int], with_sentences: bool) -> list:
        numbers = [int(n) for n in numbers]
        kind = "passage" if with_sentences else "chunk"
        missing = [n for n in dict.fromkeys(numbers) if self._get(kind, n) is None]
        if missing:
            for number, value in self._fetch(missing, with_sentences).items():
                self._put(kind, number, value)
        return [self._get(kind, n) for n in numbers]

    def _fetch(self, numbers: list[int], with_sentences: bool) -> dict[int, object]:
        s = self.schema
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT number, fields, sentence_ids, heading_id FROM {s}.chunks "
                                "WHERE number = ANY(%s)", (numbers,)).fetchall()  # fmt: skip
            chunks = {r[0]: _chunk(r[1]) for r in rows}
            if not with_sentences:
                return chunks
            register_vector(conn)
            cursor = conn.cursor(binary=True)
            records = {}
            for table, kind, ids in (("sentences", "sentence", [i for r in rows for i in r[2]]),
                                     ("headings", "heading", [r[3] for r in rows if r[3] is not None])):  # fmt: skip
                cursor.execute(f"SELECT id, start_offset, end_offset, text, stems, vector FROM {s}.{table} "
                               "WHERE id = ANY(%s)", (sorted(set(ids)),))  # fmt: skip
                records[kind] = {r[0]: SentenceRecord(r[0], r[1], r[2], r[3], frozenset(r[4]), r[5], kind=kind)
                                 for r in cursor.fetchall()}  # fmt: skip
        return {r[0]: Passage(chunks[r[0]], tuple(records["sentence"][i] for i in r[2]),
                              records["heading"].get(r[3]) if r[3] is not None else None) for r in rows}  # fmt: skip

    def _get(self, kind: str, key):
        with self._lock:
            cache = self._cache.get(kind)
            if cache is None or key not in cache:
                return None
            cache.move_to_end(key)
            return cache[key]

    def _put(self, kind: str, key, value):
        with self._lock:
            cache = self._cache.setdefault(kind, OrderedDict())
            cache[key] = value
            if len(cache) > _CACHE:
                cache.popitem(last=False)
        return value


def _chunk(fields: dict) -> Chunk:
    heading = tuple(fields["heading"]) if fields.get("heading") else None
    return Chunk(**{**fields, "sentences": tuple(tuple(s) for s in fields["sentences"]), "heading": heading})


def _empty(dates) -> Signals:
    nothing = np.zeros(0, dtype=np.float32)
    return Signals(np.zeros(0, dtype=np.int64), nothing, nothing, nothing, np.zeros(0, dtype=np.int64), tuple(dates))


def _split_candidates(word: str, depth: int = 2) -> set[str]:
    """Every stem lexical._compound_parts may test for `word`: its tails, heads (with and without a
    linking s) and, one level down, their own splits."""
    out: set[str] = set()
    for cut in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
        head, tail = word[:cut], word[cut:]
        out.add(stem(tail))
        for candidate in (head, head[:-1] if head.endswith("s") else None):
            if candidate and len(candidate) >= _MIN_PART:
                out.add(stem(candidate))
                if depth > 1:
                    out |= _split_candidates(candidate, depth - 1)
    return out
