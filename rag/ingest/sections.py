"""Layout parsing: raw report text -> title, date, diarienummer, clean text and sections.

Handles the three layouts the reports come in: plain heading lines, markdown `##`/`###` headings
with bold, and hard-wrapped PDF text whose sentences break across lines. The clean text is built
here, and every Section records where its body and heading line sit in it. The letterhead (who
handles it, the date, the diarienummer) and the closing signature (who signed it, in what role) are
kept as sections of their own, HEADER and SIGNATURE, so they can be quoted like the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = {
    "januari": 1, "februari": 2, "mars": 3, "april": 4, "maj": 5, "juni": 6, "juli": 7,
    "augusti": 8, "september": 9, "oktober": 10, "november": 11, "december": 12,
}  # fmt: skip

_DATE_LINE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DNR = re.compile(r"^(\d{4})\s*/\s*([A-ZÅÄÖ]{1,5})\s*([\d ]+)$")
_PAGE_MARKER = re.compile(r"^\d+\s*\(\d+\)$")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_BOLD_LINE = re.compile(r"^\*\*(.+)\*\*$")
_LIST_ITEM = re.compile(r"^([-*•–]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"""[.!?:;…]["”’)]*$""")
_TITLE_HINT = re.compile(r"\brapport\b|\bprotokoll\b|\bskrivelse\b|\btjänsteutlåtande\b", re.IGNORECASE)
_SIGNATURE_MAX = 40
HEADER = "Sidhuvud"  # the section label of the letterhead lines before the title
SIGNATURE = "Underskrift"  # the section label of the closing signature


@dataclass(frozen=True, slots=True)
class Section:
    """A heading and its body; `start`/`end` locate the body in the document text, `heading_span`
    the heading line (the title's, for a section before the first heading)."""

    heading: str
    text: str
    start: int
    end: int
    heading_span: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ParsedReport:
    title: str
    date: str | None
    diarienummer: str | None
    text: str
    sections: tuple[Section, ...]
    signature: tuple[str, ...] = ()  # the signature lines: name, then role ("Bo Renman", "Kommundirektör")


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    heading: bool  # marked as a heading by the markup itself (markdown)


def parse_report(raw: str, fallback_title: str = "") -> ParsedReport:
    """Parse one report's raw text."""
    lines = _clean_lines(raw)
    title_at = _find_title(lines)
    if title_at is None:
        front = [line.text for line in lines if _is_metadata(line.text)]
        title, body = fallback_title, [line for line in lines if not _is_metadata(line.text)]
    else:
        front = [line.text for line in lines[:title_at]]
        title, body = lines[title_at].text, lines[title_at + 1 :]
    body, signature = _split_signature(body)
    blocks = _blocks(body)
    text, sections = _assemble(title, blocks, front, signature)
    diarienummer = _diarienummer(front)
    return ParsedReport(title, _date(front, title, diarienummer), diarienummer, text, sections, signature)


def _clean_lines(raw: str) -> list[_Line]:
    """Strip whitespace, markup and page markers; keep non-blank lines only."""
    out = []
    for line in raw.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").split("\n"):
        stripped = " ".join(line.split())
        if not stripped or _PAGE_MARKER.match(stripped):
            continue
        heading = _MD_HEADING.match(stripped) or _BOLD_LINE.match(stripped)
        if heading:
            stripped = heading.group(1).replace("**", "").strip()
        out.append(_Line(stripped, bool(heading)))
    return out


def _find_title(lines: list[_Line]) -> int | None:
    """The title line: one naming a report type near the top, or a markdown heading that opens the
    text. None when there is neither; then the caller uses the file name and keeps every line."""
    for i, line in enumerate(lines[:25]):
        if _TITLE_HINT.search(line.text) and len(line.text) <= 100:
            return i
    first = next((i for i, line in enumerate(lines) if not _is_metadata(line.text)), None)
    if first is not None and lines[first].heading and not any(l.heading for l in lines[first + 1 : first + 2]):
        return first
    return None


def _is_metadata(text: str) -> bool:
    return bool(_DATE_LINE.match(text) or _DNR.match(text)) or text == "Diarienummer"


def _split_signature(lines: list[_Line]) -> tuple[list[_Line], tuple[str, ...]]:
    """The body, and the closing signature ("Bo Renman / Kommundirektör"): short unpunctuated last lines."""
    end = len(lines)
    while end > 0 and len(lines) - end < 3 and _is_signature_line(lines[end - 1].text):
        end -= 1
    return lines[:end], tuple(line.text for line in lines[end:])


def _is_signature_line(text: str) -> bool:
    return len(text) <= _SIGNATURE_MAX and not _SENTENCE_END.search(text) and not _LIST_ITEM.match(text)


def _blocks(lines: list[_Line]) -> list[tuple[str, list[str]]]:
    """Group lines into (heading, paragraphs); reflow lines that were wrapped mid-sentence."""
    explicit = any(line.heading for line in lines)
    wrapped = _looks_hard_wrapped(lines)
    blocks: list[tuple[str, list[str]]] = []
    paragraphs: list[str] = []
    for i, line in enumerate(lines):
        prev = lines[i - 1].text if i else ""
        nxt = lines[i + 1].text if i + 1 < len(lines) else ""
        if line.heading if explicit else _is_heading(line.text, prev, nxt, first=i == 0):
            paragraphs = []
            blocks.append((line.text, paragraphs))
            continue
        if not blocks:
            blocks.append(("", paragraphs))
        if paragraphs and _continues(paragraphs[-1], line.text, wrapped):
            paragraphs[-1] += " " + line.text
        else:
            paragraphs.append(line.text)
    return [(heading, paras) for heading, paras in blocks if paras]


def _is_heading(text: str, prev: str, nxt: str, first: bool) -> bool:
    """A plain heading line: short, unpunctuated, capitalised, after a finished sentence."""
    if not nxt or _LIST_ITEM.match(text) or _SENTENCE_END.search(text) or text.endswith((",", "-")):
        return False
    if len(text) > 90 or len(text.split()) > 16 or not (text[0].isupper() or text[0].isdigit()):
        return False
    prev_done = first or bool(_SENTENCE_END.search(prev)) or bool(_LIST_ITEM.match(prev))
    return prev_done and not nxt[0].islower()


def _continues(paragraph: str, line: str, wrapped: bool) -> bool:
    """Whether `line` continues the paragraph (a hard wrap) rather than starting a new one."""
    if _LIST_ITEM.match(line) or _LIST_ITEM.match(paragraph.rsplit("\n", 1)[-1]):
        return False
    if line[0].islower():
        return True
    return wrapped and not _SENTENCE_END.search(paragraph)


def _looks_hard_wrapped(lines: list[_Line]) -> bool:
    """PDF text: many lines stop mid-sentence and the next one goes on in lower case."""
    breaks = sum(
        1
        for a, b in zip(lines, lines[1:])
        if not _SENTENCE_END.search(a.text) and b.text[:1].islower()
    )
    return breaks >= max(3, len(lines) // 10)


def _assemble(title: str, blocks: list[tuple[str, list[str]]], front: list[str] = (),
              signature: tuple[str, ...] = ()) -> tuple[str, tuple[Section, ...]]:  # fmt: skip
    """Letterhead, title, the headed sections, the signature: one line per letterhead and signature
    line, a blank line between the rest."""
    parts, sections, pos = [], [], 0
    if front:
        header = "\n".join(front)
        sections.append(Section(HEADER, header, 0, len(header)))
        parts.append(header + "\n\n")
        pos = len(header) + 2
    title_span = (pos, pos + len(title)) if title else None
    parts.append(title)
    pos += len(title)
    for heading, paragraphs in blocks:
        heading_text = heading or title
        heading_span = title_span
        if heading:
            parts.append("\n\n" + heading)
            heading_span = (pos + 2, pos + 2 + len(heading))
            pos += 2 + len(heading)
        body = "\n\n".join(paragraphs)
        start = pos + 2
        parts.append("\n\n" + body)
        pos = start + len(body)
        sections.append(Section(heading_text, body, start, pos, heading_span))
    if signature:
        body = "\n".join(signature)
        parts.append("\n\n" + body)
        sections.append(Section(SIGNATURE, body, pos + 2, pos + 2 + len(body)))
    return "".join(parts) + "\n", tuple(sections)


def _diarienummer(front: list[str]) -> str | None:
    for line in front:
        match = _DNR.match(line)
        if match:
            year, unit, number = match.groups()
            return f"{year}/{unit} {' '.join(number.split())}"
    return None


def _date(front: list[str], title: str, diarienummer: str | None) -> str | None:
    """ISO date: a date line, else month and year from the title or diarienummer, else the year."""
    for line in front:
        match = _DATE_LINE.match(line)
        if match:
            return line
    words = title.lower().split()
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    year = next((w for w in words if re.fullmatch(r"(19|20)\d\d", w)), None)
    year = year or (diarienummer[:4] if diarienummer else None)
    if year and month:
        return f"{year}-{month:02d}"
    return year
