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

from rag.index import Index
from rag.lexical import stems
from rag.retrieve import Hit
from rag.settings import Settings

NO_ANSWER = "Jag hittar inget svar på det i rapporterna."
WEIGHTS = {"semantic": 1.0, "lexical": 0.35, "passage": 0.10, "kind": 0.05}

_LIST_ITEM = re.compile(r"^([-*•–]|\d+[.)])\s+")
_NUMBER = re.compile(r"\d")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-ZÅÄÖ][a-zåäöé]+(?:\s[A-ZÅÄÖ][a-zåäöé]+)+")
_ASKS_NUMBER = re.compile(r"\b(hur många|hur mycket|antal|hur stor|vilket år|när|how many|how much|when|what year)\b", re.I)
_ASKS_NAME = re.compile(r"\b(vem|vilka personer|vilken person|who|whom)\b", re.I)


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
    dropped_sentences: int = 0
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
    if best.score < settings.abstain_threshold:
        return Answer(question, NO_ANSWER, False, (), tuple(hits), best.score)
    spans = _answer_spans(best, hits, index, settings)
    citations = tuple(
        Citation(n, hits[best.hit_rank], start, end, _doc_text(index, hits[best.hit_rank])[start:end], best.score)
        for n, (start, end) in enumerate(spans, 1)
    )
    text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer(question, text, True, citations, tuple(hits), best.score)


def score_sentences(question: str, query_vector: np.ndarray, hits: list[Hit], index: Index) -> list[_Candidate]:
    """Sentences of the given passages, best first."""
    lexical = index.lexical
    query = set(lexical.query_tokens(question))
    query_mass = sum(lexical.idf[t] for t in query) or 1.0
    wants_number, wants_name = bool(_ASKS_NUMBER.search(question)), bool(_ASKS_NAME.search(question))
    top = hits[0].score if hits else 1.0
    seen: set[int] = set()
    out = []
    for rank, hit in enumerate(hits):
        for sid in index.chunk_sentence_ids[hit.number]:
            if sid in seen:
                continue
            seen.add(sid)
            text = _sentence(index, sid)
            semantic = float(index.sentence_vectors[sid] @ query_vector)
            overlap = sum(lexical.idf[t] for t in query.intersection(stems(text, lexical.vocabulary)))
            kind = (wants_number and bool(_NUMBER.search(text))) or (wants_name and bool(_NAME.search(text)))
            score = (
                WEIGHTS["semantic"] * semantic
                + WEIGHTS["lexical"] * overlap / query_mass
                + WEIGHTS["passage"] * hit.score / top
                + WEIGHTS["kind"] * kind
            )
            out.append(_Candidate(sid, rank, score, semantic))
    return sorted(out, key=lambda c: -c.score)


def _answer_spans(best: _Candidate, hits: list[Hit], index: Index, settings: Settings) -> list[tuple[int, int]]:
    """The best sentence, extended by the list it introduces, within the sentence and word limits."""
    hit = hits[best.hit_rank]
    ids = index.chunk_sentence_ids[hit.number]
    position = ids.index(best.sentence_id)
    chosen = [best.sentence_id]
    words = len(_sentence(index, best.sentence_id).split())
    for sid in ids[position + 1 :]:
        text = _sentence(index, sid)
        introduces_list = _sentence(index, chosen[-1]).rstrip().endswith(":")
        if len(chosen) >= settings.max_answer_sentences or not (introduces_list or _LIST_ITEM.match(text)):
            break
        if words + len(text.split()) > settings.max_answer_words:
            break
        chosen.append(sid)
        words += len(text.split())
    refs = [index.sentences[sid] for sid in chosen]
    return [(refs[0].start, refs[-1].end)]


def _sentence(index: Index, sentence_id: int) -> str:
    ref = index.sentences[sentence_id]
    return index.documents[ref.doc_id]["text"][ref.start : ref.end]


def _doc_text(index: Index, hit: Hit) -> str:
    return index.documents[hit.chunk.doc_id]["text"]
