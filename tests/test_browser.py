"""The app as a person uses it: headless Chromium, the real model, a real index of the five reports.

Two servers run `python app.py` (as in production): one reached directly and embedded cross-origin in
examples/host.html, one behind a real nginx under /fragor/. Screenshots go to test-artifacts/.
Needs Debian's chromium and nginx (the README's test command installs them); no browser download.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rag.settings import Settings

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
INSTALL_HINT = (
    "run the README's test command, which installs Debian's chromium and nginx "
    "(apt-get install -y chromium chromium-driver nginx)"
)
QUESTION = "Vem är ny ekonomichef?"
ANSWER_NAME = "Torstein Tysklind"
OFF_TOPIC = "Vad kostar en pizza på månen?"
ANSWER_TIMEOUT_MS = 120_000


# -- infrastructure ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(path: str, what: str) -> str:
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if not found:
        pytest.fail(f"{what} is missing: {INSTALL_HINT}.")
    return found


@pytest.fixture(scope="session")
def real_index(tmp_path_factory) -> Path:
    """The five reports indexed with the real model, in a tmp folder (never the project's index/).

    Starts from a copy of the project's live index when there is one and brings it up to date: that
    costs nothing when it matches the reports and model, and only the changed text otherwise.
    """
    from rag.embed import SentenceTransformerEmbedder
    from rag.index import build_index

    folder = tmp_path_factory.mktemp("real") / "index"
    with contextlib.suppress(OSError):
        live = (ROOT / "index" / "CURRENT").read_text().strip()
        shutil.copytree(ROOT / "index" / live, folder / live)
        (folder / "CURRENT").write_text(live + "\n")
    settings = Settings.from_env(data_dir=DATA, index_dir=folder)
    build_index(settings, SentenceTransformerEmbedder(settings), data=DATA, progress=False)
    return folder


class Server:
    """`python app.py` in a subprocess, configured through RAG_* variables."""

    def __init__(self, index: Path, log: Path, **settings: str):
        self.port = _free_port()
        self.log = log
        env = {
            **os.environ,
            "RAG_INDEX_DIR": str(index),
            "RAG_HOST": "127.0.0.1",
            "RAG_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            **{f"RAG_{k.upper()}": v for k, v in settings.items()},
        }
        for name in ("RAG_SSO_HEADER", "RAG_AUTH_FILE", "RAG_USERS", "RAG_MOUNT_PATH"):
            if name.lower()[4:] not in settings:
                env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait(self, timeout: float = 300) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the app exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "api/health", timeout=5) as r,
            ):
                if json.load(r)["status"] == "ok":
                    return self
            time.sleep(1)
        pytest.fail(f"the app did not start within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StaticSite:
    """The intranet: a tiny static server for examples/ on its own origin."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Nginx:
    """Debian's nginx with scripts/nginx-test.conf: /intranet/ = examples/, /fragor/ = the app."""

    def __init__(self, folder: Path, app_port: int):
        binary = _require("nginx", "nginx")
        self.port = _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = (ROOT / "scripts" / "nginx-test.conf").read_text()
        for key, value in {
            "@TMP@": folder,
            "@PORT@": self.port,
            "@APP_PORT@": app_port,
            "@EXAMPLES@": ROOT / "examples",
        }.items():
            conf = conf.replace(key, str(value))
        (folder / "nginx.conf").write_text(conf)
        self.log = folder / "nginx.out"
        self.process = subprocess.Popen(
            [binary, "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.origin = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"nginx exited: {self.log.read_text()} {(folder / 'error.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.2)
        pytest.fail("nginx did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def site():
    site = StaticSite(ROOT / "examples")
    yield site
    site.stop()


@pytest.fixture(scope="session")
def servers(real_index, site, tmp_path_factory):
    """Both apps start at once (each loads the model); the direct one allows the static site to embed it."""
    logs = tmp_path_factory.mktemp("logs")
    direct = Server(
        real_index,
        logs / "direct.log",
        frame_ancestors=f"'self' {site.origin}",
        feedback_log=str(logs / "feedback-direct.jsonl"),
    )
    proxied = Server(
        real_index,
        logs / "proxied.log",
        root_path="/fragor",
        abstain_threshold="0.7",
        feedback_log=str(logs / "feedback-proxied.jsonl"),
    )
    try:
        yield {"direct": direct.wait(), "proxied": proxied.wait(), "logs": logs}
    finally:
        direct.stop()
        proxied.stop()


@pytest.fixture(scope="session")
def nginx(servers, tmp_path_factory):
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), servers["proxied"].port)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def browser():
    _require(CHROMIUM, "Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1180, "height": 1000}, locale="sv-SE")
    page = context.new_page()
    page.requested = []
    page.errors = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()


# -- helpers -------------------------------------------------------------------------------------


def ask(scope, question: str):
    """Type a question in the labelled box, press Enter, wait for the finished answer; return it."""
    box = scope.get_by_label("Din fråga")
    box.wait_for(timeout=60_000)
    before = scope.locator(".rag-answer:not(.rag-pending)").count()
    box.fill(question)
    box.press("Enter")
    answers = scope.locator(".rag-answer:not(.rag-pending)")
    answers.nth(before).wait_for(timeout=ANSWER_TIMEOUT_MS)
    return answers.nth(before)


def check_cited_answer(answer) -> None:
    assert ANSWER_NAME in answer.locator(".rag-text").inner_text()
    cite = answer.locator("a.rag-cite").first
    assert "".join(cite.text_content().split()) == "[Källa1]"  # shown as [1]; "Källa" is for screen readers
    card = answer.locator(cite.get_attribute("href"))
    assert card.get_attribute("open") is None  # cards start closed
    cite.click()
    card.locator("mark").wait_for(state="visible", timeout=5_000)
    assert card.get_attribute("open") is not None
    assert ANSWER_NAME in card.locator("mark").inner_text()
    summary = card.locator("summary").inner_text()
    assert "Kommundirektörens rapport maj 2017" in summary and "2017/KS 0001 001" in summary
    assert "2017-05" in summary and "ekonomichef" in summary


def only_loopback(page) -> None:
    outside = [u for u in page.requested if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert outside == [], f"the page loaded something from outside the machine: {outside[:5]}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# -- tests ---------------------------------------------------------------------------------------


def test_web_component_on_another_origin_answers_with_a_highlighted_source(page, servers, site):
    app = servers["direct"]
    page.goto(f"{site.origin}/host.html?app={app.url}&show=component")
    check_cited_answer(ask(page.locator("gradio-app"), QUESTION))
    shot(page, "host-web-component.png")
    only_loopback(page)
    assert page.errors == []


def test_iframe_embedding_is_allowed_for_the_configured_origin(page, servers, site):
    app = servers["direct"]
    with urllib.request.urlopen(app.url) as response:
        assert response.headers["Content-Security-Policy"] == f"frame-ancestors 'self' {site.origin}"
    page.goto(f"{site.origin}/host.html?app={app.url}&show=iframe")
    frame = page.frame_locator("iframe")
    check_cited_answer(ask(frame, QUESTION))
    shot(page, "host-iframe.png")
    only_loopback(page)


def test_markup_in_a_question_is_shown_as_text_and_never_runs(page, servers):
    app = servers["direct"]
    probe = f"{app.url}xss-probe.png"
    hostile = (
        f'<img src="{probe}" onerror="window.__xss=1"> <script>window.__xss=2</script> '
        f"![bild]({probe}) <b>fet</b> {QUESTION}"
    )
    page.goto(app.url)
    ask(page, hostile)
    page.wait_for_timeout(500)
    user = page.locator(".message-row, .message").filter(has_text="window.__xss=1").first
    assert '<img src="' in user.inner_text() and "<script>" in user.inner_text()
    assert "![bild](" in user.inner_text() and "<b>fet</b>" in user.inner_text()
    assert page.evaluate("window.__xss") is None
    assert not [u for u in page.requested if "xss-probe" in u]
    assert page.errors == []
    shot(page, "markup-as-text.png")


def test_feedback_copy_and_clear(page, servers):
    app = servers["direct"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(app.url)
    ask(page, QUESTION)
    assert page.locator("[aria-label*='<']").count() == 0  # screen readers get text, not our HTML
    page.get_by_role("button", name="Kopiera svaret").click()
    page.wait_for_timeout(300)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert ANSWER_NAME in copied and "[1] Kommundirektörens rapport maj 2017" in copied

    page.locator("#rag-chat button[aria-label='Like'], #rag-chat button[aria-label='Gilla']").first.click()
    comment = page.get_by_label("Kommentar (valfritt)")
    comment.wait_for(timeout=10_000)
    comment.fill("Bra svar, <b>tack</b>!")
    page.get_by_role("button", name="Skicka kommentar").click()
    page.get_by_text("Tack för din återkoppling!").wait_for(timeout=10_000)
    records = _read_jsonl(servers["logs"] / "feedback-direct.jsonl")
    assert [r["rating"] for r in records] == ["up", "up"] and records[1][
        "comment"
    ] == "Bra svar, <b>tack</b>!"
    assert records[0]["id"] == records[1]["id"] and records[0]["question"] == QUESTION
    assert records[0]["index_version"].startswith("v-") and records[0]["citations"][0]["n"] == 1

    page.locator("#rag-clear").click()
    page.wait_for_function("document.querySelectorAll('.rag-answer').length === 0", timeout=10_000)


def test_narrow_window_of_360_pixels(browser, servers):
    context = browser.new_context(
        viewport={"width": 360, "height": 780},
        locale="sv-SE",
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    try:
        page.goto(servers["direct"].url)
        check_cited_answer(ask(page, QUESTION))
        assert page.evaluate("document.documentElement.scrollWidth") <= 362  # no sideways scrolling
        shot(page, "narrow-360px.png")
    finally:
        context.close()


def test_behind_nginx_under_a_sub_path(page, servers, nginx):
    with urllib.request.urlopen(f"{nginx.origin}/fragor/api/health") as response:
        assert json.load(response)["status"] == "ok"
    page.goto(f"{nginx.origin}/intranet/host.html?app=/fragor/&show=component")
    check_cited_answer(ask(page.locator("gradio-app"), QUESTION))
    shot(page, "nginx-web-component.png")
    app_requests = [u for u in page.requested if "/intranet/" not in u]
    assert app_requests and all(u.startswith(f"{nginx.origin}/fragor/") for u in app_requests), app_requests[
        :5
    ]
    only_loopback(page)


def test_abstention_behind_nginx_in_an_iframe(page, servers, nginx):
    page.goto(f"{nginx.origin}/intranet/host.html?app=/fragor/&show=iframe")
    frame = page.frame_locator("iframe")
    answer = ask(frame, OFF_TOPIC)
    assert "Jag hittar inget svar på det i rapporterna." in answer.inner_text()
    nearest = answer.locator(".rag-nearest")
    assert "Närmaste passager – inget svar" in nearest.locator("h3").text_content()
    assert nearest.locator("details.rag-card").count() >= 1 and answer.locator("mark").count() == 0
    nearest.locator("summary").first.click()
    shot(page, "nginx-iframe-abstention.png")


def test_start_page_offers_example_questions(page, servers):
    page.goto(servers["direct"].url)
    example = page.locator("#rag-chat").get_by_role("button", name=QUESTION)
    example.wait_for(timeout=60_000)
    shot(page, "start.png")
    assert page.get_by_role("heading", name="Frågor om kommundirektörens rapporter").is_visible()
    example.click()
    answer = page.locator(".rag-answer:not(.rag-pending)").first
    answer.wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert ANSWER_NAME in answer.inner_text()


def test_filters_by_report_and_year(page, servers):
    page.goto(servers["direct"].url)
    page.get_by_text("Avgränsa sökningen").click()
    year = page.get_by_label("År")
    year.click()
    page.get_by_role("option", name="2014").click()
    answer = ask(page, QUESTION)
    assert ANSWER_NAME not in answer.inner_text()  # that report is from 2017
    shot(page, "filters.png")


def _read_jsonl(path: Path) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
