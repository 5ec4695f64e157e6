"""Text -> vectors. `Embedder` is the protocol every stage depends on; `SentenceTransformerEmbedder`
(transformer.py) is the real model, run through ONNX Runtime (onnx_runtime.py; the question path is
chosen in query_backends.py); tests use a fake.

Queries and documents are encoded with the model's own prompts (`encode_query` / `encode_document`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    model_id: str

    @property
    def dim(self) -> int: ...

    def fingerprint(self) -> dict: ...

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_documents(self, texts: list[str], titles: list[str]) -> np.ndarray: ...

    def fits(self, text: str, title: str) -> bool: ...


def real_embedder(settings):
    """The sentence-transformers embedder for `settings` (imported here so callers stay cheap)."""
    from rag.embedding.transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings)


__all__ = ["Embedder", "real_embedder"]
