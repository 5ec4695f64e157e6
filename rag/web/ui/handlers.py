"""What happens when someone uses the chat: ask (streaming, in the conversation so far), like/dislike
and comment, copy, clear (a new conversation), load (filters, generator choice and footer)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping

import gradio as gr
import httpx

from rag.errors import RagError
from rag.index.protocol import DocumentInfo
from rag.pipeline import Assistant
from rag.settings import Settings
from rag.types import CitedSource, Filters, Turn, answer_to_dict
from rag.web.feedback import MAX_COMMENT_CHARS, FeedbackLog, feedback_record
from rag.web.routes import MAX_HISTORY_TURNS, check_generator, client_generators, public_message
from rag.web.reports import REPORTS_PATH, report_title, with_report_links
from rag.web.ui.labels import ALL_YEARS, DEFAULT_MARK, GENERATOR_LABELS, LLM_GENERATORS, MAX_CHIPS, STATEMENT_LINK
from rag.web.ui.labels import REPORTS_LINK
from rag.web.ui.render import answer_html, conversation_markdown, error_html, plain_answer, streaming_html, text

LLM_PROBE_TIMEOUT_S = 1.0
LLM_PROBE_TTL_S = 30.0
UNEXPECTED_ERROR = "Något gick oväntat fel. Försök igen om en stund; kvarstår felet, kontakta den som driver tjänsten."
log = logging.getLogger("rag.web")


def report_choices(documents: Mapping[str, DocumentInfo]) -> list[tuple[str, str]]:
    """(label, doc_id) for the report filter, newest first; undated reports last."""
    rows = sorted(documents.items(), key=lambda kv: kv[1].date or "", reverse=True)
    # The date stays in the label: two reports of one month are told apart by it.
    return [(f"{report_title(d.title, d.date)} ({d.date or 'odaterad'})", doc_id) for doc_id, d in rows]


def year_choices(documents: Mapping[str, DocumentInfo]) -> list[str]:
    years = sorted({d.date[:4] for d in documents.values() if d.date}, reverse=True)
    return [ALL_YEARS, *years]


def to_filters(doc_ids: list[str] | None, year: str | None) -> Filters | None:
    year = None if year in (None, "", ALL_YEARS) else year
    if not doc_ids and not year:
        return None
    return Filters(date_from=year, date_to=year, doc_ids=tuple(doc_ids or ()))


def report_label(documents: Mapping[str, DocumentInfo], doc_id: str) -> str:
    return dict((d, label) for label, d in report_choices(documents)).get(doc_id, doc_id)


def scope_text(documents: Mapping[str, DocumentInfo], doc_ids: list[str] | None, year: str | None) -> str:
    """The active filters in words, for the answer's source line ('' when there are none)."""
    parts = [report_label(documents, d) for d in doc_ids or ()]
    if year not in (None, "", ALL_YEARS):
        parts.append(f"år {year}")
    return "; ".join(parts)


def chip_updates(documents: Mapping[str, DocumentInfo], doc_ids: list[str] | None, year: str | None) -> list:
    """The filter chips above the question box: the row, its heading, the year chip, one chip per report."""
    doc_ids = list(doc_ids or [])
    has_year = year not in (None, "", ALL_YEARS)
    more = len(doc_ids) - MAX_CHIPS
    heading = "Sökningen är avgränsad till:" + (f" (och {more} rapporter till, se Avgränsa sökningen)" if more > 0 else "")
    updates = [
        gr.update(visible=bool(doc_ids) or has_year),
        gr.update(value=heading),
        gr.update(visible=has_year, value=f"År {year} ✕" if has_year else ""),
    ]
    for i in range(MAX_CHIPS):
        shown = i < len(doc_ids)
        updates.append(gr.update(visible=shown, value=f"{report_label(documents, doc_ids[i])} ✕" if shown else ""))
    return updates


def _chips(assistant: Assistant):
    def chips(doc_ids, year):
        return chip_updates(_documents(assistant), doc_ids, year)

    return chips


def _drop_report(i: int):
    """A report chip's ✕: that report out of the filter."""

    def drop(doc_ids):
        doc_ids = list(doc_ids or [])
        return [d for n, d in enumerate(doc_ids) if n != i]

    return drop


def _drop_year():
    return ALL_YEARS


def conversation(turns: list[dict]) -> tuple[Turn, ...]:
    """The chat's earlier turns (kept on the server in gr.State) as the pipeline's history, oldest first."""
    history = []
    for turn in turns[-MAX_HISTORY_TURNS:]:
        response = turn["response"]
        cited = tuple(
            CitedSource(c["doc_id"], c.get("section"), c.get("start"), c.get("end"), c.get("quote"))
            for c in response.get("citations", [])
        )
        answer = response.get("answer") if response.get("answered") else None
        history.append(Turn(response["question"], answer, cited))
    return tuple(history)


def _ask_handler(assistant: Assistant):
    settings = assistant.settings

    def ask(question, history, turns, doc_ids, year, generator, request: gr.Request):
        history, turns = list(history or []), list(turns or [])
        if not (question or "").strip():
            yield history, question, turns, gr.skip()
            return
        history += [
            {"role": "user", "content": text(question)},
            {"role": "assistant", "content": streaming_html("", question)},
        ]
        yield list(history), "", turns, gr.skip()
        try:
            check_generator(generator, settings)
            version = assistant.store.version
            partial = ""
            stream = assistant.stream(
                question, filters=to_filters(doc_ids, year), generator=generator, history=conversation(turns)
            )
            for item in stream:
                if isinstance(item, str):
                    partial += item
                    history[-1] = {"role": "assistant", "content": streaming_html(partial, question)}
                    yield list(history), "", turns, gr.skip()
                    continue
                response = with_report_links(answer_to_dict(item), assistant.store)
                scope = scope_text(_documents(assistant), doc_ids, year)
                turn = {"id": uuid.uuid4().hex[:12], "message": len(history) - 1, "response": response,
                        "index_version": version, "scope": scope}  # fmt: skip
                history[-1] = {"role": "assistant", "content": answer_html(response, turn["id"], scope)}
                yield history, "", [*turns, turn], plain_answer(response)
        except RagError as error:  # its message says what to do; the server's paths stay in the log
            log.warning("%s: %s", type(error).__name__, error)
            history[-1] = {"role": "assistant", "content": error_html(public_message(error), question)}
            yield history, question, turns, gr.skip()
        except Exception:  # a bug: nothing of it in the chat (show_error would put str(e) in a toast)
            log.exception("The chat's answer failed")
            history[-1] = {"role": "assistant", "content": error_html(UNEXPECTED_ERROR, question)}
            yield history, question, turns, gr.skip()

    return ask


def _reset():
    """Rensa chatten: a new conversation (no turns carried over), feedback and status cleared."""
    return [], [], "", None, gr.update(visible=False), "Chatten är tömd. Nästa fråga startar ett nytt samtal."


def _export(turns: list[dict]) -> tuple[str, str]:
    """'Exportera samtalet': the conversation as markdown (static/download.js saves it) and the status."""
    if not turns:
        return "", "Det finns inget samtal att exportera än. Ställ en fråga först."
    return conversation_markdown(turns), f"Samtalet ({len(turns)} frågor) är sparat som en markdown-fil."


def _copied(value: str) -> str:
    """The status line after 'Kopiera svaret' (static/copy.js has already copied `value`, if any)."""
    if not (value or "").strip():
        return "Det finns inget svar att kopiera än. Ställ en fråga först."
    return "Svaret och källorna är kopierade."


def _example(data: gr.SelectData) -> str:
    value = data.value
    return value.get("text", "") if isinstance(value, dict) else str(value)


def _turn_for(turns: list[dict], message_index) -> dict | None:
    index = message_index[0] if isinstance(message_index, (list, tuple)) else message_index
    return next((t for t in turns if t["message"] == index), None)


def _on_like(log: FeedbackLog):
    def on_like(turns, data: gr.LikeData, request: gr.Request):
        turn = _turn_for(turns or [], data.index)
        if turn is None or data.liked is None or data.liked == "":
            return None, gr.update(visible=False), ""
        rating = "up" if data.liked is True or data.liked == "Like" else "down"
        log.write(feedback_record(turn, rating, user=_user(request)))
        pending = {"turn": turn, "rating": rating}
        return pending, gr.update(visible=True), "Tack! Vill du lägga till en kommentar?"

    return on_like


def _on_comment(log: FeedbackLog):
    def on_comment(pending, comment, request: gr.Request):
        comment = (comment or "").strip()
        if len(comment) > MAX_COMMENT_CHARS:  # the browser's limit is a convenience; this one holds
            message = f"Kommentaren är för lång ({len(comment)} tecken); korta den till högst {MAX_COMMENT_CHARS}."
            return pending, gr.update(visible=True), gr.skip(), message
        if pending and comment:
            log.write(feedback_record(pending["turn"], pending["rating"], comment, _user(request)))
        return None, gr.update(visible=False), "", "Tack för din återkoppling!"

    return on_comment


def generator_options(settings: Settings, reachable=None) -> dict:
    """The generator choice's settings: only what clients may pick, the site's default marked, and a
    language model left out (with the reason in the help text) while its server does not answer."""
    reachable = reachable or (lambda: llm_reachable(settings))
    names = client_generators(settings)
    down = [n for n in names if n in LLM_GENERATORS and n != settings.generator and not reachable()]
    shown = [n for n in names if n not in down]
    default = GENERATOR_LABELS.get(settings.generator, settings.generator)
    info = f"Standard för den här webbplatsen: {default}. Extraktiv citerar meningar ur rapporterna ordagrant."
    if down:
        info += " Språkmodellen kan inte väljas just nu: dess server svarar inte."
    return {"choices": [(_generator_label(n, settings), n) for n in shown], "value": settings.generator,
            "visible": len(shown) > 1 or bool(down), "info": info}  # fmt: skip


def _generator_label(name: str, settings: Settings) -> str:
    label = GENERATOR_LABELS.get(name, name)
    return f"{label} – {DEFAULT_MARK}" if name == settings.generator else label


_probe_lock = threading.Lock()
_probed: dict[str, tuple[float, bool]] = {}


def llm_reachable(settings: Settings) -> bool:
    """Does the language-model server answer (GET {llm_base_url}/models)? Remembered for a while."""
    url = settings.llm_base_url.rstrip("/") + "/models"
    with _probe_lock:
        when, ok = _probed.get(url, (0.0, False))
    if time.monotonic() - when < LLM_PROBE_TTL_S:
        return ok
    try:
        ok = httpx.get(url, timeout=LLM_PROBE_TIMEOUT_S).status_code < 500
    except httpx.HTTPError:
        ok = False
    with _probe_lock:
        _probed[url] = (time.monotonic(), ok)
    return ok


def _refresh(assistant: Assistant):
    """On page load: filter choices, generator choice and footer from the live index and LLM server."""

    def refresh():
        documents = _documents(assistant)
        return (
            gr.update(choices=report_choices(documents)),
            gr.update(choices=year_choices(documents)),
            gr.update(**generator_options(assistant.settings)),
            _footer_text(assistant),
        )

    return refresh


def _documents(assistant: Assistant) -> Mapping[str, DocumentInfo]:
    try:
        return assistant.store.documents()
    except RagError:
        return {}


def _footer_text(assistant: Assistant) -> str:
    # relative to the app; static/chat.js resolves it against the app's root when it is a web component
    statement = f"[{REPORTS_LINK}]({REPORTS_PATH}) · [{STATEMENT_LINK}](tillganglighet)"
    try:
        store = assistant.store
    except RagError as error:
        return f"Indexet kunde inte läsas: {text(public_message(error))} · {statement}"
    # For the public: no index version or API routes (those are in GET /api/health and the docs).
    return f"Söker i {len(store.documents())} rapporter ({store.chunk_count} passager). Inget lämnar servern. · {statement}"


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None

