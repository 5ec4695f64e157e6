"""rag eval: hand-made Swedish fixtures with metric values worked out by hand (no model, no index)."""

from __future__ import annotations

import argparse
import json
import math
import types
from pathlib import Path

import pytest

import rag.evaluation.run
from rag.cli import _parser
from rag.errors import InputError
from rag.evaluation.compare import compare
from rag.evaluation.dataset import load_questions
from rag.evaluation.matching import normalize_answer, token_f1
from rag.evaluation.metrics import score
from rag.evaluation.report import report_to_dict, write_report
from rag.evaluation.run import run
from rag.settings import Settings

ABSTAIN = "Jag hittar inget svar på det i rapporterna."

EV_CHEFER = "Kommundirektören samlar alla chefer i kommunen (cirka 130 personer) fyra gånger per år."
EV_RADSLAG = "Södertörns Rådslag ska hållas den 8 maj på Tyresö slott."
EV_HUVUDMAN = ("Projektet har fyra huvudmän: kommunen, arbetsförmedlingen, Försäkringskassan och "
               "Samordningsförbundet.")  # fmt: skip
EV_BUDGET = "Projektets budget är 4,2 miljoner kronor per år under de tre första åren av arbetet."
EV_MOTE = "Ett 70-tal Tyresöbor kom till informationsmötet."


def passage(doc_id: str, text: str, chunk_id: str) -> dict:
    return {"chunk_id": chunk_id, "doc_id": doc_id, "title": f"Rapport {doc_id}", "date": "2015-10-01",
            "diarienummer": "2015/KS 0011", "section": "Kommunstyrelsen", "text": text, "start": 0,
            "end": len(text), "score": 0.5}  # fmt: skip


def filler(n: int, doc_id: str = "rapport9") -> list[dict]:
    text = "Annan text om parkering och snöröjning nummer {}."
    return [passage(doc_id, text.format(i), f"{doc_id}-f{i}") for i in range(n)]


def citation(p: dict, quote: str) -> dict:
    return {**p, "n": 1, "quote": quote}


def response(qid: str, answer: str, answered: bool, passages: list[dict], citations: list[dict],
             total: float) -> dict:  # fmt: skip
    return {"id": qid, "question": "…", "answer": answer, "answered": answered, "citations": citations,
            "passages": passages, "timings_ms": {"total": total, "retrieve": 1.0}}  # fmt: skip


def question(qid: str, text: str, qtype: str, answers: list[str], evidence: list[str], doc_id: str) -> dict:
    return {"id": qid, "question": text, "type": qtype, "answers": answers, "evidence": evidence,
            "doc_id": doc_id, "split": "dev"}  # fmt: skip


HUVUDMAN = "kommunen, arbetsförmedlingen, Försäkringskassan och Samordningsförbundet"
QUESTIONS = [
    question("q1", "Hur många chefer samlas till chefsforum?", "fact", ["cirka 130 personer", "130"],
             [EV_CHEFER], "rapport1"),
    question("q2", "När hålls Södertörns Rådslag?", "date", ["8 maj"], [EV_RADSLAG], "rapport2"),
    question("q3", "Vilka är huvudmännen och vad är budgeten?", "list", [HUVUDMAN],
             [EV_HUVUDMAN, EV_BUDGET], "rapport3"),
    question("q4", "Vilket telefonnummer har samordnaren?", "none", [], [], ""),
    question("q5", "Vad kostar en parkeringsplats vid slottet?", "none", [], [], ""),
    question("q6", "How many residents came to the information meeting?", "en", ["ett 70-tal Tyresöbor"],
             [EV_MOTE], "rapport1"),
]  # fmt: skip


def _responses() -> list[dict]:
    # q1: the relevant passage is at rank 2.
    p1 = passage("rapport1", f"Inledning. {EV_CHEFER} Vid senaste forum var temat samverkan.", "r1-c2")
    r1 = response("q1", "Cirka 130 personer samlas [1].", True, [filler(1)[0], p1, *filler(8)[1:]],
                  [citation(p1, EV_CHEFER)], 100)  # fmt: skip
    # q2: relevant at rank 1, exact answer, but the first citation points at an unrelated passage.
    p2 = passage("rapport2", f"Planeringen är klar. {EV_RADSLAG}", "r2-c1")
    r2 = response("q2", "8 maj [1].", True, [p2, *filler(9)], [citation(filler(1)[0], "Annan text.")], 200)
    # q3: two evidence sentences. Rank 1 covers the first, rank 2 repeats it (overlapping chunk, no credit),
    # rank 3 holds only the first 70 % of the second (cut by a chunk boundary: the LCS fallback).
    cut = int(len(EV_BUDGET) * 0.7)
    a = passage("rapport3", f"Om projektet. {EV_HUVUDMAN}", "r3-c1")
    a_again = passage("rapport3", f"{EV_HUVUDMAN} Projektet startade i januari.", "r3-c2")
    b = passage("rapport3", f"Ekonomi. {EV_BUDGET[:cut]}", "r3-c3")
    short = passage("rapport3", "Projektet har fyra huvudmän.", "r3-c9")  # too little of the evidence
    r3 = response("q3", "Kommunen och Försäkringskassan [1].", True, [a, a_again, b, *filler(7)],
                  [citation(short, "Projektet har fyra huvudmän")], 300)  # fmt: skip
    r4 = response("q4", ABSTAIN, False, filler(10), [], 50)
    r5 = response("q5", "Telefonnumret är 08-123 45 67 [1].", True, filler(10),
                  [citation(filler(1)[0], "x")], 400)  # fmt: skip
    # q6: refused, and the only relevant passage is at rank 11: outside the top 10.
    p6 = passage("rapport1", EV_MOTE, "r1-c7")
    r6 = response("q6", ABSTAIN, False, [*filler(10), p6], [], 150)
    return [r1, r2, r3, r4, r5, r6]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


NDCG_Q1 = 1 / math.log2(3)
NDCG_Q3 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))


@pytest.fixture(scope="module")
def report():
    return score(QUESTIONS, _responses())


def test_overall_metrics_match_hand_computation(report):
    m = report.overall
    assert (m.n, m.n_answerable, m.n_unanswerable, m.n_missing) == (6, 4, 2, 0)
    assert m.recall_1 == pytest.approx((0 + 1 + 0.5 + 0) / 4)
    assert m.recall_5 == pytest.approx(0.75)
    assert m.recall_10 == pytest.approx(0.75)
    assert m.mrr_10 == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert m.ndcg_10 == pytest.approx((NDCG_Q1 + 1 + NDCG_Q3 + 0) / 4)
    assert m.exact_match == pytest.approx(0.25)  # only q2's "8 maj [1]." is exact
    assert m.token_f1 == pytest.approx((6 / 7 + 1 + 0.75 + 0) / 4)
    assert m.containment == pytest.approx(0.5)  # q1, q2
    assert m.citation_support == pytest.approx(2 / 3)  # q1 (passage), q3 (quote inside evidence); not q2
    assert m.abstention_accuracy == pytest.approx(0.5)  # q4 abstains, q5 answers
    assert m.false_refusal_rate == pytest.approx(0.25)  # q6
    assert m.distractor_rate is None
    assert m.latency_p50_ms == pytest.approx(175.0)
    assert m.latency_p95_ms == pytest.approx(375.0)


def test_per_question_and_per_type(report):
    by_id = {r.id: r for r in report.records}
    q1 = by_id["q1"].retrieval
    assert (q1["recall@1"], q1["recall@5"], q1["mrr@10"]) == (0.0, 1.0, 0.5)
    assert by_id["q1"].first_relevant_rank == 2
    assert by_id["q3"].retrieval["recall@1"] == pytest.approx(0.5)
    assert by_id["q6"].failed_retrieval and by_id["q6"].false_refusal
    assert by_id["q5"].false_answer and by_id["q3"].wrong_answer
    assert set(report.per_type) == {"fact", "date", "list", "none", "en"}
    assert report.per_type["fact"].mrr_10 == pytest.approx(0.5)
    assert report.per_type["list"].ndcg_10 == pytest.approx(NDCG_Q3)
    assert report.per_type["none"].recall_1 is None and report.per_type["none"].abstention_accuracy == 0.5
    assert report.per_type["en"].false_refusal_rate == 1.0


def test_missing_response_is_a_listed_failure():
    report = score(QUESTIONS[:2], [r for r in _responses() if r["id"] == "q2"])
    assert report.missing == ("q1",)
    q1 = report.per_type["fact"]
    assert (q1.recall_10, q1.mrr_10, q1.containment, q1.false_refusal_rate) == (0.0, 0.0, 0.0, 1.0)
    assert report.overall.latency_p50_ms == 200.0


def test_generator_check_figures():
    """Share of generated sentences the citation check dropped, and of answers that fell back."""
    rows = _responses()[:3]
    rows[0] |= {"generator": "openai", "dropped_sentences": 1, "checked_sentences": 3}
    rows[1] |= {"generator": "extractive (fallback)", "dropped_sentences": 2, "checked_sentences": 2}
    rows[2] |= {"generator": "openai", "dropped_sentences": 0, "checked_sentences": 2}
    m = score(QUESTIONS[:3], rows).overall
    assert m.dropped_sentence_share == pytest.approx(3 / 7)
    assert m.fallback_rate == pytest.approx(1 / 3)
    extractive = score(QUESTIONS[:3], _responses()[:3]).overall
    assert (extractive.dropped_sentence_share, extractive.fallback_rate) == (None, None)


def test_normalization_and_f1():
    assert normalize_answer("Den 8 MAJ [2], på Tyresö slott!") == "den 8 maj på tyresö slott"
    assert normalize_answer("ÅÄÖ 1 200 kronor") == "åäö 1200 kronor"
    assert token_f1("Cirka 130 personer samlas [1].", "cirka 130 personer") == pytest.approx(6 / 7)


@pytest.mark.parametrize(("words", "contained"), [(40, True), (41, False)])
def test_containment_needs_at_most_40_words(words, contained):
    answer = "Den 8 maj " + " ".join(["ord"] * (words - 3)) + " [1]"  # [1] is not a word
    p = passage("rapport2", EV_RADSLAG, "r2-c1")
    resp = response("q2", answer, True, [p, *filler(9)], [citation(p, EV_RADSLAG)], 10)
    record = score([QUESTIONS[1]], [resp]).records[0]
    assert record.answer_words == words and record.contained is contained
    assert record.f1 > 0 and record.citation_supported  # the other metrics do not care about length


SQUAD = [
    {"id": "s1", "question": "Vad är ett visum?", "answers": ["ett tillstånd för att resa in"],
     "relevant_ids": ["d1"], "answer_spans": [], "distractor_answers": ["ett pass"], "split": "train"},
    {"id": "s2", "question": "Hur länge gäller tillståndet som längst?", "answers": ["ett år"],
     "relevant_ids": ["d2"], "answer_spans": [], "distractor_answers": ["fyra veckor", "sex månader"],
     "split": "train"},
    {"id": "s3", "question": "Vad ska du ta med?", "answers": ["ditt pass"], "relevant_ids": ["d3"],
     "answer_spans": [], "distractor_answers": ["uppehållstillståndskortet "], "split": "train"},
]  # fmt: skip


def test_document_level_format_with_distractors():
    d = {i: passage(f"d{i}", f"Text ur dokument {i}.", f"d{i}-c") for i in range(1, 10)}
    r1 = response("s1", "Visum är ett tillstånd för att resa in [1].", True,
                  [d[5], d[5], d[1], d[1], *[d[i] for i in (6, 7, 8, 9, 2, 3)]], [citation(d[1], "q")], 10)
    r2 = response("s2", "Det gäller i fyra veckor [1].", True,
                  [d[i] for i in (2, 4, 5, 6, 7, 8, 9, 1, 3)], [citation(d[9], "q")], 20)  # fmt: skip
    r3 = response("s3", "Ta med ditt pass och uppehållstillståndskortet [1].", True,
                  [d[i] for i in (1, 2, 4, 5, 6, 7, 8, 9, 3)], [citation(d[3], "q")], 30)  # fmt: skip
    report = score(SQUAD, [r1, r2, r3])
    by_id = {r.id: r for r in report.records}
    # s1: d5, d5, d1 deduplicates to [d5, d1, ...]: rank 2, not 3.
    assert by_id["s1"].retrieval["mrr@10"] == 0.5 and by_id["s1"].retrieval["recall@1"] == 0.0
    assert by_id["s3"].retrieval["mrr@10"] == pytest.approx(1 / 9)
    assert set(report.per_type) == {"all"}
    m = report.overall
    assert m.mrr_10 == pytest.approx((0.5 + 1 + 1 / 9) / 3)
    assert m.distractor_rate == pytest.approx(1 / 3)  # s2 only; s3 also names the gold answer
    assert m.containment == pytest.approx(2 / 3)
    assert m.citation_support == pytest.approx(2 / 3)  # s2 cites d9
    assert m.abstention_accuracy is None


def test_malformed_lines_are_reported_and_the_rest_scored(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [json.dumps(QUESTIONS[0], ensure_ascii=False), "{inte json", json.dumps({"id": "x"}), "",
             json.dumps(QUESTIONS[1], ensure_ascii=False), "[1, 2]",
             json.dumps({**QUESTIONS[2], "answers": "fel"})]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, errors = load_questions(path)
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert errors[0].startswith("line 2: not valid JSON: ")
    assert errors[1:] == ["line 3: missing key 'question'", "line 6: not a JSON object",
                          "line 7: 'answers' must be a list of strings"]  # fmt: skip
    report = score(rows, _responses())
    assert report.overall.n == 2 and report.overall.mrr_10 == pytest.approx(0.75)


def test_load_questions_raises_for_missing_or_empty_file(tmp_path):
    with pytest.raises(InputError):
        load_questions(tmp_path / "saknas.jsonl")
    (tmp_path / "bad.jsonl").write_text("{trasig\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        load_questions(tmp_path / "bad.jsonl")


def test_write_report_files(report, tmp_path):
    paths = write_report(report, "demo", tmp_path)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["overall"]["mrr_10"] == pytest.approx(0.625) and data["per_type"]["list"]["n"] == 1
    assert {r["id"] for r in data["records"] if r["wrong_answer"]} == {"q3"}
    md = paths["md"].read_text(encoding="utf-8")
    assert "| MRR@10 | 0.625 |" in md
    wrong = md.split("## Wrong answers")[1].split("## ")[0]
    assert "**q3**" in wrong and f"gold: {HUVUDMAN}" in wrong and "Kommunen och Försäkringskassan" in wrong
    assert "rapport3 / Kommunstyrelsen: “Projektet har fyra huvudmän”" in wrong
    assert "**q6**" in md.split("## False refusals")[1] and "**q5**" in md.split("## False answers")[1]
    assert "**q6**" in md.split("## Failed retrievals")[1]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_compare_flags_drops_beyond_tolerance():
    base = {"overall": {"containment": 0.80, "mrr_10": 0.60, "false_refusal_rate": 0.10,
                        "latency_p50_ms": 100.0}}  # fmt: skip
    same_ish = {"containment": 0.78, "mrr_10": 0.61, "false_refusal_rate": 0.11, "latency_p50_ms": 900.0}
    lines, regressed = compare(same_ish, base)
    assert not regressed  # 0.02 drop is within tolerance; latency never decides
    assert "containment: 0.800 -> 0.780 (-0.020)" in lines
    assert "latency_p50_ms: 100 -> 900 (+800)" in lines
    _, regressed = compare({**same_ish, "containment": 0.75}, base)
    assert regressed
    lines, regressed = compare({**same_ish, "false_refusal_rate": 0.15}, base)
    assert regressed and "false_refusal_rate: 0.100 -> 0.150 (+0.050)  REGRESSION" in lines


def _args(*argv: str) -> argparse.Namespace:
    """Arguments as `rag eval ...` parses them."""
    return _parser().parse_args(["eval", *argv])


def test_run_writes_report_and_exits_nonzero_on_regression(tmp_path, capsys):
    questions = _write_jsonl(tmp_path / "mini.jsonl", QUESTIONS)
    good = _write_jsonl(tmp_path / "good.jsonl", _responses())
    settings = Settings(cache_dir=tmp_path)
    out = tmp_path / "reports"
    argv = ("--questions", str(questions), "--responses", str(good), "--out-dir", str(out))
    assert run(_args(*argv), settings) == 0
    base = out / "mini-all.json"
    assert base.is_file() and (out / "mini-all.md").is_file() and (out / "mini-all.png").is_file()
    assert "overall" in capsys.readouterr().out

    one_worse = _responses()
    one_worse[1] = {**one_worse[1], "answer": "Någon gång i höst [1].", "answered": True}  # q2 now wrong
    argv = ("--questions", str(questions), "--responses", str(_write_jsonl(tmp_path / "one.jsonl", one_worse)),
            "--out-dir", str(out), "--name", "one", "--compare", str(base))  # fmt: skip
    assert run(_args(*argv), settings) == 0  # one flipped question is within the allowance
    assert "containment [overall]: 2/4 -> 1/4; lost q2; gained –; net loss 1 (allowed 1)\n" in capsys.readouterr().out

    worse = [*one_worse[:0], {**one_worse[0], "answer": "Ett fåtal chefer [1]."}, *one_worse[1:]]  # q1 too
    bad = _write_jsonl(tmp_path / "bad.jsonl", worse)
    argv = ("--questions", str(questions), "--responses", str(bad), "--out-dir", str(out), "--name", "new",
            "--compare", str(base))  # fmt: skip
    assert run(_args(*argv), settings) == 1
    captured = capsys.readouterr()
    assert "containment [overall]: 2/4 -> 0/4; lost q1, q2; gained –; net loss 2 (allowed 1)  REGRESSION" in captured.out
    assert "Regression" in captured.err
    assert run(_args(*argv[:-2], "--compare", str(out / "new.json")), settings) == 0  # against itself


def test_run_asks_through_ask_batch_and_saves(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_ask_batch(rows, assistant, *, progress=True):
        seen["index_dir"] = assistant.settings.index_dir
        by_id = {r["id"]: r for r in _responses()}
        for row in rows:
            yield by_id[row["id"]]

    pipeline = types.SimpleNamespace(Assistant=lambda settings: types.SimpleNamespace(settings=settings),
                                     ask_batch=fake_ask_batch)  # fmt: skip
    monkeypatch.setattr(rag.evaluation.run, "_pipeline", lambda: pipeline)
    questions = tmp_path / "mini.jsonl"
    lines = [json.dumps(q, ensure_ascii=False) for q in QUESTIONS[:3]] + ["oj"]
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    saved = tmp_path / "saved.jsonl"
    argv = ("--questions", str(questions), "--index", str(tmp_path / "idx"), "--out-dir", str(tmp_path),
            "--split", "dev", "--save-responses", str(saved))  # fmt: skip
    assert run(_args(*argv), Settings(cache_dir=tmp_path)) == 0
    assert seen["index_dir"] == tmp_path / "idx"
    saved_ids = [json.loads(line)["id"] for line in saved.read_text(encoding="utf-8").splitlines()]
    assert saved_ids == ["q1", "q2", "q3"]
    assert "line 4: not valid JSON" in capsys.readouterr().err
    data = json.loads((tmp_path / "mini-dev.json").read_text(encoding="utf-8"))
    assert data["overall"]["n"] == 3 and data["split"] == "dev"
    expected = json.loads(json.dumps(report_to_dict(score(QUESTIONS[:3], _responses()))["overall"]))
    assert expected == data["overall"]


def test_split_filter_without_matches_is_an_input_error(tmp_path):
    questions = _write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    with pytest.raises(InputError, match="split=test"):
        argv = ("--questions", str(questions), "--split", "test", "--responses", str(questions))
        run(_args(*argv), Settings(cache_dir=tmp_path))


def test_calibration_table_ece_auroc_and_confident_precision():
    from rag.evaluation.metrics import calibration

    confidence = [0.95, 0.92, 0.91, 0.55, 0.50, 0.15, 0.10]
    right = [True, True, False, True, False, False, True]
    table = calibration(confidence, right)
    assert table["reliability"] == [
        {"from": 0.1, "to": 0.2, "n": 2, "confidence": 0.125, "right": 0.5},
        {"from": 0.5, "to": 0.6, "n": 2, "confidence": 0.525, "right": 0.5},
        {"from": 0.9, "to": 1.0, "n": 3, "confidence": 0.9267, "right": 0.6667},
    ]
    # ECE: (2 * 0.375 + 2 * 0.025 + 3 * 0.26) / 7
    assert table["ece"] == pytest.approx(0.2257, abs=1e-4)
    # 4 right, 3 wrong: of the 12 pairs, right more confident in 8 (0.95 and 0.92 beat all three
    # wrong; 0.55 beats 0.50 and 0.15; 0.10 beats none)
    assert table["auroc"] == pytest.approx(8 / 12, abs=1e-4)
    assert (table["confident"], table["precision_at_confident"]) == (3, 0.6667)


def test_calibration_without_both_classes_has_no_auroc():
    from rag.evaluation.metrics import calibration

    assert calibration([0.2, 0.8], [True, True])["auroc"] is None
    assert calibration([], [])["ece"] is None
