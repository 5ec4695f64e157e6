"""rag/answering/candidates.py: the spans an answer may quote, verbatim at document offsets."""

from __future__ import annotations

import numpy as np

from rag.answering.candidates import candidates, clause_spans
from rag.index.protocol import Passage, SentenceRecord
from rag.types import Chunk

LONG = ("Samarbete ”på tvärs” över förvaltningar och enheter behöver utvecklas och en "
        "organisationspsykolog ledde arbetet.")  # fmt: skip


def test_clauses_are_runs_of_pieces_without_leading_conjunctions():
    found = [LONG[a:b] for a, b in clause_spans(LONG)]
    assert found == [
        "Samarbete ”på tvärs” över förvaltningar",
        "Samarbete ”på tvärs” över förvaltningar och enheter behöver utvecklas",
        "enheter behöver utvecklas",
        "enheter behöver utvecklas och en organisationspsykolog ledde arbetet.",
        "en organisationspsykolog ledde arbetet.",
    ]


def test_clauses_cut_at_punctuation_and_drop_trailing_commas():
    text = "Kommunen har i år avtalat om 24 platser, och hittills har 47 kommit; det beräknas komma fler."
    found = [text[a:b] for a, b in clause_spans(text)]
    assert "Kommunen har i år avtalat om 24 platser" in found  # no trailing comma
    assert "hittills har 47 kommit" in found  # no leading "och"
    assert all(not f.endswith((",", ";")) for f in found)
    assert text not in found  # the whole sentence is a sentence candidate, not a clause


def _record(text: str, start: int, kind: str = "sentence", number: int = 0) -> SentenceRecord:
    return SentenceRecord(number, start, start + len(text), text, frozenset(), np.zeros(4, np.float32), kind)


def test_candidates_quote_exact_document_offsets_and_respect_the_word_budget():
    heading = "Kraftsamling för nya Tyresöbor"
    document = f"{heading}\n\n{LONG} Kort mening här."
    first, second = _record(LONG, len(heading) + 2, number=1), _record("Kort mening här.", len(heading) + 3 + len(LONG), number=2)
    chunk = Chunk("d#0", "d", "T", None, None, heading, document[first.start : second.end], first.start, second.end,
                  ((first.start, first.end), (second.start, second.end)), (0, len(heading)))  # fmt: skip
    passage = Passage(chunk, (first, second), _record(heading, 0, "heading", 0))
    found = candidates([passage, passage])  # the same passage twice: each span once
    kinds = [c.kind for c in found]
    assert kinds.count("heading") == 1 and kinds.count("sentence") == 2 and kinds.count("clause") == 5
    assert all(document[c.start : c.end] == c.text for c in found)
    assert len({(c.start, c.end) for c in found}) == len(found)
    short = candidates([passage], max_words=5)
    assert all(c.words <= 5 for c in short) and "Kort mening här." in [c.text for c in short]
