"""Index -> ranked passages: dense (FAISS) and Swedish BM25, fused, with report awareness and filters.

Three signals are fused by a weighted sum: the passage's vector, its best sentence's vector (both
cosine, so already on one scale) and BM25 as a share of the question's own term weight (the score a
passage mentioning every question word once would get), so a weak keyword match stays weak even when
it is the best there is. Measured on the eval set and SweQUAD-MC this beat reciprocal rank fusion
clearly (see docs/retrieval.md): RRF flattens the small score gaps that separate a right passage
from a near miss.
A question that names a year or month ("i maj 2017") lifts the passages of matching reports.
Below rag.index.EXACT_SEARCH_LIMIT every passage is scored; above it, only the union of the
approximate index's and BM25's candidates, so a query's cost does not grow with the corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rag.chunks import Chunk
from rag.errors import InputError
from rag.index import EXACT_SEARCH_LIMIT, Index
from rag.sections import MONTHS

WEIGHTS = (0.7, 1.0, 0.5)  # passage vector, best sentence vector, BM25 (see docs/retrieval.md)
DATE_BONUS = 0.1  # about the gap between a right and a near-miss passage in fused score
_CANDIDATES = 1000  # from an approximate index and from BM25 each, before fusion
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
_MONTHS_EN = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
}  # fmt: skip
_ISO = re.compile(r"^\d{4}(-\d{2}){0,2}$")


@dataclass(frozen=True, slots=True)
class Filters:
    """Restrict retrieval to reports dated within [date_from, date_to] and/or to given document ids."""

    date_from: str | None = None
    date_to: str | None = None
    doc_ids: tuple[str, ...] = ()

    def __post_init__(self):
        for value in (self.date_from, self.date_to):
            if value is not None and not _ISO.match(value):
                raise InputError(f"Date filter {value!r} is not an ISO date like 2017, 2017-05 or 2017-05-31.")


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    number: int  # position of the chunk in the index
    score: float  # fused score, higher is better
    dense: float  # cosine similarity to the question
    lexical: float  # BM25 score


def retrieve(
    question: str,
    query_vector: np.ndarray,
    index: Index,
    k: int = 10,
    filters: Filters | None = None,
    weights: tuple[float, float, float] = WEIGHTS,
    date_bonus: float = DATE_BONUS,
) -> list[Hit]:
    """The k best passages for the question, best first."""
    allowed = _allowed(index, filters)
    lexical = index.lexical.scores(question)
    pool = _pool(index, query_vector, lexical, allowed)
    dense = _dense_scores(index, query_vector, pool)
    sentence = _best_sentence_scores(index, query_vector, pool)
    coverage = lexical[pool] / (index.lexical.question_mass(question) or 1.0)
    dates = _date_matches_question(question, index, allowed)[pool]
    fused = _fuse(dense, sentence, coverage, weights) + date_bonus * dates
    fused[~allowed[pool]] = -np.inf
    numbers = pool if isinstance(pool, np.ndarray) else np.arange(len(fused))  # pooled position -> chunk
    order = [i for i in np.argsort(-fused, kind="stable")[:k] if np.isfinite(fused[i])]
    return [Hit(index.chunks[numbers[i]], int(numbers[i]), float(fused[i]), float(dense[i]),
                float(lexical[numbers[i]])) for i in order]  # fmt: skip


def _pool(index: Index, query_vector: np.ndarray, lexical: np.ndarray, allowed: np.ndarray) -> slice | np.ndarray:
    """The chunks worth scoring. Under exact search all of them. Under an approximate index (a
    large corpus) the union of its nearest candidates, BM25's best and, when a filter leaves few
    enough, every allowed chunk: the cost then follows the candidates, not the corpus."""
    if index.manifest.get("faiss") == "flat":
        return slice(None)
    n = min(_CANDIDATES, len(index.chunks))
    _, ids = index.faiss.search(query_vector[None, :].astype(np.float32), n)
    keyword = np.argpartition(-lexical, n - 1)[:n] if n < len(lexical) else np.arange(len(lexical))
    parts = [ids[0][ids[0] >= 0], keyword[lexical[keyword] > 0]]
    if not allowed.all() and allowed.sum() <= EXACT_SEARCH_LIMIT:
        parts.append(np.flatnonzero(allowed))
    return np.unique(np.concatenate(parts))


def _dense_scores(index: Index, query_vector: np.ndarray, pool: slice | np.ndarray = slice(None)) -> np.ndarray:
    """Cosine similarity to the pooled chunks (exact: the chunk vectors are in memory either way)."""
    return index.chunk_vectors[pool] @ query_vector


def _best_sentence_scores(index: Index, query_vector: np.ndarray,
                          pool: slice | np.ndarray = slice(None)) -> np.ndarray:  # fmt: skip
    """Per pooled chunk, the similarity of its best-matching sentence: finds a passage by its one key line."""
    flat, starts, lengths = index.sentence_table
    if isinstance(pool, slice):
        return np.maximum.reduceat((index.sentence_vectors @ query_vector)[flat], starts)
    lengths = lengths[pool]
    offsets = np.cumsum(lengths) - lengths  # where each pooled chunk's sentences begin in `subset`
    subset = flat[np.repeat(starts[pool] - offsets, lengths) + np.arange(lengths.sum())]
    return np.maximum.reduceat(index.sentence_vectors[subset] @ query_vector, offsets)


def _fuse(dense: np.ndarray, sentence: np.ndarray, coverage: np.ndarray, weights) -> np.ndarray:
    """Weighted sum of the two cosine scores and the BM25 coverage."""
    w_dense, w_sentence, w_lexical = weights
    return w_dense * dense + w_sentence * sentence + w_lexical * coverage


def _allowed(index: Index, filters: Filters | None) -> np.ndarray:
    """Chunks the filters let through. Vectorized: each distinct document and date is tested once."""
    mask = np.ones(len(index.chunks), dtype=bool)
    if filters is None:
        return mask
    columns = _chunk_columns(index)
    if filters.doc_ids:
        wanted = set(filters.doc_ids)
        mask &= np.fromiter((d in wanted for d in columns.doc_ids), bool, len(columns.doc_ids))[columns.doc_of]
    if filters.date_from or filters.date_to:
        within = [_date_within(d, filters) for d in columns.dates]
        mask &= np.fromiter(within, bool, len(within))[columns.date_of]
    return mask


@dataclass(frozen=True, slots=True)
class _Columns:
    doc_ids: list[str]  # distinct document ids
    doc_of: np.ndarray  # per chunk, its position in doc_ids
    dates: list[str | None]  # distinct report dates
    date_of: np.ndarray  # per chunk, its position in dates


def _chunk_columns(index: Index) -> _Columns:
    """Per-chunk document and date as integer codes, computed once per loaded index."""
    cache = index._sentence_lookup  # the index's own memo dict (lives and dies with the loaded version)
    if "columns" not in cache:
        doc_codes: dict[str, int] = {}
        date_codes: dict[str | None, int] = {}
        doc_of = np.fromiter((doc_codes.setdefault(c.doc_id, len(doc_codes)) for c in index.chunks), np.int64,
                             len(index.chunks))  # fmt: skip
        date_of = np.fromiter((date_codes.setdefault(c.date, len(date_codes)) for c in index.chunks), np.int64,
                              len(index.chunks))  # fmt: skip
        cache["columns"] = _Columns(list(doc_codes), doc_of, list(date_codes), date_of)
    return cache["columns"]


def _date_within(date: str | None, filters: Filters) -> bool:
    """Compare at the coarser of the two precisions, so "2017-05" is within 2017-05-01 .. 2017-05-31."""
    if date is None:
        return False
    low = filters.date_from or "0000"
    high = filters.date_to or "9999"
    return date[: len(low)] >= low[: len(date)] and date[: len(high)] <= high[: len(date)]


def question_dates(question: str) -> tuple[set[str], set[int]]:
    """Years and months a question names ("i maj 2017" -> ({"2017"}, {5}))."""
    words = re.findall(r"[a-zåäö]+", question.lower())
    years = set(_YEAR.findall(question))
    # English "may" is usually the verb; count it as the month only next to a year.
    english = {w: m for w, m in _MONTHS_EN.items() if w != "may" or years}
    months = {MONTHS.get(w) or english.get(w) for w in words} - {None}
    return years, months


def _date_matches_question(question: str, index: Index, allowed: np.ndarray) -> np.ndarray:
    """1.0 for passages from a report whose date matches the year or month the question names."""
    years, months = question_dates(question)
    matches = np.zeros(len(index.chunks), dtype=np.float64)
    if not years and not months:
        return matches
    columns = _chunk_columns(index)
    hit = [bool(d) and _date_matches(d, years, months) for d in columns.dates]  # once per distinct date
    matches[np.fromiter(hit, bool, len(hit))[columns.date_of] & allowed] = 1.0
    return matches


def _date_matches(date: str, years: set[str], months: set[int]) -> bool:
    year_ok = not years or date[:4] in years
    month_ok = not months or (len(date) >= 7 and int(date[5:7]) in months)
    return year_ok and month_ok
