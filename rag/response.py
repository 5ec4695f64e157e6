"""Answer -> the response JSON shared by `rag ask --json`, the batch file and POST /api/ask."""

from __future__ import annotations

from rag.answer import Answer, Citation
from rag.retrieve import Hit


def answer_to_dict(answer: Answer) -> dict:
    return {
        "question": answer.question,
        "answer": answer.text,
        "answered": answer.answered,
        "confidence": round(answer.confidence, 4),
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
    return {
        "n": citation.n,
        **passage_to_dict(citation.hit),
        "start": citation.start,
        "end": citation.end,
        "passage_start": citation.hit.chunk.start,
        "passage_end": citation.hit.chunk.end,
        "quote": citation.quote,
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
