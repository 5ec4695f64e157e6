"""The regression guard: a new report against a baseline report, question by question.

A metric's mean moves by 1/n when one question flips, and vectors differ slightly between machines
(docs/evaluation.md), so a question close to a decision can flip on a machine that changed nothing.
The guard therefore counts flips, not means: for every outcome below it pairs each question with its
baseline record and counts losses (good before, bad now) and gains. Noise flips both ways; a real
regression flips one way. An outcome fails when its net loss (losses − gains) exceeds
max(MIN_QUESTIONS, share × n) questions, overall and within each question type, where n is the number of
questions the outcome applies to. With the default share of 2 %: one question per type, three over
the 159 dev questions. Questions that are only in one of the two reports are listed, never counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rag.evaluation.report import HIGHER_IS_BETTER, LOWER_IS_BETTER, _fmt, _metric_keys

MIN_QUESTIONS = 1.5  # a single flip never fails a metric; two net losses in a small type do
Record = Mapping[str, object]


def _judged(record: Record) -> bool:
    return record.get("answerable") is True and record.get("retrieval") is not None


def _rank_within(k: int) -> Callable[[Record], bool]:
    return lambda r: r.get("first_relevant_rank") is not None and int(r["first_relevant_rank"]) <= k


# name -> (the questions it applies to, what counts as good); each mirrors an aggregate metric
OUTCOMES: dict[str, tuple[Callable[[Record], bool], Callable[[Record], bool]]] = {
    "hit@1": (_judged, _rank_within(1)),  # a relevant passage first (recall@1 for single-evidence questions)
    "hit@5": (_judged, _rank_within(5)),
    "containment": (lambda r: r.get("contained") is not None, lambda r: r.get("contained") is True),
    "cited right": (lambda r: r.get("answerable") is True and bool(r.get("evidence") or r.get("relevant_ids")),
                    lambda r: r.get("answered") is True and r.get("citation_supported") is True),
    "answered": (lambda r: r.get("answerable") is True, lambda r: r.get("answered") is True),  # no false refusal
    "abstained": (lambda r: r.get("answerable") is False, lambda r: r.get("answered") is False),
    "no distractor": (lambda r: r.get("distractor_hit") is not None, lambda r: r.get("distractor_hit") is False),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Flips:
    outcome: str
    group: str  # "overall" or a question type
    n: int  # questions in both reports that the outcome applies to
    good_before: int
    good_now: int
    lost: tuple[str, ...]  # question ids
    gained: tuple[str, ...]

    @property
    def net_loss(self) -> int:
        return len(self.lost) - len(self.gained)

    def allowed(self, share: float) -> int:
        return math.floor(max(MIN_QUESTIONS, share * self.n))

    def regressed(self, share: float) -> bool:
        return self.net_loss > self.allowed(share)


def flips(current: list[Record], baseline: list[Record]) -> list[Flips]:
    """Per outcome, overall and per question type, which questions flipped between the two reports."""
    before = {str(r["id"]): r for r in baseline}
    pairs = [(before[str(r["id"])], r) for r in current if str(r["id"]) in before]
    groups = {"overall": pairs}
    for pair in pairs:
        groups.setdefault(str(pair[1].get("type")), []).append(pair)
    out = []
    for outcome, (applies, good) in OUTCOMES.items():
        for group, members in groups.items():
            relevant = [(b, c) for b, c in members if applies(b) and applies(c)]
            if not relevant:
                continue
            lost = tuple(str(c["id"]) for b, c in relevant if good(b) and not good(c))
            gained = tuple(str(c["id"]) for b, c in relevant if good(c) and not good(b))
            out.append(Flips(outcome, group, len(relevant), sum(good(b) for b, _ in relevant),
                             sum(good(c) for _, c in relevant), lost, gained))  # fmt: skip
    return out


def compare(current: dict, baseline: dict, tolerance: float = 0.02) -> tuple[list[str], bool]:
    """Lines to print and whether anything regressed. Reports with per-question records are compared
    question by question (see the module docstring); plain metric dicts by their means."""
    if not (current.get("records") and baseline.get("records")):
        return _compare_means(current, baseline, tolerance)
    lines, regressed = [], False
    for found in flips(current["records"], baseline["records"]):
        bad = found.regressed(tolerance)
        regressed |= bad
        if found.group != "overall" and not (found.lost or found.gained):
            continue  # unchanged types stay quiet; the overall line is always shown
        lines.append(_flip_line(found, tolerance) + ("  REGRESSION" if bad else ""))
    only = _unpaired(current["records"], baseline["records"])
    if only:
        lines.append(only)
    lines += [f"(mean) {line}" for line in _compare_means(current, baseline, None)[0]]
    return lines, regressed


def _flip_line(found: Flips, tolerance: float) -> str:
    ids = lambda xs: ", ".join(xs[:8]) + (" …" if len(xs) > 8 else "") or "–"  # noqa: E731
    return (f"{found.outcome} [{found.group}]: {found.good_before}/{found.n} -> {found.good_now}/{found.n}; "
            f"lost {ids(found.lost)}; gained {ids(found.gained)}; net loss {found.net_loss} "
            f"(allowed {found.allowed(tolerance)})")  # fmt: skip


def _unpaired(current: list[Record], baseline: list[Record]) -> str:
    now, before = {str(r["id"]) for r in current}, {str(r["id"]) for r in baseline}
    parts = [f"{len(now - before)} new" if now - before else "", f"{len(before - now)} gone" if before - now else ""]
    parts = [p for p in parts if p]
    return f"questions not in both reports (not counted): {', '.join(parts)}" if parts else ""


def _compare_means(current: dict, baseline: dict, tolerance: float | None) -> tuple[list[str], bool]:
    """Metric means side by side; with a tolerance, a mean worse by more than it is a regression."""
    current, baseline = current.get("overall", current), baseline.get("overall", baseline)
    lines, regressed = [], False
    for key in _metric_keys():
        before, after = baseline.get(key), current.get(key)
        if before is None or after is None:
            lines.append(f"{key}: {_fmt(before, key)} -> {_fmt(after, key)}")
            continue
        worse = before - after if key in HIGHER_IS_BETTER else after - before if key in LOWER_IS_BETTER else 0.0
        bad = tolerance is not None and worse > tolerance + 1e-9  # 0.80 -> 0.78 is the tolerance, not beyond it
        regressed |= bad
        delta = f"{after - before:+.0f}" if key.startswith("latency") else f"{after - before:+.3f}"
        lines.append(f"{key}: {_fmt(before, key)} -> {_fmt(after, key)} ({delta})" + ("  REGRESSION" if bad else ""))
    return lines, regressed
