"""The spans an answer may quote: every sentence of the retrieved passages, the clauses of a long
sentence, and the section heading each passage sits under. All verbatim, at document offsets.

A clause is a run of one to three pieces of a sentence cut at commas, semicolons, colons, dashes and
before a conjunction or relative word ("och", "som", "där", ...), trimmed of a leading conjunction
and of trailing commas. Only sentences long enough to hide their answer get clauses; a candidate
longer than MAX_WORDS is never quoted whole (its clauses are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.index.protocol import Passage, SentenceRecord

MAX_WORDS = 40  # the default answer budget (settings.max_answer_words): users read the first line
CLAUSE_FROM_WORDS = 14  # shorter sentences are already short enough to quote whole
MAX_PIECES = 3
_CONJUNCTIONS = ("och", "men", "samt", "eller", "som", "där", "när", "då", "eftersom", "vilket", "vilka",
                 "medan", "varav", "vars", "så att", "för att", "genom att")  # fmt: skip
_BOUNDARY = re.compile(r"[,;:]\s+|\s+[–—]\s+|\s+(?=(?:" + "|".join(_CONJUNCTIONS) + r")\s)", re.I)
_LEADING = re.compile(r"^(?:(?:" + "|".join(_CONJUNCTIONS) + r")\s+)", re.I)
_TRAILING = re.compile(r"[\s,;:–—-]+$")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Candidate:
    passage: int  # position of its passage among those given (the hit rank)
    position: int  # its sentence's position in the passage; -1 for the heading
    kind: str  # "sentence", "clause" or "heading"
    start: int  # document offsets of exactly what would be quoted
    end: int
    text: str
    source: SentenceRecord  # the sentence or heading it comes from (its vector and stems)

    @property
    def words(self) -> int:
        return len(self.text.split())


def candidates(passages: list[Passage], max_words: int = MAX_WORDS) -> list[Candidate]:
    """The quotable spans of the passages, each distinct span once (overlapping passages share some)."""
    out: list[Candidate] = []
    seen: set[tuple[int, int]] = set()

    def add(candidate: Candidate) -> None:
        if (candidate.start, candidate.end) not in seen and candidate.words <= max_words:
            seen.add((candidate.start, candidate.end))
            out.append(candidate)

    for rank, passage in enumerate(passages):
        if passage.heading is not None:
            add(_whole(rank, -1, "heading", passage.heading))
        for position, sentence in enumerate(passage.sentences):
            add(_whole(rank, position, "sentence", sentence))
            if len(sentence.text.split()) >= CLAUSE_FROM_WORDS:
                for start, end in clause_spans(sentence.text):
                    add(Candidate(rank, position, "clause", sentence.start + start, sentence.start + end,
                                  sentence.text[start:end], sentence))  # fmt: skip
    return out


def clause_spans(text: str) -> list[tuple[int, int]]:
    """Offsets (within `text`) of its clauses: runs of 1..MAX_PIECES pieces, not the whole sentence."""
    cuts = [0, *(m.end() for m in _BOUNDARY.finditer(text)), len(text)]
    pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]
    spans = []
    for i in range(len(pieces)):
        for j in range(i, min(i + MAX_PIECES, len(pieces))):
            span = _trim(text, pieces[i][0], pieces[j][1])
            if span and len(text[span[0] : span[1]].split()) >= 2 and span != _trim(text, 0, len(text)):
                spans.append(span)
    return list(dict.fromkeys(spans))


def _whole(rank: int, position: int, kind: str, record: SentenceRecord) -> Candidate:
    return Candidate(rank, position, kind, record.start, record.end, record.text, record)


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop surrounding space, a leading conjunction and trailing commas/dashes."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    start += lead
    piece = piece.strip()
    conjunction = _LEADING.match(piece)
    if conjunction and conjunction.end() < len(piece):
        start += conjunction.end()
        piece = piece[conjunction.end() :]
    tail = _TRAILING.search(piece)
    if tail:
        piece = piece[: tail.start()]
    return (start, start + len(piece)) if piece else None
