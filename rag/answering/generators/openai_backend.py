"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (llama.cpp, vLLM, OpenAI...).

The model sees the top passages (prompt.py), its text is streamed as it arrives, and the final answer
is the checked one (citations.py). Whatever goes wrong -- no server, a timeout, an HTTP error, an
empty reply, nothing supported -- the user gets the extractive answer with a notice, never an error.

Plain httpx rather than the `openai` client: no retries (a local server that is down stays down), one
deadline for the whole reply, and no Authorization header at all when no key is configured.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Generator, Iterator
from dataclasses import replace

from rag.answering.extractive import NO_ANSWER, extract_answer
from rag.answering.generators.citations import check_answer, split_answer
from rag.answering.generators.prompt import NO_ANSWER_EN, build_prompt
from rag.errors import GeneratorError
from rag.settings import Settings
from rag.types import Answer

log = logging.getLogger(__name__)

FALLBACK_NOTICE = "Språkmodellen kunde inte svara; visar citat ur rapporterna."
MAX_ANSWER_TOKENS = 160  # three short sentences with markers; bounds the wait at ~8 tokens/s
_REFUSAL = re.compile(r"hittar (inget|inte något|inte ett) svar|can'?t find an answer|cannot find an answer|"
                      r"could not find an answer|no answer to that", re.IGNORECASE)  # fmt: skip


class OpenAIGenerator:
    name = "openai"
    streams = True  # a local server needs no key; one in settings.llm_api_key_env is sent when present

    def __init__(self, settings: Settings, embedder):
        self.settings = settings
        self.embedder = embedder  # the assistant's: the citation check embeds answer sentences with it

    def stream(self, question, query_vector, hits, store) -> Iterator[str | Answer]:
        settings = self.settings
        extractive = extract_answer(question, query_vector, hits, store, settings)  # ~1 ms, no model call

        def fallback(reason: str, dropped: int = 0) -> Answer:
            log.warning("LLM answer replaced by the extractive one: %s", reason)
            return replace(extractive, generator="extractive (fallback)", notice=FALLBACK_NOTICE,
                           dropped_sentences=dropped, checked_sentences=dropped)  # fmt: skip

        if not hits:  # nothing to answer from (an empty index, or filters that exclude everything)
            yield replace(extractive, generator="extractive (fallback)")
            return
        if not extractive.answered:
            # The evidence is below the calibrated abstention threshold: the small model, handed weak
            # passages, tends to answer anyway (measured: it abstained on 1 of 6 unanswerable sample
            # questions where the extractive answer abstained on 3), and asking it costs ~30 s.
            yield replace(extractive, generator=self.name)
            return
        chat, passages = build_prompt(question, hits[: settings.answer_passages], store, settings)
        if not passages:
            yield fallback("no passage fits the prompt budget (settings.llm_context_tokens)")
            return
        parts: list[str] = []
        try:
            finish = yield from _collect(stream_chat(chat, settings), parts)
        except GeneratorError as error:
            yield fallback(str(error))
            return
        text = "".join(parts).strip()
        log.debug("raw answer to %r: %r", question, text)
        try:
            cut_off = finish == "length"
            final, dropped = self._checked(question, text, passages, hits, store, cut_off)
        except Exception:
            log.exception("citation check failed")
            final, dropped = None, 0
        yield final or fallback(f"no supported sentence in {text!r}", dropped)

    def _checked(self, question, text, passages, hits, store, cut_off) -> tuple[Answer | None, int]:
        """The checked answer (or None: nothing supported) and how many sentences were dropped."""
        sentences = split_answer(text)
        if not sentences:
            return None, 0
        if _REFUSAL.search(sentences[0].text):
            refusal = NO_ANSWER if "hittar" in sentences[0].text.lower() else NO_ANSWER_EN
            return Answer(question, refusal, False, (), tuple(hits), 0.0, generator=self.name), 0
        checked = check_answer(text, question, passages, store, self.embedder,
                               limit=self.settings.max_answer_sentences, cut_off=cut_off)
        if not checked.kept:
            return None, checked.dropped
        notice = None
        if checked.dropped:
            total = checked.kept + checked.dropped
            notice = (f"{checked.dropped} av {total} meningar i språkmodellens svar togs bort: "
                      "de stöds inte av de citerade rapporterna.")  # fmt: skip
        answer = Answer(question, checked.text, True, checked.citations, tuple(hits), checked.confidence,
                        generator=self.name, notice=notice, dropped_sentences=checked.dropped,
                        checked_sentences=checked.kept + checked.dropped)  # fmt: skip
        return answer, checked.dropped


def _collect(deltas: Iterator[str], parts: list[str]):
    """Pass the deltas on, keeping a copy; returns what the source returns (its finish reason)."""
    while True:
        try:
            delta = next(deltas)
        except StopIteration as done:
            return done.value
        parts.append(delta)
        yield delta


def stream_chat(chat: list[dict], settings: Settings, max_tokens: int = MAX_ANSWER_TOKENS
                ) -> Generator[str, None, str | None]:  # fmt: skip
    """Text deltas of one streamed chat completion, then (as the return value) its finish reason,
    "length" when the token limit cut it. Raises GeneratorError on any failure or timeout."""
    import httpx

    url = settings.llm_base_url.rstrip("/") + "/chat/completions"
    key = os.environ.get(settings.llm_api_key_env) if settings.llm_api_key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": settings.llm_model, "messages": chat, "temperature": 0.0,
            "max_tokens": max_tokens, "stream": True}  # fmt: skip
    limit = settings.llm_timeout_s
    deadline = time.monotonic() + limit
    try:
        with httpx.Client(timeout=httpx.Timeout(limit, connect=min(limit, 10.0))) as client:
            with client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise GeneratorError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
                if response.headers.get("content-type", "").startswith("application/json"):
                    response.read()  # a server that ignores "stream": one JSON completion
                    completion = response.json()
                    if text := _text(completion, "message"):
                        yield text
                    return _finish(completion)
                finish = None
                for line in response.iter_lines():
                    if time.monotonic() > deadline:
                        raise GeneratorError(f"{url} took longer than {limit:g} s")
                    data = line[5:].strip() if line.startswith("data:") else None
                    if data == "[DONE]":
                        break
                    if data:
                        chunk = json.loads(data)
                        if text := _text(chunk, "delta"):
                            yield text
                        finish = _finish(chunk) or finish
                return finish
    except httpx.TimeoutException as error:
        raise GeneratorError(f"{url} took longer than {limit:g} s ({type(error).__name__})") from error
    except httpx.HTTPError as error:
        raise GeneratorError(f"cannot reach {url}: {error}") from error
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # malformed JSON or shape
        raise GeneratorError(f"unexpected reply from {url}: {error}") from error


def _text(reply: dict, key: str) -> str:
    """The text of a chunk ("delta") or a whole completion ("message")."""
    if reply.get("error"):
        raise GeneratorError(f"the model server reported: {reply['error']}")
    return "".join((c.get(key) or {}).get("content") or "" for c in reply.get("choices") or [])


def _finish(reply: dict) -> str | None:
    return next((c["finish_reason"] for c in reply.get("choices") or [] if c.get("finish_reason")), None)
