"""Another machine's floats, on purpose: the same evaluation with every vector nudged by noise of a
given size, to show that the regression guard (compare.py) does not fail on what machines differ by.

`NoisyEmbedder` perturbs question vectors; `NoisyBackend` opens the live index version with its
passage, sentence and heading vectors perturbed. The noise is Gaussian per component, `sigma` on unit
vectors, renormalized, and seeded (per question text, and per index content, not per version name,
which carries a build time), so a run is repeatable on the same index.
Sizes measured here are in docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from rag.embedding import Embedder
from rag.index.local_store import LocalStore
from rag.index.protocol import Backend


def perturbed(vectors: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors plus N(0, sigma²) per component, renormalized (float32 like the originals)."""
    noisy = vectors.astype(np.float64) + rng.normal(0.0, sigma, vectors.shape)
    return (noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)).astype(np.float32)


class NoisyEmbedder:
    """An embedder whose question vectors come out perturbed (documents are perturbed in the store)."""

    def __init__(self, inner: Embedder, sigma: float, seed: int = 0):
        self.inner, self.sigma, self.seed = inner, sigma, seed
        self.model_id = inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def fingerprint(self) -> dict:
        return self.inner.fingerprint()

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        vectors = self.inner.encode_queries(texts)
        return np.stack([perturbed(v, self.sigma, _rng(f"{self.seed}\x00{t}")) for v, t in zip(vectors, texts)])

    def encode_documents(self, texts: list[str], titles: list[str]) -> np.ndarray:
        return self.inner.encode_documents(texts, titles)

    def fits(self, text: str, title: str) -> bool:
        return self.inner.fits(text, title)


class NoisyBackend:
    """A local backend whose opened version has every stored vector perturbed."""

    def __init__(self, inner: Backend, sigma: float, seed: int = 0):
        self.inner, self.sigma, self.seed = inner, sigma, seed

    def __getattr__(self, name):  # everything but `open` is the inner backend's
        return getattr(self.inner, name)

    def open(self, version: str | None = None) -> LocalStore | None:
        store = self.inner.open(version)
        if store is None:
            return None
        rng = _rng(f"{self.seed}\x00{store.chunk_count}\x00{len(store.sentence_vectors)}")
        return dataclasses.replace(
            store,
            chunk_vectors=perturbed(store.chunk_vectors, self.sigma, rng),
            sentence_vectors=perturbed(store.sentence_vectors, self.sigma, rng),
            heading_vectors=perturbed(store.heading_vectors, self.sigma, rng) if store.heading_vectors.size
            else store.heading_vectors,
            _faiss=None, _lexical=None, _memo={},
        )  # fmt: skip


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
