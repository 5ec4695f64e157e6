"""Keeping the index in step with the reports folder: `rag index --watch`.

The folder is polled (no inotify: it works the same on a network share, in a container and under
systemd), and a build starts once a change has held still for one poll, so a report still being
copied in is not indexed half-written. The build itself is the ordinary incremental one (build.py):
only added or changed text reaches the model, and a deleted report is simply absent from the new
version, so it leaves answers and filters the moment that version is published. A build that fails
(a damaged file, the database away) is reported and retried at the next change; the live version
keeps answering meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError
from rag.index.build import BuildReport, build_index
from rag.index.protocol import Backend
from rag.ingest.documents import report_files
from rag.settings import Settings

log = logging.getLogger(__name__)

State = dict[str, tuple[int, int]]  # file's path under the folder -> (size, mtime in ns)


@dataclass(frozen=True, slots=True)
class FolderChange:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """One pass of the watcher that did something: a build, or a build that failed."""

    change: FolderChange
    report: BuildReport | None
    error: str | None  # the failure's message, for the log; the live version is untouched


def folder_state(folder: Path) -> State:
    """What the watcher compares between polls: every report file's size and modification time."""
    state: State = {}
    for file in report_files(folder):
        try:
            stat = file.stat()
        except OSError:  # deleted between listing and stat: it is gone
            continue
        state[file.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return state


def compare(before: State, after: State) -> FolderChange:
    return FolderChange(
        added=tuple(sorted(after.keys() - before.keys())),
        changed=tuple(sorted(k for k in after.keys() & before.keys() if after[k] != before[k])),
        removed=tuple(sorted(before.keys() - after.keys())),
    )


def watch(settings: Settings, embedder, backend: Backend, data: Path, *, interval: float = 10.0,
          on_event: Callable[[SyncEvent], None] = lambda event: None,
          stop: Callable[[], bool] = lambda: False,
          sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
    """Build now, then again whenever the folder has changed and held still for one poll; until
    `stop()` is true. `embedder` stays loaded between builds, so a new report costs its own text only."""
    built: State | None = None  # the state the live version was built from (None: not yet tried)
    seen = folder_state(data)
    first = True
    while not stop():
        if not first:
            sleep(interval)
            now = folder_state(data)
            moving, seen = now != seen, now
            if moving or now == built:  # still being written, or nothing new since the last build
                continue
        change = compare(built or {}, seen)
        first = False
        built = seen  # a failed build is not retried on the same files: the next change retries it
        try:
            report = build_index(settings, embedder, backend, data=data, progress=False)
        except RagError as error:
            log.warning("Index not updated (%s); the live version keeps answering.", error)
            on_event(SyncEvent(change, None, str(error)))
            continue
        on_event(SyncEvent(change, report, None))
