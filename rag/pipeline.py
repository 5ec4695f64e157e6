"""The assembled pipeline: question -> retrieve -> answer, with model, index and generators loaded once.

`Assistant` is what the CLI, the API, the UI and the eval share. It notices a newly published index
version and swaps to it between questions; a question in flight keeps the version it started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from rag.answering.conversation import Interpretation, interpret
from rag.answering.extractive import NO_ANSWER, extract_answer
from rag.answering.generators import Generator, create_generator, final_answer
from rag.embedding import Embedder, real_embedder
from rag.errors import IndexMismatchError, IndexNotFoundError, InputError, RagError
from rag.index import load_serving, load_store, open_backend
from rag.index.protocol import Backend, Store
from rag.search.rerank import rerank
from rag.search.retrieve import retrieve
from rag.settings import Settings
from rag.types import Answer, Filters, Hit, Turn

log = logging.getLogger(__name__)
MAX_TURNS = 20  # the conversation's last turns that are read; the API refuses more
PRIOR_BONUS = 0.05  # about half the gap between a right and a near-miss passage (cf. the date bonus, 0.1)
PRIOR_POOL = 20  # extra passages retrieved so a prior report's can move up


class Assistant:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None,
                 backend: Backend | None = None):  # fmt: skip
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or real_embedder(self.settings)
        self.backend = backend or open_backend(self.settings)
        self._store: Store | None = None
        self._refused: tuple[str | None, str] | None = None  # a published version that failed to load, and why
        self._generators: dict[str, Generator] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The live index version, reloaded when `rag index` has published a new one. A new version
        that cannot be loaded (damaged, or built for another model) leaves the loaded one serving,
        and `index_problem` says why; with nothing loaded yet, its error is raised."""
        live = self.backend.current_version()
        if self._store is None or (live is not None and live != self._store.version):
            with self._lock:
                if self._store is None or live != self._store.version:
                    self._reload(live)
        return self._store

    @property
    def index_problem(self) -> str | None:
        """Why the published index version is not the one serving, or None when it is."""
        return None if self._refused is None else self._refused[1]

    def _reload(self, live: str | None) -> None:
        if self._store is not None and self._refused is not None and self._refused[0] == live:
            return  # already refused: checked again only when another version is published
        try:
            if self._store is None:  # starting: the newest intact version, should the live one be damaged
                self._store, problem = load_serving(self.settings, self.embedder.fingerprint(), self.backend)
                self._refused = None if problem is None else (live, problem)
            else:
                self._store = load_store(self.settings, self.embedder.fingerprint(), self.backend)
                self._refused = None
        except (IndexNotFoundError, IndexMismatchError) as error:
            if self._store is None:
                raise
            self._refused = (live, f"{error} Still serving version {self._store.version}.")
        if self._refused is not None:
            log.warning("Index version %s not loaded: %s", live, self._refused[1])

    def generator(self, name: str | None = None) -> Generator:
        """The backend called `name` (default: the settings'), built once and kept."""
        name = name or self.settings.generator
        if name not in self._generators:
            with self._lock:
                if name not in self._generators:
                    self._generators[name] = create_generator(name, self.settings, self.embedder)
        return self._generators[name]

    def warm_up(self) -> str:
        """Load the model, query backend, index and keyword index now rather than on the first
        question, by answering one (extractively: never a call to an LLM)."""
        self.ask("uppstart", generator="extractive")
        return self.store.version

    def ask(self, question: str, *, k: int | None = None, filters: Filters | None = None,
            generator: str | None = None, history: Sequence[Turn] = ()) -> Answer:  # fmt: skip
        """Answer one question, in the conversation `history` (earlier turns, oldest first). Raises
        InputError for an empty or oversized question."""
        return final_answer(self.stream(question, k=k, filters=filters, generator=generator, history=history))

    def stream(self, question: str, *, k: int | None = None, filters: Filters | None = None,
               generator: str | None = None, history: Sequence[Turn] = ()) -> Iterator[str | Answer]:  # fmt: skip
        """Text as the generator produces it, then the final Answer (always the last item)."""
        question = validate_question(question, self.settings.max_question_chars)
        backend = self.generator(generator)
        store = self.store  # one version for the whole question
        clock = _Clock()
        reading = self.interpret(question, history, store)
        query = reading.query  # what is searched and answered: the question, written out if it is a follow-up
        query_vector = self.embedder.encode_queries([query])[0]
        clock.lap("embed")
        k = max(k or self.settings.k, 10)

        def search(within: Filters | None) -> list[Hit]:
            found = retrieve(query, query_vector, store, k=k + PRIOR_POOL if reading.prior_docs else k,
                             filters=within, weights=self.settings.fusion_weights,
                             date_bonus=self.settings.date_bonus)  # fmt: skip
            return rerank(query, with_prior(found, reading.prior_docs)[:k], self.settings.reranker)

        hits = search(filters)
        rivals = search(None) if narrows(filters) else []
        clock.lap("retrieve")
        interpreted_as = query if query != question else None
        for item in backend.stream(query, query_vector, hits, store):
            if isinstance(item, Answer):
                item = filter_gate(item, query, query_vector, hits, rivals, store, self.settings)
                clock.lap("answer")
                yield replace(item, question=question, interpreted_as=interpreted_as, timings_ms=clock.timings())
            else:
                yield item

    def interpret(self, question: str, history: Sequence[Turn], store: Store) -> Interpretation:
        """The standalone question behind a follow-up: by rules (the default), or by the LLM when
        settings.condense is "llm" (falling back to the rules when it cannot answer)."""
        history = tuple(history)[-MAX_TURNS:]
        if history and self.settings.condense == "llm":
            from rag.answering.generators.condense import condense

            written = condense(question, history, self.settings)
            if written is not None:
                rules = interpret(question, history, store)  # for its report prior
                return Interpretation(written, written != question, rules.prior_docs if rules.followup else ())
        return interpret(question, history, store)


def narrows(filters: Filters | None) -> bool:
    return filters is not None and bool(filters.date_from or filters.date_to or filters.doc_ids)


def filter_gate(answer: Answer, question: str, query_vector, hits: list[Hit], rivals: list[Hit], store: Store,
                settings: Settings) -> Answer:  # fmt: skip
    """A filtered question judged like any other: the reader's confidence is taken with the
    unfiltered search's best passages read beside the allowed ones (extract_answer's `rivals`), and
    an answer below the bar then is withheld, whichever backend wrote it. Without a filter, as is."""
    if not rivals or not answer.answered:
        return answer
    judged = extract_answer(question, query_vector, hits, store, settings, rivals=rivals)
    if not judged.answered:
        return Answer(answer.question, NO_ANSWER, False, (), answer.passages, judged.confidence, answer.generator,
                      answerability=judged.answerability)  # fmt: skip
    return replace(answer, confidence=min(answer.confidence, judged.confidence), answerability=judged.answerability)


def with_prior(hits: list[Hit], prior_docs: Sequence[str], bonus: float = PRIOR_BONUS) -> list[Hit]:
    """Hits re-ranked with `bonus` added to passages of the reports the previous answer cited: the
    conversation's topic as a prior, never a filter."""
    if not prior_docs:
        return hits
    lifted = [replace(h, score=h.score + bonus) if h.chunk.doc_id in prior_docs else h for h in hits]
    return sorted(lifted, key=lambda h: -h.score)


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


def validate_question(question, max_chars: int) -> str:
    if not isinstance(question, str):
        raise InputError("The question must be text.")
    question = " ".join(question.split())
    if not question:
        raise InputError("Skriv en fråga först. (The question is empty.)")
    if len(question) > max_chars:
        raise InputError(f"Frågan är för lång ({len(question)} tecken); korta den till högst {max_chars} tecken.")
    return question


def ask_batch(rows: Iterable[dict], assistant: Assistant, *, progress: bool = True) -> Iterator[dict]:
    """One response dict per question row; a bad row gets an `error` instead of stopping the batch.

    A row may carry `history`: the conversation before its question, oldest first, as turn objects
    ({"question", "answer"?, "citations"?}) or as plain earlier questions, which are answered here
    first (not timed) so the follow-up sees the answers a user would have seen.
    """
    from tqdm import tqdm

    from rag.types import answer_to_dict, error_to_dict

    try:
        assistant.warm_up()  # latency is per question: loading is not charged to the first one
    except RagError:
        pass  # every row below reports it
    rows = list(rows)
    for row in tqdm(rows, desc="Frågor", unit="fråga", disable=not progress):
        try:
            filters = Filters(**row["filters"]) if isinstance(row.get("filters"), dict) else None
            history = _history(row.get("history") or [], assistant)
            answer = assistant.ask(row.get("question", ""), filters=filters, history=history)
            yield {"id": row.get("id"), **answer_to_dict(answer)}
        except (RagError, TypeError) as error:
            yield {"id": row.get("id"), **error_to_dict(row.get("question"), error)}


def _history(items: list, assistant: Assistant) -> tuple[Turn, ...]:
    """A batch row's history as Turns; plain questions are answered in order, each in its own context."""
    from rag.types import CitedSource, turn_of

    if not isinstance(items, list) or len(items) > MAX_TURNS:
        raise InputError(f"history must be a list of at most {MAX_TURNS} earlier turns.")
    turns: list[Turn] = []
    for item in items:
        if isinstance(item, str):
            turns.append(turn_of(assistant.ask(item, history=turns)))
        elif isinstance(item, dict) and isinstance(item.get("question"), str):
            cited = tuple(CitedSource(str(c.get("doc_id", "")), c.get("section"), c.get("start"), c.get("end"),
                                      c.get("quote")) for c in item.get("citations") or [] if isinstance(c, dict))  # fmt: skip
            turns.append(Turn(item["question"], item.get("answer"), cited))
        else:
            raise InputError("Each history item must be an earlier question or {\"question\", \"answer\", \"citations\"}.")
    return tuple(turns)
