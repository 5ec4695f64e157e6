"""rag/embedding/onnx_runtime.py: batches of like length; the real exported model is @slow."""

from __future__ import annotations

import numpy as np
import pytest

from rag.embedding.onnx_runtime import like_length_batches
from rag.settings import Settings


def test_batches_group_like_lengths_and_keep_every_index_once():
    lengths = [10, 100, 11, 12, 99, 300, 10]
    batches = like_length_batches(lengths, batch_tokens=400, pad_share=0.15)
    assert batches == [[0, 6, 2, 3], [4, 1], [5]]


def test_a_batch_is_cut_at_its_token_budget_padding_included():
    assert like_length_batches([100] * 5, batch_tokens=250) == [[0, 1], [2, 3], [4]]


def test_zero_budget_means_one_text_per_call():
    assert like_length_batches([5, 5, 5], batch_tokens=0) == [[0], [1], [2]]


def test_a_text_longer_than_the_budget_is_its_own_batch():
    assert like_length_batches([3000, 10], batch_tokens=2048) == [[1], [0]]
    assert like_length_batches([]) == []


@pytest.fixture(scope="module")
def real():
    pytest.importorskip("onnxruntime")
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.provision.onnx import onnx_ready

    settings = Settings.from_env()
    if not onnx_ready(settings, "onnx"):
        pytest.skip("needs `rag model export-onnx`")
    return SentenceTransformerEmbedder(settings), SentenceTransformerEmbedder(settings.replace(document_backend="fp32"))


TEXTS = [
    "Kommunstyrelsen beslutade att anta budgeten för 2018.",
    "Biblioteket i Tyresö centrum har öppet till klockan 20 på vardagar.",
    ("Under våren genomfördes en krisövning med kommunens ledningsgrupp, där samverkan med polisen och "
     "räddningstjänsten prövades i ett scenario med ett längre elavbrott i hela kommunen."),
    "Ny ekonomichef.",
]
TITLES = ["Kommundirektörens rapport maj 2017 – Ekonomi", "", "Rapport – Säkerhet", "Rapport"]


@pytest.mark.slow
def test_real_onnx_document_vectors_match_pytorch_and_padding_does_not_move_them(real):
    onnx, fp32 = real
    assert (onnx.document_backend, fp32.document_backend) == ("onnx", "fp32")
    assert (onnx.fingerprint()["documents"], fp32.fingerprint()["documents"]) == ("onnx", "fp32")
    batched = onnx.encode_documents(TEXTS, TITLES)  # two of like length share a padded batch
    alone = np.stack([onnx.encode_documents([t], [h])[0] for t, h in zip(TEXTS, TITLES)])
    reference = fp32.encode_documents(TEXTS, TITLES)
    assert batched.shape == reference.shape == (4, fp32.settings.embedding_dim or batched.shape[1])
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(batched * alone, axis=1)) > 0.99999
    assert np.min(np.sum(batched * reference, axis=1)) > 0.9999
    assert [onnx.fits(t, h) for t, h in zip(TEXTS, TITLES)] == [True] * 4
    assert onnx.fits("ord " * 5000, "Rapport") is False


@pytest.mark.slow
def test_a_question_is_embedded_from_its_first_128_tokens(real):
    from rag.embedding.query_backends import QUERY_MAX_TOKENS

    onnx, _ = real
    encoder = onnx.query_encoder
    assert encoder.max_length == QUERY_MAX_TOKENS == 128
    digits = " ".join(str(i % 10) for i in range(2000))  # 2,000 tokens: ~20 s of CPU in full
    vectors = encoder([digits, digits + " Vem är ny ekonomichef?"])
    assert float(vectors[0] @ vectors[1]) > 0.99999  # what follows the first 128 tokens is not read
