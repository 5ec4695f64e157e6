"""The app as a person uses it: headless Chromium, the real model, a real index of the five reports.

Two servers run `python app.py` (as in production): one reached directly and embedded cross-origin in
examples/host.html, one behind a real nginx under /fragor/. Screenshots go to test-artifacts/.
Needs Debian's chromium and nginx (the README's test command installs them); no browser download.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request

import pytest

from tests.web.conftest import (
    ANSWER_NAME,
    ANSWER_TIMEOUT_MS,
    OFF_TOPIC,
    QUESTION,
    Nginx,
    ask,
    check_cited_answer,
    only_loopback,
    read_jsonl,
    shot,
)

pytestmark = pytest.mark.browser


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
        assert response.headers["Content-Security-Policy"] == f"frame-ancestors 'self' {site.origin}; object-src 'none'; base-uri 'self'"
    page.goto(f"{site.origin}/host.html?app={app.url}&show=iframe")
    frame = page.frame_locator("iframe")
    check_cited_answer(ask(frame, QUESTION))
    page.locator("iframe[data-ready=ja]").wait_for(timeout=10_000)  # the chat told the page it is there
    assert page.locator("#iframe-hint").is_hidden()
    shot(page, "host-iframe.png")
    only_loopback(page)


def test_a_frame_the_app_does_not_allow_says_why_it_is_blank(page, servers, site, nginx):
    # the app behind nginx allows only its own origin (frame-ancestors 'self'); the static site is another
    page.goto(f"{site.origin}/host.html?app={nginx.origin}/fragor/&show=iframe")
    hint = page.locator("#iframe-hint")
    hint.wait_for(state="visible", timeout=30_000)
    assert f"({site.origin})" in hint.inner_text() and "RAG_FRAME_ANCESTORS" in hint.inner_text()
    assert page.locator("iframe").is_hidden()  # no broken box under the hint
    shot(page, "host-iframe-refused.png")


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
    feedback = servers["logs"] / "feedback-direct.jsonl"
    earlier = len(read_jsonl(feedback)) if feedback.exists() else 0  # other tests share this server
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
    records = read_jsonl(feedback)[earlier:]
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



def test_a_follow_up_question_is_read_in_the_conversation(page, servers):
    """Issue 15: the chat sends its own turns, and shows how the follow-up was read."""
    page.goto(servers["direct"].url)
    first = ask(page, "Vem är kommunens nya ekonomichef?")
    assert ANSWER_NAME in first.locator(".rag-text").inner_text()
    second = ask(page, "Var arbetade han tidigare?")
    shot(page, "follow-up.png")
    assert "Gagnefs kommun" in second.locator(".rag-text").inner_text()
    cited = second.locator("details.rag-card summary").first.inner_text()
    assert "Kommundirektörens rapport maj 2017" in cited and "2017/KS 0001 001" in cited  # 002_8f9c64b256dc6c50.txt
    read_as = second.locator(".rag-interpreted")
    assert read_as.is_visible() and read_as.inner_text().startswith("Tolkad som: ")
    assert "han" not in read_as.inner_text().removeprefix("Tolkad som: ").split()
    page.get_by_role("button", name="Rensa chatten").click()
    page.wait_for_function("document.querySelectorAll('.rag-answer').length === 0", timeout=10_000)
    again = ask(page, "Var arbetade han tidigare?")  # a new conversation: nothing to refer back to
    assert again.locator(".rag-interpreted").count() == 0


def test_api_docs_render_with_nothing_from_outside(page, servers, nginx):
    """/docs was a blank page offline (Swagger UI from a CDN) and /redoc pulled web fonts."""
    for base in (servers["direct"].url, f"{nginx.origin}/fragor/"):
        page.goto(base + "docs")
        page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
        assert "Frågor om kommundirektörens rapporter" in page.locator(".swagger-ui .info .title").inner_text()
        page.locator(".opblock-summary-path", has_text="/api/ask").first.wait_for()
        page.goto(base + "redoc")
        page.locator("h1").filter(has_text="Frågor om kommundirektörens rapporter").wait_for(timeout=30_000)
    only_loopback(page)
    assert [u for u in page.requested if "fonts" in u] == []


class _EchoHeaders(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_nginx_example_never_passes_on_the_browsers_user_header(tmp_path):
    """The example shipped the SSO header line commented out: a browser's own X-Remote-User went through."""
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    proxy = Nginx(tmp_path / "nginx", echo.server_address[1])
    try:
        request = urllib.request.Request(f"{proxy.origin}/fragor/api/health", headers={"X-Remote-User": "admin"})
        with urllib.request.urlopen(request) as response:
            seen = json.load(response)
        assert seen.get("x-remote-user", "") == ""  # nginx authenticated nobody: the header is empty
    finally:
        proxy.stop()
        echo.shutdown()
        echo.server_close()
