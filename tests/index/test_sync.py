"""rag/index/sync.py: the watcher, driven poll by poll with a scripted folder and the FakeEmbedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.fakes import FakeEmbedder

from rag.index import load_store
from rag.index.local import LocalBackend
from rag.index.sync import FolderChange, compare, folder_state, watch
from rag.ingest.documents import read_documents
from rag.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "data"
NEW = "003_52fda963314daba6.txt"  # arrives while the watcher runs
GONE = "000_0448039051fc396a.txt"  # deleted while it runs


@pytest.fixture
def folder(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for file in sorted(DATA.iterdir()):
        if file.name != NEW:
            shutil.copy(file, data / file.name)
    return data


@pytest.fixture
def cfg(tmp_path, folder) -> Settings:
    return Settings(data_dir=folder, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                    feedback_log=tmp_path / "feedback.jsonl")  # fmt: skip


def run(cfg: Settings, embedder, steps: list) -> list:
    """Watch with one scripted step per poll (a function that changes the folder, or None)."""
    events, steps = [], list(steps)

    def sleep(_seconds):
        step = steps.pop(0)
        if step is not None:
            step()

    watch(cfg, embedder, LocalBackend(cfg.index_dir), cfg.data_dir, interval=0, on_event=events.append,
          stop=lambda: not steps, sleep=sleep)  # fmt: skip
    return events


def doc_ids(cfg: Settings) -> list[str]:
    return sorted(load_store(cfg).documents())


def test_a_new_report_is_indexed_once_it_holds_still_and_alone(cfg, folder):
    embedder = FakeEmbedder()
    half = folder / NEW

    def start_copy():
        half.write_bytes((DATA / NEW).read_bytes()[:200])

    def finish_copy():
        shutil.copy(DATA / NEW, half)

    events = run(cfg, embedder, [None, start_copy, finish_copy, None])
    assert [e.change for e in events] == [
        FolderChange(added=tuple(sorted(p.name for p in DATA.iterdir() if p.name != NEW)), changed=(), removed=()),
        FolderChange(added=(NEW,), changed=(), removed=()),
    ]  # the half-written copy was never built: it changed at the next poll
    assert [e.error for e in events] == [None, None]
    assert NEW in doc_ids(cfg) and len(doc_ids(cfg)) == 5
    (new_doc,) = [d for d in read_documents(folder)[0] if d.id == NEW]
    second = events[1].report
    assert second.embedded_chunks == second.chunks - events[0].report.chunks  # only the new report's text
    assert second.embedded_chunks > 0 and new_doc.id == NEW


def test_a_deleted_report_leaves_the_next_version_and_nothing_is_embedded(cfg, folder):
    events = run(cfg, FakeEmbedder(), [lambda: (folder / GONE).unlink(), None])
    assert events[-1].change == FolderChange((), (), (GONE,))
    assert GONE not in doc_ids(cfg) and len(doc_ids(cfg)) == 3
    report = events[-1].report
    assert (report.embedded_chunks, report.embedded_sentences, report.embedded_headings) == (0, 0, 0)


def test_a_renamed_report_in_a_subfolder_keeps_its_vectors_and_gets_its_path_as_id(cfg, folder):
    def move():
        (folder / "2017").mkdir()
        (folder / GONE).rename(folder / "2017" / "rapport.txt")

    embedder = FakeEmbedder()
    events = run(cfg, embedder, [move, None])
    assert events[-1].change == FolderChange(("2017/rapport.txt",), (), (GONE,))
    assert "2017/rapport.txt" in doc_ids(cfg) and GONE not in doc_ids(cfg)
    assert events[-1].report.embedded_chunks == 0  # the same text under another name: nothing re-embedded


def test_partial_and_hidden_files_start_no_build(cfg, folder):
    def scratch():
        (folder / "ny.docx.part").write_bytes(b"halv")
        (folder / "~$rapport.docx").write_bytes(b"lock")
        (folder / ".DS_Store").write_bytes(b"x")

    events = run(cfg, FakeEmbedder(), [scratch, None, None])
    assert len(events) == 1  # the first build only


def test_a_failed_build_keeps_the_live_version_and_is_retried_at_the_next_change(cfg, folder):
    names = sorted(p.name for p in folder.iterdir())
    kept = folder.parent / "kept"
    kept.mkdir()

    def empty():
        for name in names:
            shutil.move(folder / name, kept / name)

    def restore_one():
        shutil.move(kept / names[0], folder / names[0])

    events = run(cfg, FakeEmbedder(), [empty, None, None, restore_one, None])
    assert [e.error is None for e in events] == [True, False, True]  # the empty folder failed once, not per poll
    assert "No readable reports" in events[1].error
    assert doc_ids(cfg) == [names[0]]


def test_compare_and_state_name_files_by_their_path_under_the_folder(folder):
    before = folder_state(folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "a.txt").write_text("Rapport\n\nText.", encoding="utf-8")
    after = folder_state(folder)
    assert compare(before, after) == FolderChange(("sub/a.txt",), (), ())
    assert not compare(after, after)
