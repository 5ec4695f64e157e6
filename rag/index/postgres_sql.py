"""The PostgreSQL store's schema, its SQL, and the binary adapter for pgvector's `vector` type.

One schema `rag` holds what outlives a version: `versions` (each published version's manifest),
`current` (one row: the live version; publishing is one UPDATE of it) and `feedback`. Every version
lives in a schema of its own (`rag_v_<stamp>_<hex>`), with fixed-width vector columns so pgvector's
HNSW index applies; a build creates that schema, fills and indexes it, and points `current` at it in
one transaction, so a reader never sees half a version and a killed build leaves nothing behind.
Pruning an old version is one DROP SCHEMA. Chunk and sentence numbers are the local store's
positions, so a Hit means the same chunk in both stores.
"""

from __future__ import annotations

import hashlib
import struct
import weakref

import numpy as np

MIN_PGVECTOR = (0, 8, 0)  # hnsw.iterative_scan (filtered HNSW search) came with 0.8.0
# One number for `rag index` runs on the same database: pg_advisory_lock serializes them.
BUILD_LOCK = int.from_bytes(hashlib.sha256(b"tyreso-rag index build").digest()[:8], "big", signed=True)
READER_ROLE = "rag_reader"  # granted SELECT on every version published (docs/postgres.md)

META = """
CREATE SCHEMA IF NOT EXISTS rag;
CREATE TABLE IF NOT EXISTS rag.versions (
    version text PRIMARY KEY, schema_name text NOT NULL, manifest jsonb NOT NULL,
    published timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS rag.current (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version text NOT NULL REFERENCES rag.versions (version));
CREATE TABLE IF NOT EXISTS rag.feedback (
    seq bigserial PRIMARY KEY, id text, recorded timestamptz NOT NULL DEFAULT now(), record jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_id ON rag.feedback (id);
"""


def version_tables(schema: str, dim: int) -> str:
    """The tables of one version (no secondary indexes yet: those come after the COPY)."""
    return f"""
CREATE SCHEMA {schema};
CREATE TABLE {schema}.documents (
    code int PRIMARY KEY, doc_id text NOT NULL, title text NOT NULL, date text, diarienummer text,
    sha256 text NOT NULL, sections jsonb NOT NULL, signed_by jsonb, date_code int NOT NULL, chunks int NOT NULL,
    text text NOT NULL);
CREATE TABLE {schema}.chunks (
    number int PRIMARY KEY, doc_code int NOT NULL, date_code int NOT NULL, fields jsonb NOT NULL,
    sentence_ids int[] NOT NULL, heading_id int, key text NOT NULL, vector vector({dim}) NOT NULL);
CREATE TABLE {schema}.sentences (
    id int PRIMARY KEY, doc_code int NOT NULL, start_offset int NOT NULL, end_offset int NOT NULL,
    text text NOT NULL, stems text[] NOT NULL, key text NOT NULL, vector vector({dim}) NOT NULL);
CREATE TABLE {schema}.chunk_sentences (number int NOT NULL, sentence_id int NOT NULL);
CREATE TABLE {schema}.headings (
    id int PRIMARY KEY, doc_code int NOT NULL, start_offset int NOT NULL, end_offset int NOT NULL,
    text text NOT NULL, stems text[] NOT NULL, key text NOT NULL, vector vector({dim}) NOT NULL);
CREATE TABLE {schema}.terms (term text PRIMARY KEY, idf float8 NOT NULL);
CREATE TABLE {schema}.vocabulary (stem text PRIMARY KEY);
CREATE TABLE {schema}.postings (term text PRIMARY KEY, numbers int[] NOT NULL, weights real[] NOT NULL);
CREATE TABLE {schema}.dates (code int PRIMARY KEY, date text);
""" + "".join(f"ALTER TABLE {schema}.{table} ALTER COLUMN vector SET STORAGE MAIN;\n"
              for table in ("chunks", "sentences", "headings"))


def version_indexes(schema: str, hnsw: dict | None) -> list[str]:
    """Secondary indexes, built after the data is in (faster than row by row)."""
    out = [f"CREATE INDEX ON {schema}.chunks (doc_code)",
           f"CREATE INDEX ON {schema}.sentences (doc_code)",
           f"CREATE INDEX ON {schema}.chunk_sentences (number) INCLUDE (sentence_id)",
           f"CREATE INDEX ON {schema}.chunk_sentences (sentence_id) INCLUDE (number)"]  # fmt: skip
    if hnsw:
        out.append(f"CREATE INDEX ON {schema}.chunks USING hnsw (vector vector_ip_ops) "
                   f"WITH (m = {hnsw['m']}, ef_construction = {hnsw['ef_construction']})")  # fmt: skip
    return out


def signals_sql(schema: str, filtered: bool, everything: bool) -> str:
    """One round trip for the signals of the candidate pool, in chunk order.

    Parameters: %(q)s the question vector, %(terms)s its stems, %(docs)s the allowed document codes
    (when filtered), %(pool)s the pool size. The pool is every allowed chunk (`everything`: exact
    search, as in the local store), else the union of the best `pool` chunks by passage vector
    (pgvector's HNSW index) and by BM25. Cosines are inner products of unit vectors (`<#>` is the
    negative inner product)."""
    where = "WHERE doc_code = ANY(%(docs)s)" if filtered else ""
    keyword = f"""keyword AS MATERIALIZED (
        SELECT u.number, sum(u.weight) AS bm25
        FROM {schema}.postings p CROSS JOIN LATERAL unnest(p.numbers, p.weights) AS u(number, weight)
        WHERE p.term = ANY(%(terms)s) GROUP BY u.number)"""
    if everything:
        return _every_chunk(schema, where, keyword)
    allowed_kw = (f"JOIN {schema}.chunks c USING (number) WHERE c.doc_code = ANY(%(docs)s)" if filtered else "")
    legs = [f"(SELECT number FROM {schema}.chunks {where} ORDER BY vector <#> %(q)s LIMIT %(pool)s)",
            f"(SELECT k.number FROM keyword k {allowed_kw} ORDER BY k.bm25 DESC LIMIT %(pool)s)"]  # fmt: skip
    pool = "pool AS (" + " UNION ".join(f"SELECT number FROM {leg} AS leg{i}" for i, leg in enumerate(legs)) + ")"
    return f"""WITH {keyword}, {pool},
    best AS (SELECT cs.number, max(-(s.vector <#> %(q)s)) AS sentence
             FROM pool JOIN {schema}.chunk_sentences cs USING (number)
             JOIN {schema}.sentences s ON s.id = cs.sentence_id GROUP BY cs.number)
    SELECT c.number, -(c.vector <#> %(q)s) AS dense, coalesce(b.sentence, -1) AS sentence,
           coalesce(k.bm25, 0)::real AS keyword, c.date_code
    FROM pool JOIN {schema}.chunks c USING (number) LEFT JOIN best b USING (number)
    LEFT JOIN keyword k USING (number) ORDER BY c.number"""


def _every_chunk(schema: str, where: str, keyword: str) -> str:
    """Every allowed chunk scored, each vector read once: the cosines are taken in the scans
    (MATERIALIZED keeps the planner from carrying 3 KB vectors into hash joins, which spilled to
    disk and tripled the cost: bench/results/pg-signals-*.md)."""
    return f"""WITH {keyword},
    dense AS MATERIALIZED (SELECT number, -(vector <#> %(q)s) AS dense, date_code FROM {schema}.chunks {where}),
    sims AS MATERIALIZED (SELECT id, -(vector <#> %(q)s) AS sim FROM {schema}.sentences {where}),
    best AS (SELECT cs.number, max(sims.sim) AS sentence
             FROM sims JOIN {schema}.chunk_sentences cs ON cs.sentence_id = sims.id GROUP BY cs.number)
    SELECT d.number, d.dense, coalesce(b.sentence, -1) AS sentence, coalesce(k.bm25, 0)::real AS keyword, d.date_code
    FROM dense d LEFT JOIN best b USING (number) LEFT JOIN keyword k USING (number) ORDER BY d.number"""


# -- pgvector's binary wire format: int16 dim, int16 unused, dim float4 (big-endian) ------------


class PgVector:
    """A numpy vector to send as pgvector's `vector` (psycopg picks the dumper by this class)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def vector_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HH", len(array), 0) + np.asarray(array, dtype=">f4").tobytes()


_REGISTERED: weakref.WeakSet = weakref.WeakSet()


def register_vector(conn) -> None:
    """Teach one connection pgvector's binary format (both ways), once; a no-op before CREATE EXTENSION
    (the store calls it again before reading vectors: a pooled connection may predate the extension)."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format

    if conn in _REGISTERED:
        return
    row = conn.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
    if row is None:
        return
    _REGISTERED.add(conn)

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = row[0]

        def dump(self, obj):
            return vector_bytes(obj.array if isinstance(obj, PgVector) else obj)

    class VectorLoader(Loader):
        format = Format.BINARY

        def load(self, data):
            return np.frombuffer(bytes(data)[4:], dtype=">f4").astype(np.float32)

    from psycopg.types import TypeInfo

    TypeInfo.fetch(conn, "vector").register(conn)  # so COPY's set_types knows the name
    conn.adapters.register_dumper(PgVector, VectorDumper)
    conn.adapters.register_dumper(np.ndarray, VectorDumper)  # COPY rows and query vectors
    conn.adapters.register_loader(row[0], VectorLoader)
