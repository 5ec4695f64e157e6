"""Reports as people read them: the title with its month and year, the report split into its numbered
sections (the anchors `avsnitt-N` of its page), the section a citation sits in, and the relative link
to it. Pure functions of the store's data; the pages themselves are in report_pages.py."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from rag.index.protocol import DocumentInfo, Store
from rag.ingest.sections import MONTHS
from rag.types import Chunk

MONTH_NAMES = {number: name for name, number in MONTHS.items()}
_TRAILING_WHEN = re.compile(r"(\s+(" + "|".join(MONTHS) + r"|(19|20)\d\d))+\s*$", re.IGNORECASE)
REPORTS_PATH = "rapporter"  # under the app's mount path; the chat links to it relatively


def report_title(title: str, date: str | None) -> str:
    """A report's title with its month and year as people say them ("Kommundirektörens rapport maj
    2017"): the one rule for the filters, the source cards and the report pages. The titles are
    inconsistent ("... oktober" dated 2015-10, "... januari 2014" dated 2014-01-21, no month at all),
    so month and year come from the date and any in the title are dropped; an undated report keeps
    its title as it is."""
    if not date:
        return title
    year = date[:4]
    month = int(date[5:7]) if len(date) >= 7 and date[5:7].isdigit() else None
    when = f"{MONTH_NAMES[month]} {year}" if month in MONTH_NAMES else year
    base = _TRAILING_WHEN.sub("", title).strip() or title
    return f"{base} {when}"


@dataclass(frozen=True, slots=True)
class ReportSection:
    number: int  # 1-based: the page's anchor avsnitt-N
    heading: str
    start: int | None  # the body's document offsets; None for a heading with no indexed text
    end: int | None

    @property
    def anchor(self) -> str:
        return f"avsnitt-{self.number}"


def report_sections(info: DocumentInfo, chunks: Sequence[Chunk]) -> list[ReportSection]:
    """The report's sections in its own order (info.sections, so the numbers are the same whichever
    page or card asks), each spanning its chunks. A heading may repeat, so chunks are matched to the
    sections in turn, by runs of one section name, rather than by name alone."""
    runs: list[list] = []  # [heading, start, end] per run of chunks of one section
    for chunk in sorted(chunks, key=lambda c: c.start):
        if runs and runs[-1][0] == chunk.section:
            runs[-1][2] = max(runs[-1][2], chunk.end)
        else:
            runs.append([chunk.section, chunk.start, chunk.end])
    out, i = [], 0
    for number, heading in enumerate(info.sections, 1):
        if i < len(runs) and runs[i][0] == heading:
            out.append(ReportSection(number, heading, runs[i][1], runs[i][2]))
            i += 1
        else:
            out.append(ReportSection(number, heading, None, None))
    # Text under a section name the document list lacks is still part of the report: shown last.
    out += [ReportSection(len(out) + n, h, s, e) for n, (h, s, e) in enumerate(runs[i:], 1)]
    return out


def section_number(sections: Sequence[ReportSection], heading: str | None, offset: int | None) -> int | None:
    """The section a citation of `heading` at document `offset` sits in: of the sections with that
    heading, the one nearest the offset (a quoted heading line lies just before its body)."""
    named = [s for s in sections if s.heading == heading]
    if not named:
        return None
    if offset is None or len(named) == 1:
        return named[0].number

    def distance(section: ReportSection) -> int:
        if section.start is None:
            return 1 << 62
        if section.start <= offset < section.end:
            return 0
        return min(abs(offset - section.start), abs(offset - section.end))

    return min(named, key=distance).number


def report_href(doc_id: str, section: int | None = None) -> str:
    """The report's page relative to the chat ("rapporter/sub/a.txt#avsnitt-3"); the id is
    percent-encoded, its folders kept as path segments."""
    href = f"{REPORTS_PATH}/{quote(doc_id, safe='/')}"
    return f"{href}#avsnitt-{section}" if section else href


def with_report_links(response: dict, store: Store) -> dict:
    """The answer's citations, each with `report_href`: its report's page at the cited section."""
    sections: dict[str, list[ReportSection]] = {}
    documents = store.documents()
    for citation in response.get("citations", []):
        doc_id = citation["doc_id"]
        if doc_id not in documents:
            continue
        if doc_id not in sections:
            sections[doc_id] = report_sections(documents[doc_id], store.document_chunks(doc_id))
        number = section_number(sections[doc_id], citation.get("section"), citation.get("start"))
        citation["report_href"] = report_href(doc_id, number)
    return response
