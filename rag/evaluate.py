"""`rag eval`: score answers and retrieval on a question set, write a report, compare to a baseline.

Two question formats, detected per row:

* Our eval set (eval/questions.jsonl): {"id","question","type","answers","evidence","doc_id","split"}.
  Relevance is judged per *evidence sentence*. A passage covers an evidence sentence when
  (a) its whitespace-normalized text contains the whitespace-normalized evidence, or
  (b) fallback for evidence split across two chunks: the passage belongs to the question's doc_id and
      the longest common substring of passage and evidence is at least 60 % of the evidence's length.
  Retrieval is scored over the top 10 passages. Each evidence sentence is one relevance unit and the
  first passage covering it stands for it (later passages repeating it, e.g. overlapping chunks, earn
  nothing); an evidence sentence no top-10 passage covers stays in the qrels as a missed unit, so
  recall@k is the share of evidence found in the top k (single evidence: hit@k).
* Document-level sets (e.g. SweQUAD-MC): {"id","question","answers","relevant_ids","distractor_answers",...}.
  A passage is relevant iff its doc_id is in relevant_ids; metrics run over the deduplicated document
  ranking (first occurrence of each doc_id among the passages).

A citation is supported when its passage counts as relevant by the rules above, or (evidence sets)
when its doc_id matches and its quote lies inside an evidence sentence. Only the FIRST citation counts.

Answer text is compared SQuAD-style: [n] markers removed, lowercased (str.lower handles å/ä/ö),
punctuation and symbols deleted, whitespace collapsed; Swedish thousands groups ("1 200") are joined.
Articles are NOT removed: Swedish "en"/"ett" are also the number one. Containment matches whole
tokens (gold "ett år" is not found in "sett år") and needs an answer of at most 50 words.

A question with type "none", or with no answers, evidence or relevant_ids, is unanswerable. A missing
response (or one carrying "error") counts as a failure: no retrieval, wrong answer, a refusal.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.errors import InputError
from rag.settings import Settings

K_MAX = 10
RECALL_KS = tuple(range(1, K_MAX + 1))
RANX_METRICS = (*(f"recall@{k}" for k in RECALL_KS), "mrr@10", "ndcg@10")
LCS_SHARE = 0.6
MAX_CONTAIN_WORDS = 50
TYPE_ALL = "all"
SPLITS = ("dev", "test", "all")

# Direction of each scalar metric for compare(); latency is shown but never decides a regression.
HIGHER_IS_BETTER = ("recall_1", "recall_5", "recall_10", "mrr_10", "ndcg_10", "exact_match", "token_f1",
                    "containment", "citation_support", "abstention_accuracy")  # fmt: skip
LOWER_IS_BETTER = ("false_refusal_rate", "distractor_rate")
INFORMATIONAL = ("latency_p50_ms", "latency_p95_ms", "fallback_rate", "dropped_sentence_share")
LABELS = {"recall_1": "recall@1", "recall_5": "recall@5", "recall_10": "recall@10", "mrr_10": "MRR@10",
          "ndcg_10": "nDCG@10"}  # fmt: skip


# ---------------------------------------------------------------------------------------------- loading


def load_questions(path: Path | str) -> tuple[list[dict], list[str]]:
    """Valid rows plus one message per malformed line; a bad line never stops the rest."""
    rows, errors, seen = [], [], set()
    for line_no, obj, error in _read_jsonl(Path(path), "questions"):
        error = error or _question_problem(obj)
        if not error and str(obj["id"]) in seen:
            error = f"duplicate id {obj['id']!r}"
        if error:
            errors.append(f"line {line_no}: {error}")
            continue
        seen.add(str(obj["id"]))
        rows.append({**obj, "id": str(obj["id"])})  # ids are compared as strings everywhere
    if not rows:
        raise InputError(f"No valid questions in {path}" + (f" ({errors[0]})." if errors else "."))
    return rows, errors


def load_responses(path: Path | str) -> tuple[dict[str, dict], list[str]]:
    """Saved responses (JSONL, one per question) by id, plus messages for malformed lines."""
    responses: dict[str, dict] = {}
    errors: list[str] = []
    for line_no, obj, error in _read_jsonl(Path(path), "responses"):
        if not error and obj.get("id") is None:
            error = "missing key 'id'"
        if error:
            errors.append(f"line {line_no}: {error}")
            continue
        responses[str(obj["id"])] = obj  # a later line for the same id wins (re-asked question)
    return responses, errors


def filter_split(rows: list[dict], split: str) -> list[dict]:
    """Rows of one split; rows without a split only take part in 'all'."""
    if split == "all":
        return rows
    kept = [row for row in rows if row.get("split") == split]
    if not kept:
        present = sorted({str(row.get("split")) for row in rows})
        raise InputError(f"No questions with split={split} (splits present: {', '.join(present)}).")
    return kept


def _read_jsonl(path: Path, what: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, object, error) for every non-blank line."""
    if not path.is_file():
        raise InputError(f"The {what} file {path} does not exist.")
    with path.open("rb") as handle:  # bytes, so one bad encoding only spoils its own line
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield line_no, None, "not valid UTF-8"
                continue
            except json.JSONDecodeError as error:
                yield line_no, None, f"not valid JSON: {error}"
                continue
            yield (line_no, obj, None) if isinstance(obj, dict) else (line_no, None, "not a JSON object")


def _question_problem(obj: dict) -> str | None:
    for key in ("id", "question"):
        if obj.get(key) is None:
            return f"missing key '{key}'"
    if not isinstance(obj["id"], (str, int)) or not str(obj["id"]).strip():
        return "'id' must be a non-empty string or number"
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        return "'question' must be a non-empty string"
    for key in ("answers", "evidence", "relevant_ids", "distractor_answers"):
        value = obj.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"'{key}' must be a list of strings"
    return None


# ------------------------------------------------------------------------------------- text matching

_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_THOUSANDS = re.compile(r"(\d)\s+(?=\d{3}(?!\d))")


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization, Swedish-aware (see module docstring)."""
    text = _MARKER.sub(" ", text).lower()
    text = _THOUSANDS.sub(r"\1", text)
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S")))
    return " ".join(text.split())


def _ws(text: str) -> str:
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


def _word_count(answer: str) -> int:
    return len(_MARKER.sub(" ", answer).split())


# ------------------------------------------------------------------------------------------ relevance


@dataclass(frozen=True, slots=True)
class Gold:
    """What a question row says is right, in one shape for both formats."""

    id: str
    type: str
    answerable: bool
    doc_level: bool
    answers: tuple[str, ...]
    evidence: tuple[str, ...]  # whitespace-normalized
    doc_id: str
    relevant_ids: frozenset[str]
    distractors: tuple[str, ...]

    @property
    def judgeable(self) -> bool:
        """Retrieval and citations can only be judged when we know what is relevant."""
        return bool(self.relevant_ids) if self.doc_level else bool(self.evidence)


def gold_of(row: dict) -> Gold:
    doc_level = "relevant_ids" in row
    qtype = str(row.get("type") or TYPE_ALL)
    answers = tuple(a for a in row.get("answers", []) if a.strip())
    evidence = tuple(_ws(e) for e in row.get("evidence", []) if e.strip())
    relevant = frozenset(row.get("relevant_ids", []))
    return Gold(
        id=row["id"],
        type=qtype,
        answerable=qtype != "none" and bool(answers or evidence or relevant),
        doc_level=doc_level,
        answers=answers,
        evidence=evidence,
        doc_id=str(row.get("doc_id") or ""),
        relevant_ids=relevant,
        distractors=tuple(d for d in row.get("distractor_answers", []) if d.strip()),
    )


def covered_evidence(gold: Gold, passage: Mapping) -> set[int]:
    """Indexes of the evidence sentences this passage covers (evidence sets only)."""
    text = _ws(str(passage.get("text") or ""))
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
    quote = _ws(str(citation.get("quote") or ""))
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


# ------------------------------------------------------------------------------------ per question


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
    short_enough = _word_count(answer) <= MAX_CONTAIN_WORDS
    gives_gold = answered and _has_any(answer, gold.answers)
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
        answer_words=_word_count(answer),
        first_citation=_citation_summary(first),
        retrieval=retrieval,
        first_relevant_rank=_first_relevant(ranked) if retrieval is not None else None,
        # Answer metrics only where there is a gold answer; a refusal scores 0 there.
        exact_match=(answered and _exact(answer, gold.answers)) if judged else None,
        f1=(max(token_f1(answer, g) for g in gold.answers) if answered else 0.0) if judged else None,
        contained=(gives_gold and short_enough) if judged else None,
        citation_supported=_cited_ok(gold, first) if judge_citation else None,
        distractor_hit=(answered and _has_any(answer, gold.distractors) and not gives_gold)
        if gold.distractors
        else None,
        latency_ms=_latency(response),
        generator=response.get("generator"),
        dropped_sentences=int(response.get("dropped_sentences") or 0),
        checked_sentences=int(response.get("checked_sentences") or 0),
    )


def _has_any(answer: str, phrases: Iterable[str]) -> bool:
    text = normalize_answer(answer)
    return any(_has_phrase(text, normalize_answer(p)) for p in phrases)


def _exact(answer: str, golds: Iterable[str]) -> bool:
    text = normalize_answer(answer)
    return any(text == normalize_answer(g) for g in golds)


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


# ---------------------------------------------------------------------------------------- aggregation


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


# ------------------------------------------------------------------------------------------ reporting


def report_to_dict(report: EvalReport, meta: Mapping[str, Any] | None = None) -> dict:
    flags = ("false_refusal", "false_answer", "wrong_answer", "failed_retrieval")
    records = [{**asdict(r), **{flag: getattr(r, flag) for flag in flags}} for r in report.records]
    return {**(meta or {}), "overall": asdict(report.overall),
            "per_type": {t: asdict(m) for t, m in report.per_type.items()},
            "missing": list(report.missing), "records": records}  # fmt: skip


def write_report(report: EvalReport, name: str, out_dir: Path = Path("eval/reports"),
                 meta: Mapping[str, Any] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write <name>.json, <name>.md and <name>.png; each appears whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    data = json.dumps(report_to_dict(report, meta), ensure_ascii=False, indent=2)
    _write_atomic(paths["json"], lambda tmp: tmp.write_text(data + "\n", encoding="utf-8"))
    _write_atomic(paths["md"], lambda tmp: tmp.write_text(render_markdown(report, name), encoding="utf-8"))
    _write_atomic(paths["png"], lambda tmp: _plot(report, name, tmp))
    return paths


def _write_atomic(path: Path, write) -> None:
    # Readers (CI, a browser on the report folder) never see half a file.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _fmt(value: float | None, key: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"


def _metric_keys() -> list[str]:
    return [*HIGHER_IS_BETTER, *LOWER_IS_BETTER, *INFORMATIONAL]


def render_markdown(report: EvalReport, name: str) -> str:
    columns = {"overall": report.overall, **report.per_type}
    total = report.overall
    lines = [
        f"# Evaluation report: {name}",
        "",
        f"{total.n} questions ({total.n_answerable} answerable, {total.n_unanswerable} unanswerable, "
        f"{total.n_missing} without a response).",
        "",
        "| metric | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        "| n | " + " | ".join(str(m.n) for m in columns.values()) + " |",
    ]
    for key in _metric_keys():
        values = " | ".join(_fmt(getattr(m, key), key) for m in columns.values())
        lines.append(f"| {LABELS.get(key, key)} | {values} |")
    lines += _problem_sections(report)
    return "\n".join(lines) + "\n"


def _problem_sections(report: EvalReport) -> list[str]:
    sections = [
        ("Missing or failed responses", lambda r: r.missing or r.error),
        ("Wrong answers (answered, gold answer not contained)", lambda r: r.wrong_answer),
        ("False refusals (answerable, not answered)", lambda r: r.false_refusal),
        ("False answers (unanswerable, answered)", lambda r: r.false_answer),
        ("Failed retrievals (no relevant passage in top 10)", lambda r: r.failed_retrieval),
    ]
    lines: list[str] = []
    for title, wanted in sections:
        records = [r for r in report.records if wanted(r)]
        lines += ["", f"## {title} ({len(records)})", ""]
        lines += [_record_markdown(r) for r in records] or ["None."]
    return lines


def _one_line(text: str, limit: int = 400) -> str:
    text = _ws(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record_markdown(record: QuestionRecord) -> str:
    lines = [
        f"- **{record.id}** ({record.type}): {_one_line(record.question)}",
        f"  - gold: {' | '.join(record.gold_answers) or '(unanswerable)'}",
        f"  - answer: {_one_line(record.answer) or '(empty)'}",
        f"  - cited: {_cited_markdown(record.first_citation)}",
    ]
    notes = _notes(record)
    return "\n".join(lines + ([f"  - note: {'; '.join(notes)}"] if notes else []))


def _cited_markdown(cite: Mapping | None) -> str:
    if not cite:
        return "no citation"
    quote = _one_line(str(cite.get("quote") or ""))
    return f"{cite.get('doc_id')} / {cite.get('section') or '–'}: “{quote}”"


def _notes(record: QuestionRecord) -> list[str]:
    notes = [
        f"error: {record.error}" if record.error else "",
        "no response" if record.missing else "",
        f"{record.answer_words} words: too long" if record.answer_words > MAX_CONTAIN_WORDS else "",
        "contains a distractor" if record.distractor_hit else "",
        f"first relevant passage at rank {record.first_relevant_rank}" if record.first_relevant_rank else "",
    ]
    return [note for note in notes if note]


def _plot(report: EvalReport, name: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas: no pyplot global state, safe next to a running server.
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    curve = [math.nan if v is None else v for v in report.overall.recall_curve]
    left.plot(RECALL_KS, curve, marker="o")
    left.set(title="Retrieval recall@k (overall)", xlabel="k", ylabel="recall", ylim=(0, 1.05))
    left.set_xticks(RECALL_KS)
    left.grid(alpha=0.3)
    types = list(report.per_type) or ["overall"]
    per_type = [report.per_type.get(t, report.overall) for t in types]
    xs = range(len(types))
    bars = ((-0.2, "containment", "containment"), (0.2, "citation_support", "citation support"))
    for offset, key, label in bars:
        values = [math.nan if getattr(m, key) is None else getattr(m, key) for m in per_type]
        right.bar([x + offset for x in xs], values, width=0.4, label=label)
    right.set(title="Per type", ylim=(0, 1.05), xticks=list(xs), xticklabels=types)
    right.legend(loc="upper right")
    fig.suptitle(name)
    fig.savefig(path, format="png", dpi=110)


# ----------------------------------------------------------------------------------------- comparison


def compare(current: dict, baseline: dict, tolerance: float = 0.02) -> tuple[list[str], bool]:
    """One line per metric "metric: baseline -> current (+delta)", and whether anything regressed.

    Accepts whole report dicts (their "overall" part is compared) or plain metric dicts.
    """
    current, baseline = current.get("overall", current), baseline.get("overall", baseline)
    lines, regressed = [], False
    for key in _metric_keys():
        before, after = baseline.get(key), current.get(key)
        if before is None or after is None:
            lines.append(f"{key}: {_fmt(before, key)} -> {_fmt(after, key)}")
            continue
        worse = 0.0  # informational metrics never regress
        if key in HIGHER_IS_BETTER:
            worse = before - after
        elif key in LOWER_IS_BETTER:
            worse = after - before
        bad = worse > tolerance + 1e-9  # epsilon: 0.80 -> 0.78 is exactly the tolerance, not beyond it
        regressed |= bad
        delta = f"{after - before:+.0f}" if key.startswith("latency") else f"{after - before:+.3f}"
        line = f"{key}: {_fmt(before, key)} -> {_fmt(after, key)} ({delta})"
        lines.append(line + ("  REGRESSION" if bad else ""))
    return lines, regressed


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--questions", type=Path, default=Path("eval/questions.jsonl"), help="question set (JSONL)")
    add("--index", type=Path, help="index folder (default: index/)")
    add("--responses", type=Path, metavar="RESPONSES.jsonl", help="score saved responses instead of asking")
    add("--split", choices=SPLITS, default="all", help="which questions to use (default: all)")
    add("--name", help="report name (default: from the questions file and split)")
    add("--out-dir", type=Path, default=Path("eval/reports"), help="report folder (default: eval/reports)")
    add("--compare", type=Path, metavar="BASELINE.json", help="exit 1 if worse than this earlier report")
    add("--tolerance", type=float, default=0.02, help="allowed drop per metric (default: 0.02)")
    add("--save-responses", type=Path, metavar="PATH", help="also write the responses as JSONL")


def default_name(questions: Path, split: str) -> str:
    # Both our set and external ones tend to be called questions.jsonl; the folder tells them apart.
    stem = questions.stem
    if stem == "questions" and questions.parent.name not in ("", ".", "eval"):
        stem = questions.parent.name
    return f"{stem}-{split}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    questions, problems = load_questions(args.questions)
    for problem in problems:
        print(f"Warning: {args.questions}: {problem}", file=sys.stderr)
    questions = filter_split(questions, args.split)
    baseline = _load_baseline(args.compare) if args.compare else None  # fail fast, before an hour of asking
    responses = _get_responses(args, settings, questions)
    report = score(questions, responses)
    name = args.name or default_name(Path(args.questions), args.split)
    meta = {"name": name, "questions": str(args.questions), "split": args.split,
            "responses": str(args.responses) if args.responses else None}  # fmt: skip
    paths = write_report(report, name, Path(args.out_dir), meta=meta)
    print(summary_table(report))
    if (share := report.overall.dropped_sentence_share) is not None:
        print(f"Citation check: dropped {share:.3f} of the generated sentences; "
              f"fallback to extractive in {report.overall.fallback_rate:.3f} of the answers.")
    print(f"Report: {paths['md']} ({paths['json'].name}, {paths['png'].name})")
    if baseline is None:
        return 0
    lines, regressed = compare(report_to_dict(report), baseline, args.tolerance)
    print(f"\nCompared with {args.compare} (tolerance {args.tolerance}):")
    print("\n".join(f"  {line}" for line in lines))
    if regressed:
        print("Regression: at least one metric got worse by more than the tolerance.", file=sys.stderr)
    return 1 if regressed else 0


def _load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"Cannot read the baseline report {path}: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"The baseline report {path} is not a JSON object.")
    return data


def _get_responses(args: argparse.Namespace, settings: Settings, questions: list[dict]) -> dict[str, dict]:
    if args.responses:
        responses, problems = load_responses(args.responses)
        for problem in problems:
            print(f"Warning: {args.responses}: {problem}", file=sys.stderr)
        if args.save_responses:
            used = (responses[q["id"]] for q in questions if q["id"] in responses)
            _save_responses(args.save_responses, used)
        return responses
    from rag.pipeline import ask_batch  # lazy: loads the model and the index

    asked = _ask_all(ask_batch(questions, settings.replace(index_dir=args.index), progress=True), questions)
    if args.save_responses:
        asked = _save_responses(args.save_responses, asked)
    return {str(r["id"]): r for r in asked}


def _ask_all(responses: Iterable[dict], questions: list[dict]) -> Iterator[dict]:
    """Responses with their question id filled in if the pipeline left it out."""
    for position, response in enumerate(responses):
        if response.get("id") is None and position < len(questions):
            response = {**response, "id": questions[position]["id"]}
        yield response


def _save_responses(path: Path, responses: Iterable[dict]) -> list[dict]:
    # Written line by line as answers arrive, so an interrupted run keeps what it has.
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    with path.open("w", encoding="utf-8") as out:
        for response in responses:
            out.write(json.dumps(response, ensure_ascii=False) + "\n")
            out.flush()
            kept.append(response)
    return kept


def summary_table(report: EvalReport) -> str:
    columns = {"R@1": "recall_1", "R@5": "recall_5", "R@10": "recall_10", "MRR": "mrr_10",
               "EM": "exact_match", "F1": "token_f1", "contain": "containment", "cite": "citation_support",
               "abstain": "abstention_accuracy", "falseref": "false_refusal_rate", "p50ms": "latency_p50_ms"}
    head, keys = ("type", "n", *columns), tuple(columns.values())
    rows = [(t, m) for t, m in report.per_type.items() if t != "overall"] + [("overall", report.overall)]
    table = [head] + [(t, str(m.n), *(_fmt(getattr(m, k), k) for k in keys)) for t, m in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table)


__all__ = [
    "EvalReport", "Metrics", "QuestionRecord", "add_arguments", "compare", "load_questions",
    "load_responses", "normalize_answer", "run", "score", "token_f1", "write_report",
]  # fmt: skip
