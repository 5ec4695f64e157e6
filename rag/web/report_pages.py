"""Rapporterna: `{mount_path}/rapporter` lists every report in the live index, and
`{mount_path}/rapporter/{doc_id}` shows one report's full text with each section a heading anchored
`avsnitt-N`, so a source card can link to the section it cites. Server-rendered HTML in Swedish
(static/rapporter.html and static/rapporter.css); every value from a report is escaped. The login
gate is the chat's: AccessMiddleware protects these paths like the API (rag/web/app.py).

Links are relative (a report id may hold folders: "2017/maj.txt"), so the pages work under any root
path and mount path without knowing either.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from string import Template

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from rag.errors import RagError
from rag.index.protocol import DocumentInfo
from rag.pipeline import Assistant
from rag.web.reports import REPORTS_PATH, ReportSection, report_href, report_sections, report_title
from rag.web.routes import public_message

STATIC = Path(__file__).parent / "static"
PAGE = Template((STATIC / "rapporter.html").read_text(encoding="utf-8"))
CSS = (STATIC / "rapporter.css").read_text(encoding="utf-8")
UNDATED = "odaterad"
NO_DNR = "saknas"


def add_report_pages(app: FastAPI, assistant: Assistant, mount_path: str) -> None:
    base = f"{mount_path.rstrip('/')}/{REPORTS_PATH}"

    @app.get(base, include_in_schema=False)
    async def reports() -> HTMLResponse:
        try:
            documents = await run_in_threadpool(lambda: assistant.store.documents())
        except RagError as error:
            return _unavailable(error, "./")
        return HTMLResponse(list_page(documents))

    @app.get(base + "/{doc_id:path}", include_in_schema=False)
    async def report(doc_id: str) -> HTMLResponse:
        up = _up(doc_id)
        try:
            store = await run_in_threadpool(lambda: assistant.store)
            documents = store.documents()
            if doc_id not in documents:
                return HTMLResponse(missing_page(doc_id), 404)
            text = await run_in_threadpool(store.document_text, doc_id)
            chunks = await run_in_threadpool(store.document_chunks, doc_id)
        except RagError as error:
            return _unavailable(error, up)
        return HTMLResponse(report_page(documents[doc_id], text, report_sections(documents[doc_id], chunks)))


def list_page(documents: Mapping[str, DocumentInfo]) -> str:
    """The table of reports, newest first (undated last), each linked to its page."""
    rows = sorted(documents.values(), key=lambda d: d.date or "", reverse=True)
    body = "".join(
        f'<tr><td><a href="{_e(report_href(d.id))}">{_e(report_title(d.title, d.date))}</a></td>'
        f"<td>{_e(d.date or UNDATED)}</td><td>{_e(d.diarienummer or NO_DNR)}</td>"
        f'<td class="number">{len(d.sections)}</td></tr>\n'
        for d in rows
    )
    count = f"{len(rows)} rapport" if len(rows) == 1 else f"{len(rows)} rapporter"
    main = (
        "<h1>Rapporterna</h1>\n"
        f"<p>Frågetjänsten söker i {count}. Välj en rapport för att läsa den i sin helhet.</p>\n"
        '<table>\n<caption>Rapporterna, den senaste först</caption>\n<thead><tr><th scope="col">Rapport</th>'
        '<th scope="col">Datum</th><th scope="col">Diarienummer</th><th scope="col" class="number">Avsnitt</th>'
        f"</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
    )
    return _page("Rapporterna", main, "./", current=True)


def report_page(info: DocumentInfo, text: str, sections: list[ReportSection]) -> str:
    """One report: its title, date, diarienummer, a list of its sections, then each section's text."""
    title = report_title(info.title, info.date)
    contents = "".join(f'<li><a href="#{s.anchor}">{_e(s.heading)}</a></li>' for s in sections)
    parts = [
        f"<h1>{_e(title)}</h1>\n",
        '<dl class="facts">'
        f"<dt>Datum</dt><dd>{_e(info.date or UNDATED)}</dd>"
        f"<dt>Diarienummer</dt><dd>{_e(info.diarienummer or NO_DNR)}</dd>"
        f"<dt>Avsnitt</dt><dd>{len(sections)}</dd></dl>\n",
        f'<nav aria-labelledby="innehall-rubrik"><h2 id="innehall-rubrik">Innehåll</h2><ol>{contents}</ol></nav>\n',
    ]
    for section in sections:
        parts.append(
            f'<section aria-labelledby="{section.anchor}"><h2 id="{section.anchor}">{_e(section.heading)}</h2>'
            f"{_paragraphs(text, section)}</section>\n"
        )
    return _page(title, "".join(parts), _up(info.id))


def missing_page(doc_id: str) -> str:
    main = (
        "<h1>Rapporten finns inte</h1>\n"
        f"<p>Det finns ingen rapport med id <code>{_e(doc_id)}</code> i frågetjänsten. Den kan ha tagits "
        f'bort eller bytt namn. Se <a href="{_e(_up(doc_id) + REPORTS_PATH)}">alla rapporter</a>.</p>'
    )
    return _page("Rapporten finns inte", main, _up(doc_id))


def _paragraphs(text: str, section: ReportSection) -> str:
    """The section's text as paragraphs (blank lines) with its line breaks kept."""
    if section.start is None:
        return '<p class="empty">Avsnittet har ingen text.</p>'
    blocks = [b.strip() for b in text[section.start : section.end].split("\n\n")]
    return "".join("<p>" + "<br>\n".join(_e(line) for line in b.splitlines()) + "</p>" for b in blocks if b)


def _unavailable(error: RagError, up: str) -> HTMLResponse:
    main = f"<h1>Rapporterna kan inte visas just nu</h1>\n<p>{_e(public_message(error))}</p>"
    return HTMLResponse(_page("Rapporterna kan inte visas just nu", main, up), 503)


def _page(title: str, main: str, up: str, current: bool = False) -> str:
    """The page around `main`; `up` is the relative way from this page to the chat (its folder)."""
    return PAGE.substitute(
        title=_e(title),
        css=CSS,
        chat=_e(up),
        reports=_e(up + REPORTS_PATH),
        reports_current=' aria-current="page"' if current else "",
        statement=_e(up + "tillganglighet"),
        main=main,
    )


def _up(doc_id: str) -> str:
    """From `rapporter/a/b.txt` back to the chat's folder: one '../' per folder of the id, and one for
    `rapporter/` itself."""
    return "../" * (doc_id.count("/") + 1)


def _e(value) -> str:
    return html.escape(str(value), quote=True)
