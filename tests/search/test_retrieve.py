"""rag/search/retrieve.py over the local store: vectorized filters and date matching give what the
per-chunk loops gave, and a large (HNSW) index scores only its candidate pool, each exactly."""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from rag.index import load_store, local, local_store
from rag.index.build import build_index
from rag.search.retrieve import _date_matches, date_matches, question_dates, retrieve
from rag.types import Filters

QUESTION = "Hur många chefer samlas till chefsforum?"


def _loop_allowed(store, filters):
    mask = np.ones(store.chunk_count, dtype=bool)
    if filters is None:
        return mask
    for i, chunk in enumerate(store.chunk_list):
        if filters.doc_ids and chunk.doc_id not in filters.doc_ids or (filters.date_from or filters.date_to) and not local_store.date_within(chunk.date, filters):
            mask[i] = False
    return mask


def _loop_date_matches(question, store, numbers):
    years, months = question_dates(question)
    out = np.zeros(len(numbers))
    if years or months:
        for i, n in enumerate(numbers):
            chunk = store.chunk_list[n]
            if chunk.date and _date_matches(chunk.date, years, months):
                out[i] = 1.0
    return out


def test_vectorized_filters_and_dates_match_the_loops(settings, fake_embedder):
    build_index(settings, fake_embedder, progress=False)
    store = load_store(settings)
    docs = sorted({c.doc_id for c in store.chunk_list})
    vector = fake_embedder.encode_queries([QUESTION])[0]
    rng = random.Random(0)
    for _ in range(100):
        filters = rng.choice([None, Filters(
            date_from=rng.choice([None, "2014", "2015-10", "2017-05-31"]),
            date_to=rng.choice([None, "2015", "2017-05", "2018-01-01"]),
            doc_ids=tuple(rng.sample(docs, rng.randint(0, 2))))])  # fmt: skip
        allowed = store._allowed(filters)
        assert np.array_equal(allowed, _loop_allowed(store, filters))
        signals = store.signals(vector, store.terms(QUESTION), filters)
        assert np.array_equal(signals.numbers, np.flatnonzero(allowed))
        for question in ("Vad hände i maj 2017?", "Hur många var de 2014?", "in May 2017", "Vem leder?"):
            assert np.array_equal(date_matches(question, signals), _loop_date_matches(question, store, signals.numbers))


def test_index_type_follows_corpus_size(settings, fake_embedder, monkeypatch):
    """Exact (flat) below EXACT_SEARCH_LIMIT, HNSW above; recorded in the manifest."""
    report = build_index(settings, fake_embedder, progress=False)
    exact = load_store(settings)
    assert exact.manifest["faiss"] == "flat"
    vector = fake_embedder.encode_queries([QUESTION])[0]
    expected = [h.chunk.id for h in retrieve(QUESTION, vector, exact, k=5)]
    monkeypatch.setattr(local, "EXACT_SEARCH_LIMIT", 1)  # 64-d fake vectors: limit 12 chunks
    assert local._write_faiss(exact.path, exact.chunk_vectors) == "hnsw32"
    approximate = _as_hnsw(exact)
    assert report.chunks > 12
    assert approximate.faiss.__class__.__name__.startswith("IndexHNSW")
    assert [h.chunk.id for h in retrieve(QUESTION, vector, approximate, k=5)] == expected


def _as_hnsw(exact):
    """The same version as if it were large: HNSW in the manifest (its faiss.index written by the caller)."""
    return dataclasses.replace(exact, manifest={**exact.manifest, "faiss": "hnsw32"}, _faiss=None, _lexical=None,
                               _memo={})  # fmt: skip


def test_approximate_index_scores_only_the_candidate_union(settings, fake_embedder, monkeypatch):
    """Above the exact-search limit only FAISS's and BM25's candidates are scored, each exactly as
    under exact search; a filter that leaves few chunks adds them all, so it is never starved."""
    build_index(settings, fake_embedder, progress=False)
    exact = load_store(settings)
    monkeypatch.setattr(local, "EXACT_SEARCH_LIMIT", 1)
    local._write_faiss(exact.path, exact.chunk_vectors)
    approximate = _as_hnsw(exact)
    monkeypatch.setattr(local_store, "POOL_SIZE", 3)
    vector = fake_embedder.encode_queries([QUESTION])[0]
    lexical = exact.lexical.scores(QUESTION)
    union = set(np.argsort(-(exact.chunk_vectors @ vector))[:3]) | set(np.argsort(-lexical)[:3])
    everything = {h.number: h.score for h in retrieve(QUESTION, vector, exact, k=1000)}
    hits = retrieve(QUESTION, vector, approximate, k=1000)
    assert 3 <= len(hits) <= 6 < len(everything)
    assert {h.number for h in hits} <= union  # HNSW on 12+ chunks finds the true top 3
    assert all(np.isclose(h.score, everything[h.number]) for h in hits)
    outside = next(c for n, c in enumerate(exact.chunk_list) if n not in union)
    only = Filters(doc_ids=(outside.doc_id,))
    filtered = retrieve(QUESTION, vector, approximate, k=1000, filters=only)
    assert filtered and {h.chunk.doc_id for h in filtered} == {outside.doc_id}
    assert outside.id in {h.chunk.id for h in filtered}


def test_both_stores_give_the_allowed_chunks_and_the_same_ranking(settings, fake_embedder, store):
    """Through the protocol alone, for each store: the signals hold exactly the chunks the filters
    allow, and the ranking is the local store's."""
    local = load_store(settings) if build_index(settings, fake_embedder, progress=False) else None
    other = settings.replace(store=store)
    build_index(other, fake_embedder, progress=False)
    tested = load_store(other)
    chunks = tested.chunks(range(tested.chunk_count))
    docs = sorted({c.doc_id for c in chunks})
    vector = fake_embedder.encode_queries([QUESTION])[0]
    rng = random.Random(1)
    for _ in range(30):
        filters = rng.choice([None, Filters(
            date_from=rng.choice([None, "2014", "2015-10", "2017-05-31"]),
            date_to=rng.choice([None, "2015", "2017-05", "2018-01-01"]),
            doc_ids=tuple(rng.sample(docs, rng.randint(0, 2))))])  # fmt: skip
        expected = [n for n, c in enumerate(chunks) if filters is None or (
            (not filters.doc_ids or c.doc_id in filters.doc_ids)
            and (not (filters.date_from or filters.date_to) or local_store.date_within(c.date, filters)))]  # fmt: skip
        signals = tested.signals(vector, tested.terms(QUESTION), filters)
        assert signals.numbers.tolist() == expected
        assert [h.number for h in retrieve(QUESTION, vector, tested, k=10, filters=filters)] == [
            h.number for h in retrieve(QUESTION, vector, local, k=10, filters=filters)]  # fmt: skip
