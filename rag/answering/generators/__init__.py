"""Generator backends: retrieved passages -> an answer with [n] citations.

A backend is a factory `(settings, embedder) -> Generator`, found by name in the `rag.generators`
entry-point group. The built-ins (`extractive`, and `openai` for any OpenAI-compatible server) are
registered there by this package's own pyproject.toml, exactly as a third-party package registers
its backend: there is one way in. Configuration comes at construction, the question per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import ClassVar, Protocol

import numpy as np

from rag.errors import GeneratorError
from rag.index.protocol import Store
from rag.types import Answer, Hit

GROUP = "rag.generators"


class Generator(Protocol):
    name: ClassVar[str]
    streams: ClassVar[bool]  # yields text progressively

    def stream(self, question: str, query_vector: np.ndarray, hits: list[Hit],
               store: Store) -> Iterator[str | Answer]:  # fmt: skip
        """Text as it is produced, then the final Answer (always the last item)."""
        ...


def final_answer(items: Iterator[str | Answer]) -> Answer:
    """The Answer at the end of a generator's stream."""
    *_, answer = items
    return answer


def available() -> dict[str, EntryPoint]:
    """Every installed backend by name: the built-ins and plug-ins alike."""
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def create_generator(name: str, settings, embedder) -> Generator:
    """A ready backend called `name`, configured with `settings` and the assistant's `embedder`."""
    backends = available()
    if name not in backends:
        hint = ("" if backends else " No backend is registered at all: reinstall the package "
                "(pip install -e .) so its entry points are written.")  # fmt: skip
        raise GeneratorError(
            f"Unknown generator {name!r}. Choose one of: {', '.join(sorted(backends)) or 'none'} (or install "
            f"a package that provides it through the '{GROUP}' entry point).{hint}"
        )
    entry = backends[name]
    try:
        factory = entry.load()
    except Exception as error:  # a broken plugin: ImportError, AttributeError, its own bugs
        raise GeneratorError(f"The generator {name!r} could not be loaded ({entry.value}): {error}") from error
    return factory(settings, embedder)


__all__ = ["GROUP", "Generator", "available", "create_generator", "final_answer"]
