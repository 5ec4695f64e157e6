"""Issue 15's web side: POST /api/ask takes the conversation's earlier turns, the chat sends its own,
and both show how a follow-up was read ("Tolkad som: …"); a quote's key span is bold in the answer
and in its card."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rag.pipeline import Assistant
from rag.types import CitedSource, Turn
from rag.web.app import create_app
from rag.web.routes import MAX_HISTORY_TURNS
from rag.web.ui import handlers, labels, render
from tests.fakes import FakeEmbedder
from tests.web.test_api import ECONOMY_DOC, _settings, built  # noqa: F401  (built is a fixture)


class RecordingAssistant(Assistant):
    """The real pipeline; remembers the history each question came with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.histories: list[tuple[Turn, ...]] = []

    def stream(self, question, *, history=(), **kwargs):
        self.histories.append(tuple(history))
        yield from super().stream(question, history=history, **kwargs)


@pytest.fixture(scope="module")
def assistant(built):  # noqa: F811
    return RecordingAssistant(_settings(built), embedder=FakeEmbedder())


@pytest.fixture(scope="module")
def client(assistant):
    return TestClient(create_app(assistant.settings, assistant))


def test_history_reaches_the_pipeline_as_turns(client, assistant):
    first = client.post("/api/ask", json={"question": "Vem är kommunens nya ekonomichef?"}).json()
    citation = {**first["citations"][0], "extra": {"anything": 1}}  # the response's own citation objects
    turn = {"question": first["question"], "answer": first["answer"], "citations": [citation]}
    response = client.post("/api/ask", json={"question": "Var arbetade han tidigare?", "history": [turn]})
    assert response.status_code == 200, response.text
    assert "interpreted_as" in response.json()
    cited = CitedSource(ECONOMY_DOC, citation["section"], citation["start"], citation["end"], citation["quote"])
    assert assistant.histories[-1] == (Turn("Vem är kommunens nya ekonomichef?", first["answer"], (cited,)),)
    client.post("/api/ask", json={"question": "Var arbetade han tidigare?", "history": [{"question": "Vem?"}]})
    assert assistant.histories[-1] == (Turn("Vem?"),)


@pytest.mark.parametrize(
    "history, expected",
    [
        ("Vem?", "history: Input should be a valid list"),
        (["Vem?"], "history.0: Input should be a valid dictionary"),
        ([{}], "history.0.question: Field required"),
        ([{"question": 5}], "history.0.question: Input should be a valid string"),
        ([{"question": "Vem?", "svar": "x"}], "history.0.svar: Extra inputs are not permitted"),
        ([{"question": "Vem?", "citations": "002"}], "history.0.citations: Input should be a valid list"),
        ([{"question": "Vem?", "citations": [{"start": 1}]}], "history.0.citations.0.doc_id: Field required"),
        ([{"question": "Vem?", "citations": [{"doc_id": "d", "start": "5"}]}],
         "history.0.citations.0.start: Input should be a valid integer"),
        ([{"question": "Vem?", "citations": [{"doc_id": "d", "end": -1}]}], "history.0.citations.0.end"),
        ([{"question": "Vem?"}] * (MAX_HISTORY_TURNS + 1), "history: List should have at most 20 items"),
        ([{"question": "ord " * 700}], "history[0].question är för lång (2799 tecken; högst 2000)."),
        ([{"question": "  "}], "history[0].question är tom"),
    ],
)  # fmt: skip
def test_bad_history_is_a_422_that_says_what_is_wrong(client, history, expected):
    response = client.post("/api/ask", json={"question": "Var arbetade han tidigare?", "history": history})
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]


def test_the_chat_sends_its_own_turns_and_clearing_starts_a_new_conversation(assistant):
    ask = handlers._ask_handler(assistant)
    *_, (history, _, turns, _) = ask("Vem är kommunens nya ekonomichef?", [], [], [], None, None, None)
    assert assistant.histories[-1] == ()
    *_, (history, _, turns, _) = ask("Var arbetade han tidigare?", history, turns, [], None, None, None)
    first = turns[0]["response"]
    sent = assistant.histories[-1]
    assert [t.question for t in sent] == ["Vem är kommunens nya ekonomichef?"]
    assert sent[0].answer == first["answer"] and sent[0].citations[0].doc_id == first["citations"][0]["doc_id"]
    assert len(turns) == 2
    chat, kept, *_ = handlers._reset()
    assert chat == [] and kept == []  # "Rensa chatten": the next question has no history
    ask("Vem är kommunens nya ekonomichef?", chat, kept, [], None, None, None).__next__()
    list(ask("Vem är kommunens nya ekonomichef?", chat, kept, [], None, None, None))
    assert assistant.histories[-1] == ()


def _response(**extra) -> dict:
    passage = "Torstein Tysklind har tillsatts som ny ekonomichef. Han kommer från Gagnefs kommun."
    citation = {"n": 1, "doc_id": ECONOMY_DOC, "title": "Rapport", "date": "2017-05", "diarienummer": "1",
                "section": "S", "text": passage, "start": 1052, "end": 1052 + 49, "passage_start": 1000,
                "passage_end": 1000 + len(passage), "quote": passage[52:], "score": 1.0,
                "key": {"start": 1052 + 16, "end": 1052 + 30}}  # fmt: skip
    return {"question": "Var arbetade han tidigare?", "answer": "Han kommer från Gagnefs kommun. [1]",
            "answered": True, "citations": [citation], "passages": [], "notice": None, **extra}  # fmt: skip


def test_the_answer_says_how_a_follow_up_was_read():
    html = render.answer_html(_response(interpreted_as="Var arbetade Torstein Tysklind tidigare?"), "u")
    assert '<p class="rag-interpreted">Tolkad som: <q>Var arbetade Torstein Tysklind tidigare?</q></p>' in html
    assert "rag-interpreted" not in render.answer_html(_response(interpreted_as=None), "u")
    same = _response(interpreted_as="Var arbetade han tidigare?")
    assert "rag-interpreted" not in render.answer_html(same, "u")
    abstained = {**_response(interpreted_as="Vad kostar en pizza?"), "answered": False, "citations": []}
    assert "Tolkad som: <q>Vad kostar en pizza?</q>" in render.answer_html(abstained, "u")
    english = render.answer_html({**_response(interpreted_as="Who?"), "question": "Where did he work?"}, "u")
    assert "Tolkad som: <q>Who?</q>" in english and 'lang="sv"' in english  # the page stays Swedish


def test_the_key_span_is_bold_in_the_answer_and_inside_the_marked_quote():
    html = render.answer_html(_response(), "u")
    assert '<p class="rag-text">Han kommer från <strong class="rag-key">Gagnefs kommun</strong>. <a' in html
    assert '<mark>Han kommer från <strong class="rag-key">Gagnefs kommun</strong>.</mark>' in html
    no_key = _response()
    no_key["citations"][0]["key"] = None
    assert '<p class="rag-text">Han kommer från Gagnefs kommun. <a' in render.answer_html(no_key, "u")
    assert "<mark>Han kommer från Gagnefs kommun.</mark>" in render.answer_html(no_key, "u")
    own_words = _response(answer="Han arbetade i Gagnef. [1]")  # not the quote verbatim: nothing in bold
    assert '<p class="rag-text">Han arbetade i Gagnef. <a' in render.answer_html(own_words, "u")
    assert render.highlighted("abcdef", 1, 4, (0, 9)) == 'a<mark><strong class="rag-key">bcd</strong></mark>ef'
    assert render.highlighted("abcdef", 1, 4, (5, 6)) == "a<mark>bcd</mark>ef"  # outside the quote: no bold


def test_the_generator_choice_hides_an_unreachable_language_model(built):  # noqa: F811
    settings = _settings(built, client_generators="openai")
    down = handlers.generator_options(settings, reachable=lambda: False)
    assert down["choices"] == [("Extraktiv (citat) – standard", "extractive")] and down["value"] == "extractive"
    assert down["visible"] is True
    assert down["info"] == (
        "Standard för den här webbplatsen: Extraktiv (citat). Extraktiv citerar meningar ur rapporterna "
        "ordagrant. Språkmodellen kan inte väljas just nu: dess server svarar inte."
    )
    up = handlers.generator_options(settings, reachable=lambda: True)
    assert up["choices"] == [("Extraktiv (citat) – standard", "extractive"), ("Språkmodell (OpenAI-kompatibel)", "openai")]
    assert "kan inte väljas" not in up["info"]
    assert handlers.generator_options(_settings(built), reachable=lambda: True)["visible"] is False


def test_an_unreachable_language_model_is_noticed(built):  # noqa: F811
    settings = _settings(built, llm_base_url="http://127.0.0.1:9/v1")  # the discard port: nothing listens
    assert handlers.llm_reachable(settings) is False


def test_labels_cover_both_languages():
    assert set(labels.LABELS["sv"]) == set(labels.LABELS["en"])


def test_active_filters_are_named_as_chips_and_in_the_answers_source_line(built):  # noqa: F811
    documents = Assistant(_settings(built), embedder=FakeEmbedder()).store.documents()
    assert handlers.scope_text(documents, [ECONOMY_DOC], "2017") == "Kommundirektörens rapport maj 2017 (2017-05); år 2017"
    assert handlers.scope_text(documents, [], labels.ALL_YEARS) == ""
    row, heading, year, *reports = handlers.chip_updates(documents, [ECONOMY_DOC], "2017")
    assert row["visible"] is True and heading["value"] == "Sökningen är avgränsad till:"
    assert year == {"__type__": "update", "visible": True, "value": "År 2017 ✕"}
    assert reports[0]["value"] == "Kommundirektörens rapport maj 2017 (2017-05) ✕" and reports[0]["visible"] is True
    assert [r["visible"] for r in reports[1:]] == [False] * (labels.MAX_CHIPS - 1)
    assert handlers.chip_updates(documents, [], labels.ALL_YEARS)[0]["visible"] is False
    assert handlers._drop_report(0)([ECONOMY_DOC, "b"]) == ["b"] and handlers._drop_year() == labels.ALL_YEARS
    html = render.answer_html(_response(), "u", "Rapport (2017-05); år 2017")
    assert '<p class="rag-scope">Sökt endast i: Rapport &#40;2017&#45;05&#41;; år 2017</p>' in html
    assert "rag-scope" not in render.answer_html(_response(), "u")
    abstained = {**_response(), "answered": False, "citations": []}
    assert "Sökt endast i: Rapport" in render.answer_html(abstained, "u", "Rapport")


def test_the_conversation_exports_as_markdown():
    answered = {"response": _response(), "scope": "Rapport (2017-05)"}
    none = {"response": {**_response(), "question": "Vad kostar en pizza?", "answered": False, "citations": []}}
    markdown = render.conversation_markdown([answered, none])
    assert markdown == (
        "# Frågor om kommundirektörens rapporter – samtal\n\n"
        "## Fråga 1: Var arbetade han tidigare?\n\nHan kommer från Gagnefs kommun. [1]\n\n"
        "Sökt endast i: Rapport (2017-05)\n\n### Källor\n\n"
        # the title with month and year from its date (rag.web.reports.report_title), as on the cards
        "1. Rapport maj 2017 (2017-05, dnr 1), avsnitt: S\n   > Han kommer från Gagnefs kommun.\n\n"
        "## Fråga 2: Vad kostar en pizza?\n\nJag hittar inget svar på det i rapporterna.\n"
    )
    assert handlers._export([]) == ("", "Det finns inget samtal att exportera än. Ställ en fråga först.")
    assert handlers._export([answered, none]) == (markdown, "Samtalet (2 frågor) är sparat som en markdown-fil.")


def test_the_footer_speaks_to_the_public_not_to_developers(built):  # noqa: F811
    footer = handlers._footer_text(Assistant(_settings(built), embedder=FakeEmbedder()))
    assert footer == (
        "Söker i 5 rapporter (80 passager). Inget lämnar servern. · [Rapporterna](rapporter) · "
        "[Tillgänglighetsredogörelse](tillganglighet)"
    )


def test_markdown_emphasis_from_the_reports_is_not_shown_as_asterisks():
    assert render.quoted("för *samordnad varudistribution* på") == "för samordnad varudistribution på"
    assert render.quoted("insatser för unga.* Förstudien") == "insatser för unga. Förstudien"
    assert render.quoted("**Rådslag** och 3 * 4") == "Rådslag och 3 &#42; 4"  # a lone asterisk stays
    assert render.highlighted("Ett *viktigt* beslut.", 4, 13) == "Ett <mark>viktigt</mark> beslut."
    assert "&#42;" not in render.answer_html(_response(answer="Han kommer från *Gagnef*. [1]"), "u").split("<section")[0]
