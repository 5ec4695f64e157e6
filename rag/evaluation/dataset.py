"""Question sets and saved responses: loading, validation, splits, and what each row says is right.

Two question formats, detected per row:

* Our eval set (eval/questions.jsonl): {"id","question","type","answers","evidence","doc_id","split"}.
* Document-level sets (e.g. SweQUAD-MC): {"id","question","answers","relevant_ids","distractor_answers",...}.

A question with type "none", or with no answers, evidence or relevant_ids, is unanswerable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError

TYPE_ALL = "all"
SPLITS = ("dev", "test", "all")


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
    """A SQuAD 2.0 row marked `is_impossible` is unanswerable (type "none" unless it names one), though
    it names its paragraph; its `plausible_answers`, what a careless reader would quote, are distractors."""
    doc_level = "relevant_ids" in row
    impossible = row.get("is_impossible") is True
    qtype = str(row.get("type") or ("none" if impossible else TYPE_ALL))
    answers = tuple(a for a in row.get("answers", []) if a.strip())
    evidence = tuple(ws(e) for e in row.get("evidence", []) if e.strip())
    relevant = frozenset(row.get("relevant_ids", []))
    return Gold(
        id=row["id"],
        type=qtype,
        answerable=qtype != "none" and not impossible and bool(answers or evidence or relevant),
        doc_level=doc_level,
        answers=answers,
        evidence=evidence,
        doc_id=str(row.get("doc_id") or ""),
        relevant_ids=relevant,
        distractors=tuple(d for d in [*row.get("distractor_answers", []), *_texts(row.get("plausible_answers"))]
                          if d.strip()),  # fmt: skip
    )


def _texts(spans) -> list[str]:
    """SQuAD's plausible answers: span objects ({"text", ...}) or plain strings."""
    return [s.get("text", "") if isinstance(s, dict) else s for s in spans or () if isinstance(s, (dict, str))]


def ws(text: str) -> str:
    """Whitespace collapsed, so evidence matches however the text was wrapped."""
    return " ".join(text.split())
