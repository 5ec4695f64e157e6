"""The regression guard counts flipped questions, not moved means (rag/evaluation/compare.py)."""

from __future__ import annotations

from rag.evaluation.compare import compare, flips


def record(qid: str, qtype: str = "fact", *, answered: bool = True, contained: bool | None = True,
           rank: int | None = 1, answerable: bool = True) -> dict:  # fmt: skip
    """A per-question record as `rag eval` writes it (only the fields the guard reads)."""
    return {"id": qid, "type": qtype, "answerable": answerable, "answered": answered,
            "contained": contained if answerable else None, "evidence": ["x"] if answerable else [],
            "relevant_ids": [], "retrieval": {"recall@1": 1.0} if answerable else None,
            "first_relevant_rank": rank if answerable else None,
            "citation_supported": answered if answerable else None, "distractor_hit": None}  # fmt: skip


def report(records: list[dict]) -> dict:
    return {"overall": {}, "records": records}


def _unanswerable(n: int, answered_ids: set[int] = frozenset()) -> list[dict]:
    return [record(f"n{i}", "none", answerable=False, answered=i in answered_ids) for i in range(n)]


def test_flips_name_exactly_the_questions_that_changed():
    before = [record("a"), record("b"), record("c", contained=False), *_unanswerable(2)]
    after = [record("a", contained=False), record("b"), record("c"), *_unanswerable(2, {0})]
    found = {(f.outcome, f.group): f for f in flips(after, before)}
    containment = found[("containment", "overall")]
    assert (containment.n, containment.good_before, containment.good_now) == (3, 2, 2)
    assert (containment.lost, containment.gained, containment.net_loss) == (("a",), ("c",), 0)
    abstained = found[("abstained", "none")]
    assert (abstained.n, abstained.lost, abstained.gained) == (2, ("n0",), ())


def test_one_flipped_question_is_noise_two_in_one_type_are_a_regression():
    base = report(_unanswerable(24))
    lines, regressed = compare(report(_unanswerable(24, {3})), base)
    assert not regressed
    assert "abstained [none]: 24/24 -> 23/24; lost n3; gained –; net loss 1 (allowed 1)" in lines
    lines, regressed = compare(report(_unanswerable(24, {3, 7})), base)
    assert regressed
    assert "abstained [none]: 24/24 -> 22/24; lost n3, n7; gained –; net loss 2 (allowed 1)  REGRESSION" in lines


def test_losses_balanced_by_gains_are_not_a_regression():
    base = report([record(f"q{i}", contained=i % 2 == 0) for i in range(10)])
    swapped = report([record(f"q{i}", contained=i % 2 == 1) for i in range(10)])  # 5 lost, 5 gained
    lines, regressed = compare(swapped, base)
    assert not regressed and any(line.startswith("containment [overall]: 5/10 -> 5/10;") for line in lines)


def test_the_allowance_grows_with_the_number_of_questions():
    base = [record(f"q{i:03}") for i in range(159)]
    three = [record(r["id"], contained=False) if i < 3 else r for i, r in enumerate(base)]
    four = [record(r["id"], contained=False) if i < 4 else r for i, r in enumerate(base)]
    assert not compare(report(three), report(base))[1]  # 2 % of 159 is 3.18: three lost questions pass
    lines, regressed = compare(report(four), report(base))
    assert regressed and any("containment [overall]" in line and "(allowed 3)  REGRESSION" in line for line in lines)
    assert not compare(report(four), report(base), tolerance=0.03)[1]  # 4.77 allowed


def test_a_refusal_costs_containment_citation_and_answered_at_once():
    lines, regressed = compare(report([record("a", answered=False, contained=False), record("b")]),
                               report([record("a"), record("b")]))  # fmt: skip
    lost = {line.split(" [")[0] for line in lines if "lost a;" in line}
    assert lost == {"answered", "cited right", "containment"}
    assert not regressed  # one question, however many of its outcomes flipped


def test_questions_in_only_one_report_are_listed_not_counted():
    lines, regressed = compare(report([record("a"), record("new", contained=False)]),
                               report([record("a"), record("gone")]))  # fmt: skip
    assert not regressed
    assert "questions not in both reports (not counted): 1 new, 1 gone" in lines


def test_reports_without_records_are_compared_by_their_means():
    lines, regressed = compare({"overall": {"containment": 0.70}}, {"overall": {"containment": 0.80}})
    assert regressed and "containment: 0.800 -> 0.700 (-0.100)  REGRESSION" in lines
