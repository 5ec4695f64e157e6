"""One loaded version of the local store: the read model `retrieve()` and the answer stage use.

Numpy matrices of chunk and sentence vectors, FAISS over the chunk vectors, BM25 built on first use.
Below EXACT_SEARCH_LIMIT every passage is scored exactly; above it only a candidate pool (FAISS's and
BM25's best, and a narrow filter's chunks), so a question's cost does not grow with the corpus
(docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.index.protocol import POOL_SIZE, DocumentInfo, Passage, QueryTerms, SentenceRecord, SentenceRef, Signals
from rag.types import Chunk, Filters, Signature

# Up to this many 768-d chunk vectors are scored exactly (a numpy matrix product, memory-bandwidth
# bound: 16 ms CPU p50 / 22 ms p95 at 50k on 2 busy cores, bench/results/scale.md); above it the
# build puts them into HNSW (local.py).
EXACT_SEARCH_LIMIT = 50_000


@dataclass(slots=True)
class LocalStore:
    """A loaded index version. Heavy parts (FAISS, BM25, lookup tables) are built once, on first use."""

    path: Path
    manifest: dict
    chunk_list: list[Chunk]
    chunk_vectors: np.ndarray
    sentences: list[SentenceRef]
    sentence_vectors: np.ndarray
    chunk_sentence_ids: list[list[int]]
    document_rows: dict[str, dict]
    headings: list[SentenceRef] = field(default_factory=list)
    heading_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    chunk_heading_ids: list[int | None] = field(default_factory=list)
    _faiss: object = None
    _lexical: object = None
    _memo: dict = field(default_factory=dict)

    # -- the Store protocol --------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_list)

    def documents(self) -> Mapping[str, DocumentInfo]:
        if "documents" not in self._memo:
            self._memo["documents"] = {
                doc_id: DocumentInfo(doc_id, d["title"], d.get("date"), d.get("diarienummer"),
                                     tuple(d.get("sections", ())),
                                     Signature(**d["signed_by"]) if d.get("signed_by") else None)  # fmt: skip
                for doc_id, d in self.document_rows.items()
            }
        return self._memo["documents"]

    def terms(self, question: str) -> QueryTerms:
        tokens = tuple(self.lexical.query_tokens(question))
        return QueryTerms(tokens, {t: self.lexical.idf[t] for t in tokens}, self.lexical.question_mass(question))

    def stems(self, text: str) -> list[str]:
        from rag.index.lexical import stems

        return stems(text, self.lexical.vocabulary)

    def signals(self, query_vector: np.ndarray, terms: QueryTerms, filters: Filters | None,
                pool_size: int | None = None) -> Signals:  # fmt: skip
        allowed = self._allowed(filters)
        keyword = self.lexical.scores_for(terms.tokens)
        pool = self._pool(query_vector, keyword, allowed, pool_size or POOL_SIZE)
        numbers = pool if isinstance(pool, np.ndarray) else np.arange(self.chunk_count)
        keep = allowed[numbers]
        columns = self._columns()
        return Signals(
            numbers=numbers[keep],
            dense=(self.chunk_vectors[pool] @ query_vector)[keep],
            sentence=self._best_sentence_scores(query_vector, pool)[keep],
            keyword=keyword[numbers][keep],
            date_of=columns.date_of[numbers][keep],
            dates=tuple(columns.dates),
        )

    def chunks(self, numbers: Sequence[int]) -> list[Chunk]:
        return [self.chunk_list[int(n)] for n in numbers]

    def passages(self, numbers: Sequence[int]) -> list[Passage]:
        return [Passage(self.chunk_list[int(n)], tuple(self._sentence(s) for s in self.chunk_sentence_ids[int(n)]),
                        self._heading(int(n))) for n in numbers]  # fmt: skip

    def document_text(self, doc_id: str) -> str:
        return self.document_rows[doc_id]["text"] if doc_id in self.document_rows else ""

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        if "by_document" not in self._memo:
            by_document: dict[str, list[Chunk]] = {}
            for chunk in self.chunk_list:
                by_document.setdefault(chunk.doc_id, []).append(chunk)
            self._memo["by_document"] = {d: sorted(cs, key=lambda c: c.start) for d, cs in by_document.items()}
        return list(self._memo["by_document"].get(doc_id, ()))

    # -- the local machinery --------------------------------------------------------------------

    @property
    def faiss(self):
        if self._faiss is None:
            import faiss

            self._faiss = faiss.read_index(str(self.path / "faiss.index"))
        return self._faiss

    @property
    def lexical(self):
        if self._lexical is None:
            from rag.index.lexical import LexicalIndex

            self._lexical = LexicalIndex.build([_lexical_text(c) for c in self.chunk_list])
        return self._lexical

    @property
    def sentence_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sentence ids of all chunks, flattened; where each chunk's run starts (for reduceat); its length."""
        if "table" not in self._memo:
            lengths = np.array([len(ids) for ids in self.chunk_sentence_ids], dtype=np.int64)
            flat = np.fromiter((i for ids in self.chunk_sentence_ids for i in ids), dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            self._memo["table"] = (flat, starts, lengths)
        return self._memo["table"]

    def sentence_text(self, sentence_id: int) -> str:
        ref = self.sentences[sentence_id]
        return self.document_rows[ref.doc_id]["text"][ref.start : ref.end]

    def _sentence(self, sentence_id: int) -> SentenceRecord:
        """One sentence with its stems, built once: the answer stage compares them with every question."""
        cache = self._memo.setdefault("sentences", {})
        if sentence_id not in cache:
            ref, text = self.sentences[sentence_id], self.sentence_text(sentence_id)
            cache[sentence_id] = SentenceRecord(sentence_id, ref.start, ref.end, text, frozenset(self.stems(text)),
                                                self.sentence_vectors[sentence_id])  # fmt: skip
        return cache[sentence_id]

    def _heading(self, number: int) -> SentenceRecord | None:
        """The heading line of the chunk's section, as a quotable record (None for older versions)."""
        heading_id = self.chunk_heading_ids[number] if number < len(self.chunk_heading_ids) else None
        if heading_id is None:
            return None
        cache = self._memo.setdefault("headings", {})
        if heading_id not in cache:
            ref = self.headings[heading_id]
            text = self.document_rows[ref.doc_id]["text"][ref.start : ref.end]
            cache[heading_id] = SentenceRecord(heading_id, ref.start, ref.end, text, frozenset(self.stems(text)),
                                               self.heading_vectors[heading_id], kind="heading")  # fmt: skip
        return cache[heading_id]

    def _pool(self, query_vector: np.ndarray, keyword: np.ndarray, allowed: np.ndarray,
              pool_size: int) -> slice | np.ndarray:  # fmt: skip
        """The chunks worth scoring. Under exact search all of them. Under an approximate index (a
        large corpus) the union of its nearest candidates, BM25's best and, when a filter leaves few
        enough, every allowed chunk: the cost then follows the candidates, not the corpus."""
        if self.manifest.get("faiss") == "flat":
            return slice(None)
        n = min(pool_size, self.chunk_count)
        _, ids = self.faiss.search(query_vector[None, :].astype(np.float32), n)
        best = np.argpartition(-keyword, n - 1)[:n] if n < len(keyword) else np.arange(len(keyword))
        parts = [ids[0][ids[0] >= 0], best[keyword[best] > 0]]
        if not allowed.all() and allowed.sum() <= EXACT_SEARCH_LIMIT:
            parts.append(np.flatnonzero(allowed))
        return np.unique(np.concatenate(parts))

    def _best_sentence_scores(self, query_vector: np.ndarray, pool: slice | np.ndarray) -> np.ndarray:
        """Per pooled chunk, the similarity of its best-matching sentence: finds a passage by its one key line."""
        flat, starts, lengths = self.sentence_table
        if isinstance(pool, slice):
            return np.maximum.reduceat((self.sentence_vectors @ query_vector)[flat], starts)
        lengths = lengths[pool]
        offsets = np.cumsum(lengths) - lengths  # where each pooled chunk's sentences begin in `subset`
        subset = flat[np.repeat(starts[pool] - offsets, lengths) + np.arange(lengths.sum())]
        return np.maximum.reduceat(self.sentence_vectors[subset] @ query_vector, offsets)

    def _allowed(self, filters: Filters | None) -> np.ndarray:
        """Chunks the filters let through. Vectorized: each distinct document and date is tested once."""
        mask = np.ones(self.chunk_count, dtype=bool)
        if filters is None:
            return mask
        columns = self._columns()
        if filters.doc_ids:
            wanted = set(filters.doc_ids)
            mask &= np.fromiter((d in wanted for d in columns.doc_ids), bool, len(columns.doc_ids))[columns.doc_of]
        if filters.date_from or filters.date_to:
            within = [date_within(d, filters) for d in columns.dates]
            mask &= np.fromiter(within, bool, len(within))[columns.date_of]
        return mask

    def _columns(self) -> _Columns:
        """Per-chunk document and date as integer codes, computed once per loaded version."""
        if "columns" not in self._memo:
            doc_codes: dict[str, int] = {}
            date_codes: dict[str | None, int] = {}
            n = self.chunk_count
            doc_of = np.fromiter((doc_codes.setdefault(c.doc_id, len(doc_codes)) for c in self.chunk_list), np.int64, n)
            date_of = np.fromiter((date_codes.setdefault(c.date, len(date_codes)) for c in self.chunk_list), np.int64, n)
            self._memo["columns"] = _Columns(list(doc_codes), doc_of, list(date_codes), date_of)
        return self._memo["columns"]


@dataclass(frozen=True, slots=True)
class _Columns:
    doc_ids: list[str]  # distinct document ids
    doc_of: np.ndarray  # per chunk, its position in doc_ids
    dates: list[str | None]  # distinct report dates
    date_of: np.ndarray  # per chunk, its position in dates


def date_within(date: str | None, filters: Filters) -> bool:
    """Compare at the coarser of the two precisions, so "2017-05" is within 2017-05-01 .. 2017-05-31."""
    if date is None:
        return False
    low = filters.date_from or "0000"
    high = filters.date_to or "9999"
    return date[: len(low)] >= low[: len(date)] and date[: len(high)] <= high[: len(date)]


def _lexical_text(chunk: Chunk) -> str:
    return f"{chunk.section}\n{chunk.text}"
