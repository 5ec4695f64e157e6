"""Swedish sentence splitting with exact character spans."""

from __future__ import annotations

import pytest

from rag.ingest.sentences import split_sentences


def sentences(text: str, start: int = 0, end: int | None = None) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, start, end)]


@pytest.mark.parametrize("abbreviation", ["bl.a.", "t.ex.", "kap.", "m.m.", "s.k.", "d.v.s.", "ca.", "kl."])
def test_abbreviation_followed_by_a_capital_does_not_split(abbreviation):
    text = f"Det gäller {abbreviation} Tyresö kommun och Nacka. Sedan kommer nästa mening."
    assert sentences(text) == [
        f"Det gäller {abbreviation} Tyresö kommun och Nacka.",
        "Sedan kommer nästa mening.",
    ]


def test_abbreviation_followed_by_a_digit_does_not_split():
    assert sentences("Säkerhetschefen kallades kl. 16.00 via telefon. Sedan började krisarbetet.") == [
        "Säkerhetschefen kallades kl. 16.00 via telefon.",
        "Sedan började krisarbetet.",
    ]


def test_decimal_comma_and_point_stay():
    assert sentences(
        "Åtgärderna motsvarar omkring 2,4 procent av nettokostnaderna. Det är 2.5 gånger mer."
    ) == [
        "Åtgärderna motsvarar omkring 2,4 procent av nettokostnaderna.",
        "Det är 2.5 gånger mer.",
    ]


def test_law_reference_is_one_sentence():
    text = (
        "Kommunerna får ersättning för de uppgifter som utförs enligt 2 och 3 kap. lagen (2006:544) om "
        "kommuners och landstings åtgärder inför och vid extraordinära händelser i fredstid och höjd "
        "beredskap. Uppgifterna består i att göra risk- och sårbarhetsanalyser."
    )
    assert sentences(text) == [
        (
            "Kommunerna får ersättning för de uppgifter som utförs enligt 2 och 3 kap. lagen (2006:544) om "
            "kommuners och landstings åtgärder inför och vid extraordinära händelser i fredstid och höjd beredskap."
        ),
        "Uppgifterna består i att göra risk- och sårbarhetsanalyser.",
    ]


def test_initial_does_not_end_a_sentence():
    assert sentences("Rapporten skrevs av A. Andersson i Tyresö. Den bifogas.") == [
        "Rapporten skrevs av A. Andersson i Tyresö.",
        "Den bifogas.",
    ]


def test_exclamation_question_and_year_end_sentences():
    assert sentences(
        "Nu är de certifierade och klara! Vem leder arbetet? Ersättning betalas för 2012. Bra."
    ) == [
        "Nu är de certifierade och klara!",
        "Vem leder arbetet?",
        "Ersättning betalas för 2012.",
        "Bra.",
    ]


def test_closing_quote_stays_with_its_sentence():
    assert sentences("Målet heter ”ett blomstrande näringsliv.” Det pågår nu ett arbete.") == [
        "Målet heter ”ett blomstrande näringsliv.”",
        "Det pågår nu ett arbete.",
    ]


def test_lowercase_after_period_does_not_split():
    assert sentences("Det finns bara tio st. kvar i lager.") == ["Det finns bara tio st. kvar i lager."]


def test_list_intro_and_items_split_per_line():
    text = (
        "Enheterna får följande placeringar:\n"
        "- Ekonomi ingår i ekonomiavdelningen\n"
        "- Lön ingår i HR-avdelningen"
    )
    assert split_sentences(text) == [(0, 35), (36, 72), (73, 101)]
    assert sentences(text) == [
        "Enheterna får följande placeringar:",
        "- Ekonomi ingår i ekonomiavdelningen",
        "- Lön ingår i HR-avdelningen",
    ]


def test_list_items_separated_by_blank_lines():
    text = "Följande placeringar gäller:\n\n- Löneenheten ingår i HR-avdelningen\n\n- IT blir en avdelning"
    assert sentences(text) == [
        "Följande placeringar gäller:",
        "- Löneenheten ingår i HR-avdelningen",
        "- IT blir en avdelning",
    ]


def test_exact_spans_with_abbreviations_and_decimal():
    text = "Vi har bl.a. Stockholm och t.ex. Nacka. Det kostar 2,4 procent mer."
    assert split_sentences(text) == [(0, 39), (40, 67)]


def test_exact_spans_are_trimmed():
    text = "  Hej där.   Nästa.  \n\n  Sista  "
    assert split_sentences(text) == [(2, 10), (13, 19), (25, 30)]
    assert sentences(text) == ["Hej där.", "Nästa.", "Sista"]


def test_exact_spans_within_a_window_are_document_offsets():
    text = "Rubrik\n\nFörsta meningen. Andra meningen!\n\nSlut utanför fönstret."
    assert split_sentences(text, 8, 40) == [(8, 24), (25, 40)]
    assert sentences(text, 8, 40) == ["Första meningen.", "Andra meningen!"]


def test_paragraph_break_always_ends_a_sentence():
    assert sentences("Första stycket utan punkt\n\nandra stycket") == [
        "Första stycket utan punkt",
        "andra stycket",
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n\n \n"])
def test_blank_text_has_no_sentences(text):
    assert split_sentences(text) == []
