"""Rapporterna: the list of reports, one report's page with its sections anchored, the source cards'
links to them, and the chat's login gate in front of them. Two small Swedish reports (one in a
subfolder, one heading twice, markup in a heading), indexed with the FakeEmbedder."""

from __future__ import annotations

import base64
import re

import pytest
from fastapi.testclient import TestClient

from rag.index.build import build_index
from rag.pipeline import Assistant
from rag.settings import Settings
from rag.web.app import create_app
from rag.web.reports import report_href, report_sections, report_title, section_number, with_report_links
from rag.web.ui import handlers, render
from tests.fakes import FakeEmbedder
from tests.pg import new_store

MAJ = (
    "Diarienummer\n2017/ KS 0001 001\nKommunstyrelsen\n\nKommundirektörens rapport maj 2017\n\n"
    "Ny ekonomichef\n\nAnna Berg börjar som ekonomichef den 1 juni. Hon kommer från Nacka kommun.\n\n"
    "Simhallen <renoveras>\n\nSimhallen stänger i juli & augusti för renovering.\nBadet öppnar igen i september.\n\n"
    "Ny ekonomichef\n\nRekryteringen av en biträdande ekonomichef pågår.\n"
)
OKTOBER = (
    "Diarienummer\n2015/ KS 0011 001\n\nKommundirektörens rapport oktober\n\n"
    "Kraftsamling för nya Tyresöbor\n\nKommunen tar emot fler nyanlända än förra året.\n"
)
MAJ_ID = "2017/maj.txt"
BRACKETED = re.compile(r"\[[^\]\d]+\]")  # "[antal]", "[datum]": the statement's old placeholders ("[1]" is text)


def _settings(root, **extra) -> Settings:
    return Settings(data_dir=root / "data", index_dir=root / "index", cache_dir=root / "cache",
                    feedback_log=root / "feedback.jsonl", **extra)  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    (root / "data" / "2017").mkdir(parents=True)
    (root / "data" / MAJ_ID).write_text(MAJ, encoding="utf-8")
    (root / "data" / "oktober.txt").write_text(OKTOBER, encoding="utf-8")
    build_index(_settings(root), FakeEmbedder(), progress=False)
    return root


def _client(root, **settings) -> TestClient:
    s = _settings(root, **settings)
    return TestClient(create_app(s, Assistant(s, embedder=FakeEmbedder())))


@pytest.fixture(scope="module")
def client(small) -> TestClient:
    return _client(small)


def test_the_title_says_month_and_year_from_the_date():
    assert report_title("Kommundirektörens rapport oktober", "2015-10") == "Kommundirektörens rapport oktober 2015"
    assert report_title("Kommundirektörens rapport", "2014-03-17") == "Kommundirektörens rapport mars 2014"
    assert report_title("Kommundirektörens rapport maj 2017", "2017-05") == "Kommundirektörens rapport maj 2017"
    assert report_title("Kommundirektörens rapport Januari 2014", "2014-01-21") == "Kommundirektörens rapport januari 2014"
    assert report_title("Rapport", "2016") == "Rapport 2016"
    assert report_title("Kommundirektörens rapport december", None) == "Kommundirektörens rapport december"


def test_the_filter_labels_use_the_same_title(client):
    documents = client.app.state.assistant.store.documents()
    assert handlers.report_choices(documents) == [
        ("Kommundirektörens rapport maj 2017 (2017-05)", MAJ_ID),
        ("Kommundirektörens rapport oktober 2015 (2015-10)", "oktober.txt"),
    ]


def test_the_list_shows_every_report_with_date_diarienummer_and_sections(client):
    page = client.get("/rapporter")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="sv">' in page.text and "<h1>Rapporterna</h1>" in page.text
    assert "<p>Frågetjänsten söker i 2 rapporter. Välj en rapport för att läsa den i sin helhet.</p>" in page.text
    maj = (
        '<tr><td><a href="rapporter/2017/maj.txt">Kommundirektörens rapport maj 2017</a></td>'
        '<td>2017-05</td><td>2017/KS 0001 001</td><td class="number">4</td></tr>'
    )
    oktober = (
        '<tr><td><a href="rapporter/oktober.txt">Kommundirektörens rapport oktober 2015</a></td>'
        '<td>2015-10</td><td>2015/KS 0011 001</td><td class="number">2</td></tr>'
    )
    assert maj in page.text and oktober in page.text
    assert page.text.index(maj) < page.text.index(oktober)  # newest first
    assert '<a href="./">Frågetjänsten</a>' in page.text and '<a href="./tillganglighet">' in page.text
    assert "dl.facts" in page.text  # static/rapporter.css, in the page


def test_a_report_in_a_subfolder_has_each_section_anchored_and_escaped(client):
    page = client.get("/rapporter/2017/maj.txt")
    assert page.status_code == 200 and '<html lang="sv">' in page.text
    assert "<h1>Kommundirektörens rapport maj 2017</h1>" in page.text
    assert "<title>Kommundirektörens rapport maj 2017 – Frågor om kommundirektörens rapporter</title>" in page.text
    assert "<dt>Datum</dt><dd>2017-05</dd><dt>Diarienummer</dt><dd>2017/KS 0001 001</dd><dt>Avsnitt</dt><dd>4</dd>" in page.text
    assert (
        '<section aria-labelledby="avsnitt-2"><h2 id="avsnitt-2">Ny ekonomichef</h2>'
        "<p>Anna Berg börjar som ekonomichef den 1 juni. Hon kommer från Nacka kommun.</p></section>"
    ) in page.text
    assert (
        '<h2 id="avsnitt-3">Simhallen &lt;renoveras&gt;</h2><p>Simhallen stänger i juli &amp; augusti för '
        "renovering.</p><p>Badet öppnar igen i september.</p>"
    ) in page.text
    assert '<h2 id="avsnitt-4">Ny ekonomichef</h2><p>Rekryteringen av en biträdande ekonomichef pågår.</p>' in page.text
    assert '<li><a href="#avsnitt-3">Simhallen &lt;renoveras&gt;</a></li>' in page.text
    assert "<renoveras>" not in page.text
    # one folder deep: two steps back to the chat
    assert '<a href="../../">Frågetjänsten</a>' in page.text and '<a href="../../rapporter">' in page.text


def test_an_unknown_report_is_404_in_swedish_with_the_id_escaped(client):
    page = client.get("/rapporter/2017/<script>alert(1)</script>.txt")
    assert page.status_code == 404 and '<html lang="sv">' in page.text
    assert "<h1>Rapporten finns inte</h1>" in page.text
    assert "<code>2017/&lt;script&gt;alert(1)&lt;/script&gt;.txt</code>" in page.text
    assert "<script>" not in page.text
    # the id's "/" in "</script>" is a folder to the browser too: three steps back to the list's folder
    assert '<a href="../../../rapporter">alla rapporter</a>' in page.text


def test_a_citation_links_to_its_own_section_even_when_a_heading_repeats(client):
    store = client.app.state.assistant.store
    sections = report_sections(store.documents()[MAJ_ID], store.document_chunks(MAJ_ID))
    assert [(s.number, s.heading) for s in sections] == [
        (1, "Sidhuvud"), (2, "Ny ekonomichef"), (3, "Simhallen <renoveras>"), (4, "Ny ekonomichef"),
    ]  # fmt: skip
    second = MAJ.index("Rekryteringen")
    assert section_number(sections, "Ny ekonomichef", second) == 4
    assert section_number(sections, "Ny ekonomichef", MAJ.index("Anna Berg")) == 2
    assert section_number(sections, "Finns inte", 0) is None
    response = {"citations": [{"doc_id": MAJ_ID, "section": "Ny ekonomichef", "start": second},
                              {"doc_id": "borttagen.txt", "section": "X", "start": 0}]}  # fmt: skip
    linked = with_report_links(response, store)["citations"]
    assert linked[0]["report_href"] == "rapporter/2017/maj.txt#avsnitt-4"
    assert "report_href" not in linked[1]  # a report no longer in the index gets no link
    assert report_href("mapp/rapport maj.txt", 2) == "rapporter/mapp/rapport%20maj.txt#avsnitt-2"


def test_the_source_card_links_to_the_whole_report_at_the_cited_section():
    passage = "Rekryteringen av en biträdande ekonomichef pågår."
    citation = {"n": 1, "doc_id": MAJ_ID, "title": "Kommundirektörens rapport", "date": "2017-05",
                "diarienummer": "2017/KS 0001 001", "section": "Ny ekonomichef", "text": passage, "start": 299,
                "end": 348, "passage_start": 299, "passage_end": 348, "quote": passage, "score": 1.0, "key": None,
                "report_href": "rapporter/2017/maj.txt#avsnitt-4"}  # fmt: skip
    response = {"question": "Vad pågår?", "answer": passage + " [1]", "answered": True, "citations": [citation],
                "passages": [], "notice": None}  # fmt: skip
    html = render.answer_html(response, "u")
    assert (
        '<a class="rag-back" href="#hanvisning-u-1">Tillbaka till svaret<span class="rag-sr"> [1]</span></a>'
        '<a class="rag-report-link" href="rapporter/2017/maj.txt#avsnitt-4">Läs hela rapporten'
        '<span class="rag-sr">: Ny ekonomichef</span></a></details>'
    ) in html
    assert '<span class="rag-title">Kommundirektörens rapport maj 2017</span>' in html
    del citation["report_href"]
    assert "rag-report-link" not in render.answer_html(response, "u")


def test_the_reports_are_under_the_mount_path(small):
    client = _client(small, mount_path="/fragor")
    assert client.get("/fragor/rapporter").status_code == 200
    assert client.get("/fragor/rapporter/oktober.txt").status_code == 200
    assert client.get("/rapporter").status_code == 404


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_login_the_reports_need_it_like_the_chat_and_the_api(small, tmp_path, monkeypatch):
    monkeypatch.delenv("RAG_USERS", raising=False)
    (tmp_path / "users.txt").write_text("anna:hemligt\n")
    client = _client(small, auth_file=tmp_path / "users.txt")
    for path in ("/rapporter", "/rapporter/2017/maj.txt", "/rapporter/finns-inte.txt", "/api/documents"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Basic") and "Rapport" not in refused.text
    assert client.get("/config").status_code == 401  # the chat's own content: refused the same way
    assert client.get("/tillganglighet").status_code == 200  # the statement stays public
    assert client.get("/rapporter", headers=_basic("anna", "fel")).status_code == 401
    assert client.get("/rapporter", headers=_basic("anna", "hemligt")).status_code == 200
    assert client.post("/login", data={"username": "anna", "password": "hemligt"}).status_code == 200
    assert client.get("/rapporter/2017/maj.txt").status_code == 200  # the chat's session opens them too


def test_with_sso_the_reports_need_the_header_like_the_chat(small):
    client = _client(small, sso_header="X-Remote-User")
    for path in ("/", "/rapporter", "/rapporter/2017/maj.txt"):
        assert client.get(path).status_code == 401, path
    signed_in = {"X-Remote-User": "anna.andersson"}
    assert client.get("/rapporter", headers=signed_in).status_code == 200
    assert client.get("/rapporter/2017/maj.txt", headers=signed_in).status_code == 200


# -- the accessibility statement's details, from settings ---------------------------------------


def test_the_statement_shows_the_sites_contact_details_and_dates(small):
    client = _client(small, a11y_contact="tillganglighet@tyreso.se", a11y_phone="08-578 291 00",
                     a11y_office="Kommunledningskontoret, kommunstyrelsen@tyreso.se", a11y_reply_days="5",
                     a11y_assessed="2026-11-30", a11y_updated="2026-12-04")  # fmt: skip
    page = client.get("/tillganglighet").text
    assert '<li>E-post: <a href="mailto:tillganglighet@tyreso.se">tillganglighet@tyreso.se</a></li>' in page
    assert "<li>Telefon: 08-578 291 00</li>" in page
    assert "<li>Ansvarig förvaltning: Kommunledningskontoret, kommunstyrelsen@tyreso.se</li>" in page
    assert "<p>Vi svarar normalt inom 5 arbetsdagar.</p>" in page
    assert "Den senaste bedömningen gjordes den 30 november 2026." in page
    assert "Redogörelsen uppdaterades senast den 4 december 2026." in page
    assert not BRACKETED.search(page) and "Webbplatsen har inte angett" not in page


def test_a_statement_detail_not_set_is_said_plainly_not_a_bracket(small, monkeypatch):
    for name in ("CONTACT", "PHONE", "OFFICE", "REPLY_DAYS", "ASSESSED", "UPDATED"):
        monkeypatch.delenv(f"RAG_A11Y_{name}", raising=False)
    page = _client(small).get("/tillganglighet").text
    assert not BRACKETED.search(page) and "placeholder" not in page
    assert '<li>E-post: <span class="unset">Webbplatsen har inte angett någon e-postadress ännu.</span></li>' in page
    assert '<p><span class="unset">Webbplatsen har inte angett hur snabbt vi svarar.</span></p>' in page
    assert "Webbplatsen har inte angett när tjänsten senast bedömdes." in page
    assert "Webbplatsen har inte angett när redogörelsen senast uppdaterades." in page


def test_the_statement_settings_come_from_the_environment_and_are_escaped(small):
    settings = Settings.from_env({"RAG_A11Y_CONTACT": "a@b.se", "RAG_A11Y_REPLY_DAYS": "3",
                                  "RAG_A11Y_OFFICE": "<b>KLK</b>", "RAG_A11Y_ASSESSED": "hösten 2026"})  # fmt: skip
    assert (settings.a11y_contact, settings.a11y_reply_days) == ("a@b.se", "3")
    from rag.web.statement import statement_page

    page = statement_page(settings)
    assert "<li>Ansvarig förvaltning: &lt;b&gt;KLK&lt;/b&gt;</li>" in page
    assert "Den senaste bedömningen gjordes den hösten 2026." in page  # not a date: as given


# -- the wiring: the ask handler links its cards, both stores give a report whole ------------------


def test_an_answer_in_the_chat_links_its_source_to_the_cited_section(small):
    ask = handlers._ask_handler(Assistant(_settings(small), embedder=FakeEmbedder()))
    history, _, turns, _ = list(ask("Vem börjar som ekonomichef den 1 juni?", [], [], [], None, None, None))[-1]
    assert turns[0]["response"]["citations"][0]["report_href"] == "rapporter/2017/maj.txt#avsnitt-2"
    assert '<a class="rag-report-link" href="rapporter/2017/maj.txt#avsnitt-2">Läs hela rapporten' in history[-1]["content"]


def test_both_stores_give_a_report_whole(tmp_path, request, store_kind):
    (tmp_path / "data" / "2017").mkdir(parents=True)
    (tmp_path / "data" / MAJ_ID).write_text(MAJ, encoding="utf-8")
    settings = _settings(tmp_path, store=new_store(request, store_kind))
    build_index(settings, FakeEmbedder(), progress=False)
    store = Assistant(settings, embedder=FakeEmbedder()).store
    text = store.document_text(MAJ_ID)
    sections = report_sections(store.documents()[MAJ_ID], store.document_chunks(MAJ_ID))
    assert [text[s.start : s.end] for s in sections] == [
        "Diarienummer\n2017/ KS 0001 001\nKommunstyrelsen",
        "Anna Berg börjar som ekonomichef den 1 juni. Hon kommer från Nacka kommun.",
        "Simhallen stänger i juli & augusti för renovering.\n\nBadet öppnar igen i september.",
        "Rekryteringen av en biträdande ekonomichef pågår.",
    ]
    assert store.document_text("finns-inte.txt") == "" and store.document_chunks("finns-inte.txt") == []
