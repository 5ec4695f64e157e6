"""Question rows in their formats -> one Gold shape."""

from __future__ import annotations

from rag.evaluation.dataset import gold_of


def test_a_squad_v2_impossible_question_is_unanswerable_and_its_plausible_span_a_distractor():
    row = {"id": "s1", "question": "Vem gav sitt namn till Normandie?", "answers": [], "relevant_ids": ["p0"],
           "is_impossible": True, "plausible_answers": [{"doc_id": "p0", "start": 0, "end": 11, "text": "Normannerna"}]}
    gold = gold_of(row)
    assert (gold.answerable, gold.type, gold.distractors) == (False, "none", ("Normannerna",))
    assert gold_of({**row, "is_impossible": False, "answers": ["Rollo"]}).answerable
