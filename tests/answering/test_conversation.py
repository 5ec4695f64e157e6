"""rag/answering/conversation.py: which questions lean on the conversation, and how they are written out."""

from __future__ import annotations

import pytest

from rag.answering.conversation import interpret
from rag.index import load_store
from rag.index.build import build_index
from rag.settings import Settings
from rag.types import CitedSource, Turn
from tests.conftest import DATA
from tests.fakes import FakeEmbedder

ECONOMY = "002_8f9c64b256dc6c50.txt"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("conversation")
    settings = Settings(data_dir=DATA, index_dir=root / "index", cache_dir=root / "cache")
    build_index(settings, FakeEmbedder(), progress=False)
    return load_store(settings)


def economy_turn() -> Turn:
    quote = "Torstein Tysklind är ny ekonomichef i Tyresö kommun."
    return Turn("Vem är ny ekonomichef?", f"{quote} [1]", (CitedSource(ECONOMY, "Ny ekonomichef", 10, 60, quote),))


def test_a_question_alone_is_itself(store):
    assert interpret("Och var?", (), store).query == "Och var?"
    assert not interpret("Och var?", (), store).followup


def test_a_new_year_or_question_word_re_asks_the_previous_question(store):
    history = (Turn("När hölls Södertörns Rådslag 2014?"),)
    assert interpret("Och 2017?", history, store).query == "När hölls Södertörns Rådslag 2017?"
    assert interpret("Och var?", history, store).query == "Var hölls Södertörns Rådslag 2014?"
    assert interpret("Och datumet?", (Turn("Var hölls Södertörns Rådslag?"),), store).query == \
        "När hölls Södertörns Rådslag?"  # fmt: skip


def test_a_pronoun_becomes_the_name_the_previous_answer_gave_and_its_report_a_prior(store):
    found = interpret("Var arbetade han tidigare?", (economy_turn(),), store)
    assert found.query == "Var arbetade Torstein Tysklind tidigare?" and found.followup
    assert found.prior_docs == (ECONOMY,)
    genitive = interpret("När börjar hans anställning?", (economy_turn(),), store)
    assert genitive.query == "När börjar Torstein Tysklinds anställning?"


def test_otherwise_the_previous_topic_is_carried_in_brackets(store):
    history = (Turn("När gick kommunen över till Telias telefoni?"),)
    assert interpret("Vad kostade det?", history, store).query == \
        "Vad kostade det? (om: När gick kommunen över till Telias telefoni?)"  # fmt: skip
    three = (Turn("Vilken krisövning genomfördes den 22 maj?"), Turn("Vilka höll i den?"))
    assert interpret("Vad var bakgrunden till den?", three, store).query == \
        "Vad var bakgrunden till den? (om: Vilka höll i den?; Vilken krisövning genomfördes den 22 maj?)"  # fmt: skip


def test_the_conjunction_that_tied_a_follow_up_on_is_not_kept(store):
    history = (Turn("När gick kommunen över till Telias telefoni?"),)
    assert interpret("Och vad kostade det?", history, store).query == \
        "Vad kostade det? (om: När gick kommunen över till Telias telefoni?)"  # fmt: skip
    assert interpret("men var arbetade han tidigare?", (economy_turn(),), store).query == \
        "Var arbetade Torstein Tysklind tidigare?"  # fmt: skip
    as_for = interpret("Och när det gäller e-post?", history, store).query  # "as for", not "when"
    assert as_for == "Och när det gäller e-post? (om: När gick kommunen över till Telias telefoni?)"


def test_a_fully_specified_question_ignores_the_conversation(store):
    switch = "Hur förbättrades servicenivån per telefon och e-post enligt servicemätningen i januari 2014?"
    found = interpret(switch, (economy_turn(),), store)
    assert (found.query, found.followup, found.prior_docs) == (switch, False, ())
    named = "Från vilken kommun kommer Torstein Tysklind, där han har arbetat som ekonomichef sedan 2012?"
    assert not interpret(named, (Turn("Hur många deltog i krisövningen Henning?"),), store).followup


@pytest.mark.parametrize("question", ["Vad kostar en pizza på månen?", "Vad heter rektorn på Hogwarts?"])
def test_a_question_about_something_the_reports_never_mention_is_asked_alone(question, store):
    """Carrying the previous topic along would search for the ekonomichef and might answer with him."""
    assert interpret(question, (economy_turn(),), store) == interpret(question, (), store)


def test_a_short_question_of_known_words_still_leans_on_the_conversation(store):
    assert interpret("Vad kostade det?", (economy_turn(),), store).followup
    assert interpret("Vilka medverkade?", (Turn("Vilken krisövning genomfördes den 22 maj?"),), store).followup
