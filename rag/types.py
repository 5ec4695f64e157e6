"""The data that flows between the stages, and its JSON form: the response schema lives here, once.

Chunk (ingest) -> Hit (search) -> Citation, Answer (answering) -> `answer_to_dict`, the JSON that
`rag ask --json`, each line of a batch file and POST /api/ask all return. Everything here is a
frozen dataclass carrying its provenance (document, section, character offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.errors import InputError

Span = tuple[int, int]
_ISO = re.compile(r"^\d{4}(-\d{2}){0,2}$")


@dataclass(frozen=True, slots=True)
class Signature:
    """Who signed a report (its closing signature block): "Bo Renman", "Kommundirektör"."""

    name: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    doc_id: str
    title: str
    date: str | None
    diarienummer: str | None
    section: str
    text: str
    start: int
    end: int
    sentences: tuple[Span, ...]  # document offsets of the sentences inside this chunk
    heading: Span | None = None  # document offsets of the section's heading line, if it has one


@dataclass(frozen=True, slots=True)
class CitedSource:
    """What an earlier turn of a conversation cited: enough to carry its topic over."""

    doc_id: str
    section: str | None = None
    start: int | None = None
    end: int | None = None
    quote: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier turn of the conversation, oldest first: the question, and what was answered."""

    question: str
    answer: str | None = None
    citations: tuple[CitedSource, ...] = ()


@dataclass(frozen=True, slots=True)
class Filters:
    """Restrict retrieval to reports dated within [date_from, date_to] and/or to given document ids."""

    date_from: str | None = None
    date_to: str | None = None
    doc_ids: tuple[str, ...] = ()

    def __post_init__(self):
        for value in (self.date_from, self.date_to):
            if value is not None and not is_real_date(value):
                raise InputError(f"Date filter {value!r} is not a real ISO date like 2017, 2017-05 or 2017-05-31.")


def is_real_date(value: str) -> bool:
    """YYYY, YYYY-MM or YYYY-MM-DD naming a day that exists (not 2017-99-99 or 2017-02-30)."""
    import datetime

    if not _ISO.match(value):
        return False
    padded = value + "-01" * (2 - value.count("-"))
    try:
        datetime.date.fromisoformat(padded)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    number: int  # position of the chunk in the index version
    score: float  # fused score, higher is better
    dense: float  # cosine similarity to the question
    lexical: float  # BM25 score


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    hit: Hit
    start: int  # document offsets of the quoted text
    end: int
    quote: str
    score: float
    key: Span | None = None  # document offsets of the single item asked for (a name, number, date)


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    answered: bool
    citations: tuple[Citation, ...]
    passages: tuple[Hit, ...]
    confidence: float  # the probability that the answer is right (the extractive reader's, calibrated)
    generator: str = "extractive"
    notice: str | None = None
    dropped_sentences: int = 0  # generated sentences the citation check removed ...
    checked_sentences: int = 0  # ... out of this many it judged (0 for the extractive answer)
    timings_ms: dict[str, float] = field(default_factory=dict)
    interpreted_as: str | None = None  # the standalone question searched, when it differs from the one asked
    answerability: float | None = None  # the reader's probability that the passages answer at all: abstention's


def turn_of(answer: Answer) -> Turn:
    """An answered question as a turn of the conversation that follows it."""
    cited = tuple(CitedSource(c.hit.chunk.doc_id, c.hit.chunk.section, c.start, c.end, c.quote) for c in answer.citations)
    return Turn(answer.question, answer.text if answer.answered else None, cited)


# -- JSON -----------------------------------------------------------------------------------------


def answer_to_dict(answer: Answer) -> dict:
    return {
        "question": answer.question,
        "interpreted_as": answer.interpreted_as,
        "answer": answer.text,
        "answered": answer.answered,
        "confidence": round(answer.confidence, 4),
        "answerability": None if answer.answerability is None else round(answer.answerability, 4),
        "generator": answer.generator,
        "notice": answer.notice,
        "dropped_sentences": answer.dropped_sentences,
        "checked_sentences": answer.checked_sentences,
        "citations": [citation_to_dict(c) for c in answer.citations],
        "passages": [passage_to_dict(h) for h in answer.passages],
        "timings_ms": dict(answer.timings_ms),
    }


def passage_to_dict(hit: Hit) -> dict:
    chunk = hit.chunk
    return {
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "title": chunk.title,
        "date": chunk.date,
        "diarienummer": chunk.diarienummer,
        "section": chunk.section,
        "text": chunk.text,
        "start": chunk.start,
        "end": chunk.end,
        "score": round(hit.score, 6),
    }


def citation_to_dict(citation: Citation) -> dict:
    chunk = citation.hit.chunk
    shown, shown_start = chunk.text, chunk.start
    if chunk.heading is not None and citation.start < chunk.start:
        # A quoted heading sits above the passage: the card shows it, a blank line, then the passage.
        shown, shown_start = f"{citation.quote}\n\n{chunk.text}", citation.start
    return {
        "n": citation.n,
        **passage_to_dict(citation.hit),
        "text": shown,
        "start": citation.start,
        "end": citation.end,
        "passage_start": shown_start,
        "passage_end": chunk.end,
        "quote": citation.quote,
        "key": None if citation.key is None else {"start": citation.key[0], "end": citation.key[1]},
        "score": round(citation.score, 6),
    }


def error_to_dict(question, error: Exception) -> dict:
    return {
        "question": question,
        "answer": "",
        "answered": False,
        "citations": [],
        "passages": [],
        "timings_ms": {},
        "error": str(error),
    }
