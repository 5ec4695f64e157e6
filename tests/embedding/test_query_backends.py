"""rag/embedding/query_backends.py: the fast query encoders. Fast tests use tiny torch modules and
the fake embedder; the real model is @slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embedding.query_backends import QUERY_BACKENDS, check_backend, quantize_int8, query_encoder
from rag.errors import ConfigError
from rag.settings import Settings

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


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
    from rag.embedding.transformer import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(Settings(query_backend="int8"))
    embedder._model = TinyEncoder()  # no real model in fast tests
    first = embedder.encode_queries(["Hur många bor i Tyresö?"])
    assert embedder.query_backend == "int8"
    assert first.shape == (1, 16)
    again = embedder.encode_queries(["Hur många bor i Tyresö?"])  # from the LRU cache
    assert np.array_equal(first, again)
    assert embedder._model.calls == 0  # the fp32 model never ran a query


# -- the real model ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="torch dynamic int8 drifts to cosine 0.94-0.96 against fp32 on these "
                   "questions (measured); it is not the default (onnx-int8 is)")
def test_real_model_int8_queries_match_fp32():
    from rag.embedding.transformer import SentenceTransformerEmbedder

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
def test_real_model_default_onnx_queries_match_torch_fp32():
    """The default backend (ONNX fp32, exported by scripts/setup.sh) is in effect and gives the torch
    fp32 vectors up to float order: int8 was dropped as the default because its rounding turned
    last-bit input differences into 1e-2 cosine moves across machines (docs/evaluation.md)."""
    import json

    from rag.embedding.transformer import SentenceTransformerEmbedder

    rows = (json.loads(line) for line in (ROOT / "eval" / "questions.jsonl").read_text().splitlines())
    questions = [row["question"] for row in rows][:40]
    exact = SentenceTransformerEmbedder(Settings(query_backend="fp32"))
    fast = SentenceTransformerEmbedder(Settings())
    a, b = exact.encode_queries(questions), fast.encode_queries(questions)
    assert fast.query_backend == "onnx", "run `rag model export-onnx` (scripts/setup.sh does)"
    cosines = np.sum(a * b, axis=1)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert cosines.min() > 0.9999
