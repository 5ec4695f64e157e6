"""Training samples for the reader: every question asked for real, and asked again as a near miss.

For each question the retrieved passages' candidate spans become feature rows (rag/answering/
features.py), labelled by whether the span holds a gold answer. Each question is asked three ways:

* "asked": as it is;
* "passage removed": with every passage that holds the answer taken out of the results, while the
  rest of the same report stays (same corpus, same style, same topic: the hardest near miss);
* "report removed": with the whole gold report taken out.
A question the reports cannot answer (type none or near_miss) is asked only as it is. Removing a
passage is done on the ranking (the passages after it move up), which is what an index without it
would return but for the tiny change of its BM25 statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rag.answering.candidates import Candidate, candidates
from rag.answering.extractive import hit_scores
from rag.answering.features import feature_matrix
from rag.evaluation.dataset import Gold, gold_of
from rag.evaluation.matching import has_any
from rag.index.protocol import Store
from rag.pipeline import Assistant
from rag.search.retrieve import retrieve
from rag.settings import Settings
from rag.types import Chunk, Hit

VARIANTS = ("asked", "passage removed", "report removed")
POOL = 40  # passages retrieved before removal, so ten remain after it


@dataclass(frozen=True, slots=True)
class Sample:
    """One question asked one way: its candidates' features and labels."""

    id: str
    group: str  # questions about one report share a group: cross-validation keeps them together
    variant: str
    answerable: bool  # the reports (as searched in this variant) may hold the answer
    rows: np.ndarray  # candidate features
    labels: np.ndarray  # per candidate: holds a gold answer
    words: np.ndarray  # per candidate: its length in words
    hits: tuple[float, float, float, float]  # rag.answering.extractive.hit_scores


def collect(rows: Iterable[dict], assistant: Assistant, source: str) -> Iterator[Sample]:
    """Samples for question rows of the eval set or of a document-level set (SweQUAD-MC)."""
    store = assistant.store
    for row in rows:
        gold = gold_of(row)
        vector = assistant.embedder.encode_queries([row["question"]])[0]
        pool = retrieve(row["question"], vector, store, k=POOL, weights=assistant.settings.fusion_weights,
                        date_bonus=assistant.settings.date_bonus)  # fmt: skip
        variants = VARIANTS if gold.answerable else VARIANTS[:1]
        for variant in variants:
            hits = [h for h in pool if not _removed(variant, h.chunk, gold, row)][:10]
            yield _sample(row, gold, variant, source, vector, hits, store, assistant.settings)


def _sample(row: dict, gold: Gold, variant: str, source: str, vector: np.ndarray, hits: list[Hit], store: Store,
            settings: Settings) -> Sample:  # fmt: skip
    passages = store.passages([h.number for h in hits[: settings.answer_passages]])
    found: list[Candidate] = candidates(passages, settings.max_answer_words)
    features = feature_matrix(row["question"], vector, hits, passages, found, store)
    labels = np.array([bool(gold.answers) and has_any(c.text, gold.answers) for c in found], dtype=bool)
    group = f"{source}:{gold.doc_id or ','.join(sorted(gold.relevant_ids)) or gold.id}"
    return Sample(gold.id, group, variant, gold.answerable and bool(labels.any()), features, labels,
                  np.array([c.words for c in found], dtype=np.int64), hit_scores(hits))  # fmt: skip


def _removed(variant: str, chunk: Chunk, gold: Gold, row: dict) -> bool:
    """Whether this variant takes the chunk out of the results."""
    in_gold_report = chunk.doc_id == gold.doc_id or chunk.doc_id in gold.relevant_ids
    if variant == "report removed":
        return in_gold_report
    if variant == "passage removed":
        return in_gold_report and (_holds_answer(chunk, gold) or _overlaps_spans(chunk, row))
    return False


def _holds_answer(chunk: Chunk, gold: Gold) -> bool:
    text = f"{chunk.section}\n{chunk.text}"  # an answer in the heading is held too
    return has_any(text, gold.answers) or any(e in " ".join(chunk.text.split()) for e in gold.evidence)


def _overlaps_spans(chunk: Chunk, row: dict) -> bool:
    """SweQUAD-MC gives the answer's offsets in its document."""
    return any(s.get("doc_id") == chunk.doc_id and s["start"] < chunk.end and chunk.start < s["end"]
               for s in row.get("answer_spans") or ())  # fmt: skip
