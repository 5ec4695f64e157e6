"""The filtered-question slice: each answerable question asked with another report's filter (must
abstain) and with its own report's (must answer)."""

from __future__ import annotations

from rag.evaluation.dataset import gold_of
from rag.evaluation.filtered import EXCLUDED, OWN, filter_slice, nearest_other

DATES = {"mars.txt": "2014-03-17", "april.txt": "2014-04-22", "maj.txt": "2017-05-30", "odaterad.txt": None}
TEXTS = {"mars.txt": "Ny ekonomichef är Anna Berg.", "april.txt": "Anna Berg tillträder i maj.",
         "maj.txt": "Krisövningen hölls i maj.", "odaterad.txt": "Inget om chefer."}  # fmt: skip


def test_the_excluded_report_is_the_nearest_in_date_that_lacks_the_answer():
    assert nearest_other("mars.txt", DATES, ["april.txt", "maj.txt", "odaterad.txt"]) == "april.txt"
    assert nearest_other("mars.txt", DATES, ["maj.txt", "odaterad.txt"]) == "maj.txt"  # undated last
    assert nearest_other("odaterad.txt", DATES, ["maj.txt", "mars.txt"]) == "mars.txt"  # earlier date on a tie
    assert nearest_other("mars.txt", DATES, ["mars.txt"]) is None


def test_each_answerable_question_gets_its_own_and_an_excluding_filter():
    rows = [
        {"id": "q1", "question": "Vem är ny ekonomichef?", "type": "fact", "answers": ["Anna Berg"],
         "evidence": ["Ny ekonomichef är Anna Berg."], "doc_id": "mars.txt", "split": "dev"},
        {"id": "n1", "question": "Vad tjänar ekonomichefen?", "type": "near_miss", "answers": [], "doc_id": "mars.txt"},
        {"id": "q2", "question": "När hölls övningen?", "type": "date", "answers": ["i maj"], "doc_id": "maj.txt",
         "filters": {"doc_ids": ["maj.txt"]}},  # already filtered: left as it is
    ]  # fmt: skip
    out = filter_slice(rows, DATES, TEXTS)
    assert [(r["id"], r["type"], r["filters"]) for r in out] == [
        ("q1~filter_own", OWN, {"doc_ids": ["mars.txt"]}),
        # april holds "Anna Berg" too, so the excluded filter skips it for the next nearest without it
        ("q1~filter_excluded", EXCLUDED, {"doc_ids": ["maj.txt"]}),
    ]
    assert gold_of(out[0]).answerable and not gold_of(out[1]).answerable

