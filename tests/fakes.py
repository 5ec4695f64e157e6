"""A deterministic stand-in for the embedding model: hashed bag of stems, normalized.

Texts that share words get similar vectors, which is enough for unit tests of indexing, retrieval
and answering without loading 1.2 GB of weights.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rag.index.lexical import stems


class FakeEmbedder:
    model_id = "fake-hashing-embedder"

    def __init__(self, dim: int = 64, max_tokens: int = 10_000, documents: str | None = None):
        self._dim = dim
        self.documents = documents  # the path documents take, as the real embedder's fingerprint says
        self.max_tokens = max_tokens
        self.calls: list[int] = []  # number of documents per encode_documents call

    @property
    def dim(self) -> int:
        return self._dim

    def fingerprint(self) -> dict:
        path = {"documents": self.documents} if self.documents else {}
        return {"model": self.model_id, "files": {}, "dim": self._dim, **path}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])

    def encode_documents(self, texts: list[str], titles: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self._vector(f"{title} {text}") for text, title in zip(texts, titles)])

    def fits(self, text: str, title: str) -> bool:
        return len(text.split()) + len(title.split()) <= self.max_tokens

    @property
    def embedded(self) -> int:
        return sum(self.calls)

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self._dim, dtype=np.float32)
        for token in stems(text) or ["<empty>"]:
            bucket = int(hashlib.md5(token.encode()).hexdigest(), 16) % self._dim
            vector[bucket] += 1.0
        return vector / np.linalg.norm(vector)
