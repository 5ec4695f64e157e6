"""The chat UI (Gradio Blocks): presentation only. Answers come from the shared `Assistant`.

Everything that comes from a question or a report is escaped (`text()`) before it is put into the
HTML shown in the chat, so markup or markdown in a report or a question is shown as text and never
runs or loads anything. The chatbot's own sanitizer stays on as a second line of defence.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError
from rag.generators import available
from rag.pipeline import Assistant
from rag.response import answer_to_dict
from rag.retrieve import Filters
from rag.settings import Settings

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
import gradio as gr

EXAMPLES = [
    "Vem är ny ekonomichef?",
    "Vad hände efter attentatet i Stockholm den 7 april?",
    "Hur förbättrades servicenivån per telefon och e-post?",
    "Vilka nya riktlinjer finns för bisysslor?",
]
NEAREST_SHOWN = 3
GENERATOR_LABELS = {"extractive": "Extraktiv (citat)", "openai": "Språkmodell (OpenAI-kompatibel)"}
ALL_YEARS = "Alla år"

LABELS = {
    "sv": {
        "sources": "Källor",
        "nearest": "Närmaste passager – inget svar",
        "nearest_note": "Passagerna nedan liknar frågan mest men besvarar den inte.",
        "no_answer": "Jag hittar inget svar på det i rapporterna.",
        "undated": "odaterad",
        "dnr": "Dnr",
        "no_dnr": "saknas",
        "section": "Avsnitt",
        "source": "Källa",
        "thinking": "Söker i rapporterna …",
        "error": "Det gick inte att svara",
    },
    "en": {
        "sources": "Sources",
        "nearest": "Closest passages – not an answer",
        "nearest_note": "The passages below are the most similar to the question but do not answer it.",
        "no_answer": "I can't find an answer to that in the reports.",
        "undated": "undated",
        "dnr": "Reg. no.",
        "no_dnr": "none",
        "section": "Section",
        "source": "Source",
        "thinking": "Searching the reports …",
        "error": "Could not answer",
    },
}

_ENGLISH = {
    "what",
    "who",
    "when",
    "where",
    "which",
    "how",
    "why",
    "is",
    "are",
    "the",
    "does",
    "did",
    "was",
    "were",
    "many",
    "much",
    "new",
    "of",
    "in",
    "for",
    "about",
}
_SWEDISH = {
    "vad",
    "vem",
    "när",
    "var",
    "vilka",
    "vilken",
    "hur",
    "varför",
    "är",
    "och",
    "som",
    "det",
    "den",
    "på",
    "om",
    "för",
    "med",
    "ny",
    "nya",
    "många",
    "mycket",
    "finns",
}
_CITE = re.compile(r"\[(\d{1,3})\]")
# Characters that markdown, LaTeX or HTML could read as syntax; written as numeric entities.
_MARKUP = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'`*_[](){}!#|~$\\:=+-^"})


# -- text and language ---------------------------------------------------------------------------


def text(value) -> str:
    """Any text from a question or a report, made safe to put inside HTML or markdown."""
    return str(value if value is not None else "").translate(_MARKUP)


def language(question: str) -> str:
    """'en' when the question reads as English, else 'sv' (the default)."""
    words = re.findall(r"[a-zåäöé]+", question.lower())
    english = sum(w in _ENGLISH for w in words)
    swedish = sum(w in _SWEDISH for w in words) + 2 * bool(re.search(r"[åäö]", question.lower()))
    return "en" if english > swedish else "sv"


# -- answer HTML ---------------------------------------------------------------------------------


def answer_html(response: dict, uid: str) -> str:
    """One assistant message: the quoted answer with [n] links, then its source cards."""
    lang = language(response.get("question", ""))
    labels = LABELS[lang]
    if not response.get("answered"):
        return _abstention_html(response, uid, labels)
    numbers = {c["n"] for c in response["citations"]}
    parts = [
        f'<div class="rag-answer" lang="{lang}"><p class="rag-text">',
        _linked_answer(response["answer"], numbers, uid, labels),
        "</p>",
    ]
    if response.get("notice"):
        parts.append(f'<p class="rag-notice">{text(response["notice"])}</p>')
    parts.append(f'<section class="rag-sources"><h3 class="rag-heading">{labels["sources"]}</h3>')
    parts += [_source_card(c, uid, labels) for c in response["citations"]]
    parts.append("</section></div>")
    return "".join(parts)


def streaming_html(partial: str, question: str) -> str:
    """The answer so far, while the generator is still writing."""
    body = text(partial) if partial else LABELS[language(question)]["thinking"]
    return f'<div class="rag-answer rag-pending" aria-busy="true"><p class="rag-text">{body}</p></div>'


def error_html(message: str, question: str) -> str:
    labels = LABELS[language(question)]
    return (
        f'<div class="rag-answer rag-error" role="alert"><p><strong>{labels["error"]}:</strong> '
        f"{text(message)}</p></div>"
    )


def _linked_answer(answer: str, numbers: set[int], uid: str, labels: dict) -> str:
    """Escape the answer text and turn its [n] markers into links to the source cards."""
    out, last = [], 0
    for match in _CITE.finditer(answer):
        n = int(match.group(1))
        if n not in numbers:
            continue
        out.append(text(answer[last : match.start()]))
        out.append(
            f'<a class="rag-cite" href="#{_card_id(uid, n)}">&#91;<span class="rag-sr">'
            f"{labels['source']} </span>{n}&#93;</a>"
        )
        last = match.end()
    out.append(text(answer[last:]))
    return "".join(out)


def _abstention_html(response: dict, uid: str, labels: dict) -> str:
    cards = [
        _passage_card(p, f"{uid}-p{i}", labels) for i, p in enumerate(response["passages"][:NEAREST_SHOWN])
    ]
    nearest = ""
    if cards:
        nearest = (
            f'<section class="rag-nearest"><h3 class="rag-heading">{labels["nearest"]}</h3>'
            f'<p class="rag-note">{labels["nearest_note"]}</p>{"".join(cards)}</section>'
        )
    return (
        f'<div class="rag-answer rag-abstain"><p class="rag-text"><strong>{labels["no_answer"]}</strong></p>'
        f"{nearest}</div>"
    )


def _source_card(citation: dict, uid: str, labels: dict) -> str:
    start = citation["start"] - citation["passage_start"]
    end = citation["end"] - citation["passage_start"]
    return _card(
        citation,
        _card_id(uid, citation["n"]),
        f"[{citation['n']}]",
        highlighted(citation["text"], start, end),
        labels,
    )


def _passage_card(passage: dict, card_id: str, labels: dict) -> str:
    return _card(passage, card_id, "–", text(passage["text"]), labels, extra_class="rag-card-nearest")


def _card(
    item: dict, card_id: str, badge: str, passage_html: str, labels: dict, extra_class: str = ""
) -> str:
    return (
        f'<details class="rag-card {extra_class}" id="{card_id}">'
        f'<summary><span class="rag-badge">{text(badge)}</span> '
        f'<span class="rag-title">{text(item["title"])}</span>'
        f'<span class="rag-meta">{_meta(item, labels)}</span></summary>'
        f'<blockquote class="rag-passage">{passage_html}</blockquote></details>'
    )


def _meta(item: dict, labels: dict) -> str:
    date = text(item.get("date") or labels["undated"])
    dnr = text(item.get("diarienummer") or labels["no_dnr"])
    return (
        f"<span>{date}</span><span>{labels['dnr']} {dnr}</span>"
        f"<span>{labels['section']}: {text(item.get('section') or '–')}</span>"
    )


def highlighted(passage: str, start: int, end: int) -> str:
    """The passage with [start, end) marked; offsets outside the passage are clamped."""
    start, end = max(0, min(start, len(passage))), max(0, min(end, len(passage)))
    if end <= start:
        return text(passage)
    return f"{text(passage[:start])}<mark>{text(passage[start:end])}</mark>{text(passage[end:])}"


def _card_id(uid: str, n: int) -> str:
    return f"kalla-{uid}-{n}"


def plain_answer(response: dict) -> str:
    """The answer and its sources as plain text, for the copy button."""
    lines = [response["answer"] or LABELS["sv"]["no_answer"], ""]
    for c in response.get("citations", []):
        lines.append(
            f"[{c['n']}] {c['title']} ({c.get('date') or 'odaterad'}, dnr "
            f"{c.get('diarienummer') or '–'}) – {c.get('section') or '–'}"
        )
    return "\n".join(lines).strip()


# -- filters -------------------------------------------------------------------------------------


def report_choices(documents: dict[str, dict]) -> list[tuple[str, str]]:
    """(label, doc_id) for the report filter, newest first; undated reports last."""
    rows = sorted(documents.items(), key=lambda kv: kv[1].get("date") or "", reverse=True)
    return [(f"{d['title']} ({d.get('date') or 'odaterad'})", doc_id) for doc_id, d in rows]


def year_choices(documents: dict[str, dict]) -> list[str]:
    years = sorted({d["date"][:4] for d in documents.values() if d.get("date")}, reverse=True)
    return [ALL_YEARS, *years]


def to_filters(doc_ids: list[str] | None, year: str | None) -> Filters | None:
    year = None if year in (None, "", ALL_YEARS) else year
    if not doc_ids and not year:
        return None
    return Filters(date_from=year, date_to=year, doc_ids=tuple(doc_ids or ()))


# -- feedback ------------------------------------------------------------------------------------

_feedback_lock = threading.Lock()


def write_feedback(path: Path, record: dict) -> None:
    """Append one feedback record (a JSON line); the latest record with an id wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False)
    with _feedback_lock, path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def feedback_record(turn: dict, rating: str, comment: str = "", user: str | None = None) -> dict:
    response = turn["response"]
    return {
        "id": turn["id"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rating": rating,
        "comment": comment,
        "question": response["question"],
        "answer": response["answer"],
        "answered": response["answered"],
        "citations": [
            {k: c[k] for k in ("n", "doc_id", "title", "section", "start", "end", "quote")}
            for c in response["citations"]
        ],
        "generator": response.get("generator"),
        "index_version": turn["index_version"],
        "user": user,
    }


# -- the Blocks ----------------------------------------------------------------------------------


@dataclass
class _Parts:
    chatbot: gr.Chatbot
    question: gr.Textbox
    reports: gr.Dropdown
    year: gr.Dropdown
    generator: gr.Radio
    turns: gr.State
    copy_text: gr.Textbox
    feedback_row: gr.Group
    comment: gr.Textbox
    pending: gr.State
    status: gr.Markdown
    footer: gr.Markdown
    copy: gr.Button
    clear: gr.Button
    send_comment: gr.Button


def build_ui(assistant: Assistant, settings: Settings) -> gr.Blocks:
    """The chat: filters, conversation with cited answers and source cards, feedback, copy, clear."""
    with gr.Blocks(
        title="Frågor om kommundirektörens rapporter", analytics_enabled=False, fill_width=False
    ) as demo:
        parts = _layout(assistant, settings)
        _wire(demo, parts, assistant, settings)
    return demo


def _layout(assistant: Assistant, settings: Settings) -> _Parts:
    documents = _documents(assistant)
    gr.HTML(
        '<header class="rag-header"><h1>Frågor om kommundirektörens rapporter</h1>'
        "<p>Ställ en fråga om Tyresö kommuns rapporter. Svaret citerar rapporterna ordagrant, "
        "med källa. Klicka på [1] för att se stycket svaret kommer från.</p></header>"
    )
    reports, year, generator = _filter_controls(documents, settings)
    chatbot = _chatbot()
    question = gr.Textbox(
        label="Din fråga",
        placeholder="Till exempel: Vem är ny ekonomichef?",
        lines=1,
        max_lines=4,
        max_length=settings.max_question_chars,
        submit_btn="Skicka",
        elem_id="rag-question",
    )
    with gr.Row(elem_id="rag-tools"):
        copy = gr.Button("Kopiera svaret", size="sm", elem_id="rag-copy", min_width=120)
        clear = gr.Button("Rensa chatten", size="sm", elem_id="rag-clear", min_width=120)
    with gr.Group(visible=False, elem_id="rag-feedback") as feedback_row:
        comment = gr.Textbox(
            label="Kommentar (valfritt)",
            lines=2,
            max_length=2000,
            placeholder="Vad var bra eller fel med svaret?",
            elem_id="rag-comment",
        )
        send_comment = gr.Button("Skicka kommentar", size="sm", elem_id="rag-send-comment")
    status = gr.Markdown("", elem_id="rag-status")
    footer = gr.Markdown(_footer_text(assistant), elem_id="rag-footer")
    copy_text = gr.Textbox(visible=False)
    return _Parts(
        chatbot=chatbot,
        question=question,
        reports=reports,
        year=year,
        generator=generator,
        turns=gr.State([]),
        copy_text=copy_text,
        feedback_row=feedback_row,
        comment=comment,
        pending=gr.State(None),
        status=status,
        footer=footer,
        copy=copy,
        clear=clear,
        send_comment=send_comment,
    )


def _filter_controls(documents: dict[str, dict], settings: Settings):
    """Report and year filters from the index, and the generator choice when there is one."""
    with gr.Accordion("Avgränsa sökningen", open=False, elem_id="rag-filters"):
        with gr.Row():
            reports = gr.Dropdown(
                report_choices(documents),
                multiselect=True,
                value=[],
                label="Rapporter",
                info="Tomt = alla rapporter",
                min_width=240,
            )
            year = gr.Dropdown(year_choices(documents), value=ALL_YEARS, label="År", min_width=140)
        names = sorted(available())
        generator = gr.Radio(
            [(GENERATOR_LABELS.get(n, n), n) for n in names],
            value=settings.generator,
            label="Svarsmotor",
            visible=len(names) > 1,
            info="Extraktiv citerar meningar ur rapporterna ordagrant.",
        )
    return reports, year, generator


def _chatbot() -> gr.Chatbot:
    """Messages are our escaped HTML: markdown and LaTeX off, Gradio's sanitizer on as well."""
    return gr.Chatbot(
        label="Samtal",
        elem_id="rag-chat",
        height=None,
        min_height=280,
        max_height="68vh",
        render_markdown=False,
        sanitize_html=True,
        allow_tags=False,
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        buttons=[],
        layout="panel",
        autoscroll=True,
        placeholder="<p class='rag-placeholder'>Svaren visas här, med citat och källor.</p>",
        examples=[{"text": q} for q in EXAMPLES],
    )


def _wire(demo: gr.Blocks, p: _Parts, assistant: Assistant, settings: Settings) -> None:
    ask = _ask_handler(assistant)
    ask_inputs = [p.question, p.chatbot, p.turns, p.reports, p.year, p.generator]
    ask_outputs = [p.chatbot, p.question, p.turns, p.copy_text]
    p.question.submit(ask, ask_inputs, ask_outputs, api_name=False, show_progress="minimal")
    p.chatbot.example_select(_example, None, p.question, api_name=False).then(
        ask, ask_inputs, ask_outputs, api_name=False, show_progress="minimal"
    )
    p.chatbot.like(_on_like(settings), [p.turns], [p.pending, p.feedback_row, p.status], api_name=False)
    p.send_comment.click(
        _on_comment(settings),
        [p.pending, p.comment],
        [p.pending, p.feedback_row, p.comment, p.status],
        api_name=False,
    )
    reset = [p.chatbot, p.turns, p.copy_text, p.pending, p.feedback_row, p.status]
    p.clear.click(_reset, None, reset, api_name=False, queue=False)
    p.chatbot.clear(_reset, None, reset, api_name=False, queue=False)
    p.copy.click(None, [p.copy_text], None, js=COPY_JS, api_name=False)
    demo.load(_refresh(assistant), None, [p.reports, p.year, p.footer], api_name=False, queue=False)


def _ask_handler(assistant: Assistant):
    def ask(question, history, turns, doc_ids, year, generator, request: gr.Request):
        history = list(history or [])
        if not (question or "").strip():
            yield history, question, turns, gr.skip()
            return
        history += [
            {"role": "user", "content": text(question)},
            {"role": "assistant", "content": streaming_html("", question)},
        ]
        yield list(history), "", turns, gr.skip()
        try:
            version = assistant.index.version
            filters = to_filters(doc_ids, year)
            partial = ""
            for item in assistant.stream(question, filters=filters, generator=generator):
                if isinstance(item, str):
                    partial += item
                    history[-1] = {"role": "assistant", "content": streaming_html(partial, question)}
                    yield list(history), "", turns, gr.skip()
                    continue
                response = answer_to_dict(item)
                turn = {
                    "id": uuid.uuid4().hex[:12],
                    "message": len(history) - 1,
                    "response": response,
                    "index_version": version,
                }
                history[-1] = {"role": "assistant", "content": answer_html(response, turn["id"])}
                yield history, "", [*turns, turn], plain_answer(response)
        except RagError as error:
            history[-1] = {"role": "assistant", "content": error_html(str(error), question)}
            yield history, question, turns, gr.skip()

    return ask


def _reset():
    return [], [], "", None, gr.update(visible=False), ""


def _example(data: gr.SelectData) -> str:
    value = data.value
    return value.get("text", "") if isinstance(value, dict) else str(value)


def _turn_for(turns: list[dict], message_index) -> dict | None:
    index = message_index[0] if isinstance(message_index, (list, tuple)) else message_index
    return next((t for t in turns if t["message"] == index), None)


def _on_like(settings: Settings):
    def on_like(turns, data: gr.LikeData, request: gr.Request):
        turn = _turn_for(turns or [], data.index)
        if turn is None or data.liked is None or data.liked == "":
            return None, gr.update(visible=False), ""
        rating = "up" if data.liked is True or data.liked == "Like" else "down"
        write_feedback(settings.feedback_log, feedback_record(turn, rating, user=_user(request)))
        pending = {"turn": turn, "rating": rating}
        return pending, gr.update(visible=True), "Tack! Vill du lägga till en kommentar?"

    return on_like


def _on_comment(settings: Settings):
    def on_comment(pending, comment, request: gr.Request):
        if pending and (comment or "").strip():
            record = feedback_record(pending["turn"], pending["rating"], comment.strip(), _user(request))
            write_feedback(settings.feedback_log, record)
        return None, gr.update(visible=False), "", "Tack för din återkoppling!"

    return on_comment


def _refresh(assistant: Assistant):
    """On page load: filter choices and footer from the live index (it may have been rebuilt)."""

    def refresh():
        documents = _documents(assistant)
        return (
            gr.update(choices=report_choices(documents)),
            gr.update(choices=year_choices(documents)),
            _footer_text(assistant),
        )

    return refresh


def _documents(assistant: Assistant) -> dict[str, dict]:
    try:
        return assistant.index.documents
    except RagError:
        return {}


def _footer_text(assistant: Assistant) -> str:
    try:
        index = assistant.index
    except RagError as error:
        return f"Indexet kunde inte läsas: {text(error)}"
    return (
        f"Söker i {len(index.documents)} rapporter ({len(index.chunks)} passager). "
        f"Indexversion {text(index.version)}. Inget lämnar servern. "
        "Samma svar som JSON: POST /api/ask (dokumentation på /docs)."
    )


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


# -- static assets (passed to mount_gradio_app) --------------------------------------------------

COPY_JS = """
(value) => {
  const done = () => {
    const b = document.querySelector('#rag-copy');
    if (!b) return;
    const label = b.textContent;
    b.textContent = 'Kopierat!';
    setTimeout(() => (b.textContent = label), 1500);
  };
  if (!value) return;
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(value).then(done);
  } else {
    const area = document.createElement('textarea');
    area.value = value;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    document.execCommand('copy');
    area.remove();
    done();
  }
}
"""

# Goes into the page's <head> (also the host page's, for <gradio-app>): a click on [n] opens and shows
# its source card; narrow windows get narrower margins (custom CSS cannot reach Gradio's outer box).
HEAD_JS = """
<style>
@media (max-width: 480px) {
  .gradio-container > .main { padding-left: 8px !important; padding-right: 8px !important; }
}
</style>
<script>
(() => {
  if (window.__ragCites) return; window.__ragCites = true;
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a.rag-cite');
    if (!link) return;
    event.preventDefault();
    const id = decodeURIComponent((link.getAttribute('href') || '').slice(1));
    const root = link.getRootNode ? link.getRootNode() : document;
    const card = (root.getElementById ? root : document).getElementById(id);
    if (!card) return;
    card.open = true;
    card.scrollIntoView({behavior: 'smooth', block: 'nearest'});
    const summary = card.querySelector('summary');
    if (summary) summary.focus({preventScroll: true});
  }, true);
  // Gradio labels each message with its raw content (our HTML); let screen readers read the message itself.
  const unlabel = () => document.querySelectorAll('[aria-label]').forEach((e) => {
    if (/^(bot|user)'s message/.test(e.getAttribute('aria-label'))) e.removeAttribute('aria-label');
  });
  new MutationObserver(unlabel).observe(document.documentElement,
    {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label']});
})();
</script>
"""

CSS = """
.rag-header h1 { font-size: 1.45rem; margin: 0 0 .25rem; }
.rag-header p { margin: 0; opacity: .8; }
.rag-answer { line-height: 1.55; }
.rag-answer .rag-text { margin: 0 0 .5rem; }
.rag-pending .rag-text { opacity: .75; font-style: italic; }
.rag-sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
.rag-cite { font-weight: 600; text-decoration: none; padding: 0 .15em; border-radius: 4px;
  color: var(--link-text-color, #1d4ed8); }
.rag-cite:hover, .rag-cite:focus-visible { text-decoration: underline; outline: 2px solid currentColor; }
.rag-heading { font-size: .95rem; font-weight: 600; margin: .75rem 0 .35rem; }
.rag-note, .rag-notice { font-size: .85rem; opacity: .8; margin: 0 0 .4rem; }
.rag-card { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: .4rem 0;
  background: var(--background-fill-secondary); }
.rag-card > summary { cursor: pointer; padding: .45rem .6rem; list-style-position: inside; }
.rag-card > summary:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.rag-badge { font-weight: 700; margin-right: .25rem; }
.rag-title { font-weight: 600; }
.rag-meta { display: flex; flex-wrap: wrap; gap: .2rem .9rem; font-size: .8rem; opacity: .8;
  margin: .15rem 0 0 1.1rem; }
.rag-passage { margin: 0; padding: .5rem .75rem .65rem; border-left: 3px solid var(--color-accent);
  white-space: pre-line; font-size: .9rem; overflow-wrap: anywhere; }
.rag-passage mark { background: #fde68a; color: #111827; padding: 0 .1em; border-radius: 2px; }
.rag-abstain > .rag-text { color: var(--body-text-color); }
.rag-nearest .rag-card { border-style: dashed; opacity: .92; }
.rag-nearest .rag-heading::before { content: "⚠ "; }
.rag-error { color: var(--error-text-color, #b91c1c); }
.rag-placeholder { opacity: .8; }
#rag-footer { font-size: .8rem; opacity: .8; }
@media (max-width: 480px) {
  .rag-header h1 { font-size: 1.15rem; }
  .rag-meta { margin-left: 0; }
}
"""
