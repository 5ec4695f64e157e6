"""What a question asks for: the kind of answer (a number, a sum of money, a name, a time, contact
details) and its language. Classic answer typing: a sentence that lacks the asked-for kind rarely
answers, which both ranks candidate sentences and tells the assistant when to abstain.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache

from rag.index.lexical import stem

_NUMBER_WORDS = (
    r"två|tre|fyra|fem|sex|sju|åtta|nio|tio|elva|tolv|tjugo|trettio|fyrtio|femtio|hundra|tusen|"
    r"miljon\w*|miljard\w*|dussin|\d+-tal|hälften|var\s+tredje|var\s+fjärde"
)
_MONTH_WORDS = r"januari|februari|mars|april|maj|juni|juli|augusti|september|oktober|november|december"
_WEEKDAYS = r"måndag|tisdag|onsdag|torsdag|fredag|lördag|söndag|vardag|helg"


class Kind(Enum):
    SHARE = "share"
    NUMBER = "number"
    MONEY = "money"
    NAME = "name"  # asked by name ("vad heter")
    TIME = "time"
    CONTACT = "contact"
    ORGANISATION = "organisation"  # "vilket företag", "which company": a proper name or an acronym
    PERSON = "person"  # "vem", "who": a name, or a role ("en organisationspsykolog ledde arbetet")


_PERSON = re.compile(r"^\W*(vem|vilka personer|who)\b|\b(vem|who) (är|var|blir|har|leder|ledde|is|was|led)\b", re.I)


# Order matters: the first matching pattern decides (contact before money before number).
_ASKS: list[tuple[Kind, re.Pattern]] = [
    (Kind.CONTACT, re.compile(r"telefonnummer|e-?postadress|mejladress|phone number|e-?mail address", re.IGNORECASE)),
    (Kind.MONEY, re.compile(r"\b(vad kosta\w*|hur mycket kosta\w*|hur stor budget|vilken budget|hur mycket pengar|"
                            r"vilket belopp|kronor|what did .{1,40} cost|how much does|how much did|"
                            r"what is the budget|budget amount|how much money)\b", re.IGNORECASE)),  # fmt: skip
    (Kind.SHARE, re.compile(r"\b(vilken andel|hur stor andel|hur stor del|hur många procent|what share|"
                            r"what percentage|what proportion)\b", re.IGNORECASE)),  # fmt: skip
    (Kind.NUMBER, re.compile(r"\b(hur många|hur mycket|hur stor|hur gammal|hur lång|vilken andel|hur hög|"
                             r"how many|how much|how old|how long|what share|what percentage)\b", re.IGNORECASE)),  # fmt: skip
    (Kind.TIME, re.compile(r"^\W*(när|when)\b|\b(vilket datum|vilken dag|vilka dagar|öppettider|hur dags|"
                           r"what date|which day|opening hours|what time)\b", re.IGNORECASE)),  # fmt: skip
    (Kind.NAME, re.compile(r"\b(vad heter|vilket namn|what is the name|name of|what is .{1,30} called)\b", re.IGNORECASE)),
    (Kind.ORGANISATION, re.compile(r"\b(vilket (företag|konsultföretag|bolag)|vilken (leverantör|operatör|organisation|"
                                   r"myndighet|aktör)|vilka (företag|organisationer|myndigheter|aktörer)|which (company|"
                                   r"firm|supplier|organisation|organization|agency))\b", re.IGNORECASE)),  # fmt: skip
    (Kind.PERSON, _PERSON),
]

_HAS: dict[Kind, re.Pattern] = {
    Kind.CONTACT: re.compile(r"@|\b0\d{1,3}[- ]?\d{2,3}(?:[ ]?\d{2,3}){1,3}\b|www\.|https?://"),
    Kind.MONEY: re.compile(r"\d[\d  ,.]*\s*(kr\b|kronor|mnkr|mkr|tkr|miljoner|miljarder|sek\b)", re.IGNORECASE),
    Kind.SHARE: re.compile(r"procent|%|\bhälften\b|\bvar (tredje|fjärde|femte|tionde)\b|\d+ av \d+", re.IGNORECASE),
    # A number that is not a year or a day of a month ("22 maj") and not a clock time.
    Kind.NUMBER: re.compile(
        rf"(?<![.:,\d])(?<!kl )(?<!kl\. )\b(?!(19|20)\d\d\b)\d+(?:[,.]\d+)?(?!\s*(?:{_MONTH_WORDS})\b)(?![.:]\d)\b|\b({_NUMBER_WORDS})\b", re.IGNORECASE
    ),
    Kind.TIME: re.compile(rf"\b(\d{{4}}|{_MONTH_WORDS}|({_WEEKDAYS})\w*|kl\.?\s*\d|\d{{1,2}}[.:]\d{{2}}|i (år|höstas|våras|vintras|somras))\b", re.IGNORECASE),
    Kind.NAME: re.compile(r"(?<=[a-zåäö,] )[A-ZÅÄÖ][a-zåäöé]+(?:[ -][A-ZÅÄÖ][a-zåäöé]+)*"),
    Kind.ORGANISATION: re.compile(r"(?<=[\wåäö,”\"] )[A-ZÅÄÖ][\wåäöéÅÄÖ&-]+|\b[A-ZÅÄÖ]{2,}\b"),
}
_ROLE = re.compile(r"(?i:\b\w*(chef|direktör|samordnare|ordförande|psykolog|konsult|handläggare|ledare|ansvarig|"
                   r"sekreterare|strateg|utredare|ombud|politiker|kommunalråd|rektor|präst)(en|er|erna|n)?\b)")  # fmt: skip
_HAS[Kind.PERSON] = re.compile(f"{_HAS[Kind.NAME].pattern}|{_ROLE.pattern}")  # names stay capitalized

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")

_ENGLISH = frozenset(
    ["the", "what", "which", "who", "whom", "whose", "how", "when", "where", "why", "is", "are", "was", "were", "did", "does", "do", "of", "to", "in", "for", "and", "has", "have", "many", "much"]
)


def expected_kind(question: str) -> Kind | None:
    """The kind of answer the question asks for, if it is one we can recognise."""
    for kind, pattern in _ASKS:
        if pattern.search(question):
            return kind
    return None


def has_kind(text: str, kind: Kind | None, question: str = "") -> bool:
    """Whether `text` holds something of `kind` that the question does not already name.

    "Vad heter Tyresös näringslivschef?" is not answered by a sentence whose only name is Tyresö,
    nor "Hur mycket fick kommunen för 2012?" by one whose only number is 2012.
    """
    if kind is None:
        return True
    return kind_in(mask_asked(text, asked_stems(question)), kind)


def kind_in(masked: str, kind: Kind) -> bool:
    """has_kind on a text already masked with mask_asked."""
    return bool(_HAS[kind].search(masked))


@lru_cache(maxsize=512)
def asked_stems(question: str) -> frozenset[str]:
    """Stems of the question's words; the genitive s ("Tyresös") too, which the stemmer keeps after a vowel."""
    words = [w.lower() for w in _TOKEN.findall(question)]
    return frozenset({stem(w) for w in words} | {stem(w[:-1]) for w in words if w.endswith("s") and len(w) > 3})


def mask_asked(text: str, asked: frozenset[str]) -> str:
    """The text with the question's own words replaced by lowercase x's of the same length (so offsets
    carry over and the next word stays mid-sentence, as the NAME pattern needs)."""
    return _TOKEN.sub(lambda m: "x" * len(m.group()) if stem(m.group().lower()) in asked else m.group(), text)


# What a key span marks, most specific first: a full name before a lone capital, "8 maj" before "maj".
_KEY: dict[Kind, tuple[re.Pattern, ...]] = {
    Kind.NAME: (re.compile(r"\b[A-ZÅÄÖ][a-zåäöé]+(?:[ -][A-ZÅÄÖ][a-zåäöé]+)+\b"), _HAS[Kind.NAME]),
    Kind.PERSON: (re.compile(r"\b[A-ZÅÄÖ][a-zåäöé]+(?:[ -][A-ZÅÄÖ][a-zåäöé]+)+\b"), _HAS[Kind.NAME], _ROLE),
    Kind.TIME: (re.compile(rf"\b(?:den )?\d{{1,2}}(?:[–-]\d{{1,2}})? (?:{_MONTH_WORDS})(?: \d{{4}})?\b", re.I),
                re.compile(rf"\b(?:{_MONTH_WORDS}) \d{{4}}\b|\bkl\.? ?\d{{1,2}}(?:[.:]\d{{2}})?\b", re.I), _HAS[Kind.TIME]),
    Kind.NUMBER: (re.compile(rf"\b(?:cirka |ca |drygt |knappt |ungefär |omkring |över |ett )?(?:(?:\d{{1,3}}(?:[  ]\d{{3}})+|\d+)(?:,\d+)?(?:-tal)?|"
                             rf"(?:{_NUMBER_WORDS}))(?: [a-zåäö]+)?\b", re.I),),
}  # fmt: skip


def key_span(question: str, quote: str) -> tuple[int, int] | None:
    """Where in `quote` the single item asked for sits: the first name, number, sum, share, date or
    contact detail the question asks for (a name for "vem"/"who") that the question does not name."""
    kind = expected_kind(question)
    if kind is None:
        return None
    masked = mask_asked(quote, asked_stems(question))
    for pattern in _KEY.get(kind, (_HAS[kind],)):
        found = pattern.search(masked)  # the masked text has the quote's length, so offsets carry over
        if found:
            return found.start(), found.end()
    return None


def misses_asked_year(question: str, evidence: str) -> bool:
    """The question names a year ("under 2014") and the evidence (passage, its report's date) does not.

    A passage that never mentions the year asked about cannot say what happened in it: the near-miss
    answer from another year's report is the typical wrong answer to a date-bound question.
    """
    years = set(_YEAR.findall(question))
    return bool(years) and not years & set(_YEAR.findall(evidence))


def is_english(question: str) -> bool:
    words = re.findall(r"[a-z]+", question.lower())
    return sum(w in _ENGLISH for w in words) >= 2
