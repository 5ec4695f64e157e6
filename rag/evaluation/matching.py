"""Text matching and relevance: when an answer holds the gold answer, and when a passage or citation
counts as relevant.

Answer text is compared SQuAD-style: [n] markers removed, lowercased (str.lower handles å/ä/ö),
punctuation and symbols deleted, whitespace collapsed; Swedish thousands groups ("1 200") are joined.
Articles are NOT removed: Swedish "en"/"ett" are also the number one. Containment matches whole
tokens (gold "ett år" is not found in "sett år").

Relevance (our eval set) is judged per *evidence sentence*. A passage covers an evidence sentence when
(a) its whitespace-normalized text contains the whitespace-normalized evidence, or
(b) fallback for evidence split across two chunks: the passage belongs to the question's doc_id and
    the longest common substring of passage and evidence is at least 60 % of the evidence's length.
Each evidence sentence is one relevance unit and the first passage covering it stands for it (later
passages repeating it, e.g. overlapping chunks, earn nothing); an evidence sentence no top-10 passage
covers stays in the qrels as a missed unit, so recall@k is the share of evidence found in the top k
(single evidence: hit@k). Document-level sets: a passage is relevant iff its doc_id is in
relevant_ids, over the deduplicated document ranking (first occurrence of each doc_id).

A citation is supported when its passage counts as relevant by the rules above, or (evidence sets)
when its doc_id matches and its quote lies inside an evidence sentence. Only the FIRST citation counts.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

from rag.evaluation.dataset import Gold, ws

K_MAX = 10
LCS_SHARE = 0.6

_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_THOUSANDS = re.compile(r"(\d)\s+(?=\d{3}(?!\d))")


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization, Swedish-aware (see module docstring)."""
    text = _MARKER.sub(" ", text).lower()
    text = _THOUSANDS.sub(r"\1", text)
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S")))
    return " ".join(text.split())


def _has_phrase(text_norm: str, phrase_norm: str) -> bool:
    """Whole-token containment of an already normalized phrase."""
    return bool(phrase_norm) and f" {phrase_norm} " in f" {text_norm} "


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_count(answer: str) -> int:
    return len(_MARKER.sub(" ", answer).split())


# ------------------------------------------------------------------------------------------ relevance


def covered_evidence(gold: Gold, passage: Mapping) -> set[int]:
    """Indexes of the evidence sentences this passage covers (evidence sets only)."""
    text = ws(str(passage.get("text") or ""))
    same_doc = bool(gold.doc_id) and passage.get("doc_id") == gold.doc_id
    return {i for i, ev in enumerate(gold.evidence) if ev in text or (same_doc and _mostly_in(ev, text))}


def _mostly_in(evidence: str, text: str) -> bool:
    """Longest common substring >= 60 % of the evidence: evidence cut by a chunk boundary."""
    matcher = difflib.SequenceMatcher(None, evidence, text, autojunk=False)
    return matcher.find_longest_match(0, len(evidence), 0, len(text)).size >= LCS_SHARE * len(evidence)


def passage_relevant(gold: Gold, passage: Mapping) -> bool:
    if gold.doc_level:
        return passage.get("doc_id") in gold.relevant_ids
    return bool(covered_evidence(gold, passage))


def citation_supported(gold: Gold, citation: Mapping) -> bool:
    if passage_relevant(gold, citation):
        return True
    quote = ws(str(citation.get("quote") or ""))
    same_doc = not gold.doc_level and bool(gold.doc_id) and citation.get("doc_id") == gold.doc_id
    return same_doc and bool(quote) and any(quote in ev for ev in gold.evidence)


def ranking(gold: Gold, passages: list[Mapping]) -> tuple[list[str], set[str]]:
    """(ranked item ids, relevant item ids) for ranx, per the unit rules in the module docstring."""
    if gold.doc_level:
        docs = [str(p.get("doc_id")) for p in passages if p.get("doc_id") is not None]
        return list(dict.fromkeys(docs))[:K_MAX], set(gold.relevant_ids)
    ranked: list[str] = []
    relevant: set[str] = set()
    seen: set[int] = set()
    for rank, passage in enumerate(passages[:K_MAX]):  # metrics stop at 10; spares the LCS work
        item = str(passage.get("chunk_id") or f"{passage.get('doc_id')}#{passage.get('start')}#{rank}")
        if item in ranked:
            continue
        ranked.append(item)
        new = covered_evidence(gold, passage) - seen
        if new:
            relevant.add(item)
            seen |= new
    relevant |= {f"<missed evidence {i}>" for i in range(len(gold.evidence)) if i not in seen}
    return ranked, relevant


def has_any(answer: str, phrases: Iterable[str]) -> bool:
    text = normalize_answer(answer)
    return any(_has_phrase(text, normalize_answer(p)) for p in phrases)


def exact(answer: str, golds: Iterable[str]) -> bool:
    text = normalize_answer(answer)
    return any(text == normalize_answer(g) for g in golds)
