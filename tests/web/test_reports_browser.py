"""Rapporterna in a real Chromium: a source card's "Läs hela rapporten" opens the whole report at the
cited section, the list and the report pages pass axe (WCAG 2.1 AA), and in the web component on an
intranet page behind nginx the links lead to the app under its sub-path, not to the intranet's."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import ANSWER_NAME, QUESTION, ask, axe_violations, only_loopback, shot, wait_ready

pytestmark = pytest.mark.browser

ECONOMY_DOC = "002_8f9c64b256dc6c50.txt"  # "Torstein Tysklind ny ekonomichef"


def _open_first_card(answer):
    cite = answer.locator("a.rag-cite").first
    cite.click()
    card = answer.locator(cite.get_attribute("href"))
    card.locator("mark").wait_for(state="visible", timeout=5_000)
    return card


def _report_link(card):
    """The card's "Läs hela rapporten" link, the card opened again if the chat has re-rendered it."""
    link = card.locator("a.rag-report-link")
    assert link.count() == 1, card.inner_html()[-1500:]
    card.evaluate("d => { d.open = true; }")
    assert link.text_content() == "Läs hela rapporten: Torstein Tysklind ny ekonomichef"
    return link


def _follow(page, link) -> str | None:
    """Click the link as a user would; the target it had (None: same tab, as static/chat.js sets)."""
    target = link.get_attribute("target")
    if target is None:
        link.click()
    else:  # the rest of the test still runs; the caller asserts on the target
        page.goto(link.get_attribute("href"))
    return target


def test_a_source_card_opens_the_cited_section_of_the_whole_report(page, servers):
    app = servers["direct"].url
    page.goto(app)
    wait_ready(page)
    link = _report_link(_open_first_card(ask(page, QUESTION)))
    # On the app's own page the relative href already resolves to the app: chat.js leaves it as it is.
    href = link.evaluate("a => a.href")
    assert re.fullmatch(re.escape(f"{app}rapporter/{ECONOMY_DOC}") + r"#avsnitt-\d+", href), href
    target = _follow(page, link)
    page.wait_for_url(re.compile(re.escape(ECONOMY_DOC) + r"#avsnitt-\d+$"))
    anchor = page.url.rsplit("#", 1)[1]
    assert page.evaluate("document.querySelector(':target').id") == anchor
    assert ANSWER_NAME in page.locator(f"section[aria-labelledby='{anchor}']").inner_text()
    assert page.get_by_role("heading", level=1).inner_text() == "Kommundirektörens rapport maj 2017"
    assert page.evaluate("document.documentElement.lang") == "sv"
    assert axe_violations(page) == []
    shot(page, "reports-report.png", full_page=False)

    page.get_by_role("navigation", name="Tjänsten").get_by_role("link", name="Rapporterna").click()
    page.wait_for_url(f"{app}rapporter")
    rows = page.locator("tbody tr")
    assert rows.count() == 5
    assert rows.first.locator("td").all_inner_texts() == [
        "Kommundirektörens rapport maj 2017", "2017-05", "2017/KS 0001 001", "14",
    ]  # fmt: skip
    assert axe_violations(page) == []
    shot(page, "reports-list.png")
    page.get_by_role("link", name="Frågetjänsten").click()
    wait_ready(page)
    page.locator("#rag-footer").get_by_role("link", name="Rapporterna").click()
    page.wait_for_url(f"{app}rapporter")
    assert page.get_by_role("heading", level=1).inner_text() == "Rapporterna"
    only_loopback(page)
    assert page.errors == []
    assert target is None  # the report opens in the chat's tab, like the statement


def test_in_the_web_component_behind_nginx_the_report_links_lead_to_the_app(page, servers, nginx):
    page.goto(f"{nginx.origin}/intranet/host.html?app=/fragor/&show=component")
    component = page.locator("gradio-app")
    link = _report_link(_open_first_card(ask(component, QUESTION)))
    href = link.get_attribute("href")
    assert href.startswith(f"{nginx.origin}/fragor/rapporter/{ECONOMY_DOC}#avsnitt-"), href
    footer = component.locator("#rag-footer").get_by_role("link", name="Rapporterna")
    assert footer.get_attribute("href") == f"{nginx.origin}/fragor/rapporter"
    target = _follow(page, link)
    page.wait_for_url(re.compile(re.escape(f"{nginx.origin}/fragor/rapporter/{ECONOMY_DOC}") + r"#avsnitt-\d+$"))
    assert ANSWER_NAME in page.locator(":target").locator("xpath=..").inner_text()
    page.get_by_role("link", name="Rapporterna").first.click()
    page.wait_for_url(f"{nginx.origin}/fragor/rapporter")
    assert page.locator("tbody tr").count() == 5
    only_loopback(page)
    assert target is None
