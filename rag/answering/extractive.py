"""Ranked passages -> a cited extractive answer: the span that answers, quoted verbatim, or silence.

The spans (candidates.py: sentences, clauses of long sentences, section headings) of the top passages
are scored by the learned reader (reader.py): the selector's probability that a span holds the answer
picks the quote; the judge's probability that the quote answers the question decides whether to
answer at all. A quote that introduces what follows (ends with ":" or ";", "temat", "följande")
takes the lines after it, within the word budget; nothing else is added. When the question asks for one item (a name, a number, a
date), the citation also marks where that item sits in the quote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rag.answering.candidates import MAX_WORDS, Candidate, candidates
from rag.answering.features import feature_matrix
from rag.answering.question import key_span
from rag.answering.reader import judge_row, load_reader
from rag.index.protocol import Passage, Store
from rag.settings import Settings
from rag.types import Answer, Citation, Hit

NO_ANSWER = "Jag hittar inget svar på det i rapporterna."
# Among spans this close to the best probability the shortest is quoted. Cross-validated on the
# training data (containment eval / SweQUAD-MC): 0 gave 0.717 / 0.772, 0.03 0.711 / 0.759, 0.06
# 0.664 / 0.740, so only exact ties go to the shorter span; the selector already weighs length.
SHORTER_WITHIN = 0.0
# A sentence that ends by introducing what follows ("…med temat;", "…är följande:"): the next lines hold
# what was asked for (eval q087's theme).
_INTRODUCES = re.compile(r"(?:[:;]|\b(?:temat|följande|nämligen)\W*)\s*$", re.IGNORECASE)


def extract_answer(
    question: str, query_vector: np.ndarray, hits: list[Hit], store: Store, settings: Settings,
    rivals: Sequence[Hit] = (),
) -> Answer:
    """The extractive answer to `question` from the retrieved `hits`.

    `rivals`: the best passages of the unfiltered search when a filter chose `hits`. They are read
    with the allowed passages (ranks, scores and the lead of the top passage are judged against
    them) but never quoted: a filter narrows what may be cited, it must not lower the bar for
    answering. Without a filter the reader's own output is unchanged."""
    reading = reading_passages(hits, rivals, settings.answer_passages)
    passages = store.passages([h.number for h in reading])
    everything = candidates(passages, settings.max_answer_words)
    allowed_numbers = {h.number for h in hits}
    allowed = [i for i, c in enumerate(everything) if reading[c.passage].number in allowed_numbers]
    if not allowed:
        return Answer(question, NO_ANSWER, False, (), tuple(hits), 0.0, answerability=0.0)
    reader = load_reader(settings.reader_file)
    rows = feature_matrix(question, query_vector, reading, passages, everything, store)[allowed]
    found = [everything[i] for i in allowed]
    chosen = reader.selector.probability(rows)
    judged = judge_row(chosen, rows, hit_scores(reading))
    answerability = float(reader.judge.probability(judged[None, :])[0])
    confidence = reader.confidence_of(answerability, judged)
    threshold = reader.threshold(settings.max_false_refusal) if settings.abstain_threshold is None \
        else settings.abstain_threshold  # fmt: skip
    if answerability < threshold:
        return Answer(question, NO_ANSWER, False, (), tuple(hits), confidence, answerability=answerability)
    best = found[pick(chosen, found)]
    start, end = quote_span(best, passages[best.passage], settings.max_answer_words)
    text = _document_text(passages[best.passage], best, start, end)
    key = key_span(question, text)
    citation = Citation(1, reading[best.passage], start, end, text, float(chosen.max()),
                        None if key is None else (start + key[0], start + key[1]))  # fmt: skip
    return Answer(question, f"{text} [1]", True, (citation,), tuple(hits), confidence, answerability=answerability)


def reading_passages(hits: Sequence[Hit], rivals: Sequence[Hit], count: int) -> list[Hit]:
    """The passages the reader reads: the best `count` allowed ones, and with a filter also the
    unfiltered search's best `count`, in one ranking by fused score (each passage once)."""
    allowed = list(hits[:count])
    if not rivals:
        return allowed
    seen = {h.number for h in allowed}
    merged = allowed + [h for h in rivals[:count] if h.number not in seen]
    return sorted(merged, key=lambda h: -h.score)


def hit_scores(hits: Sequence[Hit]) -> tuple[float, float, float, float]:
    """The top passage's fused score, cosine and BM25 share, and its lead over the second."""
    if not hits:
        return 0.0, 0.0, 0.0, 0.0
    second = hits[1].score if len(hits) > 1 else 0.0
    return hits[0].score, hits[0].dense, hits[0].lexical, hits[0].score - second


def pick(probabilities: np.ndarray, found: list[Candidate]) -> int:
    """The most probable span; among those within SHORTER_WITHIN of it, the shortest (first on ties)."""
    close = np.flatnonzero(probabilities >= probabilities.max() - SHORTER_WITHIN)
    return int(min(close, key=lambda i: (found[i].words, -probabilities[i], i)))


def quote_span(best: Candidate, passage: Passage, max_words: int = MAX_WORDS) -> tuple[int, int]:
    """The span to quote: the candidate, grown by what it introduces when it ends its sentence by
    introducing something (a ':' or ';', "temat", "följande"): the lines after it, while the word
    budget lasts."""
    start, end, words = best.start, best.end, best.words
    if best.kind != "heading" and introduces(best, passage):
        for sentence in passage.sentences[best.position + 1 :]:
            if words + len(sentence.text.split()) > max_words:
                break
            end, words = sentence.end, words + len(sentence.text.split())
    return start, end


def introduces(best: Candidate, passage: Passage) -> bool:
    """The candidate reaches the end of its sentence, and that sentence introduces what follows."""
    sentence = best.source
    tail = sentence.text[best.end - sentence.start :]
    return not tail.strip(" \t\n,;:–—-") and bool(_INTRODUCES.search(sentence.text))


def _document_text(passage: Passage, best: Candidate, start: int, end: int) -> str:
    """The document's text over [start, end): inside the passage, or the heading line above it."""
    chunk = passage.chunk
    if chunk.start <= start and end <= chunk.end:
        return chunk.text[start - chunk.start : end - chunk.start]
    return best.text  # a heading sits before the passage's first sentence
