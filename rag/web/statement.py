"""Tillgänglighetsredogörelsen (the accessibility statement DOS-lagen asks for): static/tillganglighet.html
with the site's contact details and dates from settings (RAG_A11Y_*). A detail the site has not set is
said plainly to be missing: the public saw "[antal]" and "[datum]" before, which reads as a broken page."""

from __future__ import annotations

import html
import re
from pathlib import Path
from string import Template

from rag.settings import Settings
from rag.web.reports import MONTH_NAMES

STATIC = Path(__file__).parent / "static"
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def statement_page(settings: Settings) -> str:
    page = Template((STATIC / "tillganglighet.html").read_text(encoding="utf-8"))
    contact = settings.a11y_contact.strip()
    days = settings.a11y_reply_days.strip()
    return page.substitute(
        contact=f'<a href="mailto:{_e(contact)}">{_e(contact)}</a>' if contact
        else _unset("Webbplatsen har inte angett någon e-postadress ännu."),
        phone=_e(settings.a11y_phone.strip()) or _unset("Webbplatsen har inte angett något telefonnummer ännu."),
        office=_e(settings.a11y_office.strip()) or _unset("Webbplatsen har inte angett någon förvaltning ännu."),
        reply=f"Vi svarar normalt inom {_e(days)} arbetsdagar." if days
        else _unset("Webbplatsen har inte angett hur snabbt vi svarar."),
        assessed=f"Den senaste bedömningen gjordes den {swedish_date(settings.a11y_assessed)}."
        if settings.a11y_assessed.strip() else _unset("Webbplatsen har inte angett när tjänsten senast bedömdes."),
        updated=f"Redogörelsen uppdaterades senast den {swedish_date(settings.a11y_updated)}."
        if settings.a11y_updated.strip() else _unset("Webbplatsen har inte angett när redogörelsen senast uppdaterades."),
    )  # fmt: skip


def swedish_date(value: str) -> str:
    """'2026-11-30' as people write it ('30 november 2026'); anything else escaped as given."""
    match = _ISO_DATE.match(value.strip())
    if match and int(match.group(2)) in MONTH_NAMES and 1 <= int(match.group(3)) <= 31:
        return f"{int(match.group(3))} {MONTH_NAMES[int(match.group(2))]} {match.group(1)}"
    return _e(value.strip())


def _unset(sentence: str) -> str:
    return f'<span class="unset">{sentence}</span>'


def _e(value: str) -> str:
    return html.escape(value, quote=True)
