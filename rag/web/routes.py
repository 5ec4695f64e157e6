"""The JSON API under /api: ask, documents, health. Request bodies are validated by pydantic models;
bad input is a 422 with one readable Swedish line, a missing index or model a 503 with what to do
(without the server's paths: those go to the log)."""

from __future__ import annotations

import logging
import re
import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rag.answering import generators
from rag.errors import BusyError, InputError, RagError
from rag.pipeline import Assistant
from rag.settings import Settings
from rag.types import CitedSource, Filters, Turn, answer_to_dict

MAX_QUESTION_BODY = 20_000  # hard cap on the raw field; the pipeline enforces settings.max_question_chars
MAX_HISTORY_TURNS = 20
ISO_DATE = r"^\d{4}(-\d{2}){0,2}$"
# An absolute path in an error message ("No index in /srv/rag/index."): the server's business, not the client's.
_PATH = re.compile(r"(?<![\w/.:])/(?:[^\s'\"`,;()]+)")
log = logging.getLogger("rag.web")


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date_from: str | None = Field(None, max_length=10, pattern=ISO_DATE, examples=["2017"])
    date_to: str | None = Field(None, max_length=10, pattern=ISO_DATE, examples=["2017-12-31"])
    doc_ids: list[str] = Field(default_factory=list, max_length=200)


class CitedSourceIn(BaseModel):
    """A citation of an earlier answer, as the response gave it; other keys of it (n, title, ...) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)
    doc_id: str = Field(..., min_length=1, max_length=200)
    section: str | None = Field(None, max_length=1000)
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)
    quote: str | None = Field(None, max_length=MAX_QUESTION_BODY)


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: str = Field(..., max_length=MAX_QUESTION_BODY)
    answer: str | None = Field(None, max_length=MAX_QUESTION_BODY)
    citations: list[CitedSourceIn] = Field(default_factory=list, max_length=50)


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., max_length=MAX_QUESTION_BODY, examples=["Vem är ny ekonomichef?"])
    k: int | None = Field(None, ge=1, le=100, description="passages to return (at least 10 are retrieved)")
    filters: FiltersIn | None = None
    generator: str | None = Field(None, max_length=64, description="a name from GET /api/health")
    history: list[TurnIn] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_TURNS,
        description="the conversation's earlier turns, oldest first: question, answer and citations as returned",
    )


BUSY = "Tjänsten är upptagen just nu. Försök igen om några sekunder."
BUSY_RETRY_S = 5


class AnswerGate:
    """At most `workers` answers at once and `waiting` more in line, and at most `per_client` of those
    places for one client; anything beyond is refused at once (BusyError), never queued without bound:
    threads that wait are threads health and static files lack, and one client's flood must not take
    every place from the others."""

    def __init__(self, workers: int, waiting: int, wait_s: float, per_client: int = 2):
        self.workers = threading.BoundedSemaphore(max(1, workers))
        self.admitted = threading.BoundedSemaphore(max(1, workers) + max(0, waiting))
        self.wait_s = wait_s
        self.per_client = max(1, per_client)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def run(self, work, client: str = ""):
        with self._lock:
            if self._held.get(client, 0) >= self.per_client:
                raise BusyError(BUSY, BUSY_RETRY_S)
            self._held[client] = self._held.get(client, 0) + 1
        try:
            if not self.admitted.acquire(blocking=False):
                raise BusyError(BUSY, BUSY_RETRY_S)
            try:
                if not self.workers.acquire(timeout=self.wait_s):
                    raise BusyError(BUSY, BUSY_RETRY_S)
                try:
                    return work()
                finally:
                    self.workers.release()
            finally:
                self.admitted.release()
        finally:
            with self._lock:
                self._held[client] -= 1
                if not self._held[client]:
                    del self._held[client]


def add_routes(app: FastAPI, assistant: Assistant, settings: Settings) -> None:
    gate = AnswerGate(settings.concurrency_limit, settings.api_queue_limit, settings.api_queue_wait_s,
                      settings.api_client_limit)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        detail = _validation_message(error, settings.max_question_chars)
        return JSONResponse({"detail": detail, "errors": _plain_errors(error)}, 422)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError):
        status = status_for(error)
        if status >= 500 and not isinstance(error, BusyError):  # a flood of refusals is not news
            log.warning("%s: %s", type(error).__name__, error)
        headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, BusyError) else None
        return JSONResponse({"detail": public_message(error), "error": type(error).__name__}, status, headers=headers)

    @app.post("/api/ask", tags=["api"], summary="Ställ en fråga; svaret citerar rapporterna")
    def ask(body: AskIn, request: Request) -> dict:
        filters = _filters(body.filters, assistant)
        check_generator(body.generator, settings)
        history = to_history(body.history, settings.max_question_chars)
        client = request.client.host if request.client else ""  # the proxy's X-Forwarded-For, when trusted
        answer = gate.run(lambda: assistant.ask(body.question, k=body.k, filters=filters, generator=body.generator,
                                                history=history), client)  # fmt: skip
        return answer_to_dict(answer)

    @app.get("/api/documents", tags=["api"], summary="Rapporterna i indexet")
    def documents() -> list[dict]:
        return [
            {"id": d.id, "title": d.title, "date": d.date, "diarienummer": d.diarienummer, "sections": list(d.sections)}
            for d in assistant.store.documents().values()
        ]

    @app.get("/api/health", tags=["api"], summary="Status, indexversion och modell")
    async def health():
        try:
            store = await run_in_threadpool(lambda: assistant.store)
        except RagError as error:
            log.warning("%s: %s", type(error).__name__, error)
            return JSONResponse({"status": "unavailable", "detail": public_message(error)}, 503)
        problem = assistant.index_problem  # logged once, when the version was refused
        return {
            "status": "degraded" if problem else "ok",
            "index_version": store.version,
            "index_problem": public_message_text(problem) if problem else None,
            "model": settings.model,
            "documents": len(store.documents()),
            "chunks": store.chunk_count,
            "generator": settings.generator,
            "generators": client_generators(settings),
        }


def status_for(error: RagError) -> int:
    """Bad input is the caller's to fix (422); anything else is ours: unavailable until fixed (503)."""
    return 422 if isinstance(error, InputError) else 503


def public_message(error: RagError) -> str:
    """The error's message for a client: what to do, without the server's file paths."""
    return public_message_text(str(error))


def public_message_text(message: str) -> str:
    return _PATH.sub("…", message)


def client_generators(settings: Settings) -> list[str]:
    """The generators a client may choose (settings.client_generators), always with the site's default."""
    allowed = {settings.generator, *settings.client_generators.split()}
    return sorted(allowed & set(generators.available()))


def check_generator(name: str | None, settings: Settings) -> None:
    if name is not None and name not in client_generators(settings):
        raise InputError(
            f"Okänd eller otillåten svarsmotor {name[:64]!r}. Välj en av: {', '.join(client_generators(settings))}."
        )


def to_history(turns: list[TurnIn], max_question_chars: int) -> tuple[Turn, ...]:
    """The API's history as the pipeline's Turns; a question longer than a question may be is a 422."""
    out = []
    for i, turn in enumerate(turns):
        question = " ".join(turn.question.split())
        if not question:
            raise InputError(f"history[{i}].question är tom; varje tidigare tur behöver sin fråga.")
        if len(question) > max_question_chars:
            raise InputError(
                f"history[{i}].question är för lång ({len(question)} tecken; högst {max_question_chars})."
            )
        cited = tuple(CitedSource(c.doc_id, c.section, c.start, c.end, c.quote) for c in turn.citations)
        out.append(Turn(question, turn.answer, cited))
    return tuple(out)


def _filters(given: FiltersIn | None, assistant: Assistant) -> Filters | None:
    if given is None:
        return None
    unknown = sorted(set(given.doc_ids) - set(assistant.store.documents()))
    if unknown:
        raise InputError(f"Okända rapport-id: {', '.join(unknown)[:300]}. Se GET /api/documents.")
    return Filters(given.date_from, given.date_to, tuple(given.doc_ids))


def _validation_message(error: RequestValidationError, max_question_chars: int) -> str:
    """One readable line: 'Ogiltig förfrågan – k: Input should be a valid integer; ...'."""
    lines = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        if where == "question" and item.get("type") == "string_too_long":
            return (
                f"Frågan är för lång ({len(item.get('input') or '')} tecken); korta den till högst "
                f"{max_question_chars} tecken."
            )
        lines.append(f"{where}: {item.get('msg', 'invalid')}")
    return "Ogiltig förfrågan – " + "; ".join(lines)


def _plain_errors(error: RequestValidationError) -> list[dict]:
    """The pydantic errors without echoing the (possibly huge) input back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in error.errors()[:20]
    ]


