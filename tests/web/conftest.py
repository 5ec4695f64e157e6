"""Shared by the browser tests (test_browser.py, test_accessibility.py) and the offline test: the real
model and a real index of the five reports, `python app.py` servers as in production, a static
intranet site, nginx, headless Chromium (Debian's, never a downloaded build) and axe-core (npm,
installed by scripts/setup.sh --test)."""

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

ROOT = Path(__file__).resolve().parents[2]
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
NO_LLM = "http://127.0.0.1:9/v1"  # the discard port: no language-model server answers there


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
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.index.build import build_index

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
    """Both apps start at once (each loads the model); the direct one allows the static site to embed it,
    and offers the language model to its users, whose server is not running."""
    logs = tmp_path_factory.mktemp("logs")
    direct = Server(
        real_index,
        logs / "direct.log",
        frame_ancestors=f"'self' {site.origin}",
        feedback_log=str(logs / "feedback-direct.jsonl"),
        client_generators="openai",
        llm_base_url=NO_LLM,
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


@pytest.fixture(scope="module")  # Playwright's loop ends with the module, so later asyncio.run() works
def browser():
    _require(CHROMIUM, "Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 360, "height": 780}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def open_page(browser, **options):
    """A fresh context (Swedish locale) and page that records every request and page error."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(**{"locale": "sv-SE", "viewport": {"width": 1180, "height": 1000}, **options})
    page = context.new_page()
    page.requested = []
    page.errors = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return context, page


@pytest.fixture
def page(browser):
    context, page = open_page(browser)
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


def shot(page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def read_jsonl(path: Path) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]




AXE = Settings.from_env().cache_dir / "npm" / "node_modules" / "axe-core" / "axe.min.js"
WCAG21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, one line each (empty: none)."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE}: run scripts/setup.sh --test (npm install axe-core@4.14.1).")
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(content=AXE.read_text())
    found = page.evaluate(
        """async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations
            .map(v => `${v.id} (${v.impact}): ` + v.nodes.slice(0, 3).map(n => n.target.join(' ')
              + ' – ' + (n.failureSummary || '').replace(/\\s+/g, ' ').slice(0, 160)).join(' | '))""",
        WCAG21_AA,
    )
    return list(found)


def tab_to(page, selector: str, *, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (or Shift+Tab) until the focused element matches `selector`, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"the keyboard never reached {selector}")


def choose_by_keyboard(page, dropdown: str, typed: str, choice: str, *, backwards: bool = False) -> None:
    """Tab to a dropdown, type to filter it, arrow down to `choice` and take it with Enter, as a keyboard
    user would. Each key waits for the list to show what the previous one did: a key pressed before
    the list has filtered lands on the unfiltered list (CI once chose "Alla år" that way)."""
    tab_to(page, f"{dropdown} input", backwards=backwards)
    page.keyboard.type(typed)
    options = page.locator(f"{dropdown} [role=option]")
    page.wait_for_function(
        """([sel, typed]) => { const o = [...document.querySelectorAll(sel)];
             return o.length > 0 && o.every(e => e.getAttribute('aria-label').toLowerCase().includes(typed)); }""",
        arg=[f"{dropdown} [role=option]", typed.lower()],
        timeout=5_000,
    )
    for _ in range(options.count()):
        page.keyboard.press("ArrowDown")
        if options.and_(page.locator(".active")).get_attribute("aria-label", timeout=2_000) == choice:
            break
    page.keyboard.press("Enter")
    # Gradio handles each key after a render tick: an Escape pressed before Enter's turn came left the
    # choice uncommitted (1 run in 5), and leaving the box showed the old value again. A user sees the
    # choice taken before the next key: a token (multiselect) or the list closed on it (single).
    page.wait_for_function(
        """([sel, choice]) => { const box = document.querySelector(sel);
             const tokens = [...box.querySelectorAll('.token')].map(e => e.innerText);
             if (tokens.length) return tokens.some(t => t.includes(choice));
             return box.querySelectorAll('[role=option]').length === 0 && box.querySelector('input').value === choice; }""",
        arg=[dropdown, choice],
        timeout=5_000,
    )
    page.keyboard.press("Escape")


def focused(page, script: str = "e => e"):
    """Something about the focused element, e.g. focused(page, 'e => e.id')."""
    return page.evaluate(f"() => ({script})(document.activeElement)")


def wait_ready(page) -> None:
    page.get_by_label("Din fråga").wait_for(timeout=60_000)
    page.locator("#rag-chat .examples button").first.wait_for(timeout=60_000)
    # The page's load event fills the filters and the footer; until it returns, Gradio shows its
    # outputs at 20 % opacity (`.pending`), which on a busy machine axe once caught as low contrast.
    page.wait_for_function("() => !document.querySelector('.pending')", timeout=60_000)
    page.wait_for_timeout(200)  # Gradio's 150 ms opacity transition
