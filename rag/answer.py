"""Ranked passages -> a cited extractive answer: the sentences that hold the answer, quoted verbatim.

Each sentence of the top passages is scored by semantic similarity (vectors precomputed at index
time), idf-weighted overlap of stems with the question, the rank of its passage, and whether it holds
the kind of thing asked for (a number for "hur många", a name for "vem"). When even the best sentence
is weak the assistant abstains, still listing the closest passages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rag.chunks import Chunk
from rag.index import Index
from rag.question import expected_kind, has_kind, misses_asked_year
from rag.retrieve import Hit
from rag.settings import Settings

NO_ANSWER = "Jag hittar inget svar på det i rapporterna."
WEIGHTS = {"semantic": 1.0, "lexical": 0.2, "passage": 0.3, "kind": 0.05}
NEIGHBOUR_MARGIN = 0.15

_LIST_ITEM = re.compile(r"^([-*•–]|\d+[.)])\s+")


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    hit: Hit
    start: int  # document offsets of the quoted text
    end: int
    quote: str
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    answered: bool
    citations: tuple[Citation, ...]
    passages: tuple[Hit, ...]
    confidence: float
    generator: str = "extractive"
    notice: str | None = None
    dropped_sentences: int = 0  # generated sentences the citation check removed ...
    checked_sentences: int = 0  # ... out of this many it judged (0 for the extractive answer)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Candidate:
    sentence_id: int
    hit_rank: int
    score: float
    semantic: float


def extract_answer(
    question: str, query_vector: np.ndarray, hits: list[Hit], index: Index, settings: Settings
) -> Answer:
    """The extractive answer to `question` from the retrieved `hits`."""
    candidates = score_sentences(question, query_vector, hits[: settings.answer_passages], index)
    if not candidates:
        return Answer(question, NO_ANSWER, False, (), tuple(hits), 0.0)
    best = candidates[0]
    spans = _answer_spans(best, candidates, hits, index, settings)
    doc_text = _doc_text(index, hits[best.hit_rank])
    missing = _misses_what_was_asked(question, [doc_text[s:e] for s, e in spans], hits[best.hit_rank].chunk)
    confidence = best.score - settings.missing_penalty * missing
    if confidence < settings.abstain_threshold:
        return Answer(question, NO_ANSWER, False, (), tuple(hits), confidence)
    citations = tuple(
        Citation(n, hits[best.hit_rank], start, end, doc_text[start:end], best.score)
        for n, (start, end) in enumerate(spans, 1)
    )
    text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer(question, text, True, citations, tuple(hits), confidence)


def _misses_what_was_asked(question: str, quotes: list[str], chunk: Chunk) -> bool:
    """The quote lacks the kind of thing asked for, or its passage never names the year asked about:
    the typical near-miss answer (the right topic, not the asked detail). Costs settings.missing_penalty."""
    kind = expected_kind(question)
    missing_kind = kind is not None and not any(has_kind(q, kind, question) for q in quotes)
    evidence = f"{chunk.date or ''} {chunk.title} {chunk.section} {chunk.text}"
    return missing_kind or misses_asked_year(question, evidence)


def score_sentences(question: str, query_vector: np.ndarray, hits: list[Hit], index: Index) -> list[_Candidate]:
    """Sentences of the given passages, best first."""
    lexical = index.lexical
    query = set(lexical.query_tokens(question))
    query_mass = sum(lexical.idf[t] for t in query) or 1.0
    kind = expected_kind(question)
    top = hits[0].score if hits and hits[0].score > 0 else 1.0  # scales the passage prior to [0, 1]
    seen: set[int] = set()
    out = []
    for rank, hit in enumerate(hits):
        for sid in index.chunk_sentence_ids[hit.number]:
            if sid in seen:
                continue
            seen.add(sid)
            text = index.sentence_text(sid)
            semantic = float(index.sentence_vectors[sid] @ query_vector)
            overlap = sum(lexical.idf[t] for t in query.intersection(index.sentence_stems(sid)))
            has = kind is not None and has_kind(text, kind, question)
            score = (
                WEIGHTS["semantic"] * semantic
                + WEIGHTS["lexical"] * overlap / query_mass
                + WEIGHTS["passage"] * hit.score / top
                + WEIGHTS["kind"] * has
            )
            out.append(_Candidate(sid, rank, score, semantic))
    return sorted(out, key=lambda c: -c.score)


def _answer_spans(best: _Candidate, candidates: list[_Candidate], hits: list[Hit], index: Index,
                  settings: Settings) -> list[tuple[int, int]]:  # fmt: skip
    """The best sentence, grown by close-scoring neighbours and the list it introduces, within limits.

    Questions are often answered by a sentence plus the one beside it (a topic sentence and its
    detail); quoting both when they score close keeps the answer short and makes it hold the answer.
    """
    ids = index.chunk_sentence_ids[hits[best.hit_rank].number]
    scores = {c.sentence_id: c.score for c in candidates}
    chosen = [ids.index(best.sentence_id)]
    words = _words(index, ids[chosen[0]])
    while len(chosen) < settings.max_answer_sentences:
        neighbours = [p for p in (min(chosen) - 1, max(chosen) + 1) if 0 <= p < len(ids)]
        grow = [p for p in neighbours if _belongs(index, ids, chosen, p, scores, best.score)]
        grow = [p for p in grow if words + _words(index, ids[p]) <= settings.max_answer_words]
        if not grow:
            break
        pick = max(grow, key=lambda p: scores.get(ids[p], -1.0))
        chosen.append(pick)
        words += _words(index, ids[pick])
    first, last = index.sentences[ids[min(chosen)]], index.sentences[ids[max(chosen)]]
    return [(first.start, last.end)]


def _belongs(index: Index, ids: list[int], chosen: list[int], position: int, scores, best: float) -> bool:
    """A neighbour joins if it scores close to the best, or continues a list the answer introduces."""
    text = index.sentence_text(ids[position])
    if position > max(chosen):
        before = index.sentence_text(ids[max(chosen)]).rstrip()
        if before.endswith(":") or _LIST_ITEM.match(text):
            return True
    return scores.get(ids[position], -1.0) >= best - NEIGHBOUR_MARGIN


def _words(index: Index, sentence_id: int) -> int:
    return len(index.sentence_text(sentence_id).split())


def _doc_text(index: Index, hit: Hit) -> str:
    return index.documents[hit.chunk.doc_id]["text"]
