"""The feedback log: one record per rating or comment; the latest record with an id wins.

`FeedbackLog` is the seam: anything with `write(record)`. `FileFeedbackLog` (JSON lines, readable by
the server's user only) is the default; `open_feedback_log` picks the one `settings.feedback_store`
names from `FEEDBACK_STORES`, where other stores (a database table) register.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rag.errors import ConfigError
from rag.settings import Settings

MAX_COMMENT_CHARS = 2000


class FeedbackLog(Protocol):
    def write(self, record: dict) -> None:
        """Store one feedback record (see `feedback_record`)."""


class FileFeedbackLog:
    """JSON lines in one file; the file 0600 and its folder 0700, since comments may name people."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._prepare()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)

    def _prepare(self) -> None:
        """Create the folder 0700 and tighten an existing folder or file that others can read."""
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700)
        if folder != Path(".") and folder.stat().st_mode & 0o077:
            os.chmod(folder, 0o700)
        if self.path.exists() and self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)


def _table_log(settings: Settings) -> FeedbackLog:
    """The rag.feedback table of the PostgreSQL store (RAG_STORE=postgresql://…): one log for all servers."""
    from rag.index.postgres import PostgresFeedbackLog, is_postgres_url

    if not is_postgres_url(settings.store):
        raise ConfigError("RAG_FEEDBACK_STORE=postgres needs RAG_STORE=postgresql://… (docs/postgres.md).")
    return PostgresFeedbackLog(settings.store)


FEEDBACK_STORES: dict[str, Callable[[Settings], FeedbackLog]] = {
    "file": lambda settings: FileFeedbackLog(settings.feedback_log),
    "postgres": _table_log,
}


def open_feedback_log(settings: Settings) -> FeedbackLog:
    """The feedback store that settings.feedback_store names (RAG_FEEDBACK_STORE). With the PostgreSQL
    index store the default is its table: several servers must not each keep a file of their own."""
    name = settings.feedback_store
    if name == "file" and settings.store.startswith(("postgresql://", "postgres://")):
        name = "postgres"
    make = FEEDBACK_STORES.get(name)
    if make is None:
        raise ConfigError(
            f"Unknown feedback store {settings.feedback_store!r} (RAG_FEEDBACK_STORE); "
            f"choose one of: {', '.join(sorted(FEEDBACK_STORES))}."
        )
    return make(settings)


def feedback_record(turn: dict, rating: str, comment: str = "", user: str | None = None) -> dict:
    response = turn["response"]
    return {
        "id": turn["id"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rating": rating,
        "comment": comment[:MAX_COMMENT_CHARS],
        "question": response["question"],
        "answer": response["answer"],
        "answered": response["answered"],
        "citations": [
            {k: c[k] for k in ("n", "doc_id", "title", "section", "start", "end", "quote")}
            for c in response["citations"]
        ],
        "generator": response.get("generator"),
        "index_version": turn["index_version"],
        "user": user,
    }
