"""The postgres store's own promises, on the real server of tests/pg.py: the same signals and answers
as the local store (also through HNSW and a small candidate pool), builds on one database
serialized by the advisory lock, and a read-only role that can serve but not write."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

import rag.index.postgres
from rag.answering.extractive import extract_answer
from rag.errors import ConfigError
from rag.index import load_store, open_backend
from rag.index.build import build_index
from rag.search.retrieve import retrieve
from rag.settings import Settings
from rag.types import Filters
from tests.fakes import FakeEmbedder
from tests.pg import new_store

QUESTIONS = ["Vem är ny ekonomichef?", "Hur många Tyresöbor kom till informationsmötet om familjehem?",
             "Hur många personer deltog i företagarfrukosten?", "Vad hände i maj 2017?",
             "Vilka organisatoriska placeringar får enheterna?", "Vad är IPv6?", "Vem höll i krisövningen Henning?",
             "How many people came to the information meeting?", "försörjningsstödsenheten i Tyresö 2015"]  # fmt: skip
FILTERS = [None, Filters(date_from="2017"), Filters(date_to="2015-10"), Filters(doc_ids=("002_8f9c64b256dc6c50.txt",)),
           Filters(date_from="2014", date_to="2015", doc_ids=("000_0448039051fc396a.txt", "001_a3851816b6736ffa.txt")),
           Filters(doc_ids=("saknas.txt",))]  # fmt: skip


def _settings(tmp_path, store: str, name: str) -> Settings:
    return Settings(index_dir=tmp_path / name, cache_dir=tmp_path / "cache", store=store,
                    abstain_threshold=float("-inf"))  # fmt: skip


@pytest.fixture
def pair(tmp_path, request):
    """The reports in both stores, built from the same chunks and vectors."""
    local = _settings(tmp_path, "local", "local")
    remote = _settings(tmp_path, new_store(request, "postgres"), "unused")
    for settings in (local, remote):
        build_index(settings, FakeEmbedder(), progress=False)
    return load_store(local), load_store(remote), remote


def _top(store, question, k=10, filters=None):
    vector = FakeEmbedder().encode_queries([question])[0]
    return [(h.number, h.score) for h in retrieve(question, vector, store, k=k, filters=filters)]


def _same(a, b):
    assert [n for n, _ in a] == [n for n, _ in b]
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_the_same_signals_hits_and_answers_as_the_local_store(pair):
    local, remote, settings = pair
    for question in QUESTIONS:
        vector = FakeEmbedder().encode_queries([question])[0]
        assert remote.terms(question) == local.terms(question)
        assert remote.stems(question) == local.stems(question)
        mine, theirs = remote.signals(vector, remote.terms(question), None), local.signals(vector, local.terms(question), None)
        assert np.array_equal(mine.numbers, theirs.numbers)
        for name in ("dense", "sentence", "keyword"):
            assert np.allclose(getattr(mine, name), getattr(theirs, name), atol=1e-6), name
        assert [mine.dates[i] for i in mine.date_of] == [theirs.dates[i] for i in theirs.date_of]
        for filters in FILTERS:
            _same(_top(remote, question, 1000, filters), _top(local, question, 1000, filters))
        answers = [extract_answer(question, vector, retrieve(question, vector, s, k=10), s, settings)
                   for s in (local, remote)]  # fmt: skip
        assert answers[0].text == answers[1].text
    numbers = [3, 40, 70]
    for a, b in zip(local.passages(numbers), remote.passages(numbers)):
        assert a.chunk == b.chunk and a.heading.text == b.heading.text and a.heading.stems == b.heading.stems
        assert [(s.id, s.start, s.end, s.text, s.stems) for s in a.sentences] == [
            (s.id, s.start, s.end, s.text, s.stems) for s in b.sentences]  # fmt: skip
        assert all(np.array_equal(x.vector, y.vector) for x, y in zip(a.sentences, b.sentences))


def test_above_the_exact_limit_a_small_pool_is_each_indexs_best(tmp_path, request, monkeypatch):
    """With an HNSW version and more chunks than the pool, the pool is the union of the passage
    vectors' and BM25's best, as in the local store under HNSW: the same fused top 5 (the pools
    themselves may differ where BM25 scores tie at the pool's edge)."""
    import rag.index.local
    import rag.index.local_store
    import rag.index.postgres_store

    for module in (rag.index.postgres, rag.index.local):
        monkeypatch.setattr(module, "EXACT_SEARCH_LIMIT", 1)  # 64-d fake vectors: limit 12 chunks
    for module in (rag.index.postgres_store, rag.index.local_store):
        monkeypatch.setattr(module, "POOL_SIZE", 12)
    remote, local = _settings(tmp_path, new_store(request, "postgres"), "unused"), _settings(tmp_path, "local", "local")
    for settings in (remote, local):
        build_index(settings, FakeEmbedder(), progress=False)
    store, reference = load_store(remote), load_store(local)
    assert store.manifest["faiss"].startswith("hnsw") and reference.manifest["faiss"].startswith("hnsw")
    for question in QUESTIONS:
        vector = FakeEmbedder().encode_queries([question])[0]
        pooled = store.signals(vector, store.terms(question), None).numbers
        assert 12 <= len(pooled) < store.chunk_count
        _same(_top(store, question, 5), _top(reference, question, 5))


def test_above_the_exact_limit_the_passage_leg_is_hnsw(tmp_path, request, monkeypatch):
    monkeypatch.setattr(rag.index.postgres, "EXACT_SEARCH_LIMIT", 1)  # 64-d fake vectors: limit 12 chunks
    remote = _settings(tmp_path, new_store(request, "postgres"), "unused")
    local = _settings(tmp_path, "local", "local")
    for settings in (remote, local):
        build_index(settings, FakeEmbedder(), progress=False)
    store, reference = load_store(remote), load_store(local)
    assert store.manifest["faiss"] == "hnsw(m=16,ef_construction=64)"
    with psycopg.connect(remote.store) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE '%%hnsw%%'",
                            (store.schema,)).fetchone()[0] == 1  # fmt: skip
    for question in QUESTIONS:
        _same(_top(store, question, 5), _top(reference, question, 5))
        only = Filters(doc_ids=("004_b5550178f36bccda.txt",))  # narrow: scanned exactly, never starved
        _same(_top(store, question, 1000, only), _top(reference, question, 1000, only))


def test_vectors_are_stored_in_the_rows(pair):
    """Out-of-line (TOAST) vectors made every exact search fetch each 3 KB vector from a side table
    (bench/results/pg-signals-*.md); MAIN keeps them in the row."""
    _, remote, settings = pair
    with psycopg.connect(settings.store) as conn:
        storage = conn.execute(
            "SELECT c.relname, a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND a.attname = 'vector' "
            "ORDER BY c.relname", (remote.schema,)).fetchall()  # fmt: skip
    assert storage == [("chunks", "m"), ("headings", "m"), ("sentences", "m")]


def test_two_builds_on_one_database_are_serialized(tmp_path, request, capsys):
    settings = _settings(tmp_path, new_store(request, "postgres"), "unused").replace(data_dir=str(tmp_path.parent))
    settings = settings.replace(data_dir=request.config.rootpath / "data")
    holder = open_backend(settings)
    done = []
    with holder.building():
        worker = threading.Thread(target=lambda: done.append(build_index(settings, FakeEmbedder(), progress=False)))
        worker.start()
        time.sleep(1.5)
        assert done == [] and worker.is_alive()  # waiting for the lock
    worker.join(timeout=60)
    assert done and done[0].up_to_date is False
    assert "en annan `rag index` bygger redan" in capsys.readouterr().err


def test_a_read_only_role_serves_and_cannot_write(tmp_path, request, postgres_server):
    from rag.pipeline import Assistant

    url = new_store(request, "postgres")
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rag_reader') THEN "
                     "CREATE ROLE rag_reader NOLOGIN; CREATE ROLE rag_serve LOGIN IN ROLE rag_reader; END IF; END $$")  # fmt: skip
    writer = _settings(tmp_path, url, "unused").replace(data_dir=request.config.rootpath / "data")
    build_index(writer, FakeEmbedder(), progress=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("GRANT USAGE ON SCHEMA rag TO rag_reader; GRANT SELECT ON rag.versions, rag.current TO rag_reader")
    reader_url = url.replace("postgres@", "rag_serve@")
    reader = writer.replace(store=reader_url)
    assert Assistant(reader, embedder=FakeEmbedder()).ask("Vem är ny ekonomichef?").answered
    store = load_store(reader)
    with psycopg.connect(reader_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"DELETE FROM {store.schema}.chunks")
    with pytest.raises(ConfigError, match="writer role"):
        build_index(reader.replace(chunk_tokens=150), FakeEmbedder(), progress=False)


def test_feedback_from_several_servers_goes_to_one_table(tmp_path, request):
    from rag.index.postgres import PostgresFeedbackLog

    url = new_store(request, "postgres")
    build_index(_settings(tmp_path, url, "unused").replace(data_dir=request.config.rootpath / "data"), FakeEmbedder(),
                progress=False)  # fmt: skip
    first, second = PostgresFeedbackLog(url), PostgresFeedbackLog(url)  # two servers' logs
    first.write({"id": "a", "rating": "up", "timestamp": "2026-12-01T10:00:00"})
    second.write({"id": "b", "rating": "down", "timestamp": "2026-12-01T10:00:01"})
    second.write({"id": "a", "rating": "down", "comment": "fel rapport", "timestamp": "2026-12-01T10:00:02"})
    assert [(r["id"], r["rating"]) for r in first.records()] == [("b", "down"), ("a", "down")]
    from rag.web.feedback import open_feedback_log

    log = open_feedback_log(_settings(tmp_path, url, "unused"))  # a server on the postgres store: the table
    assert isinstance(log, PostgresFeedbackLog)
    log.write({"id": "c", "rating": "up", "timestamp": "2026-12-01T10:00:03"})
    assert [r["id"] for r in second.records()] == ["b", "a", "c"]
