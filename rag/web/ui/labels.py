"""Everything the UI says, in Swedish and English, and the language guess that picks one."""

from __future__ import annotations

import re

EXAMPLES = [
    "Vem är ny ekonomichef?",
    "Vad hände efter attentatet i Stockholm den 7 april?",
    "Hur förbättrades servicenivån per telefon och e-post?",
    "Vilka nya riktlinjer finns för bisysslor?",
]
NEAREST_SHOWN = 3
GENERATOR_LABELS = {"extractive": "Extraktiv (citat)", "openai": "Språkmodell (OpenAI-kompatibel)"}
DEFAULT_MARK = "standard"
LLM_GENERATORS = {"openai"}  # generators that need the language-model server (settings.llm_base_url)
ALL_YEARS = "Alla år"
MAX_CHIPS = 6  # report chips shown above the question box; more chosen reports are counted in the text
STATEMENT_LINK = "Tillgänglighetsredogörelse"
REPORTS_LINK = "Rapporterna"
READ_REPORT = "Läs hela rapporten"

# Gradio's own strings that its Swedish locale lacks (the status region announced "common.complete"),
# merged into its translations (gr.I18n). Strings Gradio hard-codes in English (aria-labels such as
# "Select example 1: …") are translated in static/chat.js.
GRADIO_SV = {
    "common": {"complete": "Klart", "error": "Fel", "loading": "Laddar", "clear": "Rensa"},
    "chatbot": {
        "complete": "Klart",
        "copy_message": "Kopiera meddelandet",
        "copied_message": "Meddelandet kopierat",
        "like": "Gilla",
        "dislike": "Ogilla",
        "conversation": "Samtal",
    },
    "chat_interface": {"conversation": "Samtal", "chatbot": "Samtal", "new_chat": "Nytt samtal"},
    "status": {"queue_position": "I kön: plats {position} av {size}"},
    "dropdown": {"options": "Alternativ"},
}

LABELS = {
    "sv": {
        "lang": "sv",
        "sources": "Källor",
        "nearest": "Närmaste passager – inget svar",
        "nearest_note": "Passagerna nedan liknar frågan mest men besvarar den inte.",
        "no_answer": "Jag hittar inget svar på det i rapporterna.",
        "undated": "odaterad",
        "dnr": "Dnr",
        "no_dnr": "saknas",
        "section": "Avsnitt",
        "source": "Källa",
        "thinking": "Söker i rapporterna …",
        "error": "Det gick inte att svara",
        "interpreted": "Tolkad som",
        "back": "Tillbaka till svaret",
        "scope": "Sökt endast i",
    },
    "en": {
        "lang": "en",
        "sources": "Sources",
        "nearest": "Closest passages – not an answer",
        "nearest_note": "The passages below are the most similar to the question but do not answer it.",
        "no_answer": "I can't find an answer to that in the reports.",
        "undated": "undated",
        "dnr": "Reg. no.",
        "no_dnr": "none",
        "section": "Section",
        "source": "Source",
        "thinking": "Searching the reports …",
        "error": "Could not answer",
        "interpreted": "Read as",
        "back": "Back to the answer",
        "scope": "Searched only in",
    },
}

_ENGLISH = {
    "what",
    "who",
    "when",
    "where",
    "which",
    "how",
    "why",
    "is",
    "are",
    "the",
    "does",
    "did",
    "was",
    "were",
    "many",
    "much",
    "new",
    "of",
    "in",
    "for",
    "about",
}
_SWEDISH = {
    "vad",
    "vem",
    "när",
    "var",
    "vilka",
    "vilken",
    "hur",
    "varför",
    "är",
    "och",
    "som",
    "det",
    "den",
    "på",
    "om",
    "för",
    "med",
    "ny",
    "nya",
    "många",
    "mycket",
    "finns",
}


def language(question: str) -> str:
    """'en' when the question reads as English, else 'sv' (the default)."""
    words = re.findall(r"[a-zåäöé]+", question.lower())
    english = sum(w in _ENGLISH for w in words)
    swedish = sum(w in _SWEDISH for w in words) + 2 * bool(re.search(r"[åäö]", question.lower()))
    return "en" if english > swedish else "sv"
