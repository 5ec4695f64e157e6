"""The chat's layout (Gradio Blocks): header, filters, conversation, question box, tools, feedback,
footer, and the wiring of each control to its handler. Presentation only: answers come from the
shared `Assistant`; CSS and JS are in rag/web/static/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rag.pipeline import Assistant
from rag.settings import Settings
from rag.web.feedback import MAX_COMMENT_CHARS, FeedbackLog
from rag.web.ui.handlers import (
    _ask_handler,
    _chips,
    _copied,
    _documents,
    _drop_report,
    _drop_year,
    _export,
    _example,
    _footer_text,
    _on_comment,
    _on_like,
    _refresh,
    _reset,
    generator_options,
    report_choices,
    year_choices,
)  # fmt: skip
from rag.web.ui.labels import ALL_YEARS, EXAMPLES, GRADIO_SV, MAX_CHIPS

STATIC = Path(__file__).resolve().parent.parent / "static"
COPY_JS = (STATIC / "copy.js").read_text()
DOWNLOAD_JS = (STATIC / "download.js").read_text()


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
    export: gr.Button
    export_text: gr.Textbox
    chips: list  # the row, its heading, the year chip, the report chips (handlers.chip_updates)


def build_ui(assistant: Assistant, settings: Settings, feedback_log: FeedbackLog) -> gr.Blocks:
    """The chat: filters, conversation with cited answers and source cards, feedback, copy, clear."""
    with gr.Blocks(
        title="Frågor om kommundirektörens rapporter", analytics_enabled=False, fill_width=False
    ) as demo:
        parts = _layout(assistant, settings)
        _wire(demo, parts, assistant, feedback_log)
    return demo


def swedish() -> gr.I18n:
    """Gradio's own strings that its Swedish locale lacks (see labels.GRADIO_SV)."""
    return gr.I18n(sv=GRADIO_SV)


def _layout(assistant: Assistant, settings: Settings) -> _Parts:
    documents = _documents(assistant)
    gr.HTML(
        '<header class="rag-header"><h1>Frågor om kommundirektörens rapporter</h1>'
        "<p>Ställ en fråga om Tyresö kommuns rapporter. Svaret citerar rapporterna ordagrant, "
        "med källa. Klicka på [1] för att se stycket svaret kommer från.</p></header>"
    )
    reports, year, generator = _filter_controls(documents, settings)
    chatbot = _chatbot()
    # The active filters, visible also with "Avgränsa sökningen" closed; each chip's ✕ removes it.
    with gr.Row(visible=False, elem_id="rag-chips") as chips:
        chips_heading = gr.Markdown("Sökningen är avgränsad till:", elem_classes=["rag-chips-heading"])
        year_chip = gr.Button("", visible=False, size="sm", elem_classes=["rag-chip"], min_width=0)
        report_chips = [
            gr.Button("", visible=False, size="sm", elem_classes=["rag-chip"], min_width=0) for _ in range(MAX_CHIPS)
        ]
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
        export = gr.Button("Exportera samtalet", size="sm", elem_id="rag-export", min_width=120)
        clear = gr.Button("Rensa chatten", size="sm", elem_id="rag-clear", min_width=120)
    # elem_classes, not elem_id: Gradio puts a Group's elem_id on two nested elements (a duplicate id)
    with gr.Group(visible=False, elem_classes=["rag-feedback"]) as feedback_row:
        comment = gr.Textbox(
            label="Kommentar (valfritt)",
            lines=2,
            max_length=MAX_COMMENT_CHARS,
            placeholder="Vad var bra eller fel med svaret?",
            elem_id="rag-comment",
        )
        send_comment = gr.Button("Skicka kommentar", size="sm", elem_id="rag-send-comment")
    status = gr.Markdown("", elem_id="rag-status")  # static/chat.js makes it a polite live region
    footer = gr.Markdown(_footer_text(assistant), elem_id="rag-footer")
    copy_text = gr.Textbox(visible=False)
    export_text = gr.Textbox(visible=False)
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
        chips=[chips, chips_heading, year_chip, *report_chips],
        export=export,
        export_text=export_text,
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
                elem_id="rag-reports",
            )
            year = gr.Dropdown(year_choices(documents), value=ALL_YEARS, label="År", min_width=140, elem_id="rag-year")
        # filled in on load (generator_options): the LLM server may come and go while the app runs
        generator = gr.Radio(label="Svarsmotor", elem_id="rag-generator",
                             **generator_options(settings, reachable=lambda: False))  # fmt: skip
    return reports, year, generator


def _chatbot() -> gr.Chatbot:
    """Messages are our escaped HTML: markdown and LaTeX off, Gradio's sanitizer on as well."""
    # The label is not shown (on a phone it covered the placeholder's first line); static/chat.js names
    # the conversation "Samtal" for screen readers instead of Gradio's English "chatbot conversation".
    return gr.Chatbot(
        label="Samtal",
        show_label=False,
        elem_id="rag-chat",
        height=None,
        min_height=200,
        max_height="68vh",
        render_markdown=False,
        sanitize_html=True,
        allow_tags=False,
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        buttons=[],
        layout="panel",
        autoscroll=False,  # static/chat.js scrolls to the newest turn (Gradio stopped following after two)
        placeholder="<p class='rag-placeholder'>Svaren visas här, med citat och källor.</p>",
        examples=[{"text": q} for q in EXAMPLES],
    )


def _wire(demo: gr.Blocks, p: _Parts, assistant: Assistant, feedback_log: FeedbackLog) -> None:
    ask = _ask_handler(assistant)
    ask_inputs = [p.question, p.chatbot, p.turns, p.reports, p.year, p.generator]
    ask_outputs = [p.chatbot, p.question, p.turns, p.copy_text]
    p.question.submit(ask, ask_inputs, ask_outputs, api_name=False, show_progress="minimal")
    p.chatbot.example_select(_example, None, p.question, api_name=False).then(
        ask, ask_inputs, ask_outputs, api_name=False, show_progress="minimal"
    )
    p.chatbot.like(_on_like(feedback_log), [p.turns], [p.pending, p.feedback_row, p.status], api_name=False)
    p.send_comment.click(
        _on_comment(feedback_log),
        [p.pending, p.comment],
        [p.pending, p.feedback_row, p.comment, p.status],
        api_name=False,
    )
    reset = [p.chatbot, p.turns, p.copy_text, p.pending, p.feedback_row, p.status]
    # One control clears the chat, "Rensa chatten": Gradio's own trash icon is hidden (ui.css), and is
    # wired to the same reset so that it could never clear the screen but keep the conversation.
    p.clear.click(_reset, None, reset, api_name=False, queue=False)
    p.chatbot.clear(_reset, None, reset, api_name=False, queue=False)
    p.copy.click(_copied, [p.copy_text], [p.status], js=COPY_JS, api_name=False, queue=False)
    p.export.click(_export, [p.turns], [p.export_text, p.status], api_name=False, queue=False).then(
        None, [p.export_text], None, js=DOWNLOAD_JS, api_name=False, queue=False
    )
    show_chips = _chips(assistant)
    for control in (p.reports, p.year):
        control.change(show_chips, [p.reports, p.year], p.chips, api_name=False, queue=False, show_progress="hidden")
    p.chips[2].click(_drop_year, None, p.year, api_name=False, queue=False)
    for i, chip in enumerate(p.chips[3:]):
        chip.click(_drop_report(i), [p.reports], p.reports, api_name=False, queue=False)
    outputs = [p.reports, p.year, p.generator, p.footer]
    # Hidden progress: the filters and footer are not dimmed while the page's first refresh runs.
    demo.load(_refresh(assistant), None, outputs, api_name=False, queue=False, show_progress="hidden")
