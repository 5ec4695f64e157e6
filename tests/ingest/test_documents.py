"""Reading reports: the five real reports parse to their exact metadata and sections; other formats
(.md, .docx, .pdf, corpus.jsonl) and bad inputs behave as documented.

Expected values were taken by reading the report files in data/ by hand, not from the parser.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from rag.errors import InputError
from rag.index.build import build_index
from rag.ingest.documents import Document, Skipped, read_documents, read_file
from rag.ingest.sections import HEADER, SIGNATURE, Section, parse_report
from rag.ingest.sentences import split_sentences
from rag.settings import Settings
from tests.fakes import FakeEmbedder

DATA = Path(__file__).resolve().parents[2] / "data"

EXPECTED = {
    "000_0448039051fc396a.txt": (
        "Kommundirektörens rapport oktober",
        "2015-10",
        "2015/KS 0011 001",
        [
            "Kraftsamling för nya Tyresöbor",
            "Stort engagemang i flyktingfrågan",
            "Yttrande angående Arbetsförmedlingens plan för lokalisering",
            "Nationell samordnare för den sociala barn- och ungdomsvården",
            "Nytt system för synpunkter och felanmälan",
            "Byte av telefonisystem",
            "Svenskt Näringslivs ranking av företagsklimat",
            "Beredskap för att akut ordna boendeplatser för asylsökande",
        ],
    ),
    "001_a3851816b6736ffa.txt": (
        "Kommundirektörens rapport",
        "2014-03-17",
        "2014/KS 0046 001",
        [
            "Södertörnssamarbetet",
            "Uppsökande arbete bland barn och ungdomar i riskmiljöer",
            "Ekonomisk rapport",
            "Översyn av lokalutnyttjande",
            "En väg in och många vägar ut till arbete, studier och egen försörjning - projektplan",
            "Konsult- och servicekontoret – Verksamhetsplan 2014",
            "Nätverk för företagare",
            "Revisionsrapport om löner, arvoden och kostnadsersättningar - kompletterande svar",
        ],
    ),
    "002_8f9c64b256dc6c50.txt": (
        "Kommundirektörens rapport maj 2017",
        "2017-05",
        "2017/KS 0001 001",
        [
            "Attentatet i Stockholms city den 7 april – säkerhetschefens rapport",
            "Regional samverkansövning omformas",
            "Södertörns rådslag",
            "Starta eget – frukostmöte",
            "Öppet medborgarmöte 30 maj klockan 17-18",
            "HBTQ-certifiering",
            "Lokalförsörjning",
            "Ny organisation för kommunstyrelseförvaltningen från och med 1 maj",
            "Satsning på ledarutveckling- INDEA vann upphandlingen",
            "Riktlinjer för systematiskt brandskyddsarbete - revidering",
            "Torstein Tysklind ny ekonomichef",
            "Ekonomisk rapport",
        ],
    ),
    "003_52fda963314daba6.txt": (
        "Kommundirektörens rapport januari 2014",
        "2014-01-21",
        "2014/KS 0046 001",
        [
            "Klar förbättring av servicenivå och nåbarhet per telefon och epost",
            "Europeiska socialfonden, ESF, beviljar medel till Samordningsförbundet",
            "ESF beviljar även medel till projektet Matchning Södertörn",
            "Ekonomisk rapport",
            "Plan för kommunledningskontoret",
            "Regional kris- och katastrofberedskap",
            "Tyresö kommun anpassar IT-miljön för framtida internettrafik",
            "Säkerheten vid trygghetslarm förbättras",
            "Kommunens Kvalitet i Korthet",
        ],
    ),
    "004_b5550178f36bccda.txt": (
        "Kommundirektörens rapport",
        None,
        None,
        [
            "Förebyggande arbete med barn och ungdomar i riskzon",
            "Nya riktlinjer för bisysslor",
            "Krisövning Henning",
            "Statlig ersättning för uppgifter i krishanteringssystemet",
            "Enkla kontaktvägar in i kommunen",
            "Kompletterande internkontrollåtgärd",
            "Effektiviseringsmålet",
            "Avtal 12",
        ],
    ),
}

# Lines of the page layout: only in the letterhead and signature sections, never in the reports' content.
NOT_CONTENT = ["Diarienummer", "Catarina Stavenberg", "Bo Renman"]

# The letterhead (before the title; 004 is a PDF export without one) and the signature, read by hand.
LETTERHEAD = {
    "000_0448039051fc396a.txt": "Diarienummer\n2015/ KS 0011 001\nKommunstyrelsen",
    "001_a3851816b6736ffa.txt": "Tyresö kommun\n2014-03-17\nCatarina Stavenberg\nDiarienummer\n2014/ KS 0046 001\n"
                                "Kommunstyrelsen",
    "002_8f9c64b256dc6c50.txt": "Diarienummer\n2017/ KS 0001 001\nKommunstyrelsen",
    "003_52fda963314daba6.txt": "Tyresö kommun\n2014-01-21\nCatarina Stavenberg\nDiarienummer\n2014/ KS 0046 001\n"
                                "Kommunstyrelsen",
}  # fmt: skip


@pytest.fixture(scope="module")
def reports() -> dict[str, Document]:
    documents, skipped = read_documents(DATA)
    assert skipped == []
    return {d.id: d for d in documents}


def _content(doc: Document) -> list[Section]:
    return [s for s in doc.sections if s.heading not in (HEADER, SIGNATURE)]


def _section(doc: Document, heading: str) -> Section:
    (section,) = [s for s in doc.sections if s.heading == heading]
    return section


# -- the five real reports ---------------------------------------------------------------------


def test_all_five_reports_are_read_in_file_order(reports):
    assert list(reports) == sorted(EXPECTED)


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_report_title_date_diarienummer(reports, doc_id):
    doc = reports[doc_id]
    title, date, diarienummer, _ = EXPECTED[doc_id]
    assert (doc.title, doc.date, doc.diarienummer) == (title, date, diarienummer)


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_report_section_headings(reports, doc_id):
    assert [s.heading for s in _content(reports[doc_id])] == EXPECTED[doc_id][3]


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_letterhead_and_signature_are_sections_of_their_own(reports, doc_id):
    """They can be quoted and cited ("Vem har skrivit rapporten?"); the signature is also metadata."""
    doc = reports[doc_id]
    first, last = doc.sections[0], doc.sections[-1]
    if doc_id in LETTERHEAD:
        assert (first.heading, first.text, first.start, first.heading_span) == (HEADER, LETTERHEAD[doc_id], 0, None)
    else:
        assert first.heading != HEADER
    assert (last.heading, last.text, last.heading_span) == (SIGNATURE, "Bo Renman\nKommundirektör", None)
    assert (doc.signed_by.name, doc.signed_by.title) == ("Bo Renman", "Kommundirektör")
    assert doc.text.endswith("Bo Renman\nKommundirektör\n")


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_section_offsets_locate_the_body(reports, doc_id):
    doc = reports[doc_id]
    previous_end = 0
    for section in doc.sections:
        assert doc.text[section.start : section.end] == section.text
        assert section.text == section.text.strip() and section.text
        assert section.start >= previous_end  # in order, never overlapping
        previous_end = section.end


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_sha256_is_of_the_source_bytes(reports, doc_id):
    import hashlib

    assert reports[doc_id].sha256 == hashlib.sha256((DATA / doc_id).read_bytes()).hexdigest()


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_layout_lines_are_not_content(reports, doc_id):
    doc = reports[doc_id]
    assert "1 (3)" not in doc.text and "2 (3)" not in doc.text  # page numbers are dropped everywhere
    for section in _content(doc):
        assert all(marker not in section.text and marker not in section.heading for marker in NOT_CONTENT)
        # The signature's role line: "Kommundirektör" alone (not "Kommundirektören", which is content).
        assert not re.search(r"\bKommundirektör\b", section.text)
        assert section.heading not in {"Kommundirektör", "Bo Renman", "Diarienummer", "Kommunstyrelsen"}


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_paragraphs_end_at_sentence_ends(reports, doc_id):
    """A paragraph break is never in the middle of a sentence (list items have no full stop)."""
    for section in _content(reports[doc_id]):
        for paragraph in section.text.split("\n\n"):
            assert "\n" not in paragraph
            assert paragraph[0].isupper() or paragraph[0].isdigit() or paragraph.startswith("- "), paragraph
            assert paragraph.startswith("- ") or re.search(r"[.!?:;)]$", paragraph), paragraph


def test_hard_wrapped_pdf_text_is_reflowed(reports):
    doc = reports["004_b5550178f36bccda.txt"]
    first = doc.sections[0]
    start, end = split_sentences(doc.text, first.start, first.end)[0]
    assert doc.text[start:end] == (
        "Vi har under en tid i Tyresö uppmärksammat att det förebyggande arbetet ute på fältet med barn "
        "och ungdomar i riskzon inte fungerat i alla lägen."
    )
    law = _section(doc, "Statlig ersättning för uppgifter i krishanteringssystemet").text
    assert law.startswith(
        "Kommunerna får ersättning för de uppgifter som utförs enligt 2 och 3 kap. lagen (2006:544) om "
        "kommuners och landstings åtgärder inför och vid extraordinära händelser i fredstid och höjd beredskap."
    )
    # "Konsult- \noch servicekontoret" joins with one space, keeping the hyphen.
    assert _section(doc, "Nya riktlinjer för bisysslor").text == (
        "I samband med internkontrollen uppmärksammades behovet av att se över rutinen för registrering av "
        "bisysslor. Nya riktlinjer har därför utarbetats av personalenheten vid Konsult- och servicekontoret "
        "(bilaga)."
    )
    assert _section(doc, "Avtal 12").text == (
        "Med undantag av Lärarnas Riksförbund och Lärarförbundet finns nu centrala avtal för samtliga "
        "områden. Arbetet med hur dessa ska utformas på lokal nivå har därmed påbörjats.\n\n"
        "Frågan om vilken prioritering och inriktning som kommunen ska ha som arbetsgivare kommer att "
        "behandlas på särskilda utskottets nästa möte."
    )


def test_sentence_broken_by_a_blank_line_is_joined(reports):
    """000 has "barn- och\\n\\nungdomsvården" in the source: one sentence in the parsed text."""
    text = _section(reports["000_0448039051fc396a.txt"],
                    "Nationell samordnare för den sociala barn- och ungdomsvården").text  # fmt: skip
    assert (
        "Hennes uppdrag är att bidra till att stärka och stödja socialtjänstens arbete med den sociala barn- "
        "och ungdomsvården. Hon ska besöka cirka 50 kommuner"
    ) in text


def test_last_section_stops_before_the_signature(reports):
    assert _section(reports["002_8f9c64b256dc6c50.txt"], "Ekonomisk rapport").text == (
        "Som ett komplement till den reguljära ekonomiska uppföljningen lämnar ekonomichefen redogörelse för "
        "händelser och risker som påverkar kommunens ekonomi. Ekonomisk rapport samt månadsuppföljning per "
        "mars och prognos bifogas."
    )
    assert (
        _content(reports["003_52fda963314daba6.txt"])[-1]
        .text.endswith("Resultatrapporten finns publicerad på [www.skl.se](http://www.skl.se).")
    )


def test_markdown_report_headings_have_no_markup(reports):
    doc = reports["003_52fda963314daba6.txt"]
    for section in doc.sections:
        assert "#" not in section.heading and "*" not in section.heading
    assert "**" not in doc.text
    assert not any(line.startswith("#") for line in doc.text.split("\n"))
    assert doc.text.startswith(LETTERHEAD["003_52fda963314daba6.txt"] + "\n\nKommundirektörens rapport januari 2014\n\n"
                               "Klar förbättring av servicenivå och nåbarhet per telefon och epost\n\n")  # fmt: skip


def test_list_items_stay_separate_paragraphs(reports):
    text = _section(reports["002_8f9c64b256dc6c50.txt"],
                    "Ny organisation för kommunstyrelseförvaltningen från och med 1 maj").text  # fmt: skip
    assert text.endswith(
        "upphör och enheterna får följande organisatoriska placeringar:\n\n"
        "- Ekonomiservice och upphandling ingår i ekonomiavdelningen\n\n"
        "- Löneenheten ingår i HR-avdelningen\n\n"
        "- IT-avdelningen inklusive projektkontoret blir en avdelning direkt under kommundirektören\n\n"
        "- Kost- och måltidsenheten blir en enhet inom tekniska kontoret"
    )


def test_document_text_is_title_headings_and_bodies():
    parsed = parse_report(
        "Diarienummer\n2016/ KS 0042 001\n\nKommundirektörens rapport juni\n\nBudget\n\n"
        "Budgeten är klar. Den omfattar\nhela året.\n\nSkolan\n\nSkolan får nya lokaler.\n\nBo Renman\nKommundirektör\n"
    )
    assert parsed.title == "Kommundirektörens rapport juni"
    assert parsed.diarienummer == "2016/KS 0042 001"
    assert parsed.date == "2016-06"
    assert parsed.text == (
        "Diarienummer\n2016/ KS 0042 001\n\nKommundirektörens rapport juni\n\nBudget\n\n"
        "Budgeten är klar. Den omfattar hela året.\n\nSkolan\n\nSkolan får nya lokaler.\n\n"
        "Bo Renman\nKommundirektör\n"
    )
    assert parsed.sections == (
        Section(HEADER, "Diarienummer\n2016/ KS 0042 001", 0, 30, None),
        Section("Budget", "Budgeten är klar. Den omfattar hela året.", 72, 113, (64, 70)),
        Section("Skolan", "Skolan får nya lokaler.", 123, 146, (115, 121)),
        Section(SIGNATURE, "Bo Renman\nKommundirektör", 148, 172, None),
    )
    assert parsed.signature == ("Bo Renman", "Kommundirektör")
    assert [parsed.text[a:b] for a, b in (s.heading_span for s in parsed.sections[1:3])] == ["Budget", "Skolan"]


# -- other formats -----------------------------------------------------------------------------


def test_markdown_file_with_level_two_headings(tmp_path):
    path = tmp_path / "rapport.md"
    path.write_text(
        "Diarienummer\n2016/KS 0042 001\n\n# Kommundirektörens rapport juni 2016\n\n"
        "## Ny förskola i Bollmora\n\nFörskolan öppnar i augusti. Den har plats för 120 barn.\n\n"
        "## **Budget**\n\nBudgeten är 2,4 miljoner kronor, bl.a. för lokaler.\n",
        encoding="utf-8",
    )
    doc = read_file(path)
    assert (doc.id, doc.title, doc.date, doc.diarienummer) == (
        "rapport.md", "Kommundirektörens rapport juni 2016", "2016-06", "2016/KS 0042 001")  # fmt: skip
    assert doc.text == (
        "Diarienummer\n2016/KS 0042 001\n\nKommundirektörens rapport juni 2016\n\nNy förskola i Bollmora\n\n"
        "Förskolan öppnar i augusti. Den har plats för 120 barn.\n\nBudget\n\n"
        "Budgeten är 2,4 miljoner kronor, bl.a. för lokaler.\n"
    )
    assert [(s.heading, s.text) for s in doc.sections] == [
        (HEADER, "Diarienummer\n2016/KS 0042 001"),
        ("Ny förskola i Bollmora", "Förskolan öppnar i augusti. Den har plats för 120 barn."),
        ("Budget", "Budgeten är 2,4 miljoner kronor, bl.a. för lokaler."),
    ]
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


def test_markdown_intro_before_first_heading_is_kept(tmp_path):
    """No text lost: a paragraph before the first ## heading is content, not front matter."""
    path = tmp_path / "veckobrev.md"
    path.write_text(
        "Veckobrev från kommunledningen\n\nHösten har börjat med många nya projekt i kommunen.\n\n"
        "## Budget\n\nBudgeten är klar.\n",
        encoding="utf-8",
    )
    doc = read_file(path)
    assert "Hösten har börjat med många nya projekt i kommunen." in doc.text
    assert "Budgeten är klar." in doc.text
    assert [s.heading for s in doc.sections][-1] == "Budget"


def test_docx_with_heading_styles(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("Diarienummer")
    document.add_paragraph("2016/KS 0042 001")
    document.add_paragraph("Kommundirektörens rapport juni 2016", style="Title")
    document.add_paragraph("Ny förskola i Bollmora", style="Heading 1")
    document.add_paragraph("Förskolan öppnar i augusti. Den har plats för 120 barn.")
    document.add_paragraph("Budget", style="Heading 1")
    document.add_paragraph("Budgeten är 2,4 miljoner kronor.")
    document.add_paragraph("Pengarna går bl.a. till lokaler.")
    document.save(tmp_path / "rapport.docx")

    doc = read_file(tmp_path / "rapport.docx")
    assert (doc.title, doc.date, doc.diarienummer) == (
        "Kommundirektörens rapport juni 2016", "2016-06", "2016/KS 0042 001")  # fmt: skip
    assert [(s.heading, s.text) for s in doc.sections] == [
        (HEADER, "Diarienummer\n2016/KS 0042 001"),
        ("Ny förskola i Bollmora", "Förskolan öppnar i augusti. Den har plats för 120 barn."),
        ("Budget", "Budgeten är 2,4 miljoner kronor.\n\nPengarna går bl.a. till lokaler."),
    ]
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


def _pdf_bytes(lines: list[str]) -> bytes:
    """A minimal one-page PDF: Helvetica with WinAnsiEncoding, one text object, a correct xref."""
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("cp1252")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_is_read_and_reflowed(tmp_path):
    (tmp_path / "rapport.pdf").write_bytes(_pdf_bytes([
        "Kommundirektörens rapport juni 2016",
        "Ny förskola i Bollmora",
        "Förskolan i Bollmora öppnar i augusti och har",
        "plats för 120 barn. Personalen är redan anställd.",
        "Budget",
        "Budgeten är 2,4 miljoner kronor.",
    ]))  # fmt: skip
    doc = read_file(tmp_path / "rapport.pdf")
    assert (doc.id, doc.title, doc.date, doc.diarienummer) == (
        "rapport.pdf", "Kommundirektörens rapport juni 2016", "2016-06", None)  # fmt: skip
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Ny förskola i Bollmora",
         "Förskolan i Bollmora öppnar i augusti och har plats för 120 barn. Personalen är redan anställd."),
        ("Budget", "Budgeten är 2,4 miljoner kronor."),
    ]  # fmt: skip


def test_corpus_jsonl_keeps_text_verbatim_and_skips_bad_rows(tmp_path, caplog):
    text = "  Första raden.\n\nAndra  stycket har\tdubbla  mellanslag.  \n"
    rows = [
        json.dumps(
            {
                "id": "r1",
                "title": "Rapport ett",
                "text": text,
                "date": "2016-05",
                "diarienummer": "2016/KS 1",
            },
            ensure_ascii=False,
        ),
        "inte json alls",
        json.dumps({"title": "utan id", "text": "Text."}),
        "",
        json.dumps({"id": "r4", "title": "utan text"}),
        json.dumps(["en", "lista"]),
        json.dumps({"id": 5, "text": "Bara text."}),
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(path)

    assert [d.id for d in documents] == ["r1", "5"]
    first, second = documents
    assert first.text == text
    assert (first.title, first.date, first.diarienummer) == ("Rapport ett", "2016-05", "2016/KS 1")
    assert first.sections == (Section("Rapport ett", text, 0, len(text)),)
    assert second.title == "5" and second.sections == (Section("5", "Bara text.", 0, 10),)
    assert [s.source for s in skipped] == [f"{path}:2", f"{path}:3", f"{path}:5", f"{path}:6"]
    assert all(s.reason.startswith("not a valid row") for s in skipped)
    for item in skipped:
        assert item.source in caplog.text


def test_corpus_jsonl_row_with_null_text_is_skipped(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "A", "text": None}) + "\n"
                    + json.dumps({"id": "b", "title": "B", "text": "Riktig text."}) + "\n")  # fmt: skip
    documents, skipped = read_documents(path)
    assert [d.id for d in documents] == ["b"]
    assert [s.source for s in skipped] == [f"{path}:1"]


@pytest.mark.parametrize(("date", "kept"), [("2016-05-31", "2016-05-31"), ("2016", "2016"), ("2016-02-30", None),
                                            ("2016-13", None), ("maj 2016", None), (20160531, None)])  # fmt: skip
def test_corpus_jsonl_keeps_only_a_real_iso_date(tmp_path, date, kept):
    """A date that names no day would be compared as text by the date filters: it is dropped, the row kept."""
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "A", "text": "Text.", "date": date}) + "\n")
    documents, _ = read_documents(path)
    assert [d.date for d in documents] == [kept]


def test_corpus_jsonl_duplicate_ids_are_not_both_kept(tmp_path):
    """Two rows with one id would share chunk ids and one documents.json entry in the index."""
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "A", "text": "Första texten."}) + "\n"
                    + json.dumps({"id": "a", "title": "B", "text": "Andra texten."}) + "\n")  # fmt: skip
    documents, skipped = read_documents(path)
    assert len({d.id for d in documents}) == len(documents) == 1
    assert [s.source for s in skipped] == [f"{path}:2"]


# -- bad inputs --------------------------------------------------------------------------------


def test_empty_folder(tmp_path):
    empty = tmp_path / "tom"
    empty.mkdir()
    assert read_documents(empty) == ([], [])
    settings = Settings(data_dir=empty, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    with pytest.raises(InputError) as error:
        build_index(settings, FakeEmbedder(), progress=False)
    assert str(empty) in str(error.value)
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_missing_path_raises_input_error(tmp_path):
    with pytest.raises(InputError) as error:
        read_documents(tmp_path / "finns-inte")
    assert str(tmp_path / "finns-inte") in str(error.value)


def test_single_non_jsonl_file_raises_input_error(tmp_path):
    file = tmp_path / "rapport.txt"
    file.write_text("Kommundirektörens rapport\n\nText.\n")
    with pytest.raises(InputError):
        read_documents(file)


def _folder_with_reports(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    return folder


def test_binary_file_is_skipped_with_a_warning_and_the_rest_read(tmp_path, caplog):
    folder = _folder_with_reports(tmp_path)
    (folder / "bild.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == sorted(EXPECTED)
    assert skipped == [Skipped(str(folder / "bild.txt"), "bild.txt looks binary, not text. "
                                                         "Remove it or save it as .txt.")]  # fmt: skip
    assert "bild.txt" in caplog.text


def test_non_utf8_file_is_skipped_with_a_warning_and_the_rest_read(tmp_path, caplog):
    folder = _folder_with_reports(tmp_path)
    # Bytes that are neither UTF-8 nor cp1252 (0x81, 0x8d, 0x8f are undefined in cp1252).
    (folder / "trasig.txt").write_bytes(b"Kommundirekt\x81rens rapport\n\n\x8d\x8f text\n")
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == sorted(EXPECTED)
    assert [s.source for s in skipped] == [str(folder / "trasig.txt")]
    assert "not UTF-8" in skipped[0].reason
    assert "trasig.txt" in caplog.text


def test_cp1252_file_is_decoded(tmp_path):
    """Windows-saved Swedish text is read rather than skipped (documented fallback)."""
    (tmp_path / "win.txt").write_bytes("Kommundirektörens rapport maj 2016\n\nÅtgärder\n\nVi gör åtgärder.\n"
                                       .encode("cp1252"))  # fmt: skip
    doc = read_file(tmp_path / "win.txt")
    assert doc.title == "Kommundirektörens rapport maj 2016"
    assert doc.sections == (Section("Åtgärder", "Vi gör åtgärder.", 46, 62, (36, 44)),)


def test_damaged_docx_and_pdf_are_skipped(tmp_path, caplog):
    folder = _folder_with_reports(tmp_path)
    (folder / "trasig.docx").write_bytes(b"PK\x03\x04 inte en riktig zip")
    (folder / "trasig.pdf").write_bytes(b"%PDF-1.4\ntrasig")
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == sorted(EXPECTED)
    assert [s.source for s in skipped] == [str(folder / "trasig.docx"), str(folder / "trasig.pdf")]
    assert "trasig.docx" in caplog.text and "trasig.pdf" in caplog.text


def test_unreadable_file_is_skipped_not_fatal(tmp_path, monkeypatch, caplog):
    """An OS-level read error (permissions, I/O) skips that file instead of aborting the whole read."""
    folder = _folder_with_reports(tmp_path)
    locked = folder / "låst.txt"
    locked.write_text("Kommundirektörens rapport\n\nText.\n")
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self.name == "låst.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == sorted(EXPECTED)
    assert [s.source for s in skipped] == [str(locked)]
    assert "låst.txt" in caplog.text


def test_unsupported_and_hidden_files(tmp_path):
    folder = _folder_with_reports(tmp_path)
    (folder / "anteckningar.csv").write_text("a,b\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00")
    (folder / "undermapp").mkdir()
    documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == sorted(EXPECTED)
    assert skipped == [Skipped(str(folder / "anteckningar.csv"), "unsupported file type .csv")]


def test_empty_text_file_is_skipped(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "tom.txt").write_text("  \n\n ")
    (folder / "rapport.md").write_text("# Kommundirektörens rapport\n\n## A\n\nText.\n")
    documents, skipped = read_documents(folder)
    assert [d.id for d in documents] == ["rapport.md"]
    assert skipped == [Skipped(str(folder / "tom.txt"), "tom.txt holds no text.")]


# -- data-folder surprises (issue 18) -----------------------------------------------------------


def test_a_link_to_a_file_outside_the_data_folder_is_skipped_unless_allowed(tmp_path, caplog):
    folder = _folder_with_reports(tmp_path)
    secret = tmp_path / "hemligt.txt"
    secret.write_text("Kommundirektörens rapport\n\nLösenord\n\nLösenordet är sommar2017.\n", encoding="utf-8")
    (folder / "länk.txt").symlink_to(secret)
    (folder / "inne.txt").symlink_to(folder / "002_8f9c64b256dc6c50.txt")  # inside: still read
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        documents, skipped = read_documents(folder)
    assert sorted(d.id for d in documents) == sorted([*EXPECTED, "inne.txt"])
    assert [s.source for s in skipped] == [str(folder / "länk.txt")]
    assert "outside the data folder" in skipped[0].reason and "RAG_ALLOW_OUTSIDE_LINKS=1" in skipped[0].reason
    assert "länk.txt" in caplog.text and "sommar2017" not in caplog.text
    documents, skipped = read_documents(folder, allow_outside_links=True)
    assert "länk.txt" in {d.id for d in documents} and skipped == []


def test_a_file_over_the_text_limit_is_skipped_with_what_to_do(tmp_path):
    folder = _folder_with_reports(tmp_path)
    (folder / "stor.txt").write_text("Kommundirektörens rapport\n\n" + "Ett ord. " * 2000, encoding="utf-8")
    documents, skipped = read_documents(folder, max_chars=10_000)
    assert sorted(d.id for d in documents) == sorted(EXPECTED)
    assert skipped == [Skipped(str(folder / "stor.txt"), "stor.txt has 18,027 characters of text, more than the "
                               "limit of 10,000 characters (RAG_MAX_DOCUMENT_CHARS). Split it into smaller "
                               "files, or raise the limit.")]  # fmt: skip
    huge = folder / "jätte.txt"
    with huge.open("wb") as out:
        out.truncate(20 * 10_000 + 1)  # sparse: refused by its size before it is read
    assert "jätte.txt has 200,001 bytes" in read_documents(folder, max_chars=10_000)[1][0].reason


def test_utf8_with_a_broken_byte_is_not_read_as_cp1252_garbage(tmp_path, caplog):
    """One bad byte in a UTF-8 file used to make the whole file cp1252: "Ã¥" for every å."""
    good = "Kommundirektörens rapport maj 2016\n\nÅtgärder\n\nVi gör åtgärder för äldre i Tyresö.\n".encode()
    broken = good.replace("äldre".encode(), b"\xe4ldre")  # a lone Latin-1 ä in UTF-8 text
    (tmp_path / "trasig.txt").write_bytes(broken)
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        doc = read_file(tmp_path / "trasig.txt")
    assert doc.sections[0].text == "Vi gör åtgärder för \ufffdldre i Tyresö."
    assert "Ã" not in doc.text
    at = broken.index(b"\xe4ldre")
    assert f"trasig.txt is UTF-8 with 1 invalid byte(s), the first at byte {at}" in caplog.text


def test_a_real_windows_1252_file_is_read_with_a_warning(tmp_path, caplog):
    (tmp_path / "win.txt").write_bytes("Kommundirektörens rapport\n\nÅtgärder\n\nVi gör åtgärder.\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="rag.ingest.documents"):
        doc = read_file(tmp_path / "win.txt")
    assert doc.sections[0].text == "Vi gör åtgärder." and "read it as Windows-1252" in caplog.text


def _pdf_pages(pages: list[list[str]]) -> bytes:
    """A PDF of several pages, each like _pdf_bytes' one page."""
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for lines in pages:
        writer.add_page(PdfReader(BytesIO(_pdf_bytes(lines))).pages[0])
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_over_the_text_limit_stops_at_the_page_that_passes_it(tmp_path, monkeypatch):
    """All pages were extracted before the limit was checked: minutes for a large PDF refused anyway."""
    from pypdf import PageObject, PdfReader

    line = "Förskolan i Bollmora öppnar i augusti och har plats för 120 barn."
    (tmp_path / "stor.pdf").write_bytes(_pdf_pages([[line] * 10 for _ in range(5)]))
    page = len(PdfReader(tmp_path / "stor.pdf").pages[0].extract_text())  # every page the same
    assert page < 1_000 < 2 * page + 1
    extracted = []
    real = PageObject.extract_text
    monkeypatch.setattr(PageObject, "extract_text", lambda self, *a, **k: extracted.append(1) or real(self, *a, **k))
    with pytest.raises(InputError) as error:
        read_file(tmp_path / "stor.pdf", max_chars=1_000)
    assert len(extracted) == 2  # of 5 pages
    assert str(error.value) == (
        f"stor.pdf has {2 * page + 1:,} characters of text in its first 2 page(s), more than the limit of 1,000 "
        "characters (RAG_MAX_DOCUMENT_CHARS). Split it into smaller files, or raise the limit."
    )


def test_a_docx_that_unpacks_past_the_limit_is_refused_before_extraction(tmp_path, monkeypatch):
    """A zip bomb: 1 MB of zeros packs into ~1 kB; the reader unpacked it all before counting text."""
    import zipfile

    import docx

    document = docx.Document()
    document.add_paragraph("Kommundirektörens rapport juni 2016")
    document.save(tmp_path / "bomb.docx")
    with zipfile.ZipFile(tmp_path / "bomb.docx", "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/nollor.bin", b"\0" * 1_000_000)
    packed = (tmp_path / "bomb.docx").stat().st_size
    unpacked = sum(e.file_size for e in zipfile.ZipFile(tmp_path / "bomb.docx").infolist())
    opened = []
    monkeypatch.setattr(docx, "Document", lambda *a: opened.append(a) or pytest.fail("extracted"))
    with pytest.raises(InputError) as error:
        read_file(tmp_path / "bomb.docx", max_chars=10_000)
    assert packed < 20 * 10_000 < unpacked and opened == []
    assert str(error.value) == (
        f"bomb.docx unpacks to {unpacked:,} bytes, more than the limit of 200,000 bytes for a .docx "
        "(20 × RAG_MAX_DOCUMENT_CHARS = 10,000). Split it into smaller files, or raise the limit."
    )
