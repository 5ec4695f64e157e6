"""The filtered-question slice of `rag eval --filter-slice`: is a question asked with a report filter
judged like any other?

Each answerable question tied to one report is asked twice more:

* "filter_excluded": with a filter to another report that holds none of its gold answers, so the
  right response is to abstain (a filter narrows the search; it must never lower the bar). The other
  report is the one dated nearest to the question's own (the neighbouring month a user might pick by
  mistake), the earlier on a tie;
* "filter_own": with a filter to its own report, so it must still be answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from rag.evaluation.dataset import gold_of
from rag.evaluation.matching import has_any

EXCLUDED, OWN = "filter_excluded", "filter_own"


def filter_slice(questions: list[dict], dates: Mapping[str, str | None], texts: Mapping[str, str]) -> list[dict]:
    """The slice's rows for `questions`. `dates`: each report's date (ISO, or None when undated);
    `texts`: each report's text (headings included) to check that an excluded report lacks the answer."""
    rows = []
    for row in questions:
        gold = gold_of(row)
        if not gold.answerable or not gold.answers or gold.doc_id not in dates or row.get("filters"):
            continue
        other = nearest_other(gold.doc_id, dates, [d for d in dates if not has_any(texts.get(d, ""), gold.answers)])
        base = {k: v for k, v in row.items() if k not in ("history", "standalone")}
        rows.append({**base, "id": f"{row['id']}~{OWN}", "type": OWN, "filters": {"doc_ids": [gold.doc_id]}})
        if other is not None:
            rows.append({**base, "id": f"{row['id']}~{EXCLUDED}", "type": EXCLUDED, "answers": [], "evidence": [],
                         "doc_id": other, "filters": {"doc_ids": [other]}})  # fmt: skip
    return rows


def nearest_other(doc_id: str, dates: Mapping[str, str | None], allowed: list[str]) -> str | None:
    """Of `allowed` (not `doc_id`), the report dated nearest to `doc_id`'s; undated reports last."""
    own = _ordinal(dates.get(doc_id))
    choices = [d for d in allowed if d != doc_id]
    if not choices:
        return None
    return min(choices, key=lambda d: (own is None or _ordinal(dates[d]) is None,
                                       abs((_ordinal(dates[d]) or 0) - (own or 0)), dates[d] or "", d))  # fmt: skip


def _ordinal(date: str | None) -> int | None:
    """A date (YYYY, YYYY-MM or YYYY-MM-DD) as a day count, for distances."""
    if not date:
        return None
    import datetime

    parts = [int(p) for p in date.split("-")] + [1, 1]
    return datetime.date(parts[0], parts[1], parts[2]).toordinal()
