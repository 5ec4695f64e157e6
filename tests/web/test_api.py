"""The JSON API, access control and headers, and the UI's HTML and handlers, with the fast FakeEmbedder.

Every bad input must come back as a 4xx with a readable `detail`, never a 500.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.answering.generators.extractive import ExtractiveGenerator
from rag.errors import ConfigError
from rag.index.build import build_index
from rag.pipeline import Assistant
from rag.settings import Settings
from rag.web import feedback
from rag.web.app import create_app
from rag.web.auth import check_password, hash_password, load_users
from rag.web.ui import handlers, labels, render
from tests.fakes import FakeEmbedder

DATA = Path(__file__).resolve().parents[2] / "data"
ECONOMY_DOC = "002_8f9c64b256dc6c50.txt"  # "Torstein Tysklind ny ekonomichef"


def _settings(root: Path, **extra) -> Settings:
    given = {
        "data_dir": DATA,
        "index_dir": root / "index",
        "cache_dir": root / "cache",
        "feedback_log": root / "feedback.jsonl",
        **extra,
    }
    return Settings(**given)


def _app(settings: Settings):
    return create_app(settings, Assistant(settings, embedder=FakeEmbedder()))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One fake index of the five reports, copied by the fixtures that need their own."""
    root = tmp_path_factory.mktemp("api")
    build_index(_settings(root), FakeEmbedder(), progress=False)
    return root


@pytest.fixture(scope="module")
def client(built) -> TestClient:
    settings = _settings(built, frame_ancestors="'self' https://intranet.example")
    return TestClient(_app(settings))


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- endpoints -----------------------------------------------------------------------------------


def test_health_reports_index_model_and_counts(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["index_version"].startswith("v-")
    assert body["documents"] == 5 and body["chunks"] > 5
    assert body["model"] and "extractive" in body["generators"]


def test_documents_lists_the_reports(client):
    docs = client.get("/api/documents").json()
    assert len(docs) == 5
    economy = next(d for d in docs if d["id"] == ECONOMY_DOC)
    assert economy["title"] == "Kommundirektörens rapport maj 2017"
    assert economy["date"] == "2017-05" and economy["diarienummer"] == "2017/KS 0001 001"
    assert "Torstein Tysklind ny ekonomichef" in economy["sections"]


def test_ask_returns_a_cited_answer(client):
    response = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"})
    assert response.status_code == 200
    body = response.json()
    assert body["answered"] is True and "[1]" in body["answer"]
    citation = body["citations"][0]
    assert "Torstein Tysklind" in citation["quote"]
    assert citation["doc_id"] == ECONOMY_DOC and citation["n"] == 1
    passage = citation["text"]
    assert (
        passage[citation["start"] - citation["passage_start"] : citation["end"] - citation["passage_start"]]
        == citation["quote"]
    )


def test_ask_respects_filters(client):
    only = "003_52fda963314daba6.txt"
    body = client.post(
        "/api/ask", json={"question": "Vem är ny ekonomichef?", "k": 10, "filters": {"doc_ids": [only]}}
    ).json()
    assert {p["doc_id"] for p in body["passages"]} == {only}
    body = client.post(
        "/api/ask",
        json={"question": "Ekonomisk rapport", "filters": {"date_from": "2014", "date_to": "2014"}},
    ).json()
    assert body["passages"] and all(p["date"].startswith("2014") for p in body["passages"])


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"question": ""}, "Skriv en fråga"),
        ({"question": "   \n\t "}, "Skriv en fråga"),
        ({"question": "x" * 100_000}, "för lång"),
        ({"question": "ord " * 700}, "för lång"),
        ({"question": 123}, "question"),
        ({"question": None}, "question"),
        ({"question": ["Vem?"]}, "question"),
        ({}, "question"),
        ({"question": "Vem?", "k": "many"}, "k"),
        ({"question": "Vem?", "k": 0}, "k"),
        ({"question": "Vem?", "k": 10_000}, "k"),
        ({"question": "Vem?", "filters": "2017"}, "filters"),
        ({"question": "Vem?", "filters": {"year": "2017"}}, "filters.year"),
        ({"question": "Vem?", "filters": {"date_from": "maj 2017"}}, "filters.date_from"),
        ({"question": "Vem?", "filters": {"date_to": "2017-5-1"}}, "filters.date_to"),
        ({"question": "Vem?", "filters": {"date_from": "2017-99-99"}}, "not a real ISO date"),
        ({"question": "Vem?", "filters": {"date_to": "2017-02-30"}}, "not a real ISO date"),
        ({"question": "Vem?", "filters": {"date_to": "2017-13"}}, "not a real ISO date"),
        ({"question": "Vem?", "filters": {"doc_ids": "002"}}, "filters.doc_ids"),
        ({"question": "Vem?", "filters": {"doc_ids": ["nope.txt"]}}, "nope.txt"),
        ({"question": "Vem?", "generator": "gpt-17"}, "gpt-17"),
        ({"question": "Vem?", "colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_clear_4xx(client, payload, expected):
    response = client.post("/api/ask", json=payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and expected in detail


def test_malformed_bodies_are_4xx(client):
    assert (
        client.post(
            "/api/ask", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/api/ask", content=b"question=hej").status_code == 422
    assert client.post("/api/ask", json=["Vem?"]).status_code == 422
    huge = json.dumps({"question": "a" * 2_000_000})
    response = client.post("/api/ask", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "För stor" in response.json()["detail"]
    assert client.get("/api/ask").status_code in (404, 405)


def test_concurrent_requests_share_one_assistant(built):
    # one client sending 8 at once: its share of the answer line (RAG_API_CLIENT_LIMIT) raised to 8
    client = TestClient(_app(_settings(built, api_client_limit=8)))
    questions = ["Vem är ny ekonomichef?", "Vad hände i Stockholm den 7 april?", "Bisysslor"] * 4
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda q: client.post("/api/ask", json={"question": q}).status_code, questions))
    assert codes == [200] * len(questions)


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/ask", "/api/documents", "/api/health"} <= set(paths)


def test_ui_and_gradio_web_component_script_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    script = client.get("/gradio.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for asset in re.findall(r'"(assets/index-[\w-]+\.(?:js|css))"', script.text):
        assert client.get("/" + asset).status_code == 200
    assert len(re.findall(r'"(assets/index-[\w-]+\.(?:js|css))"', script.text)) == 2
    assert "http" not in script.text.replace("https://", "").split("\n", 1)[1]  # no outside address


def test_gradio_gets_the_swedish_strings_its_locale_lacks(client):
    """The status region announced the raw key "common.complete" (missing from Gradio's Swedish)."""
    translations = client.get("/config").json()["i18n_translations"]["sv"]
    assert translations["common"]["complete"] == "Klart"
    assert translations["chatbot"]["conversation"] == "Samtal"


# -- headers and access --------------------------------------------------------------------------


def test_frame_ancestors_header_everywhere(client):
    for path in ("/", "/api/health", "/gradio.js"):
        csp = client.get(path).headers["content-security-policy"]
        assert csp == "frame-ancestors 'self' https://intranet.example; object-src 'none'; base-uri 'self'"
    for path in ("/docs", "/redoc"):  # their own policy (nothing from outside), and frame-ancestors
        csp = client.get(path).headers["content-security-policy"]
        assert csp.startswith("default-src 'self'; img-src 'self' data:;") and "cdn" not in csp
        assert csp.endswith("; frame-ancestors 'self' https://intranet.example; object-src 'none'; base-uri 'self'")
    assert "content-security-policy" in client.post("/api/ask", json={}).headers


def test_allowed_embedding_origin_gets_cors_for_the_web_component(client):
    allowed = client.get("/gradio.js", headers={"Origin": "https://intranet.example"})
    assert allowed.headers.get("access-control-allow-origin") == "https://intranet.example"
    other = client.get("/gradio.js", headers={"Origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_sso_header_required_for_api_and_ui(built):
    client = TestClient(_app(_settings(built, sso_header="X-Remote-User")))
    for path in ("/", "/api/health", "/api/documents", "/config", "/gradio.js"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert "SSO" in refused.json()["detail"]
    assert client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"}).status_code == 401
    signed_in = {"X-Remote-User": "anna.andersson"}
    assert client.get("/api/health", headers=signed_in).status_code == 200
    assert client.get("/", headers=signed_in).status_code == 200
    assert client.get("/api/health", headers={"X-Remote-User": "  "}).status_code == 401


def test_login_from_auth_file(built, tmp_path, monkeypatch):
    monkeypatch.delenv("RAG_USERS", raising=False)
    auth = tmp_path / "users.txt"
    auth.write_text(f"# users\nanna:{hash_password('hemligt')}\nbo:klartext\n")
    client = TestClient(_app(_settings(built, auth_file=auth)))
    refused = client.get("/api/health")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/api/health", headers=_basic("anna", "fel")).status_code == 401
    assert client.get("/api/health", headers=_basic("okänd", "hemligt")).status_code == 401
    assert client.get("/api/health", headers=_basic("anna", "hemligt")).status_code == 200
    assert client.get("/api/health", headers=_basic("bo", "klartext")).status_code == 200
    assert client.post("/login", data={"username": "anna", "password": "fel"}).status_code == 400
    assert client.post("/login", data={"username": "anna", "password": "hemligt"}).status_code == 200
    assert client.get("/api/health").status_code == 200  # the UI session cookie works for the API too


def test_users_from_environment_and_bad_files(tmp_path):
    settings = Settings(index_dir=tmp_path)
    users = load_users(settings, {"RAG_USERS": "anna:ett, bo:" + hash_password("två")})
    assert check_password(users, "anna", "ett") and check_password(users, "bo", "två")
    assert not check_password(users, "bo", "ett") and not check_password(users, "cilla", "ett")
    assert load_users(settings, {}) == {}
    with pytest.raises(ConfigError):
        load_users(settings, {"RAG_USERS": "utan-lösenord"})
    with pytest.raises(ConfigError):
        load_users(settings.replace(auth_file=tmp_path / "missing.txt"), {})


# -- index lifecycle -----------------------------------------------------------------------------


def test_rebuilt_index_is_picked_up_without_restart(tmp_path):
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    folder_a.mkdir(), folder_b.mkdir()
    for report in sorted(DATA.iterdir()):
        shutil.copy(report, folder_b if report.name == ECONOMY_DOC else folder_a)
    settings = _settings(tmp_path)
    build_index(settings, FakeEmbedder(), data=folder_a, progress=False)
    client = TestClient(_app(settings))
    first = client.get("/api/health").json()
    assert first["documents"] == 4
    before = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"}).json()
    assert all(p["doc_id"] != ECONOMY_DOC for p in before["passages"])

    build_index(settings, FakeEmbedder(), data=folder_b, progress=False)
    second = client.get("/api/health").json()
    assert second["index_version"] != first["index_version"] and second["documents"] == 1
    after = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"}).json()
    assert "Torstein Tysklind" in after["citations"][0]["quote"]
    assert [d["id"] for d in client.get("/api/documents").json()] == [ECONOMY_DOC]


def test_missing_index_is_503_with_instructions(tmp_path):
    client = TestClient(_app(_settings(tmp_path)))
    health = client.get("/api/health")
    assert health.status_code == 503 and "rag index" in health.json()["detail"]
    ask = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"})
    assert ask.status_code == 503 and "rag index" in ask.json()["detail"]
    assert client.get("/").status_code == 200  # the UI still loads and says what is wrong


# -- the UI's HTML and handlers (no browser) -----------------------------------------------------


def test_answer_html_escapes_report_and_question_text():
    hostile = (
        'Före <script>alert(1)</script> ![x](http://example.com/a.png) <img src=x onerror="alert(2)"> efter.'
    )
    citation = {
        "n": 1,
        "doc_id": "d",
        "title": "<b>Titel</b>",
        "date": "2017-05",
        "diarienummer": "1/KS",
        "section": "S",
        "text": hostile,
        "start": 100,
        "end": 110,
        "passage_start": 100,
        "passage_end": 100 + len(hostile),
        "quote": hostile[:10],
        "score": 1.0,
    }
    response = {
        "question": "<script>x</script>",
        "answer": hostile + " [1]",
        "answered": True,
        "citations": [citation],
        "passages": [],
        "notice": None,
    }
    html = render.answer_html(response, "abc")
    for raw in ("<script", "<img", "![x]", "](http", "<b>", "http://"):
        assert raw not in html
    assert '<a class="rag-cite" id="hanvisning-abc-1" href="#kalla-abc-1">' in html and 'id="kalla-abc-1"' in html
    assert '<a class="rag-back" href="#hanvisning-abc-1">Tillbaka till svaret' in html
    assert "<mark>Före &#60;scri</mark>" in html
    assert "<script" not in render.streaming_html("<script>", "q") and "<img" not in render.error_html("<img>", "q")


def test_abstention_shows_nearest_passages_marked_as_not_an_answer():
    passage = {
        "doc_id": "d",
        "title": "T",
        "date": None,
        "diarienummer": None,
        "section": "S",
        "text": "Text.",
    }
    response = {
        "question": "Vad kostar en pizza?",
        "answer": labels.LABELS["sv"]["no_answer"],
        "answered": False,
        "citations": [],
        "passages": [passage] * 5,
    }
    html = render.answer_html(response, "u")
    assert "Jag hittar inget svar på det i rapporterna." in html
    assert "Närmaste passager – inget svar" in html
    assert html.count('class="rag-card rag-card-nearest"') == 3
    assert "odaterad" in html and "<mark>" not in html
    english = render.answer_html({**response, "question": "What does a pizza cost?"}, "u")
    assert "Närmaste passager – inget svar" in english and "Closest" not in english  # the page stays Swedish


def test_language_guess():
    assert labels.language("Who is the new finance chief?") == "en"
    assert labels.language("Vem är ny ekonomichef?") == "sv"
    assert labels.language("") == "sv"


def test_ui_handler_streams_then_renders_answer_and_logs_feedback(built, tmp_path):
    settings = _settings(built, feedback_log=tmp_path / "fb" / "feedback.jsonl")
    assistant = Assistant(settings, embedder=FakeEmbedder())
    ask = handlers._ask_handler(assistant)
    steps = list(ask("Vem är ny ekonomichef?", [], [], [], labels.ALL_YEARS, "extractive", None))
    history, _, turns, copy_text = steps[-1]
    assert history[0] == {"role": "user", "content": "Vem är ny ekonomichef?"}
    assert "rag-pending" in steps[0][0][-1]["content"] and "<mark>" in history[-1]["content"]
    assert "Torstein Tysklind" in copy_text and "[1]" in copy_text
    feedback.FileFeedbackLog(settings.feedback_log).write(feedback.feedback_record(turns[0], "up", "Bra!", "anna"))
    record = json.loads(settings.feedback_log.read_text().splitlines()[0])
    assert record["rating"] == "up" and record["comment"] == "Bra!" and record["user"] == "anna"
    assert record["index_version"] == assistant.store.version and record["citations"][0]["n"] == 1
    assert record["question"] == "Vem är ny ekonomichef?" and record["timestamp"]


def test_ui_handler_shows_input_errors_in_the_chat(built):
    ask = handlers._ask_handler(Assistant(_settings(built), embedder=FakeEmbedder()))
    history, kept, _, _ = list(ask("x " * 3000, [], [], [], None, None, None))[-1]
    assert "rag-error" in history[-1]["content"] and "för lång" in history[-1]["content"]
    assert kept  # the question stays in the box to be shortened
    assert list(ask("   ", [], [], [], None, None, None))[-1][0] == []


def test_filter_choices_come_from_the_index(built):
    documents = Assistant(_settings(built), embedder=FakeEmbedder()).store.documents()
    reports = handlers.report_choices(documents)
    assert reports[0] == ("Kommundirektörens rapport maj 2017 (2017-05)", ECONOMY_DOC)
    assert reports[-1][0].endswith("(odaterad)")
    assert handlers.year_choices(documents) == [labels.ALL_YEARS, "2017", "2015", "2014"]
    assert handlers.to_filters([], labels.ALL_YEARS) is None
    assert handlers.to_filters([ECONOMY_DOC], "2017").date_from == "2017"


class StreamingGenerator(ExtractiveGenerator):
    """The extractive answer, handed out word by word like an LLM's."""

    name, streams = "streaming-test", True

    def stream(self, question, query_vector, hits, store):
        *_, answer = super().stream(question, query_vector, hits, store)
        for word in answer.text.split(" "):
            yield word + " "
        yield answer


def test_ui_shows_a_streaming_generator_progressively(built, monkeypatch):
    from importlib.metadata import EntryPoint

    from rag.answering import generators
    entry = EntryPoint("streaming-test", f"{__name__}:StreamingGenerator", generators.GROUP)
    installed = generators.available()
    monkeypatch.setattr(generators, "available", lambda: {**installed, "streaming-test": entry})
    settings = _settings(built, client_generators="streaming-test")
    ask = handlers._ask_handler(Assistant(settings, embedder=FakeEmbedder()))
    steps = [
        history[-1]["content"]
        for history, *_ in ask("Vem är ny ekonomichef?", [], [], [], None, "streaming-test", None)
    ]
    words = Assistant(settings, embedder=FakeEmbedder()).ask("Vem är ny ekonomichef?").text.split(" ")
    partial = [s for s in steps if "rag-pending" in s and words[0] in s]
    assert len(partial) >= len(words) - 1 and words[-2] not in partial[0] and words[-2] in partial[-1]
    assert "<mark>" in steps[-1] and "rag-pending" not in steps[-1]
    client = TestClient(_app(settings))
    body = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?", "generator": "streaming-test"})
    assert body.status_code == 200 and "Torstein Tysklind" in body.json()["answer"]
