"""The sentence-transformers embedder (the `Embedder` protocol is in rag/embedding/__init__.py).

Queries and documents are encoded with the model's own prompts (`encode_query` / `encode_document`).
For EmbeddingGemma the document prompt carries a title ("title: ... | text: ..."), which we fill with
the chunk's context (report, date, section) so the vector knows which report it came from.

Documents go through the exported ONNX graph by default (`Settings.document_backend`, onnx_runtime.py):
the index build then never loads the PyTorch model. Without the export, or with "fp32", they go
through sentence-transformers; `fingerprint()["documents"]` says which, so an index is never mixed.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from rag.errors import ConfigError, ModelError
from rag.settings import Settings

DOCUMENT_BACKENDS = ("fp32", "onnx", "onnx-int8")


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; loaded on first use, once, and shared between threads."""

    def __init__(self, settings: Settings, query_cache_size: int = 2048):
        self.settings = settings
        self.model_id = settings.model
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = query_cache_size
        self._query_encoder = None
        self._query_lock = threading.Lock()
        self.query_backend: str | None = None  # the backend in use, once the first question is encoded
        self._document_encoder = None
        self._document_backend: str | None = None

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load(self.settings)
        return self._model

    @property
    def query_encoder(self):
        """encode(texts) -> query vectors, by settings.query_backend (query_backends.py); built once."""
        if self._query_encoder is None:
            with self._query_lock:  # not self._lock: loading the model takes that one
                if self._query_encoder is None:
                    from rag.embedding.query_backends import query_encoder

                    self._query_encoder, self.query_backend = query_encoder(self.settings, lambda: self.model)
        return self._query_encoder

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def document_backend(self) -> str:
        """The path documents take: settings.document_backend, or fp32 when ONNX is not there."""
        if self._document_backend is None:
            self._document_backend = _document_backend(self.settings)
        return self._document_backend

    @property
    def document_encoder(self):
        """The ONNX document encoder, or None on the fp32 path; built once."""
        if self._document_encoder is None and self.document_backend != "fp32":
            with self._query_lock:
                if self._document_encoder is None:
                    from rag.embedding.onnx_runtime import BATCH_TOKENS, OnnxEncoder

                    prompt = "" if self._titled() else self._prompts().get("document", "")
                    self._document_encoder = OnnxEncoder(self.settings, self.document_backend, prompt=prompt,
                                                         batch_tokens=BATCH_TOKENS)  # fmt: skip
        return self._document_encoder

    def fingerprint(self) -> dict:
        from rag.provision.model import model_fingerprint

        return {**model_fingerprint(self.settings), "dim": self.settings.embedding_dim,
                "documents": self.document_backend}  # fmt: skip

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Normalized query vectors; repeated questions come from a small LRU cache."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self.query_encoder(missing)
            for text, vector in zip(missing, vectors):
                self._remember(text, vector.astype(np.float32))
        return np.stack([self._cache[t] for t in texts])

    def encode_documents(self, texts: list[str], titles: list[str]) -> np.ndarray:
        formatted, prompt = self._document_inputs(texts, titles)
        if self.document_encoder is not None:
            return self.document_encoder(formatted)
        vectors = self.model.encode_document(
            formatted,
            prompt=prompt,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def fits(self, text: str, title: str) -> bool:
        formatted, prompt = self._document_inputs([text], [title])
        if self.document_encoder is not None:
            return self.document_encoder.token_count(formatted[0]) <= self.document_encoder.max_length
        tokens = self.model.tokenizer(prompt + formatted[0], add_special_tokens=True)["input_ids"]
        return len(tokens) <= self.model.max_seq_length

    def _document_inputs(self, texts: list[str], titles: list[str]) -> tuple[list[str], str]:
        """EmbeddingGemma-style prompts take a title; other models get the context as a first line."""
        if self._titled():
            return [f"title: {t or 'none'} | text: {x}" for x, t in zip(texts, titles)], ""
        return [f"{t}\n{x}" if t else x for x, t in zip(texts, titles)], None

    def _titled(self) -> bool:
        return self._prompts().get("document", "").startswith("title:")

    def _prompts(self) -> dict:
        """The model's prompts, from the loaded model or, before it is loaded, from its folder's config."""
        if self._model is not None:
            return dict(self._model.prompts or {})
        from rag.provision.model import resolve_model

        config = Path(resolve_model(self.settings)) / "config_sentence_transformers.json"
        try:
            return dict(json.loads(config.read_text()).get("prompts") or {})
        except (OSError, ValueError):
            return dict(self.model.prompts or {})

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._cache[text] = vector
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _document_backend(settings: Settings) -> str:
    wanted = settings.document_backend
    if wanted not in DOCUMENT_BACKENDS:
        raise ConfigError(f"Unknown document_backend {wanted!r}; choose one of {', '.join(DOCUMENT_BACKENDS)} "
                          "(RAG_DOCUMENT_BACKEND).")
    if wanted == "fp32":
        return wanted
    from rag.embedding.onnx_runtime import onnx_usable

    return wanted if onnx_usable(settings, wanted, "document_backend", "documents") else "fp32"


def _load(settings: Settings):
    from rag.provision.model import resolve_model

    path = resolve_model(settings)
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(
            path, device="cpu", truncate_dim=settings.embedding_dim, local_files_only=True
        )
    except Exception as error:  # the library raises OSError, ValueError, HF errors...
        raise ModelError(
            f"Could not load the embedding model {settings.model!r} ({error}). "
            "Run `rag model fetch` for the default model, or set RAG_MODEL to a local model folder."
        ) from error
