"""The default backend: quote the sentences that answer, no LLM needed."""

from __future__ import annotations

from collections.abc import Iterator

from rag.answering.extractive import extract_answer
from rag.types import Answer


class ExtractiveGenerator:
    name = "extractive"
    streams = False

    def __init__(self, settings, embedder=None):
        self.settings = settings

    def stream(self, question, query_vector, hits, store) -> Iterator[str | Answer]:
        answer = extract_answer(question, query_vector, hits, store, self.settings)
        yield answer.text
        yield answer
