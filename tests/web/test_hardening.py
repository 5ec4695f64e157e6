"""Issue 27 (hardening, round two), each at the level where it showed: the lockout under concurrent
guesses, the chat's error bubble, Gradio routes the app does not use, the embedded login cookie,
and the security headers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from rag.errors import IndexNotFoundError
from rag.settings import Settings
from rag.web import auth
from rag.web.auth import LoginGate
from rag.web.ui import handlers
from tests.web.test_api import _app, _basic, _settings, built  # noqa: F401  (built is a fixture)

# -- the lockout holds concurrently --------------------------------------------------------------


@pytest.fixture
def slow_hashes(monkeypatch):
    """Replaces the password check with one that records each call and takes `hold` (an Event) to finish."""
    calls: list[str] = []
    running = [0, 0]  # now, most at once
    hold = threading.Event()
    lock = threading.Lock()

    def check_password(users, user, password):
        with lock:
            calls.append(password)
            running[0] += 1
            running[1] = max(running)
        hold.wait(10)
        with lock:
            running[0] -= 1
        return users.get(user) == password

    monkeypatch.setattr(auth, "check_password", check_password)
    return calls, running, hold


def _in_parallel(gate: LoginGate, attempts: list[tuple[str, str, str]], hold: threading.Event, refused: int):
    """All attempts at once (each thread its own event loop, like separate requests); the hashes are
    held until `refused` attempts have come back without one, so every attempt is in flight together."""
    barrier = threading.Barrier(len(attempts))

    def attempt(args):
        barrier.wait()
        return asyncio.run(gate.check(*args))

    with ThreadPoolExecutor(len(attempts)) as pool:
        futures = [pool.submit(attempt, a) for a in attempts]
        deadline = time.monotonic() + 10
        while sum(f.done() for f in futures) < refused and time.monotonic() < deadline:
            time.sleep(0.01)
        hold.set()
        return [f.result() for f in futures]


def test_fifty_parallel_wrong_passwords_hash_five_times_then_the_right_one_is_locked(slow_hashes):
    """The count was taken after the hash: 50 guesses sent together all passed the lockout test."""
    calls, running, hold = slow_hashes
    gate = LoginGate({"anna": "hemligt"})
    attempts = [("anna", f"fel{i}", f"10.0.0.{i}") for i in range(50)]  # one address each: the user limit
    verdicts = _in_parallel(gate, attempts, hold, refused=50 - auth.MAX_FAILURES)
    assert len(calls) == auth.MAX_FAILURES and running[1] == auth.HASH_WORKERS
    assert not any(v.ok for v in verdicts)
    assert sum(v.busy and v.locked_for_s == auth.BUSY_RETRY_S for v in verdicts) == 50 - auth.MAX_FAILURES
    assert sum(v.locked_for_s == 0 for v in verdicts) == auth.MAX_FAILURES - 1  # 401: wrong password
    right = asyncio.run(gate.check("anna", "hemligt", "10.0.9.9"))
    assert not right.ok and right.locked_for_s == auth.LOCKOUT_S and len(calls) == auth.MAX_FAILURES
    assert right.message() == "För många misslyckade inloggningar. Försök igen om 15 minuter."


def test_a_flood_of_distinct_logins_queues_a_bounded_number_of_hashes(slow_hashes):
    """Many names from many addresses (each within its own limit) waited, unbounded, for the one worker."""
    calls, running, hold = slow_hashes
    gate = LoginGate({"anna": "hemligt"})
    attempts = [(f"namn{i}", "x", f"10.0.{i}.1") for i in range(50)]
    queued = auth.HASH_WORKERS + auth.MAX_WAITING
    verdicts = _in_parallel(gate, attempts, hold, refused=50 - queued)
    assert len(calls) == queued and running[1] == auth.HASH_WORKERS
    busy = [v for v in verdicts if v.busy]
    assert len(busy) == 50 - queued
    assert busy[0].message() == "För många inloggningsförsök pågår just nu. Försök igen om en stund."
    assert asyncio.run(gate.check("anna", "hemligt", "10.9.9.9")).ok  # the queue empties again


# -- the chat's error bubble ---------------------------------------------------------------------


class FailingAssistant:
    """Just enough of an Assistant for the ask handler: its answer raises `error`."""

    def __init__(self, error: Exception):
        self.settings, self.error = Settings(), error
        self.store = SimpleNamespace(version="v-1", documents=dict, chunk_count=0)

    def stream(self, *args, **kwargs):
        raise self.error


def _bubble(error: Exception) -> str:
    ask = handlers._ask_handler(FailingAssistant(error))
    history, kept, _, _ = list(ask("Vem är ny ekonomichef?", [], [], [], None, None, None))[-1]
    assert kept == "Vem är ny ekonomichef?"  # the question stays in the box to be asked again
    return history[-1]["content"]


def test_the_error_bubble_shows_the_public_message_without_server_paths():
    error = IndexNotFoundError("Inget index i /srv/hemlig-katalog/index – kör rag index först.")
    assert _bubble(error) == (
        '<div class="rag-answer rag-error" role="alert"><p><strong>Det gick inte att svara:</strong> '
        "Inget index i … – kör rag index först.</p></div>"
    )


def test_an_unexpected_error_shows_a_generic_swedish_message():
    bubble = _bubble(RuntimeError("[Errno 2] No such file: '/srv/hemlig-katalog/x.npy'"))
    assert "hemlig-katalog" not in bubble and "Errno" not in bubble
    assert handlers.UNEXPECTED_ERROR in bubble and "role=\"alert\"" in bubble


# -- Gradio routes the app does not use ----------------------------------------------------------


@pytest.fixture(scope="module")
def plain(built):  # noqa: F811
    return TestClient(_app(_settings(built)))


@pytest.fixture(scope="module")
def logged_in(built):  # noqa: F811
    """A client with a valid login, to show the refusals hold for everyone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAG_USERS", "anna:hemligt")
        client = TestClient(_app(_settings(built)))
    client.headers.update(_basic("anna", "hemligt"))
    assert client.post("/login", data={"username": "anna", "password": "hemligt"}).status_code == 200
    return client


UNUSED = [
    ("post", "/gradio_api/process_recording", "Den här funktionen finns inte i tjänsten."),
    ("post", "/gradio_api/component_server", "Den här funktionen finns inte i tjänsten."),
    ("post", "/gradio_api/stream/abc", "Den här funktionen finns inte i tjänsten."),
    ("get", "/gradio_api/proxy=http://127.0.0.1:9/x", "Den här funktionen finns inte i tjänsten."),
    ("post", "/gradio_api/vibe-edit", "Den här funktionen finns inte i tjänsten."),
    ("get", "/gradio_api/dev/reload", "Den här funktionen finns inte i tjänsten."),
    ("get", "/gradio_api/run-history/buckets", "Den här funktionen finns inte i tjänsten."),
    ("post", "/gradio_api/upload", "Uppladdning av filer stöds inte."),
    ("get", "/gradio_api/upload_progress?upload_id=x", "Uppladdning av filer stöds inte."),
]


@pytest.mark.parametrize(("method", "path", "detail"), UNUSED)
def test_gradio_routes_the_ui_does_not_use_are_refused_for_everyone(plain, logged_in, method, path, detail):
    """process_recording answered 400 (it parsed the body); dev/reload held the connection open."""
    for client in (plain, logged_in):
        response = getattr(client, method)(path, json={}) if method == "post" else client.get(path)
        assert (response.status_code, response.json()) == (403, {"detail": detail}), path


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/gradio_api/run/nope"), ("post", "/gradio_api/api/nope"), ("post", "/gradio_api/call/nope"),
     ("post", "/gradio_api/call/v2/nope"), ("get", "/gradio_api/call/nope/abc123")],
)  # fmt: skip
def test_an_unknown_gradio_api_name_is_404_not_500(plain, method, path):
    """Gradio answered POST /gradio_api/run/nope with a 500 and a traceback in the log."""
    response = plain.post(path, json={"data": []}) if method == "post" else plain.get(path)
    assert (response.status_code, response.json()) == (404, {"detail": "Okänd händelse (api_name)."})


def test_the_routes_the_ui_uses_still_answer(plain):
    assert plain.get("/gradio_api/info").json() == {"named_endpoints": {}, "unnamed_endpoints": {}}
    assert plain.get("/gradio_api/startup-events").status_code == 200
    assert plain.get("/config").status_code == 200


# -- the embedded login cookie -------------------------------------------------------------------


def test_an_embedded_login_cookie_with_samesite_none_is_always_secure(built, monkeypatch):  # noqa: F811
    """Gradio's access-token-unsecure-* cookie came out 'SameSite=None' without Secure: browsers drop it."""
    monkeypatch.setenv("RAG_USERS", "anna:hemligt")
    client = TestClient(_app(_settings(built, frame_ancestors="'self' https://intranet.example")))
    response = client.post("/login", data={"username": "anna", "password": "hemligt"})
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    attributes = [[part.strip().lower() for part in c.split(";")[1:]] for c in cookies]
    assert len(cookies) == 2 and all(a.count("samesite=none") == 1 for a in attributes), cookies
    assert all(a.count("secure") == 1 and "httponly" in a for a in attributes), cookies


# -- security headers ----------------------------------------------------------------------------

PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), midi=()"


@pytest.mark.parametrize("path", ["/", "/config", "/api/health", "/gradio.js", "/tillganglighet"])
def test_every_response_has_the_policies(built, path):  # noqa: F811
    """Only frame-ancestors, nosniff and the referrer policy were set."""
    client = TestClient(_app(_settings(built, frame_ancestors="'self' https://intranet.example")))
    headers = client.get(path).headers
    assert headers["content-security-policy"] == (
        "frame-ancestors 'self' https://intranet.example; object-src 'none'; base-uri 'self'"
    )
    assert headers["permissions-policy"] == PERMISSIONS
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "strict-transport-security" not in headers  # plain http: the browser would ignore it anyway


def test_hsts_only_when_the_browser_came_over_https(built):  # noqa: F811
    forwarded = {"X-Forwarded-Proto": "https"}
    trusted = TestClient(_app(_settings(built, trusted_proxies="testclient")))
    assert trusted.get("/api/health", headers=forwarded).headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in trusted.get("/api/health").headers
    untrusted = TestClient(_app(_settings(built)))  # a forged X-Forwarded-Proto from anyone else
    assert "strict-transport-security" not in untrusted.get("/api/health", headers=forwarded).headers


# -- backpressure (issue 27.1) -------------------------------------------------------------------


def _occupied(gate):
    """A thread holding `gate`'s one worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: gate.run(lambda: (started.set(), release.wait(10))))
    holder.start()
    assert started.wait(5)
    return release, holder


def test_the_answer_gate_refuses_at_once_beyond_its_line():
    from rag.errors import BusyError
    from rag.web.routes import AnswerGate

    gate = AnswerGate(workers=1, waiting=0, wait_s=5)
    release, holder = _occupied(gate)
    began = time.monotonic()
    with pytest.raises(BusyError) as refused:
        gate.run(lambda: "andra")
    assert time.monotonic() - began < 1.0  # at once, not after wait_s
    assert refused.value.retry_after_s == 5
    assert str(refused.value) == "Tjänsten är upptagen just nu. Försök igen om några sekunder."
    release.set()
    holder.join(5)
    assert gate.run(lambda: "tredje") == "tredje"  # the line is free again


def test_one_client_holds_at_most_its_share_of_the_line():
    from rag.errors import BusyError
    from rag.web.routes import AnswerGate

    gate = AnswerGate(workers=1, waiting=4, wait_s=5, per_client=1)
    release, started = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: gate.run(lambda: (started.set(), release.wait(10)), "10.0.0.1"))
    holder.start()
    assert started.wait(5)
    with pytest.raises(BusyError):
        gate.run(lambda: "mer", "10.0.0.1")  # the flooding client's second place: refused at once
    other = []
    waiter = threading.Thread(target=lambda: other.append(gate.run(lambda: "annan", "10.9.9.9")))
    waiter.start()  # another client still gets in line, and its answer once the worker is free
    release.set()
    holder.join(5), waiter.join(5)
    assert other == ["annan"] and gate.run(lambda: "igen", "10.0.0.1") == "igen"


def test_a_question_in_line_gives_up_after_the_wait():
    from rag.errors import BusyError
    from rag.web.routes import AnswerGate

    gate = AnswerGate(workers=1, waiting=1, wait_s=0.05)
    release, holder = _occupied(gate)
    with pytest.raises(BusyError):
        gate.run(lambda: "för sent")  # admitted, but no worker came free within wait_s
    release.set()
    holder.join(5)


def test_a_full_line_is_a_503_with_retry_after_and_a_swedish_message(built, monkeypatch):  # noqa: F811
    from rag.pipeline import Assistant
    from rag.web.app import create_app
    from tests.fakes import FakeEmbedder

    settings = _settings(built, concurrency_limit=1, api_queue_limit=0)
    assistant = Assistant(settings, embedder=FakeEmbedder())
    release, started = threading.Event(), threading.Event()
    real_ask = assistant.ask

    def slow_ask(*args, **kwargs):
        started.set()
        release.wait(10)
        return real_ask(*args, **kwargs)

    monkeypatch.setattr(assistant, "ask", slow_ask)
    client = TestClient(create_app(settings, assistant))
    first = []
    ask = {"question": "Vem är ny ekonomichef?"}
    worker = threading.Thread(target=lambda: first.append(client.post("/api/ask", json=ask)))
    worker.start()
    assert started.wait(10)
    busy = client.post("/api/ask", json=ask)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert busy.json() == {"detail": "Tjänsten är upptagen just nu. Försök igen om några sekunder.",
                           "error": "BusyError"}
    assert client.get("/api/health").status_code == 200  # health is not behind the line
    release.set()
    worker.join(10)
    assert first[0].status_code == 200
