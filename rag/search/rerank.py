"""Optional cross-encoder reranking of the retrieved passages (off by default).

No multilingual cross-encoder can be installed here, so this stage is a hook: set RAG_RERANKER to
any sentence-transformers CrossEncoder id or folder and the top passages are re-scored by it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from rag.errors import ModelError
from rag.types import Hit

RERANK_DEPTH = 20


def rerank(question: str, hits: list[Hit], reranker: str | None) -> list[Hit]:
    """Hits re-ordered by the cross-encoder `reranker` (an id or folder); unchanged when it is None."""
    if not reranker or not hits:
        return hits
    head, tail = hits[:RERANK_DEPTH], hits[RERANK_DEPTH:]
    scores = _model(reranker).predict([(question, h.chunk.text) for h in head])
    ranked = sorted(zip(head, scores), key=lambda pair: -float(pair[1]))
    return [replace(h, score=float(s)) for h, s in ranked] + tail


@cache
def _model(name: str):
    try:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(name, device="cpu", local_files_only=True)
    except Exception as error:
        raise ModelError(
            f"Could not load the reranker {name!r} ({error}). Set RAG_RERANKER to a local CrossEncoder "
            "folder, or unset it to rank without reranking."
        ) from error
