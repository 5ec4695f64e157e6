"""The assembled pipeline: question -> retrieve -> answer, with the model and index loaded once.

`Assistant` is what the CLI, the API, the UI and the eval share. It notices a rebuilt index (a new
CURRENT version) and swaps to it between questions; a question in flight keeps the index it started with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace

from rag.answer import Answer
from rag.embed import Embedder, SentenceTransformerEmbedder
from rag.errors import InputError, RagError
from rag.generators import get_generator
from rag.index import Index, current_version, load_index
from rag.rerank import rerank
from rag.retrieve import Filters, retrieve
from rag.settings import Settings


class Assistant:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None):
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or SentenceTransformerEmbedder(self.settings)
        self._index: Index | None = None
        self._lock = threading.Lock()

    @property
    def index(self) -> Index:
        """The live index, reloaded when `rag index` has published a new version."""
        live = current_version(self.settings.index_dir)
        if self._index is None or (live is not None and live != self._index.version):
            with self._lock:
                if self._index is None or live != self._index.version:
                    self._index = load_index(self.settings, check=self.embedder.fingerprint())
        return self._index

    def warm_up(self) -> str:
        """Load the model, query backend, index and keyword index now rather than on the first
        question, by answering one (extractively: never a call to an LLM)."""
        self.ask("uppstart", generator="extractive")
        return self.index.version

    def ask(self, question: str, *, k: int | None = None, filters: Filters | None = None,
            generator: str | None = None) -> Answer:  # fmt: skip
        """Answer one question. Raises InputError for an empty or oversized question."""
        *_, answer = self.stream(question, k=k, filters=filters, generator=generator)
        return answer

    def stream(self, question: str, *, k: int | None = None, filters: Filters | None = None,
               generator: str | None = None) -> Iterator[str | Answer]:  # fmt: skip
        """Text as the generator produces it, then the final Answer (always the last item)."""
        question = validate_question(question, self.settings)
        backend = get_generator(generator or self.settings.generator)
        index = self.index  # one version for the whole question
        clock = _Clock()
        query_vector = self.embedder.encode_queries([question])[0]
        clock.lap("embed")
        hits = retrieve(question, query_vector, index, k=max(k or self.settings.k, 10), filters=filters,
                        weights=self.settings.fusion_weights, date_bonus=self.settings.date_bonus)  # fmt: skip
        hits = rerank(question, hits, self.settings)
        clock.lap("retrieve")
        for item in backend.stream(question, query_vector, hits, index, self.settings):
            if isinstance(item, Answer):
                clock.lap("answer")
                yield replace(item, timings_ms=clock.timings())
            else:
                yield item


class _Clock:
    def __init__(self):
        self.began = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self.last) * 1000
        self.last = now

    def timings(self) -> dict[str, float]:
        total = (time.perf_counter() - self.began) * 1000
        return {k: round(v, 2) for k, v in {**self.laps, "total": total}.items()}


def validate_question(question, settings: Settings) -> str:
    if not isinstance(question, str):
        raise InputError("The question must be text.")
    question = " ".join(question.split())
    if not question:
        raise InputError("Skriv en fråga först. (The question is empty.)")
    if len(question) > settings.max_question_chars:
        raise InputError(
            f"Frågan är för lång ({len(question)} tecken); korta den till högst "
            f"{settings.max_question_chars} tecken."
        )
    return question


def ask_batch(rows: Iterable[dict], settings: Settings, *, progress: bool = True,
              assistant: Assistant | None = None) -> Iterator[dict]:  # fmt: skip
    """One response dict per question row; a bad row gets an `error` instead of stopping the batch."""
    from tqdm import tqdm

    from rag.response import answer_to_dict, error_to_dict

    assistant = assistant or Assistant(settings)
    try:
        assistant.warm_up()  # latency is per question: loading is not charged to the first one
    except RagError:
        pass  # every row below reports it
    rows = list(rows)
    for row in tqdm(rows, desc="Frågor", unit="fråga", disable=not progress):
        try:
            filters = Filters(**row["filters"]) if isinstance(row.get("filters"), dict) else None
            answer = assistant.ask(row.get("question", ""), filters=filters)
            yield {"id": row.get("id"), **answer_to_dict(answer)}
        except (RagError, TypeError) as error:
            yield {"id": row.get("id"), **error_to_dict(row.get("question"), error)}
