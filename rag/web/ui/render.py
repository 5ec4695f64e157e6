"""Answers as HTML for the chat: the quoted answer with [n] links, the question as it was read when a
follow-up was rewritten ("Tolkad som: …"), source cards with the quote marked (and the item asked for
in bold inside it), the nearest passages after an abstention, and the plain text for the copy button.

Everything that comes from a question or a report is escaped (`text()`) before it is put into the
HTML shown in the chat, so markup or markdown in a report or a question is shown as text and never
runs or loads anything. The chatbot's own sanitizer stays on as a second line of defence.
"""

from __future__ import annotations

import html
import re

from rag.web.reports import report_title
from rag.web.ui.labels import LABELS, NEAREST_SHOWN, READ_REPORT

_CITE = re.compile(r"\[(\d{1,3})\]")
# Characters that markdown, LaTeX or HTML could read as syntax; written as numeric entities.
_MARKUP = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'`*_[](){}!#|~$\\:=+-^"})


def text(value) -> str:
    """Any text from a question or a report, made safe to put inside HTML or markdown."""
    return str(value if value is not None else "").translate(_MARKUP)


# Emphasis marks left in the reports' text by its conversion ("*samordnad varudistribution*", "unga.*"):
# shown literally they are noise, so quoted report text leaves them out (a lone " * " stays).
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}(?=[^\s*])|(?<=[^\s*])\*{1,2}(?![\w*])")


def quoted(value) -> str:
    """Text from a report (a passage, a quote, an answer made of quotes), escaped like text()."""
    return text(_EMPHASIS.sub("", str(value if value is not None else "")))


def answer_html(response: dict, uid: str, scope: str = "") -> str:
    """One assistant message: the quoted answer with [n] links, then its source cards. `scope` names
    the active filters ("Kommundirektörens rapport maj 2017 (2017-05); år 2017"), shown by the sources."""
    # Swedish labels whatever the question's language: the page around them stays Swedish (WCAG 3.1.1),
    # and the answer is quoted from Swedish reports.
    lang = "sv"
    labels = LABELS[lang]
    if not response.get("answered"):
        return _abstention_html(response, uid, labels, scope)
    parts = [
        f'<div class="rag-answer" lang="{lang}"><p class="rag-text">',
        _linked_answer(response["answer"], {c["n"]: c for c in response["citations"]}, uid, labels),
        "</p>",
        interpreted_html(response, labels),
    ]
    if response.get("notice"):
        parts.append(f'<p class="rag-notice">{text(response["notice"])}</p>')
    parts.append(f'<section class="rag-sources"><h3 class="rag-heading">{labels["sources"]}</h3>')
    parts.append(scope_html(scope, labels))
    parts += [_source_card(c, uid, labels) for c in response["citations"]]
    parts.append("</section></div>")
    return "".join(parts)


def interpreted_html(response: dict, labels: dict) -> str:
    """'Tolkad som: …' when the question searched is not the one asked (a follow-up made standalone)."""
    read_as = response.get("interpreted_as")
    if not read_as or read_as == response.get("question"):
        return ""
    return f'<p class="rag-interpreted">{labels["interpreted"]}: <q>{text(read_as)}</q></p>'


def streaming_html(partial: str, question: str) -> str:
    """The answer so far, while the generator is still writing."""
    body = quoted(partial) if partial else LABELS["sv"]["thinking"]
    return f'<div class="rag-answer rag-pending" aria-busy="true"><p class="rag-text">{body}</p></div>'


def error_html(message: str, question: str) -> str:
    labels = LABELS["sv"]
    return (
        f'<div class="rag-answer rag-error" role="alert"><p><strong>{labels["error"]}:</strong> '
        f"{text(message)}</p></div>"
    )


def _linked_answer(answer: str, citations: dict[int, dict], uid: str, labels: dict) -> str:
    """Escape the answer text, put the item asked for in bold, and turn its [n] markers into links to
    the source cards."""
    out, last = [], 0
    for match in _CITE.finditer(answer):
        n = int(match.group(1))
        if n not in citations:
            continue
        out.append(_with_key(answer[last : match.start()], citations[n]))
        out.append(
            f'<a class="rag-cite" id="{_cite_id(uid, n)}" href="#{_card_id(uid, n)}">&#91;<span class="rag-sr">'
            f"{labels['source']} </span>{n}&#93;</a>"
        )
        last = match.end()
    out.append(quoted(answer[last:]))
    return "".join(out)


def _with_key(segment: str, citation: dict) -> str:
    """The answer text before a [n] marker, escaped, with the citation's key span in bold where the
    segment holds the quote verbatim (an LLM's own words get no bold)."""
    key, quote = citation.get("key"), citation.get("quote") or ""
    at = segment.find(quote) if key and quote else -1
    if at < 0:
        return quoted(segment)
    k0, k1 = at + key["start"] - citation["start"], at + key["end"] - citation["start"]
    if not at <= k0 < k1 <= at + len(quote):
        return quoted(segment)
    return f'{quoted(segment[:k0])}<strong class="rag-key">{quoted(segment[k0:k1])}</strong>{quoted(segment[k1:])}'


def scope_html(scope: str, labels: dict) -> str:
    """'Sökt endast i: …' when filters narrowed the search (empty without filters)."""
    return f'<p class="rag-scope">{labels["scope"]}: {text(scope)}</p>' if scope else ""


def _abstention_html(response: dict, uid: str, labels: dict, scope: str = "") -> str:
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
        f'<div class="rag-answer rag-abstain" lang="{labels["lang"]}"><p class="rag-text"><strong>'
        f'{labels["no_answer"]}</strong></p>{interpreted_html(response, labels)}{scope_html(scope, labels)}'
        f"{nearest}</div>"
    )


def _source_card(citation: dict, uid: str, labels: dict) -> str:
    offset = citation["passage_start"]
    key = citation.get("key")
    key_span = (key["start"] - offset, key["end"] - offset) if key else None
    back = (
        f'<a class="rag-back" href="#{_cite_id(uid, citation["n"])}">'
        f'{labels["back"]}<span class="rag-sr"> [{citation["n"]}]</span></a>'
    )
    if citation.get("report_href"):
        # Relative, like the footer's links, so it works under any root path (static/chat.js resolves
        # it against the app when the chat is a web component on another page).
        back += (
            f'<a class="rag-report-link" href="{html.escape(citation["report_href"])}">{READ_REPORT}'
            f'<span class="rag-sr">: {text(citation.get("section") or "")}</span></a>'
        )
    return _card(
        citation,
        _card_id(uid, citation["n"]),
        f"[{citation['n']}]",
        highlighted(citation["text"], citation["start"] - offset, citation["end"] - offset, key_span),
        labels,
        footer=back,
    )


def _passage_card(passage: dict, card_id: str, labels: dict) -> str:
    return _card(passage, card_id, "–", quoted(passage["text"]), labels, extra_class="rag-card-nearest")


def _card(
    item: dict, card_id: str, badge: str, passage_html: str, labels: dict, extra_class: str = "", footer: str = ""
) -> str:
    classes = f"rag-card {extra_class}".strip()
    return (
        f'<details class="{classes}" id="{card_id}">'
        f'<summary><span class="rag-badge">{text(badge)}</span> '
        f'<span class="rag-title">{text(report_title(item["title"], item.get("date")))}</span>'
        f'<span class="rag-meta">{_meta(item, labels)}</span></summary>'
        f'<blockquote class="rag-passage">{passage_html}</blockquote>{footer}</details>'
    )


def _meta(item: dict, labels: dict) -> str:
    date = text(item.get("date") or labels["undated"])
    dnr = text(item.get("diarienummer") or labels["no_dnr"])
    return (
        f"<span>{date}</span><span>{labels['dnr']} {dnr}</span>"
        f"<span>{labels['section']}: {text(item.get('section') or '–')}</span>"
    )


def highlighted(passage: str, start: int, end: int, key: tuple[int, int] | None = None) -> str:
    """The passage with [start, end) marked and the key span inside it in bold; offsets outside the
    passage (or a key outside the mark) are clamped."""
    start, end = max(0, min(start, len(passage))), max(0, min(end, len(passage)))
    if end <= start:
        return quoted(passage)
    quote = quoted(passage[start:end])
    if key is not None:
        k0, k1 = max(start, min(key[0], end)), max(start, min(key[1], end))
        if k1 > k0:
            quote = (
                f"{quoted(passage[start:k0])}<strong class=\"rag-key\">{quoted(passage[k0:k1])}</strong>"
                f"{quoted(passage[k1:end])}"
            )
    return f"{quoted(passage[:start])}<mark>{quote}</mark>{quoted(passage[end:])}"


def _card_id(uid: str, n: int) -> str:
    return f"kalla-{uid}-{n}"


def _cite_id(uid: str, n: int) -> str:
    return f"hanvisning-{uid}-{n}"


def plain_answer(response: dict) -> str:
    """The answer and its sources as plain text, for the copy button."""
    lines = [response["answer"] or LABELS["sv"]["no_answer"], ""]
    for c in response.get("citations", []):
        lines.append(
            f"[{c['n']}] {report_title(c['title'], c.get('date'))} ({c.get('date') or 'odaterad'}, dnr "
            f"{c.get('diarienummer') or '–'}) – {c.get('section') or '–'}"
        )
    return "\n".join(lines).strip()


def conversation_markdown(turns: list[dict]) -> str:
    """The whole conversation as markdown, for "Exportera samtalet": each question, its answer (or that
    there was none) and its sources with the quoted passage."""
    lines = ["# Frågor om kommundirektörens rapporter – samtal", ""]
    for i, turn in enumerate(turns, 1):
        response = turn["response"]
        lines += [f"## Fråga {i}: {response['question']}", ""]
        lines += [response["answer"] if response.get("answered") else LABELS["sv"]["no_answer"], ""]
        if turn.get("scope"):
            lines += [f"{LABELS['sv']['scope']}: {turn['scope']}", ""]
        if response.get("citations"):
            lines += [f"### {LABELS['sv']['sources']}", ""]
        for c in response.get("citations", []):
            lines.append(
                f"{c['n']}. {report_title(c['title'], c.get('date'))} ({c.get('date') or 'odaterad'}, "
                f"dnr {c.get('diarienummer') or '–'}), avsnitt: {c.get('section') or '–'}"
            )
            if c.get("quote"):
                lines.append(f"   > {' '.join(c['quote'].split())}")
        lines.append("")
    return "\n".join(lines).strip() + "\n"
