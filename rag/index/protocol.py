"""The store protocol: what retrieval and answering need from a published index version, whichever
store holds it (files in index/ by default, a shared database when one machine is not enough).

`Store` is one published version, read-only; `Backend` is the place that holds the versions: it
publishes a new one atomically and opens the current one. `retrieve()` and the answer stage talk to
a `Store` only, so a second store implements these two protocols and nothing above them changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.ingest.documents import Document
from rag.types import Chunk, Filters, Signature

# Candidates fetched from an approximate vector index and from BM25 each, before fusion.
POOL_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SentenceRef:
    """A sentence by its document offsets; sentence ids are positions in a version's sentence list."""

    doc_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """The question's stems that the index knows, each with its idf (BM25's), and their sum."""

    tokens: tuple[str, ...]
    idf: Mapping[str, float]
    mass: float


@dataclass(frozen=True, slots=True)
class Signals:
    """The three retrieval signals for the candidate chunks that the filters allow, in chunk order."""

    numbers: np.ndarray  # int64 chunk numbers
    dense: np.ndarray  # cosine of the passage vector to the question
    sentence: np.ndarray  # cosine of the passage's best-matching sentence
    keyword: np.ndarray  # BM25
    date_of: np.ndarray  # per candidate, its report date's position in `dates`
    dates: tuple[str | None, ...]  # the distinct report dates


@dataclass(frozen=True, slots=True)
class SentenceRecord:
    id: int  # unique within the version and kind: overlapping passages share sentences
    start: int  # document offsets
    end: int
    text: str
    stems: frozenset[str]  # Swedish stems, compounds split against the version's vocabulary
    vector: np.ndarray
    kind: str = "sentence"  # or "heading": the section's heading line, quotable like a sentence


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk with its sentences and its section's heading, for the answer stage."""

    chunk: Chunk
    sentences: tuple[SentenceRecord, ...]
    heading: SentenceRecord | None = None


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    title: str
    date: str | None
    diarienummer: str | None
    sections: tuple[str, ...]
    signed_by: Signature | None = None


@runtime_checkable
class Store(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    @property
    def chunk_count(self) -> int: ...

    def documents(self) -> Mapping[str, DocumentInfo]: ...

    def terms(self, question: str) -> QueryTerms: ...

    def stems(self, text: str) -> list[str]: ...

    def signals(self, query_vector: np.ndarray, terms: QueryTerms, filters: Filters | None,
                pool_size: int | None = None) -> Signals:  # fmt: skip
        """The signals of the allowed candidates: every allowed chunk under exact search, else the
        union of the vector and keyword indexes' best `pool_size` (default POOL_SIZE) each."""
        ...

    def chunks(self, numbers: Sequence[int]) -> list[Chunk]: ...

    def passages(self, numbers: Sequence[int]) -> list[Passage]: ...

    # A whole report, for reading it in full (the web's report pages): its clean text, and its
    # chunks in document order (their sections and offsets place the section headings in the text).
    def document_text(self, doc_id: str) -> str: ...

    def document_chunks(self, doc_id: str) -> list[Chunk]: ...


@dataclass(frozen=True, slots=True)
class IndexContent:
    """Everything a build hands to a backend to publish as one version."""

    manifest: dict
    documents: list[Document]
    chunks: list[Chunk]
    chunk_vectors: np.ndarray
    sentences: list[SentenceRef]
    sentence_vectors: np.ndarray
    chunk_sentence_ids: list[list[int]]
    keys: dict[str, list[str]]  # content keys of the chunk, sentence and heading vectors, for reuse
    headings: list[SentenceRef]  # each distinct section heading line once
    heading_vectors: np.ndarray
    chunk_heading_ids: list[int | None]  # per chunk, its section's heading


@runtime_checkable
class Backend(Protocol):
    def current_version(self) -> str | None: ...

    def open(self, version: str | None = None) -> Store | None: ...  # default the current; None before a publish

    def versions(self) -> list[str]: ...  # every published version still kept, oldest first

    def previous_manifest(self) -> dict | None: ...

    def reusable_vectors(self, fingerprint: dict) -> dict[str, np.ndarray]: ...

    def publish(self, content: IndexContent) -> str: ...

    @property
    def journal_dir(self) -> Path: ...

    @property
    def location(self) -> str: ...  # for messages: the folder, or the database without its password
