"""Sanity checks for the evaluation question set in eval/questions.jsonl.

Run as a script to print per-type, per-document and per-split counts:

    .venv/bin/python tests/test_eval_set.py
"""

import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS_PATH = ROOT / "eval" / "questions.jsonl"
DATA_DIR = ROOT / "data"

REQUIRED_KEYS = {"id", "question", "type", "answers", "evidence", "doc_id", "split"}
OPTIONAL_KEYS = {"note"}  # why a question is unanswerable, or where its answer sits
# near_miss: the topic is in the reports, the asked detail is not; heading: the answer is in a section
# heading or the signature; clause: the answer is a clause inside a long sentence.
MIN_PER_TYPE = {"fact": 15, "paraphrase": 15, "en": 15, "date": 15, "list": 15, "none": 15,
                "near_miss": 20, "heading": 10, "clause": 10}  # fmt: skip
TYPES = set(MIN_PER_TYPE)
UNANSWERABLE = {"none", "near_miss"}
SPLITS = {"dev", "test"}
MIN_TOTAL = 190
MIN_PER_DOC = 10


def _norm(text):
    return re.sub(r"\s+", " ", text).strip()


def _load_lines():
    return QUESTIONS_PATH.read_text(encoding="utf-8").splitlines()


def _load_questions():
    return [json.loads(line) for line in _load_lines() if line.strip()]


def _report_files():
    return sorted(p.name for p in DATA_DIR.glob("*.txt"))


def _doc_text(doc_id):
    return _norm((DATA_DIR / doc_id).read_text(encoding="utf-8"))


def test_every_line_parses_and_has_exact_keys():
    lines = _load_lines()
    assert lines, "questions.jsonl is empty"
    for n, line in enumerate(lines, 1):
        assert line.strip(), f"line {n} is blank"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"line {n} is not a JSON object"
        assert REQUIRED_KEYS <= set(obj) <= REQUIRED_KEYS | OPTIONAL_KEYS, f"line {n}: keys {sorted(obj)}"
        assert isinstance(obj["id"], str) and obj["id"], f"line {n}: bad id"
        assert isinstance(obj["question"], str) and obj["question"].strip(), f"line {n}: empty question"
        assert obj["type"] in TYPES, f"line {n}: bad type {obj['type']!r}"
        assert obj["split"] in SPLITS, f"line {n}: bad split {obj['split']!r}"
        assert isinstance(obj["answers"], list), f"line {n}: answers not a list"
        assert all(isinstance(a, str) and a.strip() for a in obj["answers"]), f"line {n}: bad answer"
        assert isinstance(obj["evidence"], list), f"line {n}: evidence not a list"
        assert all(isinstance(e, str) and e.strip() for e in obj["evidence"]), f"line {n}: bad evidence"
        assert isinstance(obj["doc_id"], str), f"line {n}: doc_id not a string"


def test_ids_are_unique():
    ids = [q["id"] for q in _load_questions()]
    dupes = [i for i, c in Counter(ids).items() if c > 1]
    assert dupes == []


def test_type_counts_and_total():
    questions = _load_questions()
    counts = Counter(q["type"] for q in questions)
    for t, least in sorted(MIN_PER_TYPE.items()):
        assert counts[t] >= least, f"type {t}: only {counts[t]} questions"
    assert len(questions) >= MIN_TOTAL


def test_answerable_questions_have_answers_evidence_and_existing_doc():
    files = set(_report_files())
    for q in _load_questions():
        if q["type"] in UNANSWERABLE:
            continue
        assert q["doc_id"] in files, f"{q['id']}: unknown doc_id {q['doc_id']!r}"
        assert len(q["answers"]) >= 1, f"{q['id']}: no answers"
        assert len(q["evidence"]) >= 1, f"{q['id']}: no evidence"


def test_evidence_occurs_in_document():
    texts = {}
    for q in _load_questions():
        if not q["evidence"]:
            continue
        doc = texts.setdefault(q["doc_id"], _doc_text(q["doc_id"]))
        for ev in q["evidence"]:
            assert _norm(ev) in doc, f"{q['id']}: evidence not found in {q['doc_id']}: {ev[:80]!r}"


def test_every_answer_occurs_in_evidence():
    for q in _load_questions():
        evidence = [_norm(e) for e in q["evidence"]]
        for ans in q["answers"]:
            assert any(_norm(ans) in ev for ev in evidence), f"{q['id']}: answer {ans!r} not in evidence"


def test_unanswerable_questions_have_no_answers_or_evidence():
    for q in _load_questions():
        if q["type"] in UNANSWERABLE:
            assert q["answers"] == [], q["id"]
            assert q["evidence"] == [], q["id"]


def test_every_report_is_covered():
    counts = Counter(q["doc_id"] for q in _load_questions())
    files = _report_files()
    assert files, "no report files in data/"
    for name in files:
        assert counts[name] >= MIN_PER_DOC, f"{name}: only {counts[name]} questions"


def test_test_split_size_and_type_coverage():
    questions = _load_questions()
    test_qs = [q for q in questions if q["split"] == "test"]
    share = len(test_qs) / len(questions)
    assert 0.15 <= share <= 0.25, f"test share {share:.3f}"
    assert {q["type"] for q in test_qs} == TYPES


def print_counts():
    questions = _load_questions()
    print(f"total: {len(questions)}")
    by_type = Counter(q["type"] for q in questions)
    test_by_type = Counter(q["type"] for q in questions if q["split"] == "test")
    print("per type (all / test):")
    for t in sorted(TYPES):
        print(f"  {t:<11} {by_type[t]:>4} / {test_by_type[t]}")
    by_doc = Counter(q["doc_id"] for q in questions)
    print("per document:")
    for name in _report_files():
        print(f"  {name:<26} {by_doc[name]:>4}")
    print(f"  {'(none, no doc)':<26} {by_doc['']:>4}")
    by_split = Counter(q["split"] for q in questions)
    print(f"split: dev {by_split['dev']}, test {by_split['test']} "
          f"({by_split['test'] / len(questions):.1%} test)")


if __name__ == "__main__":
    print_counts()
