"""The store protocol, the same suite for both stores: files in a folder, and PostgreSQL on a real
server (tests/pg.py starts one; nothing here mocks the database). Building, incremental rebuilds,
mismatches, an interrupted or killed build, pruning, hot swap while questions are in flight, and the
CLI's --store; plus the postgres store's own promises (same numbers as local, serialized builds,
a read-only serving role)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.index import load_store, open_backend
from rag.index.build import build_index
from rag.ingest.chunks import chunk_document
from rag.ingest.documents import read_documents
from rag.pipeline import Assistant
from rag.search.retrieve import retrieve
from rag.settings import Settings
from tests.fakes import FakeEmbedder
from tests.index.conftest import index_settings
from tests.index.test_build import (
    ADDED_SENTENCE,
    CHANGED,
    REMOVED,
    FailingEmbedder,
    RecordingEmbedder,
    _add_sentence,
)

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["Vem är ny ekonomichef?", "Hur många Tyresöbor kom till informationsmötet om familjehem?",
             "Vad hände i maj 2017?", "Vilka organisatoriska placeringar får enheterna?",
             "Vem höll i krisövningen Henning?", "försörjningsstödsenheten", "How many came to the meeting?"]  # fmt: skip


@pytest.fixture
def cfg(tmp_path, data, store) -> Settings:
    return index_settings(tmp_path, data, store=store)


def _all_chunks(store):
    return store.chunks(range(store.chunk_count))


def _versions(cfg: Settings) -> list[str]:
    backend = open_backend(cfg)
    if cfg.store == "local":
        return sorted(p.name for p in cfg.index_dir.glob("v-*") if p.is_dir())
    return sorted(backend.versions())


# -- building and reading -----------------------------------------------------------------------


def test_build_then_read_through_the_protocol(cfg):
    embedder = FakeEmbedder()
    report = build_index(cfg, embedder, progress=False)
    store = load_store(cfg, embedder.fingerprint())
    documents, _ = read_documents(cfg.data_dir)
    expected = [c for d in documents for c in chunk_document(d, cfg.chunk_tokens, cfg.chunk_overlap)]
    assert _all_chunks(store) == expected and store.chunk_count == report.chunks == len(expected)
    assert report.version == store.version == open_backend(cfg).current_version()
    assert store.manifest["counts"]["sentences"] == report.sentences
    assert (store.manifest["model"], store.manifest["dim"]) == (embedder.fingerprint(), 64)
    texts = {d.id: d.text for d in documents}
    for passage in store.passages(range(store.chunk_count)):
        chunk = passage.chunk
        assert [(s.start, s.end) for s in passage.sentences] == list(chunk.sentences)
        assert all(s.text == texts[chunk.doc_id][s.start : s.end] and s.kind == "sentence" for s in passage.sentences)
        assert all(abs(np.linalg.norm(s.vector) - 1) < 1e-5 for s in passage.sentences)
        if chunk.heading is None:  # the letterhead and the signature have no heading line of their own
            assert passage.heading is None and chunk.section in ("Sidhuvud", "Underskrift")
        else:
            assert passage.heading.kind == "heading" and passage.heading.text == chunk.section
            assert (passage.heading.start, passage.heading.end) == chunk.heading
    infos = store.documents()
    assert sorted(infos) == sorted(d.id for d in documents)
    assert all((infos[d.id].title, infos[d.id].date, infos[d.id].diarienummer, infos[d.id].signed_by)
               == (d.title, d.date, d.diarienummer, d.signed_by) for d in documents)  # fmt: skip
    assert store.terms("Vem är ny ekonomichef?").tokens == ("ny", "ekonomichef", "ekonomi", "chef")


def test_missing_store_raises_not_found_naming_the_command(cfg):
    with pytest.raises(IndexNotFoundError) as error:
        load_store(cfg)
    assert "rag index" in str(error.value)
    assert ("--store" in str(error.value)) is (cfg.store != "local")


def test_other_chunk_settings_or_model_raise_mismatch(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    with pytest.raises(IndexMismatchError) as error:
        load_store(cfg.replace(chunk_tokens=150))
    assert "chunk_tokens=200 (settings ask for 150)" in str(error.value) and "rag index" in str(error.value)
    with pytest.raises(IndexMismatchError) as error:
        load_store(cfg, FakeEmbedder(dim=32).fingerprint())
    if cfg.store != "local":
        assert "--store postgresql://" in str(error.value)


# -- incremental rebuilds -----------------------------------------------------------------------


def test_unchanged_rebuild_is_up_to_date_and_embeds_nothing(cfg):
    first = build_index(cfg, FakeEmbedder(), progress=False)
    embedder = FakeEmbedder()
    again = build_index(cfg, embedder, progress=False)
    assert again.up_to_date and embedder.embedded == 0 and again.version == first.version
    assert _versions(cfg) == [first.version]


def test_changing_one_file_embeds_only_its_new_text(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_store(cfg)
    _add_sentence(cfg.data_dir)
    embedder = RecordingEmbedder()
    report = build_index(cfg, embedder, progress=False)
    after = load_store(cfg)
    old = {(c.doc_id, c.section, c.text) for c in _all_chunks(before)}
    new_chunks = [c.text for c in _all_chunks(after) if (c.doc_id, c.section, c.text) not in old]
    assert new_chunks and report.embedded_sentences == 1 and report.embedded_chunks == len(new_chunks)
    assert sorted(embedder.texts) == sorted(new_chunks + [ADDED_SENTENCE])
    assert after.version != before.version
    assert [c for c in _all_chunks(after) if c.doc_id != CHANGED] == [c for c in _all_chunks(before) if c.doc_id != CHANGED]


def test_removing_a_file_removes_its_chunks(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_store(cfg)
    (cfg.data_dir / REMOVED).unlink()
    embedder = FakeEmbedder()
    report = build_index(cfg, embedder, progress=False)
    after = load_store(cfg)
    assert report.documents == 4 and embedder.embedded == 0 and REMOVED not in after.documents()
    assert _all_chunks(after) == [c for c in _all_chunks(before) if c.doc_id != REMOVED]
    vector = FakeEmbedder().encode_queries(["Vem höll i krisövningen Henning?"])[0]
    assert all(h.chunk.doc_id != REMOVED for h in retrieve("krisövningen", vector, after, k=1000))


@pytest.mark.parametrize("error", [RuntimeError("modellen kraschade"), KeyboardInterrupt()])
def test_a_failing_rebuild_keeps_the_old_version_and_resumes(cfg, error):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_store(cfg)
    _add_sentence(cfg.data_dir)
    with pytest.raises(type(error)):
        build_index(cfg, FailingEmbedder(error, ok_calls=1), progress=False)
    assert load_store(cfg).version == before.version and _versions(cfg) == [before.version]
    again = RecordingEmbedder()
    report = build_index(cfg, again, progress=False)  # the journal kept the batch that was embedded
    assert report.embedded_chunks == 0 and again.texts == [ADDED_SENTENCE]
    assert ADDED_SENTENCE in {s.text for p in load_store(cfg).passages(range(report.chunks)) for s in p.sentences}


def test_old_versions_pruned_to_two(cfg):
    path, versions = cfg.data_dir / CHANGED, []
    for n in range(4):
        path.write_text(path.read_text(encoding="utf-8").replace("hantera frågan.", f"hantera frågan. Tillägg {n}."),
                        encoding="utf-8")  # fmt: skip
        versions.append(build_index(cfg, FakeEmbedder(), progress=False).version)
        time.sleep(1.05)  # distinct version stamps
    assert _versions(cfg) == sorted(versions[-2:]) and open_backend(cfg).current_version() == versions[-1]


_KILLED_BUILD = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
import rag.index.local, rag.index.postgres_write
from rag.index.build import build_index
from rag.settings import Settings
from tests.fakes import FakeEmbedder

def stall(*args, **kwargs):
    print("writing", flush=True)
    time.sleep(600)

rag.index.local._write_faiss = stall  # the local store: mid-way through writing the version folder
real_copy = rag.index.postgres_write.copy_rows
rag.index.postgres_write.copy_rows = lambda conn, target, *a: stall() if "postings" in target else real_copy(conn, target, *a)
settings = Settings(data_dir=Path({data!r}), index_dir=Path({index!r}), cache_dir=Path({cache!r}), store={store!r})
build_index(settings, FakeEmbedder(), progress=False)
"""


def test_a_build_killed_mid_publish_leaves_the_previous_version_answering(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_store(cfg)
    _add_sentence(cfg.data_dir)
    script = _KILLED_BUILD.format(root=str(ROOT), tests=str(ROOT / "tests"), data=str(cfg.data_dir),
                                  index=str(cfg.index_dir), cache=str(cfg.cache_dir), store=cfg.store)  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"  # rows are going in: now pull the plug
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assistant = Assistant(cfg, embedder=FakeEmbedder())
    answer = assistant.ask("Vem är ny ekonomichef?")
    assert answer.answered and assistant.store.version == before.version
    assert _versions(cfg) == [before.version]
    report = build_index(cfg, FakeEmbedder(), progress=False)  # no lock or half version left behind
    assert report.up_to_date is False and load_store(cfg).version == report.version
    if cfg.store != "local":
        import psycopg

        with psycopg.connect(cfg.store) as conn:
            schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rag_v_%'")}
        assert len(schemas) == 2  # the two kept versions, nothing of the killed one


def test_hot_swap_while_questions_are_in_flight(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    assistant = Assistant(cfg, embedder=FakeEmbedder())
    first = assistant.warm_up()
    errors, stop = [], threading.Event()

    def ask_forever(n):
        while not stop.is_set():
            try:
                assert assistant.ask(QUESTIONS[n % len(QUESTIONS)]).passages
            except Exception as error:  # noqa: BLE001 - any error fails the test below
                errors.append(error)

    threads = [threading.Thread(target=ask_forever, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        _add_sentence(cfg.data_dir)
        second = build_index(cfg, FakeEmbedder(), progress=False).version
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert assistant.store.version == second != first
    answer = assistant.ask("Kommunen anordnar ytterligare ett informationsmöte om familjehem i november?")
    assert ADDED_SENTENCE in answer.text


def test_index_ask_and_eval_take_store(cfg, monkeypatch, capsys):
    import rag.embedding.transformer
    from rag import cli

    monkeypatch.setattr(rag.embedding.transformer, "SentenceTransformerEmbedder", lambda settings: FakeEmbedder())
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAG_CACHE_DIR", str(cfg.cache_dir))
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "-100")
    flags = ["--store", cfg.store, "--index", str(cfg.index_dir)]
    assert cli.main(["index", "--data", str(cfg.data_dir), *flags]) == 0
    out = capsys.readouterr().out
    assert "Indexerade 5 rapporter" in out and (cfg.store == "local" or "i postgresql://" in out)
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out)["answered"] is True
