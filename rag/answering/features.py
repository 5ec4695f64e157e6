"""Candidate spans -> feature rows for the learned reader (reader.py).

Per candidate: how close it is to the question (its sentence's vector, idf-weighted stem overlap),
what it adds beyond the question's own words, whether it holds the kind of thing asked for (a name,
a number, a date, a place...), where it sits (heading, clause, position, neighbours), and how its
passage ranked. Question-level features (which question word, which kind) let the model learn which
kind of span answers which kind of question. Everything is cheap: no model call, a few ms per question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from rag.answering.candidates import MAX_WORDS, Candidate
from rag.answering.question import Kind, asked_stems, expected_kind, is_english, kind_in, mask_asked, misses_asked_year
from rag.index.protocol import Passage, QueryTerms, Store
from rag.ingest.sections import HEADER, SIGNATURE
from rag.types import Hit

# Question words (the first that matches): which kind of span answers is learned per word.
_QWORDS = [
    ("vem", r"\bvem\b|\bvilka personer\b"), ("who", r"\bwho\b"),
    ("när", r"\bnär\b|\bvilket datum\b|\bvilken dag\b"), ("when", r"\bwhen\b|\bwhat date\b"),
    ("var", r"^\W*var\b|\bvar (ligger|hölls|finns|ska|sker|äger)\b|\bvilken plats\b|\bvart\b"),
    ("where", r"\bwhere\b"),
    ("hur många", r"\bhur många\b|\bhur mycket\b|\bhur stor\b|\bhur lång\b|\bhur gammal\b"),
    ("how many", r"\bhow (many|much|long|old|large)\b"),
    ("varför", r"\bvarför\b|\bav vilken anledning\b"), ("why", r"\bwhy\b"),
    ("vilka", r"\bvilka\b"), ("vilken", r"\bvilken\b|\bvilket\b"), ("which", r"\bwhich\b"),
    ("hur", r"\bhur\b"), ("how", r"\bhow\b"), ("vad", r"\bvad\b"), ("what", r"\bwhat\b"),
]  # fmt: skip
_QWORD_PATTERNS = [(name, re.compile(pattern, re.I)) for name, pattern in _QWORDS]
_KINDS = [k.value for k in Kind]
_NUMBER = re.compile(r"\d|\b(en|ett|två|tre|fyra|fem|sex|sju|åtta|nio|tio|tjugo|hundra|tusen|miljon\w*)\b", re.I)
_CAPITAL = re.compile(r"(?<=[\wåäöé,] )[A-ZÅÄÖÉ][\wåäöé-]+")
_TIME = re.compile(r"\b(19|20)\d\d\b|\b\d{1,2} (januari|februari|mars|april|maj|juni|juli|augusti|september|"
                   r"oktober|november|december)\b|\b(måndag|tisdag|onsdag|torsdag|fredag|lördag|söndag)\w*|"
                   r"\bkl\.? ?\d|\b\d{1,2}[.:]\d{2}\b|\bvecka \d", re.I)  # fmt: skip
_PLACE = re.compile(r"\b(på|i|vid|till|från) [A-ZÅÄÖ][\wåäö-]+|\b\w+(huset|slott|torg|centrum|skolan|gården)\b")
_MONEY = re.compile(r"\d[\d  ,.]*\s*(kr\b|kronor|mnkr|mkr|tkr|miljoner|miljarder)", re.I)
_SHARE = re.compile(r"procent|%|\bhälften\b|\bvar (tredje|fjärde|femte)\b", re.I)
_TOKEN = re.compile(r"[^\W_]+")

CANDIDATE_FEATURES = (
    "sem", "sem_gap", "sem_rank", "overlap", "overlap_sentence", "novel", "novel_count", "words", "words_over",
    "kind_match", "has_number", "has_capital", "has_time", "has_place", "has_money", "has_share",
    "ends_colon", "is_heading", "is_clause", "clause_share", "position", "is_first", "from_header",
    "from_signature", "prev_overlap", "next_overlap", "prev_sem", "next_sem", "heading_overlap", "passage_rank",
    "passage_score", "passage_dense", "passage_coverage", "same_doc_as_top", "misses_year", "missing_max",
    "missing_share",
)  # fmt: skip
QUESTION_FEATURES = (
    *(f"q_{name}" for name, _ in _QWORDS), *(f"kind_{k}" for k in _KINDS), "q_english", "q_mass",
    "q_tokens", "q_words", "q_unknown", "q_unknown_share",
)  # fmt: skip
FEATURES = CANDIDATE_FEATURES + QUESTION_FEATURES


def question_word(question: str) -> str | None:
    return next((name for name, pattern in _QWORD_PATTERNS if pattern.search(question)), None)


def question_row(question: str, terms: QueryTerms, stems: Sequence[str]) -> list[float]:
    """`stems`: all of the question's stems; those the index has never seen ("attefallshus" in
    reports that never mention one) are what a question about something else looks like."""
    word, kind = question_word(question), expected_kind(question)
    unknown = len(set(stems) - set(terms.tokens))
    return [
        *(float(word == name) for name, _ in _QWORDS),
        *(float(kind is not None and kind.value == k) for k in _KINDS),
        float(is_english(question)), math.log1p(terms.mass), float(len(terms.tokens)),
        float(len(_TOKEN.findall(question))), float(unknown), unknown / max(len(set(stems)), 1),
    ]  # fmt: skip


def feature_matrix(question: str, query_vector: np.ndarray, hits: Sequence[Hit], passages: Sequence[Passage],
                   found: Sequence[Candidate], store: Store) -> np.ndarray:  # fmt: skip
    """One row of FEATURES per candidate (float64)."""
    terms = store.terms(question)
    asked = frozenset(terms.tokens)
    mass = terms.mass or 1.0
    kind = expected_kind(question)
    top = hits[0].score if hits and hits[0].score > 0 else 1.0
    stems = _StemCache(store)
    sems = np.array([float(c.source.vector @ query_vector) for c in found]) if found else np.zeros(0)
    order = np.argsort(-sems, kind="stable")
    ranks = np.empty(len(found))
    ranks[order] = np.arange(len(found)) / max(len(found) - 1, 1)
    qrow = question_row(question, terms, store.stems(question))
    best = float(sems.max()) if len(sems) else 0.0
    words_asked = asked_stems(question)
    per_passage = [_passage_row(question, terms, mass, p, passages[0], h) for p, h in zip(passages, hits)]
    rows = []
    for c, sem, rank in zip(found, sems, ranks):
        passage = passages[c.passage]
        own = stems.of(c)
        neighbours = _neighbours(passage, c.position)
        masked = mask_asked(c.text, words_asked)
        rows.append([
            sem, sem - best, rank,
            _overlap(terms, own, mass), _overlap(terms, c.source.stems, mass),
            len(own - asked) / max(len(own), 1), float(len(own - asked)),
            c.words / MAX_WORDS, float(c.words > 25),
            -1.0 if kind is None else float(kind_in(masked, kind)),
            float(bool(_NUMBER.search(masked))), float(bool(_CAPITAL.search(masked))),
            float(bool(_TIME.search(masked))), float(bool(_PLACE.search(masked))),
            float(bool(_MONEY.search(masked))), float(bool(_SHARE.search(masked))),
            float(c.text.rstrip().endswith(":")), float(c.kind == "heading"), float(c.kind == "clause"),
            len(c.text) / max(len(c.source.text), 1), c.position / max(len(passage.sentences), 1),
            float(c.position == 0 and passage.chunk.start == passage.sentences[0].start),
            float(passage.chunk.section == HEADER), float(passage.chunk.section == SIGNATURE),
            *(_overlap(terms, n.stems, mass) if n is not None else -1.0 for n in neighbours),
            *(float(n.vector @ query_vector) if n is not None else -1.0 for n in neighbours),
            *per_passage[c.passage][:1], float(c.passage), hit_score(hits[c.passage], top), *per_passage[c.passage][1:],
            *qrow,
        ])  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(len(found), len(FEATURES))


def hit_score(hit: Hit, top: float) -> float:
    return hit.score / top


def _passage_row(question: str, terms: QueryTerms, mass: float, passage: Passage, first: Passage, hit: Hit) -> list[float]:
    """What a passage contributes to each of its candidates: heading overlap, then (after the rank and
    the score) its cosine, BM25 share, whether it is from the top passage's report, a missed year."""
    chunk = passage.chunk
    return [
        _overlap(terms, passage.heading.stems, mass) if passage.heading is not None else -1.0,
        hit.dense, hit.lexical / mass, float(chunk.doc_id == first.chunk.doc_id),
        float(misses_asked_year(question, f"{chunk.date or ''} {chunk.title} {chunk.text}")),
        *_missing(terms, mass, passage),
    ]  # fmt: skip


def _missing(terms: QueryTerms, mass: float, passage: Passage) -> tuple[float, float]:
    """The rarest question term the passage lacks (its idf relative to the question's rarest term), and
    the share of the question's idf weight it lacks: a near miss is about the same thing but lacks
    the asked detail's word ("avtalstid", "utbildning")."""
    held = frozenset().union(*(s.stems for s in passage.sentences),
                             passage.heading.stems if passage.heading is not None else frozenset())  # fmt: skip
    lacking = [terms.idf[t] for t in terms.tokens if t not in held]
    top = max(terms.idf.values(), default=0.0) or 1.0
    return (max(lacking) / top if lacking else 0.0), sum(lacking) / mass


def _overlap(terms: QueryTerms, stems: frozenset[str], mass: float) -> float:
    """Share of the question's idf weight found among `stems` (summed in the question's order)."""
    return sum(terms.idf[t] for t in terms.tokens if t in stems) / mass


def _neighbours(passage: Passage, position: int):
    if position < 0:  # a heading: its "next" is the first sentence
        return None, passage.sentences[0] if passage.sentences else None
    before = passage.sentences[position - 1] if position > 0 else None
    after = passage.sentences[position + 1] if position + 1 < len(passage.sentences) else None
    return before, after


class _StemCache:
    """Stems of a candidate: its sentence's (precomputed) unless it is a clause; a clause's are computed
    once per index version (the same passages come back for many questions)."""

    _shared: dict[tuple[str, str], frozenset[str]] = {}
    _LIMIT = 50_000

    def __init__(self, store: Store):
        self.store = store

    def of(self, candidate: Candidate) -> frozenset[str]:
        if candidate.kind != "clause":
            return candidate.source.stems
        key = (self.store.version, candidate.text)
        found = self._shared.get(key)
        if found is None:
            if len(self._shared) >= self._LIMIT:
                self._shared.clear()  # a crude bound: clause stems are cheap to recompute
            found = self._shared[key] = frozenset(self.store.stems(candidate.text))
        return found
