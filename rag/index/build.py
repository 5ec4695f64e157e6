"""Reports -> a published index version, incrementally, into whichever backend holds the versions.

Vectors are reused by a hash of exactly what was embedded (context and text), from the live version,
from the journal of a build that did not finish and from the machine's vector cache (every text any
build here embedded with the same model and path), so only new or changed text reaches the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.embedding import Embedder
from rag.errors import IndexDamagedError, InputError
from rag.index.journal import VectorJournal
from rag.index.manifest import manifest_head, same_build
from rag.index.protocol import Backend, IndexContent, SentenceRef
from rag.ingest.chunks import chunk_document
from rag.ingest.documents import Document, Skipped, read_documents
from rag.settings import Settings
from rag.types import Chunk

log = logging.getLogger(__name__)

_BATCH = 32  # texts per model call (and per journal write)


@dataclass(frozen=True, slots=True)
class BuildReport:
    version: str
    documents: int
    chunks: int
    sentences: int
    embedded_chunks: int
    embedded_sentences: int
    embedded_headings: int
    skipped: tuple[Skipped, ...]
    up_to_date: bool
    seconds: float


def build_index(settings: Settings, embedder: Embedder, backend: Backend | None = None, data: Path | None = None,
                progress: bool = True) -> BuildReport:  # fmt: skip
    """Index the reports at `data` (default settings.data_dir) into `backend` (default: the one the
    settings name), incrementally."""
    from rag.index import open_backend

    backend = backend or open_backend(settings)
    building = getattr(backend, "building", None)  # a shared store serializes concurrent builds
    with building() if building else contextlib.nullcontext():
        return _build(settings, embedder, backend, data, progress)


def _build(settings: Settings, embedder: Embedder, backend: Backend, data: Path | None, progress: bool) -> BuildReport:
    began = time.perf_counter()
    source = Path(data or settings.data_dir)
    documents, skipped = read_documents(source, allow_outside_links=settings.allow_outside_links,
                                        max_chars=settings.max_document_chars)  # fmt: skip
    if not documents:
        raise InputError(
            f"No readable reports in {source}. Add .txt, .md, .pdf or .docx files "
            "(or pass a corpus.jsonl) and run `rag index` again."
        )
    fingerprint = embedder.fingerprint()
    head = manifest_head(settings, fingerprint, documents)
    previous = _undamaged(backend.previous_manifest, None)
    if previous is not None and same_build(previous, head) and _undamaged(lambda: backend.open() is not None, False):
        counts = previous["counts"]
        return BuildReport(previous["version"], len(documents), counts["chunks"], counts["sentences"],
                           0, 0, 0, tuple(skipped), True, time.perf_counter() - began)  # fmt: skip
    journal = VectorJournal(backend.journal_dir, fingerprint)  # what an interrupted build already embedded
    # and what any build on this machine embedded, whatever its folder or store (the same model and path)
    cache = VectorJournal(settings.cache_dir / "vectors", fingerprint) if settings.vector_cache else None
    reusable = {**(cache.load() if cache else {}), **journal.load(),
                **_undamaged(lambda: backend.reusable_vectors(fingerprint), {})}  # fmt: skip
    sinks = (journal, cache) if cache else (journal,)
    chunks = _chunk_all(documents, settings, embedder, reusable)
    if not chunks:
        raise InputError(f"The reports in {source} hold no text to index.")
    texts_by_doc = {d.id: d.text for d in documents}
    sentences, chunk_sentence_ids = _sentences_of(chunks)
    headings, chunk_heading_ids = _headings_of(chunks)
    chunk_contexts = [context(c) for c in chunks]
    sentence_contexts = [chunk_contexts[owner] for owner in owners(chunk_sentence_ids, len(sentences))]
    sentence_texts = [texts_by_doc[s.doc_id][s.start : s.end] for s in sentences]
    heading_contexts = [chunk_contexts[owner] for owner in owners([[h] if h is not None else [] for h in
                                                                   chunk_heading_ids], len(headings))]  # fmt: skip
    heading_texts = [texts_by_doc[h.doc_id][h.start : h.end] for h in headings]

    def embed(contexts, texts, label):
        return _vectors(contexts, texts, embedder, reusable, sinks, progress, label)

    chunk_vectors, new_chunks = embed(chunk_contexts, [c.text for c in chunks], "passager")
    sentence_vectors, new_sentences = embed(sentence_contexts, sentence_texts, "meningar")
    heading_vectors, new_headings = embed(heading_contexts, heading_texts, "rubriker")
    counts = {"documents": len(documents), "chunks": len(chunks), "sentences": len(sentences),
              "headings": len(headings)}  # fmt: skip
    keys = {"chunks": [_key(c, ch.text) for c, ch in zip(chunk_contexts, chunks)],
            "sentences": [_key(c, t) for c, t in zip(sentence_contexts, sentence_texts)],
            "headings": [_key(c, t) for c, t in zip(heading_contexts, heading_texts)]}  # fmt: skip
    content = IndexContent({**head, "counts": counts}, documents, chunks, chunk_vectors, sentences,
                           sentence_vectors, chunk_sentence_ids, keys, headings, heading_vectors,
                           chunk_heading_ids)  # fmt: skip
    version = backend.publish(content)
    journal.clear()
    return BuildReport(version, len(documents), len(chunks), len(sentences), new_chunks, new_sentences,
                       new_headings, tuple(skipped), False, time.perf_counter() - began)  # fmt: skip


def context(chunk: Chunk) -> str:
    """What the embedder is told about where a text comes from."""
    parts = [chunk.title + (f" ({chunk.date})" if chunk.date else "")]
    if chunk.section and chunk.section != chunk.title:
        parts.append(chunk.section)
    return " – ".join(parts)


def owners(chunk_sentence_ids: list[list[int]], count: int) -> list[int]:
    """For each sentence, the first chunk that holds it (its context for embedding)."""
    found = [-1] * count
    for chunk_number, ids in enumerate(chunk_sentence_ids):
        for sentence_id in ids:
            if found[sentence_id] < 0:
                found[sentence_id] = chunk_number
    return found


def _chunk_all(documents: list[Document], settings: Settings, embedder: Embedder, reusable) -> list[Chunk]:
    def fits(chunk: Chunk) -> bool:
        # Only new text needs the (model-loading) length check; reused text fitted when embedded.
        return _key(context(chunk), chunk.text) in reusable or embedder.fits(chunk.text, context(chunk))

    return [
        chunk
        for doc in documents
        for chunk in chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap, fits)
    ]


def _sentences_of(chunks: list[Chunk]) -> tuple[list[SentenceRef], list[list[int]]]:
    """Unique sentences (overlapping chunks share some) and, per chunk, the ids of its sentences."""
    ids: dict[SentenceRef, int] = {}
    per_chunk = []
    for chunk in chunks:
        refs = [SentenceRef(chunk.doc_id, s, e) for s, e in chunk.sentences]
        per_chunk.append([ids.setdefault(ref, len(ids)) for ref in refs])
    return list(ids), per_chunk


def _undamaged(read, otherwise):
    """`read()` of the live version, or `otherwise` when that version is damaged: a damaged version is
    never "up to date" and lends no vectors, so `rag index` is what repairs it. The version is loaded
    (and checked) only where the build needs it: to call it up to date, or to reuse its vectors."""
    try:
        return read()
    except IndexDamagedError as error:
        log.warning("%s Building a new version.", error)
        return otherwise


def _headings_of(chunks: list[Chunk]) -> tuple[list[SentenceRef], list[int | None]]:
    """Each distinct heading line once, and per chunk the id of its section's heading."""
    ids: dict[SentenceRef, int] = {}
    per_chunk = [None if c.heading is None else ids.setdefault(SentenceRef(c.doc_id, *c.heading), len(ids))
                 for c in chunks]  # fmt: skip
    return list(ids), per_chunk


def _key(context_text: str, text: str) -> str:
    return hashlib.sha256(f"{context_text}\x00{text}".encode()).hexdigest()[:32]


def _vectors(contexts, texts, embedder: Embedder, reusable, sinks: tuple[VectorJournal, ...], progress: bool,
             label: str) -> tuple[np.ndarray, int]:  # fmt: skip
    """Vectors for all texts, embedding only those whose key is not reusable (each distinct one once)."""
    from tqdm import tqdm

    keys = [_key(c, t) for c, t in zip(contexts, texts)]
    todo = list({k: i for i, k in enumerate(keys) if k not in reusable}.values())
    # Longest first, so each batch holds texts of about one length: less padding for the model to
    # chew on, and the build's memory peak shows in its first batch.
    todo.sort(key=lambda i: -(len(texts[i]) + len(contexts[i])))
    found: dict[str, np.ndarray] = {}
    with tqdm(total=len(todo), desc=f"Bäddar in {label}", unit="st", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), _BATCH):
            batch = todo[start : start + _BATCH]
            vectors = embedder.encode_documents([texts[i] for i in batch], [contexts[i] for i in batch])
            for sink in sinks:  # the build's journal, and the machine's cache
                sink.append([keys[i] for i in batch], vectors)
            found.update(zip((keys[i] for i in batch), vectors))
            bar.update(len(batch))
    rows = [found[k] if k in found else reusable[k] for k in keys]
    dim = len(rows[0]) if rows else 0
    return (np.vstack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)), len(todo)
