"""Retrieval (filters, dates in questions) and extractive answers over the real reports, FakeEmbedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.answering.extractive import NO_ANSWER
from rag.answering.question import Kind, expected_kind, has_kind, is_english, misses_asked_year
from rag.errors import InputError
from rag.index import load_store as load_index
from rag.index.build import build_index
from rag.ingest.documents import read_documents
from rag.pipeline import Assistant
from rag.search.retrieve import question_dates, retrieve
from rag.settings import Settings
from rag.types import Filters
from tests.fakes import FakeEmbedder
from tests.pg import new_store

DATA = Path(__file__).resolve().parents[2] / "data"
D000, D001, D002, D003, D004 = sorted(p.name for p in DATA.iterdir())
QUESTIONS = [
    "Vem är ny ekonomichef?",
    "Hur många Tyresöbor kom till informationsmötet om familjehem?",
    "Hur många personer deltog i företagarfrukosten?",
    "Vad hände i maj 2017?",
    "Vilka organisatoriska placeringar får enheterna?",
    "Vad är IPv6?",
    "Vem höll i krisövningen Henning?",
    "How many people came to the information meeting?",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory, request, store_kind) -> Settings:
    """The reports indexed in each store (tests/pg.py): every test here runs against both."""
    root = tmp_path_factory.mktemp("retrieve")
    settings = Settings(data_dir=DATA, index_dir=root / "index", cache_dir=root / "cache",
                        feedback_log=root / "feedback.jsonl", abstain_threshold=float("-inf"),
                        store=new_store(request, store_kind))  # fmt: skip
    build_index(settings, FakeEmbedder(), progress=False)
    return settings


@pytest.fixture(scope="module")
def index(base):
    return load_index(base)


@pytest.fixture(scope="module")
def documents():
    return {d.id: d for d in read_documents(DATA)[0]}


def ask(settings: Settings, question: str, **kwargs):
    return Assistant(settings, embedder=FakeEmbedder()).ask(question, **kwargs)


def hits_for(
    index, question: str, k: int = 1000, filters: Filters | None = None, vector_of: str | None = None
):
    vector = FakeEmbedder().encode_queries([vector_of or question])[0]
    return retrieve(question, vector, index, k=k, filters=filters)


# -- filters -----------------------------------------------------------------------------------


def test_date_range_filter_returns_only_the_2017_report(index):
    hits = hits_for(index, "Vad hände med ekonomin?", filters=Filters(date_from="2017", date_to="2017-12"))
    assert {h.chunk.doc_id for h in hits} == {D002}
    assert sorted(h.number for h in hits) == [i for i, c in enumerate(index.chunks(range(index.chunk_count))) if c.doc_id == D002]


def test_date_range_filter_with_days_includes_a_report_dated_by_month(index):
    """The docstring's promise: a report dated "2017-05" is within 2017-05-01 .. 2017-05-31."""
    hits = hits_for(index, "Vad hände?", filters=Filters(date_from="2017-05-01", date_to="2017-05-31"))
    assert {h.chunk.doc_id for h in hits} == {D002}


def test_date_from_only_and_date_to_only(index):
    assert {h.chunk.doc_id for h in hits_for(index, "kommunen", filters=Filters(date_from="2015"))} == {
        D000,
        D002,
    }
    assert {h.chunk.doc_id for h in hits_for(index, "kommunen", filters=Filters(date_to="2014-02"))} == {D003}
    assert {h.chunk.doc_id for h in hits_for(index, "kommunen", filters=Filters(date_to="2014"))} == {
        D001,
        D003,
    }


def test_undated_report_is_outside_every_date_range(index):
    hits = hits_for(index, "krisövning", filters=Filters(date_from="1900", date_to="2100"))
    assert D004 not in {h.chunk.doc_id for h in hits}
    assert {h.chunk.doc_id for h in hits} == {D000, D001, D002, D003}


def test_doc_id_filter(index):
    hits = hits_for(index, "Vem är ny ekonomichef?", filters=Filters(doc_ids=(D003, D004)))
    assert {h.chunk.doc_id for h in hits} == {D003, D004}
    assert len(hits) == sum(c.doc_id in (D003, D004) for c in index.chunks(range(index.chunk_count)))


def test_filter_matching_nothing_abstains_with_no_passages(base):
    answer = ask(base, "Vem är ny ekonomichef?", filters=Filters(date_from="2030"))
    assert (answer.answered, answer.text, answer.citations, answer.passages) == (False, NO_ANSWER, (), ())


@pytest.mark.parametrize("value", ["maj", "2017-5", "17", "2017/05", "maj 2017", ""])
def test_invalid_date_raises_input_error(value):
    with pytest.raises(InputError):
        Filters(date_from=value)
    with pytest.raises(InputError):
        Filters(date_to=value)


# -- dates named in the question -----------------------------------------------------------------


@pytest.mark.parametrize("question, expected", [
    ("Vad hände i maj 2017?", ({"2017"}, {5})),
    ("Vad hände i maj?", (set(), {5})),
    ("Vad hände 2014?", ({"2014"}, set())),
    ("Vad hände i oktober och november 2015?", ({"2015"}, {10, 11})),
    ("What happened in May 2017?", ({"2017"}, {5})),
    ("What may happen to the budget?", (set(), set())),
    ("What happened in March?", (set(), {3})),
    ("Hur många av 1200 platser?", (set(), set())),
])  # fmt: skip
def test_question_dates(question, expected):
    assert question_dates(question) == expected


def test_year_in_question_decides_between_identical_reports(tmp_path, store):
    """Two reports with the same text, 2014 and 2017: only the year in the question tells them apart."""
    text = "Södertörns rådslag hölls på slottet. Temat var attraktivitet och tillväxt."
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in [
        {"id": "r2014", "title": "Rapport", "date": "2014-03", "text": text},
        {"id": "r2017", "title": "Rapport", "date": "2017-05", "text": text},
    ]) + "\n", encoding="utf-8")  # fmt: skip
    settings = Settings(data_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", store=store)
    build_index(settings, FakeEmbedder(), progress=False)
    index = load_index(settings)
    # One query vector for all questions: the difference comes from the date in the question alone.
    assert (
        hits_for(index, "Södertörns rådslag 2014", vector_of="Södertörns rådslag")[0].chunk.doc_id == "r2014"
    )
    assert (
        hits_for(index, "Södertörns rådslag 2017", vector_of="Södertörns rådslag")[0].chunk.doc_id == "r2017"
    )
    assert (
        hits_for(index, "Södertörns rådslag i maj", vector_of="Södertörns rådslag")[0].chunk.doc_id == "r2017"
    )
    assert (
        hits_for(index, "Södertörns rådslag i mars", vector_of="Södertörns rådslag")[0].chunk.doc_id
        == "r2014"
    )
    plain = {
        h.chunk.doc_id: h.score for h in hits_for(index, "Södertörns rådslag", vector_of="Södertörns rådslag")
    }
    lifted = {h.chunk.doc_id: h.score for h in hits_for(index, "Södertörns rådslag 2014",
                                                        vector_of="Södertörns rådslag")}  # fmt: skip
    assert lifted["r2014"] - plain["r2014"] == pytest.approx(Settings().date_bonus)
    assert lifted["r2017"] == pytest.approx(plain["r2017"])


def test_year_in_question_lifts_that_years_report(index):
    def rank(question, doc_id):
        return next(i for i, h in enumerate(hits_for(index, question)) if h.chunk.doc_id == doc_id)

    # 001 (2014) plans "Södertörns Rådslag 2014"; 002 (2017) reports the 2017 rådslag.
    assert rank("Södertörns rådslag 2014", D001) < rank("Södertörns rådslag 2017", D001)
    assert hits_for(index, "Södertörns rådslag 2017")[0].chunk.date[:4] == "2017"
    assert hits_for(index, "Södertörns rådslag 2017")[0].chunk.section == "Södertörns rådslag"


# -- answers -----------------------------------------------------------------------------------


def _check_citations(answer, documents, index):
    """One citation whose quote is verbatim document text: its section's heading line, or a span from
    inside one sentence to inside the same or a later one (a clause, a sentence, a list with its intro)."""
    assert len(answer.citations) == 1
    citation = answer.citations[0]
    chunk = citation.hit.chunk
    text = documents[chunk.doc_id].text
    assert citation.n == 1 and text[citation.start : citation.end] == citation.quote
    if (citation.start, citation.end) != chunk.heading:
        assert chunk.start <= citation.start < citation.end <= chunk.end
        assert any(s <= citation.start < e for s, e in chunk.sentences)
        assert any(s < citation.end <= e for s, e in chunk.sentences)
    assert len(citation.quote.split()) <= 40
    assert answer.text == f"{citation.quote} [1]"
    if citation.key is not None:  # the asked-for item lies inside the quote
        assert citation.start <= citation.key[0] < citation.key[1] <= citation.end


@pytest.mark.parametrize("question", QUESTIONS)
def test_quotes_are_verbatim_document_text(base, documents, index, question):
    answer = ask(base, question)
    assert answer.answered
    _check_citations(answer, documents, index)
    assert len(answer.passages) == 10


def test_known_answers(base, documents, index):
    answer = ask(base, "Vem är ny ekonomichef?")
    assert answer.citations[0].hit.chunk.doc_id == D002
    assert "Torstein Tysklind" in answer.citations[0].quote
    answer = ask(base, "Hur många Tyresöbor kom till informationsmötet om familjehem?")
    assert answer.citations[0].hit.chunk.doc_id == D000
    assert answer.citations[0].quote.startswith("Ett 70-tal Tyresöbor kom till informationsmöte")


@pytest.mark.parametrize("max_words", [5, 12, 30])
@pytest.mark.parametrize("question", QUESTIONS)
def test_no_quote_is_longer_than_the_word_budget(base, index, question, max_words):
    answer = ask(base.replace(max_answer_words=max_words), question)
    assert all(len(c.quote.split()) <= max_words for c in answer.citations)


def test_a_list_intro_brings_its_items_within_the_budget(index, documents):
    from rag.answering.candidates import candidates
    from rag.answering.extractive import quote_span

    chunks = index.chunks(range(index.chunk_count))
    number = next(n for n, c in enumerate(chunks) if "följande organisatoriska placeringar:" in c.text)
    passage = index.passages([number])[0]
    intro = next(c for c in candidates([passage], 60) if c.kind == "sentence" and c.text.endswith("placeringar:"))
    start, end = quote_span(intro, passage, 60)
    quote = documents[passage.chunk.doc_id].text[start:end]
    assert quote.startswith(intro.text) and "- Ekonomiservice och upphandling ingår i ekonomiavdelningen" in quote
    assert len(quote.split()) <= 60
    assert quote_span(intro, passage, len(intro.text.split())) == (intro.start, intro.end)  # no room: the intro alone


def test_a_sentence_ending_on_temat_brings_the_theme(index, documents):
    from rag.answering.candidates import candidates
    from rag.answering.extractive import quote_span

    chunks = index.chunks(range(index.chunk_count))
    number = next(n for n, c in enumerate(chunks) if "på Taxinge Slott med temat;" in c.text)
    passage = index.passages([number])[0]
    found = candidates([passage], 60)
    intro = next(c for c in found if c.kind == "sentence" and c.text.endswith("med temat;"))
    quote = documents[passage.chunk.doc_id].text.__getitem__(slice(*quote_span(intro, passage, 60)))
    assert quote.startswith(intro.text) and "Besöksnäring – en marknad med oändlig potential" in quote
    # a clause that ends where its sentence ends introduces the same; one that stops before does not
    tail = next(c for c in found if c.kind == "clause" and c.source is intro.source and c.end == intro.end - 1)
    assert quote_span(tail, passage, 60)[1] > intro.end
    inner = next(c for c in found if c.kind == "clause" and c.source is intro.source and c.end < intro.end - 1)
    assert quote_span(inner, passage, 60) == (inner.start, inner.end)


def test_a_filter_never_lowers_the_bar(base):
    """Asked with a filter to a report that does not hold the answer, the confidence is the one an
    unfiltered reader gives that report's best quote: below the answer from the right report."""
    question = "Vem är ny ekonomichef?"  # the new CFO is named in the 2017 report (002)
    wrong = ask(base, question, filters=Filters(doc_ids=(D004,)))
    right = ask(base, question, filters=Filters(doc_ids=(D002,)))
    unfiltered = ask(base, question)
    assert right.citations[0].hit.chunk.doc_id == D002 and wrong.confidence < right.confidence
    assert wrong.confidence < unfiltered.confidence
    assert all(c.hit.chunk.doc_id == D004 for c in wrong.citations)  # still quoted only from the filter
    bar = (wrong.confidence + unfiltered.confidence) / 2
    assert not ask(base.replace(abstain_threshold=bar), question, filters=Filters(doc_ids=(D004,))).answered


def test_reading_passages_merge_the_rivals_by_score():
    from rag.answering.extractive import reading_passages
    from rag.types import Chunk, Hit

    def hit(number: int, score: float) -> Hit:
        chunk = Chunk(f"c{number}", "d", "t", None, None, "s", "text", 0, 4, ())
        return Hit(chunk, number, score, 0.0, 0.0)

    allowed, rivals = [hit(1, 0.5), hit(2, 0.4), hit(3, 0.3)], [hit(7, 0.9), hit(1, 0.5), hit(8, 0.2)]
    assert [h.number for h in reading_passages(allowed, [], 2)] == [1, 2]
    assert [h.number for h in reading_passages(allowed, rivals, 2)] == [7, 1, 2]
    assert [h.number for h in reading_passages(allowed, rivals, 3)] == [7, 1, 2, 3, 8]


def test_abstains_above_the_threshold(base):
    answer = ask(base.replace(abstain_threshold=100.0), "Vem är ny ekonomichef?")
    assert answer.answered is False
    assert answer.text == NO_ANSWER
    assert answer.citations == ()
    assert len(answer.passages) >= 10
    assert answer.confidence < 100.0
    assert answer.passages[0].chunk.doc_id == D002


def test_passage_count(base):
    assert len(ask(base, "Vem är ny ekonomichef?").passages) == 10
    assert len(ask(base, "Vem är ny ekonomichef?", k=3).passages) == 10
    assert len(ask(base, "Vem är ny ekonomichef?", k=25).passages) == 25
    scores = [h.score for h in ask(base, "Vem är ny ekonomichef?", k=25).passages]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_raises_input_error(base, question):
    with pytest.raises(InputError) as error:
        ask(base, question)
    assert "Skriv en fråga" in str(error.value)


def test_too_long_question_raises_input_error(base):
    with pytest.raises(InputError) as error:
        ask(base, "x" * 100_000)
    assert "för lång" in str(error.value) and "100000" in str(error.value)


def test_confidence_is_deterministic(base):
    a, b = ask(base, "Vem är ny ekonomichef?"), ask(base, "Vem är ny ekonomichef?")
    assert a.confidence == b.confidence and a.citations == b.citations
    assert np.isfinite(a.confidence)


# -- what a question asks for --------------------------------------------------------------------


@pytest.mark.parametrize("question, kind", [
    ("Hur många personer deltog?", Kind.NUMBER),
    ("How many people took part?", Kind.NUMBER),
    ("Hur gammal är kommunhuset?", Kind.NUMBER),
    ("Vad kostade projektet?", Kind.MONEY),
    ("Hur mycket pengar fick kommunen?", Kind.MONEY),
    ("How much did it cost?", Kind.MONEY),
    ("Hur stor andel av samtalen besvarades?", Kind.SHARE),
    ("Hur många procent besvarades?", Kind.SHARE),
    ("När genomfördes krisövningen?", Kind.TIME),
    ("Vilken dag hålls mötet?", Kind.TIME),
    ("Vad heter ekonomichefen?", Kind.NAME),
    ("What is the name of the new finance director?", Kind.NAME),
    ("Vilket telefonnummer har servicecenter?", Kind.CONTACT),
    ("Vem är ny ekonomichef?", Kind.PERSON),
    ("Who led the exercise?", Kind.PERSON),
    ("Vilket konsultföretag vann upphandlingen?", Kind.ORGANISATION),
    ("Which company supplies the alarms?", Kind.ORGANISATION),
    ("Vad är IPv6?", None),
])  # fmt: skip
def test_expected_kind(question, kind):
    assert expected_kind(question) is kind


@pytest.mark.parametrize("text, kind, question, expected", [
    ("46 personer lämnade intresseanmälan.", Kind.NUMBER, "", True),
    ("Ett 70-tal Tyresöbor kom till mötet.", Kind.NUMBER, "", True),
    ("Tre personer deltog.", Kind.NUMBER, "", True),
    ("Tisdag den 22 maj genomfördes en krisövning.", Kind.NUMBER, "", False),
    ("Tyresö får full ersättning för 2012.", Kind.NUMBER, "Hur mycket fick kommunen för 2012?", False),
    ("Mötet började kl 16.00 via telefon.", Kind.NUMBER, "", False),
    ("Mötet började 16:00 via telefon.", Kind.NUMBER, "", False),
    ("Budgeten är 2,4 miljoner kronor.", Kind.MONEY, "", True),
    ("Budgeten är klar.", Kind.MONEY, "", False),
    ("Andelen steg från 35 procent till 48 procent.", Kind.SHARE, "", True),
    ("Han tillträder tjänsten den 7 augusti.", Kind.TIME, "", True),
    ("Tisdag den 22 maj genomfördes en krisövning.", Kind.TIME, "", True),
    ("Efter rekryteringen har Torstein Tysklind tillsatts.", Kind.NAME, "Vad heter ekonomichefen?", True),
    ("Tyresö kommun har en ny chef.", Kind.NAME, "Vad heter Tyresös chef?", False),
    ("Chefen för Tyresö har slutat.", Kind.NAME, "Vad heter Tyresös chef?", False),
    # The word before the name is one the question names; the name still counts as mid-sentence.
    ("Den automatiska telefonsvararen Tyra används.", Kind.NAME, "Vad heter den automatiska telefonsvararen?", True),
    ("Skicka e-post till info@tyreso.se.", Kind.CONTACT, "", True),
    ("Ring servicecenter på 08-578 291 00.", Kind.CONTACT, "", True),
    # "vem" is answered by a name or by a role; the question's own role word does not count.
    ("En organisationspsykolog ledde arbetet.", Kind.PERSON, "Vem ledde arbetet?", True),
    ("Efter rekryteringen har Torstein Tysklind tillsatts.", Kind.PERSON, "Vem är ny ekonomichef?", True),
    ("Arbetet leddes väl och alla var nöjda.", Kind.PERSON, "Vem ledde arbetet?", False),
    ("Den nya ekonomichefen börjar i augusti.", Kind.PERSON, "Vem är ny ekonomichef?", False),
    ("Satsning på ledarutveckling – INDEA vann upphandlingen.", Kind.ORGANISATION, "Vilket företag vann?", True),
    ("Kommunen har gått över till Telias telefoni.", Kind.ORGANISATION, "Vilken operatör har kommunen?", True),
    ("Upphandlingen är klar och avtalet är skrivet.", Kind.ORGANISATION, "Vilket företag vann upphandlingen?", False),
    ("Vad som helst.", None, "", True),
])  # fmt: skip
def test_has_kind(text, kind, question, expected):
    assert has_kind(text, kind, question) is expected


@pytest.mark.parametrize("question, evidence, expected", [
    ("Var hölls Södertörns Rådslag 2016?", "2014-03-17 Rådslaget hålls den 8 maj på Tyresö slott.", True),
    ("Var hölls Södertörns Rådslag 2014?", "2014-03-17 Rådslaget hålls den 8 maj på Tyresö slott.", False),
    ("Vad hände 2013 och 2014?", "2015-10 Siffrorna för 2013 redovisas i bilagan.", False),
    ("Var hölls Södertörns Rådslag?", "Rådslaget hålls den 8 maj.", False),
    ("Hur många kom i maj?", "2017-05 Ett 70-tal Tyresöbor kom.", False),
])  # fmt: skip
def test_misses_asked_year(question, evidence, expected):
    assert misses_asked_year(question, evidence) is expected


def test_the_packaged_judge_learned_that_a_missing_year_speaks_against_an_answer():
    from rag.answering.reader import JUDGE_FEATURES, load_reader

    judge = load_reader().judge
    assert judge.coef[JUDGE_FEATURES.index("best_misses_year")] < 0
    assert judge.coef[JUDGE_FEATURES.index("p_best")] > 0  # the selector's own certainty speaks for it


@pytest.mark.parametrize("question, expected", [
    ("How many people took part?", True),
    ("Who is the new finance director?", True),
    ("Vem är ny ekonomichef?", False),
    ("What did the meeting cost?", True),
])  # fmt: skip
def test_is_english(question, expected):
    assert is_english(question) is expected


def test_warm_up_loads_the_index_and_embeds_one_query(base, index):
    class Recording(FakeEmbedder):
        def __init__(self):
            super().__init__()
            self.asked: list[str] = []

        def encode_queries(self, texts):
            self.asked.extend(texts)
            return super().encode_queries(texts)

    embedder = Recording()
    assistant = Assistant(base, embedder=embedder)
    assert assistant._store is None
    assert assistant.warm_up() == index.version
    assert (assistant._store.version, embedder.asked) == (index.version, ["uppstart"])
    if base.store == "local":
        assert assistant._store._lexical is not None  # BM25 is built too: the first question pays nothing
