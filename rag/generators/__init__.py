"""Generator backends: turn retrieved passages into an answer with [n] citations.

A backend is any class with the `Generator` protocol's attributes and methods. Built-ins are
registered here (`extractive`, and `openai` for any OpenAI-compatible server: openai_backend.py,
with prompt.py and the citation check in citations.py); third parties add theirs through the
`rag.generators` entry-point group. A backend whose constructor takes `embedder` gets the
assistant's embedder (the citation check embeds answer sentences with it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Protocol

import numpy as np

from rag.answer import Answer, extract_answer
from rag.errors import GeneratorError
from rag.generators.openai_backend import OpenAIGenerator
from rag.index import Index
from rag.retrieve import Hit
from rag.settings import Settings


class Generator(Protocol):
    name: ClassVar[str]
    streams: ClassVar[bool]  # yields text progressively
    needs_key: ClassVar[bool]  # needs an API key from the environment

    def answer(self, question: str, query_vector: np.ndarray, hits: list[Hit], index: Index,
               settings: Settings) -> Answer: ...  # fmt: skip

    def stream(self, question: str, query_vector: np.ndarray, hits: list[Hit], index: Index,
               settings: Settings) -> Iterator[str | Answer]: ...  # fmt: skip


class ExtractiveGenerator:
    """The default: quote the sentences that answer, no LLM needed."""

    name = "extractive"
    streams = False
    needs_key = False

    def answer(self, question, query_vector, hits, index, settings) -> Answer:
        return extract_answer(question, query_vector, hits, index, settings)

    def stream(self, question, query_vector, hits, index, settings) -> Iterator[str | Answer]:
        answer = self.answer(question, query_vector, hits, index, settings)
        yield answer.text
        yield answer


BUILTIN: dict[str, type] = {"extractive": ExtractiveGenerator, "openai": OpenAIGenerator}


def available() -> dict[str, type]:
    """Built-in backends plus those installed through the `rag.generators` entry points."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for entry in entry_points(group="rag.generators"):
        found.setdefault(entry.name, entry)
    return found


def get_generator(name: str, embedder=None) -> Generator:
    """An instance of the backend called `name`; `embedder` is passed on to backends that take one."""
    backends = available()
    if name not in backends:
        raise GeneratorError(
            f"Unknown generator {name!r}. Choose one of: {', '.join(sorted(backends))} "
            "(or install a package that provides it through the 'rag.generators' entry point)."
        )
    backend = backends[name]
    try:
        cls = backend if isinstance(backend, type) else backend.load()
    except Exception as error:  # a broken plugin: ImportError, AttributeError, its own bugs
        raise GeneratorError(
            f"The generator {name!r} could not be loaded ({backend.value}): {error}"
        ) from error
    if embedder is not None and _takes_embedder(cls):
        return cls(embedder=embedder)
    return cls()


def _takes_embedder(cls: type) -> bool:
    import inspect

    try:
        return "embedder" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
