"""rag/quantize.py: the fast query encoders, and the vectorized retrieval helpers that keep `ask` fast
at scale. Fast tests use tiny torch modules and the fake embedder; the real model is @slow."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.quantize import QUERY_BACKENDS, check_backend, quantize_int8, query_encoder
from rag.settings import Settings

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent


class TinyEncoder(torch.nn.Module):
    """Stands in for a SentenceTransformer: an embedding table, two Linear layers, encode_query()."""

    prompts = {"query": "task: search result | query: "}

    def __init__(self, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(64, dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.hidden = torch.nn.Linear(dim, 4 * dim)
        self.out = torch.nn.Linear(4 * dim, dim)
        self.calls = 0

    def forward(self, ids):
        return self.out(torch.relu(self.hidden(self.norm(self.embed(ids)).mean(0, keepdim=True))))[0]

    def encode_query(self, texts, normalize_embeddings=True, convert_to_numpy=True):
        self.calls += 1
        with torch.inference_mode():
            rows = [self(torch.tensor([ord(ch) % 64 for ch in text] or [0])) for text in texts]
        vectors = torch.nn.functional.normalize(torch.stack(rows), dim=-1)
        return vectors.numpy()


def test_backends_are_checked():
    assert set(QUERY_BACKENDS) >= {"fp32", "int8"}
    assert check_backend("int8") == "int8"
    with pytest.raises(ConfigError):
        check_backend("fp8")


def test_settings_default_backend_is_known():
    assert Settings().query_backend in QUERY_BACKENDS
    assert Settings.from_env({"RAG_QUERY_BACKEND": "fp32"}).query_backend == "fp32"


def test_int8_replaces_linear_layers_and_shares_the_rest():
    model = TinyEncoder()
    quantized = quantize_int8(model)
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())
    assert type(model.hidden) is torch.nn.Linear  # the original is untouched
    # embedding table and norm are the same tensors, not copies
    assert quantized.embed.weight.data_ptr() == model.embed.weight.data_ptr()
    assert quantized.norm.weight.data_ptr() == model.norm.weight.data_ptr()


def test_int8_vectors_stay_close_to_fp32():
    model = TinyEncoder()
    texts = ["Hur många bor i Tyresö?", "Vad kostar bygget?", "När öppnar skolan?"]
    exact = model.encode_query(texts)
    fast = quantize_int8(model).encode_query(texts)
    assert fast.shape == exact.shape
    assert np.all(np.sum(exact * fast, axis=1) > 0.99)


def test_query_encoder_picks_the_backend():
    model = TinyEncoder()
    encode, used = query_encoder(Settings(query_backend="fp32"), lambda: model)
    assert used == "fp32"
    vectors = encode(["en fråga"])
    assert vectors.dtype == np.float32 and vectors.shape == (1, 16)
    assert model.calls == 1  # fp32 calls the model itself
    encode, used = query_encoder(Settings(query_backend="int8"), lambda: model)
    assert used == "int8"
    encode(["en fråga"])
    assert model.calls == 1  # int8 calls its quantized copy, not the original


def test_onnx_backend_without_export_falls_back_to_fp32(tmp_path):
    folder = tmp_path / "some-model"
    folder.mkdir()
    settings = Settings(model=str(folder), cache_dir=tmp_path, query_backend="onnx-int8")
    model = TinyEncoder()
    encode, used = query_encoder(settings, lambda: model)
    assert used == "fp32"
    encode(["en fråga"])
    assert model.calls == 1  # the plain model, as before the export


def test_embedder_uses_the_selected_backend():
    from rag.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(Settings(query_backend="int8"))
    embedder._model = TinyEncoder()  # no real model in fast tests
    first = embedder.encode_queries(["Hur många bor i Tyresö?"])
    assert embedder.query_backend == "int8"
    assert first.shape == (1, 16)
    again = embedder.encode_queries(["Hur många bor i Tyresö?"])  # from the LRU cache
    assert np.array_equal(first, again)
    assert embedder._model.calls == 0  # the fp32 model never ran a query


# -- retrieval helpers vectorized for scale: same answers as the per-chunk loops they replaced ----


def _loop_allowed(index, filters):
    from rag.retrieve import _date_within

    mask = np.ones(len(index.chunks), dtype=bool)
    if filters is None:
        return mask
    for i, chunk in enumerate(index.chunks):
        if filters.doc_ids and chunk.doc_id not in filters.doc_ids:
            mask[i] = False
        elif (filters.date_from or filters.date_to) and not _date_within(chunk.date, filters):
            mask[i] = False
    return mask


def _loop_date_matches(question, index, allowed):
    from rag.retrieve import _date_matches, question_dates

    years, months = question_dates(question)
    out = np.zeros(len(index.chunks))
    if years or months:
        for i, chunk in enumerate(index.chunks):
            if allowed[i] and chunk.date and _date_matches(chunk.date, years, months):
                out[i] = 1.0
    return out


def test_vectorized_filters_match_the_loops(settings, fake_embedder):
    import rag.retrieve as R
    from rag.index import build_index, load_index

    build_index(settings, fake_embedder, progress=False)
    index = load_index(settings)
    docs = sorted({c.doc_id for c in index.chunks})
    rng = random.Random(0)
    for _ in range(100):
        filters = rng.choice([None, R.Filters(
            date_from=rng.choice([None, "2014", "2015-10", "2017-05-31"]),
            date_to=rng.choice([None, "2015", "2017-05", "2018-01-01"]),
            doc_ids=tuple(rng.sample(docs, rng.randint(0, 2))))])  # fmt: skip
        allowed = R._allowed(index, filters)
        assert np.array_equal(allowed, _loop_allowed(index, filters))
        date_fn = getattr(R, "_date_matches_question", None)
        if date_fn is None:
            continue
        for question in ("Vad hände i maj 2017?", "Hur många var de 2014?", "in May 2017", "Vem leder?"):
            assert np.array_equal(date_fn(question, index, allowed), _loop_date_matches(question, index, allowed))


# -- the real model ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="torch dynamic int8 drifts to cosine 0.94-0.96 against fp32 on these "
                   "questions (measured); it is not the default (onnx-int8 is)")
def test_real_model_int8_queries_match_fp32():
    from rag.embed import SentenceTransformerEmbedder

    questions = ["Hur många chefer samlas till kommunens chefsforum?", "Vad är ett visum?",
                 "När ska du ta med ditt pass?", "How many residents came to the meeting?"]  # fmt: skip
    exact = SentenceTransformerEmbedder(Settings(query_backend="fp32"))
    fast = SentenceTransformerEmbedder(Settings(query_backend="int8"))
    fast._model = exact.model  # one copy of the weights
    a, b = exact.encode_queries(questions), fast.encode_queries(questions)
    assert fast.query_backend == "int8"
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert np.all(np.sum(a * b, axis=1) > 0.98)


@pytest.mark.slow
def test_real_model_default_onnx_int8_queries_match_fp32():
    """The default backend is in effect (scripts/setup.sh exported it) and stays close to fp32.
    Measured on these 40 eval questions: cosine min 0.964, mean 0.985 (over all 196: min 0.944,
    mean 0.985); retrieval quality is guarded end to end by the eval run in scripts/test.sh."""
    import json

    from rag.embed import SentenceTransformerEmbedder

    rows = (json.loads(line) for line in (ROOT / "eval" / "questions.jsonl").read_text().splitlines())
    questions = [row["question"] for row in rows][:40]
    exact = SentenceTransformerEmbedder(Settings(query_backend="fp32"))
    fast = SentenceTransformerEmbedder(Settings())
    a, b = exact.encode_queries(questions), fast.encode_queries(questions)
    assert fast.query_backend == "onnx-int8", "run `python -m rag.quantize export` (scripts/setup.sh does)"
    cosines = np.sum(a * b, axis=1)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98


def test_index_type_follows_corpus_size(settings, fake_embedder, monkeypatch):
    """Exact (flat) below rag.index.EXACT_SEARCH_LIMIT, HNSW above; recorded in the manifest."""
    import rag.index as I
    from rag.retrieve import retrieve

    build_report = I.build_index(settings, fake_embedder, progress=False)
    exact = I.load_index(settings)
    assert exact.manifest["faiss"] == "flat"
    question = "Hur många chefer samlas till chefsforum?"
    vector = fake_embedder.encode_queries([question])[0]
    expected = [h.chunk.id for h in retrieve(question, vector, exact, k=5)]
    monkeypatch.setattr(I, "EXACT_SEARCH_LIMIT", 1)  # 64-d fake vectors: limit 12 chunks
    I._write_faiss(exact.path, exact.chunk_vectors)
    approximate = _as_hnsw(exact)
    assert build_report.chunks > 12
    assert approximate.faiss.__class__.__name__.startswith("IndexHNSW")
    assert [h.chunk.id for h in retrieve(question, vector, approximate, k=5)] == expected


def _as_hnsw(exact):
    """The same index as if it were large: HNSW in the manifest (written by the caller)."""
    import rag.index as I

    fields = ("path", "chunks", "chunk_vectors", "sentences", "sentence_vectors", "chunk_sentence_ids", "documents")
    return I.Index(**{f: getattr(exact, f) for f in fields}, manifest={**exact.manifest, "faiss": "hnsw32"})


def test_approximate_index_scores_only_the_candidate_union(settings, fake_embedder, monkeypatch):
    """Above the exact-search limit only FAISS's and BM25's candidates are scored, each exactly as
    under exact search; a filter that leaves few chunks adds them all, so it is never starved."""
    import rag.index as I
    import rag.retrieve as R

    I.build_index(settings, fake_embedder, progress=False)
    exact = I.load_index(settings)
    monkeypatch.setattr(I, "EXACT_SEARCH_LIMIT", 1)
    I._write_faiss(exact.path, exact.chunk_vectors)
    approximate = _as_hnsw(exact)
    monkeypatch.setattr(R, "_CANDIDATES", 3)
    question = "Hur många chefer samlas till chefsforum?"
    vector = fake_embedder.encode_queries([question])[0]
    lexical = exact.lexical.scores(question)
    union = set(np.argsort(-(exact.chunk_vectors @ vector))[:3]) | set(np.argsort(-lexical)[:3])
    everything = {h.number: h.score for h in R.retrieve(question, vector, exact, k=1000)}
    hits = R.retrieve(question, vector, approximate, k=1000)
    assert 3 <= len(hits) <= 6 < len(everything)
    assert {h.number for h in hits} <= union  # HNSW on 12+ chunks finds the true top 3
    assert all(np.isclose(h.score, everything[h.number]) for h in hits)
    outside = next(c for n, c in enumerate(exact.chunks) if n not in union)
    only = R.Filters(doc_ids=(outside.doc_id,))
    filtered = R.retrieve(question, vector, approximate, k=1000, filters=only)
    assert filtered and {h.chunk.doc_id for h in filtered} == {outside.doc_id}
    assert outside.id in {h.chunk.id for h in filtered}
