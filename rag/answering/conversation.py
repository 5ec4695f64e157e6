"""Follow-up questions without an LLM: decide whether a question leans on the conversation, and if it
does, write out the standalone question that is searched and answered instead.

A question depends on the conversation when it refers back (han, hon, hans, där, då, det at the end
of a clause, he, she, it...), starts like a continuation ("Och ...?", "And ...?"), or says too little
of its own to be searched: no content word the reports know, and none they don't know either (a
question about a pizza is about the pizza, not the previous answer). A fully specified question is answered
as if alone, whatever came before: it must have enough content words of its own and no pronoun that
nothing in it could resolve.

The standalone question, most specific first:
* "Och 2017?": the previous question with its year or month replaced;
* "Och var?", "När då?", "Och datumet?": the previous question asked with the new question word;
* "Var arbetade han tidigare?": the pronoun replaced by the name the previous answer gave;
* otherwise the question with the previous one's topic carried in brackets: "Vad kostade det?
  (om: När gick kommunen över till Telias telefoni?)".
The reports the previous answer cited are a prior for retrieval, never a filter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.index.lexical import words
from rag.index.protocol import QueryTerms, Store
from rag.types import Turn

_PERSONAL = r"han|hon|hen|honom|henne|hans|hennes|hens|he|she|him|his|her|hers|they|them|their"
_PLACE_TIME = r"där|då|dit|därifrån|there|then"
_REFERENCE = re.compile(rf"\b({_PERSONAL}|{_PLACE_TIME}|dess|deras|samma|förra|detta|denna|dessa|its)\b", re.I)
# "det"/"den"/"de"/"it" as a pronoun: at the end of a clause or before a preposition, not an article.
_IT = re.compile(r"\b(det|den|de|dem|it)\b(?=\s*[?.!,]|\s*$|\s+(i|på|av|till|för|om|med|då|där|sedan|"
                 r"senare|igen|in|on|of|for|about|with|then)\b)", re.I)  # fmt: skip
_CONTINUES = re.compile(r"^\W*(och|men|samt|and|but|what about|how about)\b", re.I)
_QWORD = re.compile(r"^\W*(när|var|vart|vem|vilka|vilken|vilket|vad|hur många|hur mycket|hur|varför|"
                    r"when|where|who|which|what|how many|how much|how|why)\b", re.I)  # fmt: skip
_YEAR_OR_MONTH = re.compile(r"\b(19[5-9]\d|20\d\d)\b|\b(januari|februari|mars|april|maj|juni|juli|augusti|"
                            r"september|oktober|november|december)\b", re.I)  # fmt: skip
_LEADING_CONJUNCTION = re.compile(r"^\W*(och|men|samt|and|but)\s+", re.I)
_AS_FOR = re.compile(r"(när det gäller|vad gäller|vad beträffar|as for|what about|how about)\b", re.I)
_FILLER = re.compile(r"^\W*(och|men|and|but)\s+|\s+(då|igen|then)\s*(?=[?.!]*$)|[?.!\s]+$", re.I)
# Nouns that stand for a question word in an elliptical follow-up ("Och datumet?").
_NOUN_ASKS = {"datum": "När", "datumet": "När", "dag": "När", "dagen": "När", "tid": "När", "tiden": "När",
              "tidpunkt": "När", "plats": "Var", "platsen": "Var", "stället": "Var", "kostnaden": "Vad kostade",
              "kostnad": "Vad kostade", "priset": "Vad kostade", "antalet": "Hur många", "namnet": "Vad heter",
              "date": "When", "place": "Where", "cost": "What did it cost", "name": "What is the name"}  # fmt: skip
_NAME = re.compile(r"\b[A-ZÅÄÖ][a-zåäöé]+(?:[ -][A-ZÅÄÖ][a-zåäöé]+)+\b")
_PERSON_PRONOUN = re.compile(r"\b(han|hon|hen|honom|henne|he|she|him)\b", re.I)
_PERSON_GENITIVE = re.compile(r"\b(hans|hennes|hens|his)\b", re.I)
# A noun in the definite form ending a short question ("Hur länge gäller det nya avtalet?") points back.
_DEFINITE_END = re.compile(r"\b(?:det|den|de|dessa|detta|denna)?\s*(?:nya |gamla |senaste |förra )?[a-zåäö]{3,}"
                           r"(?:et|en|na|arna|erna|orna)\s*[?.!]*\s*$", re.I)  # fmt: skip
# Idf weight of the question's own known words: below LITTLE it says too little to be searched alone;
# a question naming this much (SPECIFIC) stands alone unless it says "han"/"hon".
LITTLE = 4.0
SHORT_QUESTION = 12.0
SPECIFIC = 18.0
FOUND = 0.4  # a short question whose words one passage matches this well is about that passage
UNKNOWN_WORD = 4  # letters: shorter unknown words are abbreviations and typos more often than topics


@dataclass(frozen=True, slots=True)
class Interpretation:
    query: str  # what is searched and answered
    followup: bool  # whether the conversation was used
    prior_docs: tuple[str, ...] = ()  # reports the previous answer cited (a retrieval prior)


def interpret(question: str, history: Sequence[Turn], store: Store) -> Interpretation:
    """The standalone question behind `question` in the conversation `history` (oldest first)."""
    if not history:
        return Interpretation(question, False)
    previous = history[-1]
    earlier = interpret(previous.question, history[:-1], store).query  # the last turn, itself written out
    if not depends(question, store):
        return Interpretation(question, False)
    query = rewrite(question, earlier, _entity(previous))
    return Interpretation(query, True, tuple(dict.fromkeys(c.doc_id for c in previous.citations)))


def depends(question: str, store: Store) -> bool:
    """Whether the question leans on the conversation (see the module docstring)."""
    terms = store.terms(question)
    if terms.mass >= SPECIFIC:  # says what it is about: only a personal pronoun still needs the conversation
        return bool(_PERSON_PRONOUN.search(question) or _PERSON_GENITIVE.search(question)) and not _NAME.search(question)
    if _REFERENCE.search(question) or _IT.search(question) or _CONTINUES.search(question):
        return True
    if terms.mass < LITTLE:  # too little to search alone, unless it names what the reports never mention
        return not _names_something_unknown(question, terms, store)
    # "det nya avtalet?" may point back, or name something the reports know well: ask the keyword index.
    return terms.mass < SHORT_QUESTION and bool(_DEFINITE_END.search(question)) and _keyword_match(terms, store) < FOUND


def _names_something_unknown(question: str, terms: QueryTerms, store: Store) -> bool:
    """Whether a word of the question is one the index has never seen, whole or in known parts
    ("pizza", "månbas"): such a question is about that thing, not about the previous turn, and is
    answered — or refused — on its own rather than searched with the previous topic attached."""
    known = set(terms.tokens)
    return any(len(word) >= UNKNOWN_WORD and not known.intersection(store.stems(word)) for word in words(question))


def _keyword_match(terms, store: Store) -> float:
    """How much of the question's own weight the best passage matches by keywords alone (BM25 / Σidf)."""
    signals = store.signals(np.zeros(_dim(store), dtype=np.float32), terms, None)
    return float(signals.keyword.max() / (terms.mass or 1.0)) if len(signals.keyword) else 0.0


def _dim(store: Store) -> int:
    return int(store.manifest.get("dim") or 0)


def rewrite(question: str, previous: str, entity: str | None) -> str:
    """The follow-up written out as a standalone question (see the module docstring)."""
    core = _FILLER.sub(" ", question).strip()
    if _YEAR_OR_MONTH.search(core) and len(_YEAR_OR_MONTH.sub("", core).split()) <= 2:
        return _with_dates(previous, _YEAR_OR_MONTH.findall(core))
    asked = _QWORD.match(core)
    if asked and len(core.split()) == len(asked.group(1).split()):  # "Och var?", "När då?"
        return _reask(previous, asked.group(1))
    if core.lower() in _NOUN_ASKS:  # "Och datumet?"
        return _reask(previous, _NOUN_ASKS[core.lower()])
    own = _standalone_start(question)  # "Och vad kostade det?" is searched and shown as "Vad kostade det?"
    if entity and _PERSON_PRONOUN.search(own):
        return _PERSON_PRONOUN.sub(entity, own, count=1)
    if entity and _PERSON_GENITIVE.search(own):
        return _PERSON_GENITIVE.sub(entity + ("s" if not entity.endswith("s") else ""), own, count=1)
    return f"{own} (om: {_flat(previous)})"


def _standalone_start(question: str) -> str:
    """The question without the conjunction that tied it to the previous one, capitalized; but "Och när
    det gäller e-post?" keeps it: "när det gäller" means "as for", and a leading "När" would ask when."""
    rest = _LEADING_CONJUNCTION.sub("", question, count=1)
    if not rest or _AS_FOR.match(rest):
        return question
    return rest[:1].upper() + rest[1:]


def _flat(interpreted: str) -> str:
    """A carried topic without nested brackets: "A (om: B)" -> "A; B"."""
    return interpreted.replace(" (om: ", "; ").replace(")", "") if " (om: " in interpreted else interpreted


def _reask(previous: str, qword: str) -> str:
    """The previous question with its question word replaced: "När hölls X?" + "var" -> "Var hölls X?"."""
    previous = _flat(previous)
    rest = _QWORD.sub("", previous, count=1).strip() if _QWORD.match(previous) else previous
    return f"{qword[0].upper()}{qword[1:]} {rest}".rstrip()


_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
_MONTH = re.compile(r"\b(januari|februari|mars|april|maj|juni|juli|augusti|september|oktober|november|december)\b",
                    re.I)  # fmt: skip


def _with_dates(previous: str, found: list[tuple[str, str]]) -> str:
    """The previous question with its year and month replaced by the new ones (added if it had none)."""
    text = previous
    for pattern, new in ((_YEAR, next((y for y, _ in found if y), None)), (_MONTH, next((m for _, m in found if m), None))):
        if new:
            text = pattern.sub(new, text) if pattern.search(text) else re.sub(r"[?.!]*$", f" {new}?", text, count=1)
    return text


def _entity(turn: Turn) -> str | None:
    """The name the turn's answer gave (the first full name in its quote)."""
    for text in [*(c.quote or "" for c in turn.citations), turn.answer or ""]:
        found = _NAME.search(text)
        if found:
            return found.group()
    return None
