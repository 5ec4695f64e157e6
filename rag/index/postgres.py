"""The PostgreSQL store: index versions in a database that several servers share (pgvector + SQL BM25).

Selected by RAG_STORE=postgresql://… (or --store). `PostgresBackend` publishes versions (schema and
SQL: postgres_sql.py) and opens the live one as a `PostgresStore` (postgres_store.py), which answers
the same protocol as the local store with the same numbers: passage and sentence cosines computed by
pgvector from the same float32 vectors, BM25 summed from the very term weights bm25s computes for
the local store (stored per term at publish time), the same stems, idf and compound vocabulary.

Publishing: `rag index` holds an advisory lock for the whole build (a second run waits, saying so),
writes the new version's schema, rows (binary COPY) and indexes, then points `rag.current` at it, all
in one transaction; the two newest versions are kept (a question in flight may read the older one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from rag.errors import ConfigError, IndexNotFoundError
from rag.index.local_store import EXACT_SEARCH_LIMIT
from rag.index.postgres_sql import (
    BUILD_LOCK,
    META,
    MIN_PGVECTOR,
    READER_ROLE,
    register_vector,
    version_indexes,
)
from rag.index.protocol import IndexContent

log = logging.getLogger(__name__)
HNSW = {"m": 16, "ef_construction": 64}  # pgvector's defaults; bench/results/postgres-scale.md
_KEEP_VERSIONS = 2


def is_postgres_url(store: str | None) -> bool:
    return bool(store) and str(store).startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise ConfigError("RAG_STORE names PostgreSQL, but psycopg is not installed: "
                          "pip install -e '.[postgres]' (scripts/setup.sh --test does).") from None  # fmt: skip
    return psycopg, psycopg_pool


class PostgresBackend:
    """Versions in the database at `url`; `seed` (a local index folder) lends vectors to a first build."""

    def __init__(self, url: str, journal_root: Path, seed=None, pool_size: int = 4):
        self.url = url
        self.seed = seed
        self._journal_root = Path(journal_root)
        self._pool_size = pool_size
        self._pool = None

    @property
    def location(self) -> str:
        return redacted(self.url)

    @property
    def journal_dir(self) -> Path:
        return self._journal_root / hashlib.sha256(self.location.encode()).hexdigest()[:12]

    # -- connections -----------------------------------------------------------------------------

    @property
    def pool(self):
        """The process' connection pool for this database, opened on first use and shared by every
        backend and request thread that talks to it."""
        if self._pool is None:
            self._pool = shared_pool(self.url, self._pool_size)
        return self._pool

    # -- the Backend protocol --------------------------------------------------------------------

    def current_version(self) -> str | None:
        """One indexed row: cheap enough to ask between every two questions."""
        psycopg, _ = _psycopg()
        try:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT version FROM rag.current").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None

    def open(self, version: str | None = None):
        from rag.index.postgres_store import PostgresStore

        psycopg, _ = _psycopg()
        try:
            with self.pool.connection() as conn:
                if version is None:
                    row = conn.execute("SELECT v.version, v.schema_name, v.manifest FROM rag.current c "
                                       "JOIN rag.versions v USING (version)").fetchone()  # fmt: skip
                else:
                    row = conn.execute("SELECT version, schema_name, manifest FROM rag.versions WHERE version = %s",
                                       (version,)).fetchone()  # fmt: skip
        except psycopg.errors.UndefinedTable:
            return None
        return None if row is None else PostgresStore.load(self.pool, row[0], row[1], row[2])

    def previous_manifest(self) -> dict | None:
        psycopg, _ = _psycopg()
        try:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT v.manifest FROM rag.current JOIN rag.versions v USING (version)").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None

    def reusable_vectors(self, fingerprint: dict) -> dict[str, np.ndarray]:
        """Vectors of the live version by content key, if built with the same model; else (a first
        build, e.g. moving an index into PostgreSQL) those of the local index folder."""
        vectors: dict[str, np.ndarray] = {}
        if self.seed is not None:
            vectors.update(self.seed.reusable_vectors(fingerprint))
        manifest = self.previous_manifest()
        if manifest is None or manifest.get("model") != fingerprint:
            return vectors
        with self.pool.connection() as conn:
            schema = conn.execute("SELECT schema_name FROM rag.current JOIN rag.versions USING (version)").fetchone()[0]
            register_vector(conn)
            for table in ("chunks", "sentences", "headings"):
                cursor = conn.cursor(binary=True)
                for key, vector in cursor.execute(f"SELECT key, vector FROM {schema}.{table}"):
                    vectors[key] = vector
        return vectors

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Held for a whole `rag index`: a second build on the same database waits, and says so."""
        psycopg, _ = _psycopg()
        with psycopg.connect(self.url, autocommit=True) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (BUILD_LOCK,)).fetchone()[0]:
                print(f"Väntar: en annan `rag index` bygger redan i {self.location} (another build holds the lock)…",
                      file=sys.stderr)  # fmt: skip
                conn.execute("SELECT pg_advisory_lock(%s)", (BUILD_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))

    def publish(self, content: IndexContent) -> str:
        """Write the version and point `rag.current` at it, in one transaction; then prune."""
        psycopg, _ = _psycopg()
        version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
        schema = "rag_" + re.sub(r"[^a-z0-9]", "_", version.lower())
        dim = int(content.chunk_vectors.shape[1])
        exact = len(content.chunks) <= EXACT_SEARCH_LIMIT * 768 // max(dim, 1)
        manifest = {**content.manifest, "version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "faiss": "exact" if exact else f"hnsw(m={HNSW['m']},ef_construction={HNSW['ef_construction']})",
                    "dim": dim}  # fmt: skip
        try:
            self._write(psycopg, content, version, schema, dim, exact, manifest)
        except psycopg.errors.InsufficientPrivilege as error:
            raise ConfigError(f"The role in {self.location} may not publish index versions ({error}). "
                              "rag index needs the writer role (docs/postgres.md).") from None  # fmt: skip
        self.prune()
        return version

    def _write(self, psycopg, content, version, schema, dim, exact, manifest) -> None:
        from rag.index.postgres_write import write_version

        with psycopg.connect(self.url) as conn:
            ensure_meta(conn)
            register_vector(conn)
            write_version(conn, schema, content, dim)
            for statement in version_indexes(schema, None if exact else HNSW):
                conn.execute(statement)
            conn.execute(f"ANALYZE {schema}.chunks; ANALYZE {schema}.sentences; ANALYZE {schema}.chunk_sentences")
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone():
                conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {READER_ROLE}; "
                             f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READER_ROLE}")  # fmt: skip
            conn.execute("INSERT INTO rag.versions (version, schema_name, manifest) VALUES (%s, %s, %s)",
                         (version, schema, json.dumps(manifest, ensure_ascii=False)))  # fmt: skip
            conn.execute("INSERT INTO rag.current (only_row, version) VALUES (true, %s) "
                         "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version", (version,))  # fmt: skip
            conn.execute("NOTIFY rag_current")

    def prune(self, keep: int = _KEEP_VERSIONS) -> list[str]:
        """Drop all but the `keep` newest versions (DROP SCHEMA waits for questions still reading one)."""
        psycopg, _ = _psycopg()
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT version, schema_name FROM rag.versions WHERE version <> "
                                "(SELECT version FROM rag.current) ORDER BY published DESC, version DESC").fetchall()  # fmt: skip
            dropped = []
            for version, schema in rows[keep - 1 :]:
                with conn.transaction():
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                    conn.execute("DELETE FROM rag.versions WHERE version = %s", (version,))
                dropped.append(version)
        return dropped

    def versions(self) -> list[str]:
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT version FROM rag.versions ORDER BY published, version")]


_POOLS: dict[str, object] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(url: str, size: int = 4):
    with _POOLS_LOCK:
        if url not in _POOLS:
            _, psycopg_pool = _psycopg()
            pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=size, open=False, configure=_configure,
                                               kwargs={"autocommit": True})  # fmt: skip
            try:
                pool.open(wait=True, timeout=15)
            except psycopg_pool.PoolTimeout as error:  # say where, never the password
                pool.close()
                raise IndexNotFoundError(f"Cannot connect to the store {redacted(url)} ({error}).") from None
            _POOLS[url] = pool
        return _POOLS[url]


def close_pools() -> None:
    with _POOLS_LOCK:
        for pool in _POOLS.values():
            pool.close()
        _POOLS.clear()


def ensure_meta(conn) -> None:
    """The extension (at least MIN_PGVECTOR) and the tables that outlive versions."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    found = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    if tuple(int(p) for p in re.findall(r"\d+", found)[:3]) < MIN_PGVECTOR:
        raise ConfigError(f"pgvector {found} is too old: {'.'.join(map(str, MIN_PGVECTOR))} or newer is needed "
                          "(ALTER EXTENSION vector UPDATE).")  # fmt: skip
    conn.execute(META)


def _configure(conn) -> None:
    """Per pooled connection: vector adapters, enough HNSW candidates for the pool, no JIT."""
    register_vector(conn)
    conn.execute("SET jit = off; SET hnsw.ef_search = 1000; SET hnsw.iterative_scan = relaxed_order")


class PostgresFeedbackLog:
    """The feedback log as a table (rag.feedback), so that every server on the database writes to one
    log; the latest record with an id wins, as in the file log. Written by the serving role, which needs
    INSERT on rag.feedback and USAGE on its sequence (docs/postgres.md)."""

    def __init__(self, url: str):
        self.url = url

    def write(self, record: dict) -> None:
        with shared_pool(self.url).connection() as conn:
            conn.execute("INSERT INTO rag.feedback (id, record) VALUES (%s, %s)",
                         (record.get("id"), json.dumps(record, ensure_ascii=False)))  # fmt: skip

    def records(self) -> list[dict]:
        """The latest record per id, oldest first."""
        with shared_pool(self.url).connection() as conn:
            rows = conn.execute("SELECT DISTINCT ON (coalesce(id, seq::text)) record FROM rag.feedback "
                                "ORDER BY coalesce(id, seq::text), seq DESC").fetchall()  # fmt: skip
        return sorted((r[0] for r in rows), key=lambda r: r.get("timestamp") or "")
