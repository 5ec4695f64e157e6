"""Per-question records and the aggregate metrics of `rag eval` (see matching.py for the rules).

Retrieval is scored over the top 10 passages with ranx. Containment needs the gold answer inside an
answer of at most MAX_CONTAIN_WORDS words. A missing response (or one carrying "error") counts as a
failure: no retrieval, wrong answer, a refusal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rag.evaluation.dataset import Gold, gold_of
from rag.evaluation.matching import (
    K_MAX,
    citation_supported,
    exact,
    has_any,
    ranking,
    token_f1,
    word_count,
)  # fmt: skip

RECALL_KS = tuple(range(1, K_MAX + 1))
RANX_METRICS = (*(f"recall@{k}" for k in RECALL_KS), "mrr@10", "ndcg@10")
MAX_CONTAIN_WORDS = 40  # the answer budget users read: "within 40 words"


def retrieval_scores(rankings: Mapping[str, tuple[list[str], set[str]]]) -> dict[str, dict[str, float]]:
    """Per-query ranx scores (recall@1..10, mrr@10, ndcg@10) for every query in `rankings`."""
    if not rankings:
        return {}
    from ranx import Qrels, Run, evaluate  # heavy (numba); only needed here

    qrels = {q: dict.fromkeys(relevant, 1) for q, (_, relevant) in rankings.items()}
    # A query with nothing retrieved gets one never-relevant placeholder so ranx sees every query.
    run = {q: {d: float(len(ranked) - i) for i, d in enumerate(ranked)} or {"<nothing retrieved>": 0.0}
           for q, (ranked, _) in rankings.items()}  # fmt: skip
    ranx_run = Run(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter inside ranx
        evaluate(Qrels(qrels), ranx_run, list(RANX_METRICS), return_mean=False)
    return {q: {m: float(ranx_run.scores[m][q]) for m in RANX_METRICS} for q in rankings}


@dataclass(frozen=True, slots=True)
class QuestionRecord:
    id: str
    question: str
    type: str
    split: str | None
    answerable: bool
    gold_answers: tuple[str, ...]
    evidence: tuple[str, ...]
    relevant_ids: tuple[str, ...]
    missing: bool  # no response at all
    error: str | None  # response present but the pipeline failed
    answered: bool
    answer: str
    answer_words: int
    first_citation: dict | None  # doc_id, title, section, quote
    retrieval: dict[str, float] | None  # ranx metrics; None when not judged
    first_relevant_rank: int | None
    exact_match: bool | None
    f1: float | None
    contained: bool | None
    citation_supported: bool | None  # only for answered, answerable, judgeable questions
    distractor_hit: bool | None
    latency_ms: float | None
    confidence: float | None  # the response's own: how sure the answer stage was that it answers
    generator: str | None  # the backend that wrote the answer ("extractive (fallback)" when the LLM failed)
    dropped_sentences: int  # generated sentences the citation check removed ...
    checked_sentences: int  # ... of this many

    @property
    def false_refusal(self) -> bool:
        return self.answerable and not self.answered

    @property
    def false_answer(self) -> bool:
        return not self.answerable and self.answered

    @property
    def wrong_answer(self) -> bool:
        return self.answerable and self.answered and self.contained is False

    @property
    def failed_retrieval(self) -> bool:
        return self.retrieval is not None and self.first_relevant_rank is None


def _record(row: dict, gold: Gold, response: dict | None, retrieval: dict[str, float] | None,
            ranked: tuple[list[str], set[str]] | None) -> QuestionRecord:  # fmt: skip
    response = response or {}
    answered = bool(response.get("answered")) and not response.get("error")
    answer = str(response.get("answer") or "")
    citations = response.get("citations") or []
    first = citations[0] if citations else None
    judged = gold.answerable and bool(gold.answers)
    short_enough = word_count(answer) <= MAX_CONTAIN_WORDS
    gives_gold = answered and has_any(answer, gold.answers)
    judge_citation = gold.answerable and answered and gold.judgeable
    return QuestionRecord(
        id=gold.id,
        question=row["question"],
        type=gold.type,
        split=row.get("split"),
        answerable=gold.answerable,
        gold_answers=gold.answers,
        evidence=gold.evidence,
        relevant_ids=tuple(sorted(gold.relevant_ids)),
        missing=not response,
        error=response.get("error"),
        answered=answered,
        answer=answer,
        answer_words=word_count(answer),
        first_citation=_citation_summary(first),
        retrieval=retrieval,
        first_relevant_rank=_first_relevant(ranked) if retrieval is not None else None,
        # Answer metrics only where there is a gold answer; a refusal scores 0 there.
        exact_match=(answered and exact(answer, gold.answers)) if judged else None,
        f1=(max(token_f1(answer, g) for g in gold.answers) if answered else 0.0) if judged else None,
        contained=(gives_gold and short_enough) if judged else None,
        citation_supported=_cited_ok(gold, first) if judge_citation else None,
        distractor_hit=(answered and has_any(answer, gold.distractors) and not gives_gold)
        if gold.distractors
        else None,
        latency_ms=_latency(response),
        confidence=float(response["confidence"]) if isinstance(response.get("confidence"), (int, float)) else None,
        generator=response.get("generator"),
        dropped_sentences=int(response.get("dropped_sentences") or 0),
        checked_sentences=int(response.get("checked_sentences") or 0),
    )


def _cited_ok(gold: Gold, citation: Mapping | None) -> bool:
    return citation is not None and citation_supported(gold, citation)


def _citation_summary(citation: Mapping | None) -> dict | None:
    if citation is None:
        return None
    return {key: citation.get(key) for key in ("doc_id", "title", "section", "quote")}


def _first_relevant(ranked: tuple[list[str], set[str]] | None) -> int | None:
    items, relevant = ranked or ([], set())
    return next((i for i, item in enumerate(items, start=1) if item in relevant), None)


def _latency(response: Mapping) -> float | None:
    total = (response.get("timings_ms") or {}).get("total")
    return float(total) if isinstance(total, (int, float)) and math.isfinite(total) else None


@dataclass(frozen=True, slots=True)
class Metrics:
    """Means over the questions each metric applies to; None when no question qualifies."""

    n: int
    n_answerable: int
    n_unanswerable: int
    n_missing: int
    recall_1: float | None
    recall_5: float | None
    recall_10: float | None
    mrr_10: float | None
    ndcg_10: float | None
    exact_match: float | None
    token_f1: float | None
    containment: float | None
    citation_support: float | None
    abstention_accuracy: float | None
    false_refusal_rate: float | None
    distractor_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    fallback_rate: float | None  # answers a generator failed to give, replaced by the extractive one
    dropped_sentence_share: float | None  # of the generated sentences the citation check judged
    recall_curve: tuple[float | None, ...]  # recall@1..10


@dataclass(frozen=True, slots=True)
class EvalReport:
    overall: Metrics
    per_type: dict[str, Metrics]
    records: tuple[QuestionRecord, ...]
    missing: tuple[str, ...]  # question ids without a response
    risk_coverage: dict | None = None  # see risk_coverage()


def _mean(values: Iterable[float | bool | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def aggregate(records: Iterable[QuestionRecord]) -> Metrics:
    records = list(records)
    answerable = [r for r in records if r.answerable]
    unanswerable = [r for r in records if not r.answerable]
    judged = [r.retrieval for r in answerable if r.retrieval is not None]
    curve = tuple(_mean(s[f"recall@{k}"] for s in judged) for k in RECALL_KS)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    return Metrics(
        n=len(records), n_answerable=len(answerable), n_unanswerable=len(unanswerable),
        n_missing=sum(r.missing for r in records),
        recall_1=curve[0], recall_5=curve[4], recall_10=curve[9],
        mrr_10=_mean(s["mrr@10"] for s in judged), ndcg_10=_mean(s["ndcg@10"] for s in judged),
        exact_match=_mean(r.exact_match for r in answerable), token_f1=_mean(r.f1 for r in answerable),
        containment=_mean(r.contained for r in answerable),
        citation_support=_mean(r.citation_supported for r in answerable),
        abstention_accuracy=_mean(not r.answered and not r.missing for r in unanswerable),
        false_refusal_rate=_mean(r.false_refusal for r in answerable),
        distractor_rate=_mean(r.distractor_hit for r in records),
        latency_p50_ms=_percentile(latencies, 50), latency_p95_ms=_percentile(latencies, 95),
        fallback_rate=_mean("fallback" in r.generator for r in records if r.generator),
        dropped_sentence_share=_share(sum(r.dropped_sentences for r in records),
                                      sum(r.checked_sentences for r in records)),
        recall_curve=curve,
    )  # fmt: skip


def score(questions: list[dict], responses: Mapping[str, dict] | Iterable[dict]) -> EvalReport:
    """Score responses (by id, or an iterable of response dicts) against question rows."""
    from tqdm import tqdm

    if not isinstance(responses, Mapping):
        responses = {str(r.get("id")): r for r in responses}
    golds = [gold_of(row) for row in questions]
    rankings: dict[str, tuple[list[str], set[str]]] = {}
    # Relevance matching (with its LCS fallback) is the slow part on big sets, hence the bar.
    for gold in tqdm(golds, desc="Scoring", unit="q", disable=len(golds) < 500, leave=False):
        if gold.answerable and gold.judgeable:
            rankings[gold.id] = ranking(gold, list((responses.get(gold.id) or {}).get("passages") or []))
    scores = retrieval_scores(rankings)
    records = tuple(_record(row, gold, responses.get(gold.id), scores.get(gold.id), rankings.get(gold.id))
                    for row, gold in zip(questions, golds))  # fmt: skip
    types = sorted({r.type for r in records})
    return EvalReport(
        overall=aggregate(records),
        per_type={t: aggregate(r for r in records if r.type == t) for t in types},
        records=records,
        missing=tuple(r.id for r in records if r.missing),
    )


def risk_coverage(records: Iterable[QuestionRecord]) -> dict | None:
    """The risk–coverage curve of the records that carry a confidence (accuracy_curve). An answer is
    right when the question is answerable and the quote holds a gold answer; any answer to an
    unanswerable question is wrong. Without confidences there is no curve."""
    scored = [r for r in records if r.confidence is not None and not r.missing]
    if not scored:
        return None
    confidence = [r.confidence for r in scored]
    right = [r.answerable and r.answered and r.contained is True for r in scored]
    return {**accuracy_curve(confidence, right), "calibration": calibration(confidence, right)}


def accuracy_curve(confidence: Iterable[float], right: Iterable[bool]) -> dict:
    """Accuracy of the answered questions when only the most confident share is answered, at every
    tenth of coverage, and the area under the whole curve (its mean: 1.0 is a perfect ranking)."""
    import numpy as np

    confidence, right = np.asarray(list(confidence), dtype=np.float64), np.asarray(list(right), dtype=np.float64)
    ordered = right[np.argsort(-confidence, kind="stable")]  # ties keep the question order
    accuracy = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
    at = {f"{c / 10:.1f}": round(float(accuracy[max(round(c / 10 * len(ordered)) - 1, 0)]), 4) for c in range(1, 11)}
    return {"questions": len(ordered), "area": round(float(accuracy.mean()), 4), "accuracy_at_coverage": at}


CALIBRATION_BINS = 10
CONFIDENT = 0.9  # "precision at confidence >= 0.9": how far a user may trust a confident answer


def calibration(confidence: Iterable[float], right: Iterable[bool], bins: int = CALIBRATION_BINS) -> dict:
    """Whether the confidence means what it says: the reliability table (equal-width confidence bins:
    mean confidence against the share right), the expected calibration error (the bins' gaps weighted
    by their size), the AUROC of confidence for right against wrong answers (the chance that a right
    answer is more confident than a wrong one; ties count half) and the precision of the answers at
    confidence >= CONFIDENT. None where a figure has nothing to be computed from."""
    import numpy as np

    p = np.clip(np.asarray(list(confidence), dtype=np.float64), 0.0, 1.0)
    y = np.asarray(list(right), dtype=bool)
    at = np.minimum((p * bins).astype(int), bins - 1)
    table, gaps = [], 0.0
    for b in range(bins):
        member = at == b
        if member.any():
            mean, share = float(p[member].mean()), float(y[member].mean())
            gaps += member.sum() * abs(mean - share)
            table.append({"from": b / bins, "to": (b + 1) / bins, "n": int(member.sum()),
                          "confidence": round(mean, 4), "right": round(share, 4)})  # fmt: skip
    confident = p >= CONFIDENT
    return {
        "questions": int(len(p)), "right": int(y.sum()),
        "ece": round(gaps / len(p), 4) if len(p) else None,
        "auroc": _auroc(p, y),
        "precision_at_confident": round(float(y[confident].mean()), 4) if confident.any() else None,
        "confident": int(confident.sum()),
        "reliability": table,
    }


def _auroc(score, positive) -> float | None:
    """Mann–Whitney AUROC with average ranks for ties."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(score)
    return round(float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)), 4)
