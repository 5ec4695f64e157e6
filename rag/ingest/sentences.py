"""Swedish sentence splitting that returns character spans, so quotes can be located exactly.

A period ends a sentence only when whitespace and a capital (or digit, quote, list marker) follow and
the word before it is not an abbreviation such as "bl.a.", "t.ex." or "kap.". Line breaks between
paragraphs and list items always end a sentence.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    ["bl.a", "t.ex", "kap", "m.m", "s.k", "d.v.s", "dvs", "ca", "resp", "jfr", "inkl", "exkl", "fr.o.m", "t.o.m", "o.s.v", "osv", "nr", "tel", "kl", "st", "milj", "mdr", "mkr", "mnkr", "tkr", "kr", "etc", "p.g.a", "pga", "enl", "f.d", "sk", "m.fl", "o.d", "e.d", "el", "fig", "sid", "s", "tf", "ev", "f.ö", "ang", "dir", "prop", "bet", "forts", "t.ex.vis", "vs", "mm", "doc", "prof", "dr", "jr", "ex", "t.v", "i.o.m", "m.a.o", "a.a", "ff", "sek", "min", "tim"]
)

# Candidate boundary: terminator(s), optional closing quote/bracket, whitespace, then a sentence start.
_BOUNDARY = re.compile(r"""([.!?…]+["”’)\]]*)(\s+)(?=["“”'(\[]?[A-ZÅÄÖÉÜ0-9•\-–*])""")
_LINE_BREAK = re.compile(r"\n\s*")
_WORD_BEFORE = re.compile(r"(\S+)$")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans (start, end) of the sentences in text[start:end], trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line_start, line_end in _lines(text, start, end):
        spans.extend(_split_line(text, line_start, line_end))
    return spans


def _lines(text: str, start: int, end: int):
    pos = start
    for match in _LINE_BREAK.finditer(text, start, end):
        yield pos, match.start()
        pos = match.end()
    yield pos, end


def _split_line(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    for match in _BOUNDARY.finditer(text, start, end):
        if _is_abbreviation(text[pos : match.end(1)]):
            continue
        spans.append((pos, match.end(1)))
        pos = match.end()
    spans.append((pos, end))
    return [trimmed for span in spans if (trimmed := _trim(text, *span))]


def _is_abbreviation(candidate: str) -> bool:
    word = _WORD_BEFORE.search(candidate)
    if not word:
        return False
    token = word.group(1).lstrip("(\"“'").rstrip(".").lower()
    # Single letters ("A. Andersson") and known abbreviations do not end sentences.
    return token in ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None
