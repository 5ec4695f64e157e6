"""Issue 18's web findings, each at the HTTP level where it showed (TestClient, the fast FakeEmbedder):
CORS with the login, the login cookie, password checks (off the event loop, cached, rate-limited, the
same cost for unknown users), size limits on streamed bodies, uploads, unknown Gradio events, the
feedback log's permissions, forwarded headers, server paths in errors, and which generators a
client may pick."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat

import pytest
from fastapi.testclient import TestClient

from rag.web import auth, feedback
from rag.web.auth import LoginGate, hash_password
from rag.web.middleware import MAX_BODY_BYTES
from rag.web.ui import handlers
from tests.web.test_api import _app, _basic, _settings, built  # noqa: F401  (built is a fixture)

EVIL = "https://evil.example"
INTRANET = "https://intranet.example"


@pytest.fixture(scope="module")
def plain(built):  # noqa: F811
    """The app as shipped: RAG_FRAME_ANCESTORS='self', no login."""
    return TestClient(_app(_settings(built)))


@pytest.fixture(scope="module")
def embedded(built):  # noqa: F811
    return TestClient(_app(_settings(built, frame_ancestors=f"'self' {INTRANET}")))


# -- CORS and the login cookie -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/config", "/", "/gradio_api/info", "/api/health", "/gradio.js", "/openapi.json"])
def test_a_foreign_origin_is_never_allowed_to_read(plain, embedded, path):
    """Gradio reflected any Origin with credentials when the Host was not localhost (behind a proxy)."""
    headers = {"Host": "intranet.example", "Origin": EVIL}
    for client in (plain, embedded):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert "access-control-allow-origin" not in response.headers, path
        assert "access-control-allow-credentials" not in response.headers, path
    preflight = plain.options(path, headers={**headers, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_the_configured_origin_is_allowed_on_the_ui_routes_too(embedded):
    for path in ("/config", "/gradio_api/info", "/gradio.js"):
        response = embedded.get(path, headers={"Host": "intranet.example", "Origin": INTRANET})
        assert response.headers["access-control-allow-origin"] == INTRANET, path
        assert response.headers["access-control-allow-credentials"] == "true", path


def test_a_post_from_a_foreign_site_is_refused(plain, embedded):
    body = {"question": "Vem är ny ekonomichef?"}
    refused = plain.post("/api/ask", json=body, headers={"Origin": EVIL})
    assert refused.status_code == 403 and refused.json()["detail"] == "Förfrågan kommer från en annan webbplats."
    assert plain.post("/api/ask", json=body, headers={"Origin": "http://testserver"}).status_code == 200
    assert embedded.post("/api/ask", json=body, headers={"Origin": INTRANET}).status_code == 200
    assert plain.post("/api/ask", json=body).status_code == 200  # curl and scripts send no Origin


def _login_cookies(client: TestClient) -> list[str]:
    response = client.post("/login", data={"username": "anna", "password": "hemligt"})
    assert response.status_code == 200
    return [v for k, v in response.headers.multi_items() if k == "set-cookie"]


def test_login_cookie_is_samesite_lax_unless_another_origin_embeds_the_app(built, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RAG_USERS", "anna:hemligt")
    own = _login_cookies(TestClient(_app(_settings(built))))
    assert len(own) == 2 and all(c.lower().endswith("samesite=lax") for c in own), own
    assert not any("samesite=none" in c.lower() for c in own)
    embedded = _login_cookies(TestClient(_app(_settings(built, frame_ancestors=f"'self' {INTRANET}"))))
    secure = next(c for c in embedded if c.startswith("access-token-") and "unsecure" not in c)
    assert secure.lower().endswith("samesite=none") and "secure" in secure.lower()


# -- password checks -----------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted(monkeypatch):
    """Every PBKDF2 run, by iteration count."""
    runs = []
    real = hashlib.pbkdf2_hmac

    def pbkdf2(name, password, salt, iterations, *rest):
        runs.append(iterations)
        return real(name, password, salt, 1 if iterations > 1000 else iterations, *rest)  # fast in tests

    monkeypatch.setattr(auth.hashlib, "pbkdf2_hmac", pbkdf2)
    return runs


def test_unknown_users_cost_the_same_as_known_ones(counted):
    users = {"anna": hash_password("hemligt")}
    counted.clear()
    assert not auth.check_password(users, "anna", "fel")
    assert not auth.check_password(users, "okänd", "fel")
    assert counted == [auth.PBKDF2_ITERATIONS, auth.PBKDF2_ITERATIONS]


def test_verified_credentials_are_cached_briefly(counted):
    clock = Clock()
    gate = LoginGate({"anna": hash_password("hemligt")}, clock=clock)
    counted.clear()
    for _ in range(3):
        assert asyncio.run(gate.check("anna", "hemligt", "10.0.0.1")).ok
    assert len(counted) == 1
    clock.now += auth.CACHE_TTL_S + 1
    assert asyncio.run(gate.check("anna", "hemligt", "10.0.0.1")).ok and len(counted) == 2
    assert not asyncio.run(gate.check("anna", "fel", "10.0.0.1")).ok and len(counted) == 3


def test_lockout_per_user_and_per_address_then_it_expires(counted):
    clock = Clock()
    gate = LoginGate({"anna": "hemligt", "bo": "bo-lösen"}, clock=clock)
    check = lambda user, password, client: asyncio.run(gate.check(user, password, client))
    verdicts = [check("anna", f"fel{i}", f"10.0.0.{i}") for i in range(auth.MAX_FAILURES)]  # a new address each time
    assert [v.ok for v in verdicts] == [False] * auth.MAX_FAILURES and verdicts[-1].locked_for_s == auth.LOCKOUT_S
    locked = check("anna", "hemligt", "10.0.9.9")  # the right password, but the user is locked
    assert not locked.ok and locked.message() == "För många misslyckade inloggningar. Försök igen om 15 minuter."
    assert check("bo", "bo-lösen", "10.0.9.9").ok  # another user is not
    for i in range(auth.MAX_FAILURES):  # one address guessing many names
        check(f"namn{i}", "x", "10.1.1.1")
    assert check("bo", "bo-lösen", "10.1.1.1").locked_for_s == auth.LOCKOUT_S
    clock.now += auth.LOCKOUT_S + 1
    assert check("anna", "hemligt", "10.0.9.9").ok and check("bo", "bo-lösen", "10.1.1.1").ok


def test_the_event_loop_keeps_running_while_a_password_is_hashed(monkeypatch):
    """The 600,000-iteration check ran on the event loop: every other request waited for it."""
    gate = LoginGate({"anna": hash_password("hemligt")})

    async def main():
        ticks = 0
        check = asyncio.ensure_future(gate.check("anna", "fel", "10.0.0.1"))
        while not check.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return ticks, check.result()

    ticks, verdict = asyncio.run(main())
    assert not verdict.ok and ticks > 1  # the loop ran other work while the hash was computed


def test_fifty_wrong_passwords_over_http_end_in_429(built, monkeypatch, counted):  # noqa: F811
    monkeypatch.setenv("RAG_USERS", "anna:" + hash_password("hemligt"))
    client = TestClient(_app(_settings(built)))
    codes = [client.get("/api/health", headers=_basic("anna", f"fel{i}")).status_code for i in range(50)]
    assert codes == [401] * (auth.MAX_FAILURES - 1) + [429] * (51 - auth.MAX_FAILURES)
    refused = client.get("/api/health", headers=_basic("anna", "hemligt"))
    assert refused.status_code == 429  # Retry-After: the lockout's remaining seconds (900 less the test's own time)
    assert auth.LOCKOUT_S - 60 < int(refused.headers["retry-after"]) <= auth.LOCKOUT_S
    assert refused.json()["detail"] == "För många misslyckade inloggningar. Försök igen om 15 minuter."
    ui = client.post("/login", data={"username": "anna", "password": "hemligt"})
    assert ui.status_code == 429 and "För många misslyckade inloggningar" in ui.json()["detail"]
    assert len(counted) <= auth.MAX_FAILURES + 1  # locked attempts are refused without hashing


# -- size limits, uploads, unknown events --------------------------------------------------------


def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path", ["/api/ask", "/gradio_api/queue/join", "/gradio_api/run/predict", "/login"])
def test_a_chunked_body_over_the_limit_is_413(plain, path):
    response = plain.post(path, content=_chunks(3 * MAX_BODY_BYTES), headers={"content-type": "application/json"})
    assert response.status_code == 413, (path, response.text[:200])
    assert response.json()["detail"] == f"För stor förfrågan (högst {MAX_BODY_BYTES} byte)."


def test_a_body_under_the_limit_still_arrives_whole_when_chunked(plain):
    body = b'{"question": "Vem \xc3\xa4r ny ekonomichef?"}'
    response = plain.post("/api/ask", content=iter([body[:7], body[7:]]), headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["answered"] is True


def test_uploads_are_refused(plain):
    response = plain.post("/gradio_api/upload", files={"files": ("a.txt", b"hej")})
    assert response.status_code == 403 and response.json()["detail"] == "Uppladdning av filer stöds inte."


@pytest.mark.parametrize("fn_index", [999, -1, "0", None, True])
def test_an_unknown_gradio_event_is_422_not_500(plain, fn_index):
    body = {"data": [], "fn_index": fn_index, "session_hash": "abc", "event_data": None, "trigger_id": None}
    for path in ("/gradio_api/queue/join", "/gradio_api/run/predict"):
        response = plain.post(path, json=body)
        assert response.status_code == 422, (path, fn_index, response.text[:200])
        assert response.json()["detail"] == "Okänd händelse (fn_index)."


def test_a_long_feedback_comment_is_refused_by_the_server(tmp_path):
    log = feedback.FileFeedbackLog(tmp_path / "fb" / "feedback.jsonl")
    turn = {"id": "t1", "index_version": "v-1", "response": {"question": "q", "answer": "a", "answered": True,
                                                             "citations": []}}  # fmt: skip
    on_comment = handlers._on_comment(log)
    pending, row, _, message = on_comment({"turn": turn, "rating": "up"}, "x" * 5_000_000, None)
    assert message == "Kommentaren är för lång (5000000 tecken); korta den till högst 2000."
    assert pending and row["visible"] is True and not log.path.exists()
    assert on_comment({"turn": turn, "rating": "up"}, "Bra", None)[3] == "Tack för din återkoppling!"
    assert log.path.exists()


# -- the feedback log's permissions --------------------------------------------------------------


def test_feedback_log_is_readable_by_the_server_user_only(tmp_path):
    log = feedback.open_feedback_log(_settings(tmp_path, feedback_log=tmp_path / "fb" / "feedback.jsonl"))
    log.write({"id": "1", "comment": "Anna Andersson tyckte illa om svaret"})
    assert stat.S_IMODE(os.stat(tmp_path / "fb").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "fb" / "feedback.jsonl").st_mode) == 0o600
    old = tmp_path / "old" / "feedback.jsonl"  # a log an earlier version left world-readable
    old.parent.mkdir(mode=0o755)
    old.write_text("")
    old.chmod(0o644)
    feedback.FileFeedbackLog(old).write({"id": "2"})
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o600 and stat.S_IMODE(os.stat(old.parent).st_mode) == 0o700


def test_an_unknown_feedback_store_is_a_config_error(tmp_path):
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="feedback store 'nope'"):
        feedback.open_feedback_log(_settings(tmp_path, feedback_store="nope"))


# -- forwarded headers and Host ------------------------------------------------------------------


def test_forwarded_host_is_believed_only_from_a_trusted_proxy(built):  # noqa: F811
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    untrusted = TestClient(_app(_settings(built)))  # the test client's address is "testclient"
    assert "evil.example" not in untrusted.get("/config", headers=forged).json()["root"]
    trusted = TestClient(_app(_settings(built, trusted_proxies="testclient")))
    assert trusted.get("/config", headers=forged).json()["root"].startswith("https://evil.example")


def test_only_allowed_host_names_are_served(built):  # noqa: F811
    client = TestClient(_app(_settings(built, allowed_hosts="intranet.tyreso.se")))
    assert client.get("/", headers={"Host": "intranet.tyreso.se"}).status_code == 200
    assert client.get("/", headers={"Host": "intranet.tyreso.se:443"}).status_code == 200
    refused = client.get("/config", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and refused.json()["detail"] == "Okänt värdnamn (Host)."


# -- errors and generators -----------------------------------------------------------------------


def test_503_says_what_to_do_without_server_paths(tmp_path):
    client = TestClient(_app(_settings(tmp_path / "srv" / "hemlig-katalog")))
    for response in (client.get("/api/health"), client.post("/api/ask", json={"question": "Vem?"})):
        detail = response.json()["detail"]
        assert response.status_code == 503 and "rag index" in detail
        assert "hemlig-katalog" not in detail and str(tmp_path) not in detail


def test_clients_may_pick_only_the_listed_generators(built):  # noqa: F811
    client = TestClient(_app(_settings(built)))
    assert client.get("/api/health").json()["generators"] == ["extractive"]
    refused = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?", "generator": "openai"})
    assert refused.status_code == 422 and "otillåten svarsmotor 'openai'" in refused.json()["detail"]
    listed = TestClient(_app(_settings(built, client_generators="openai")))
    assert listed.get("/api/health").json()["generators"] == ["extractive", "openai"]


# -- docs and the statement ----------------------------------------------------------------------


def test_api_docs_load_nothing_from_outside(plain):
    for path in ("/docs", "/redoc"):
        page = plain.get(path)
        assert page.status_code == 200 and "http" not in page.text.replace("http://testserver", ""), path
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        assert plain.get(f"/docs-assets/{asset}").status_code == 200, asset
    assert "fonts.googleapis" not in plain.get("/redoc").text
    assert "cdn.redoc.ly" not in plain.get("/docs-assets/redoc.standalone.js").text


def test_accessibility_statement_is_served_in_swedish(plain):
    page = plain.get("/tillganglighet")
    assert page.status_code == 200 and '<html lang="sv">' in page.text
    assert "<h1>Tillgänglighetsredogörelse</h1>" in page.text and "Digg" in page.text
    assert "http" not in page.text

