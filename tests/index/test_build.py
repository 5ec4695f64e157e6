"""Building, loading and incrementally rebuilding the index, with the FakeEmbedder and tmp folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import types
from pathlib import Path

import numpy as np
import pytest
from tests.fakes import FakeEmbedder

import rag.index.build
import rag.index.local
from rag.ingest.chunks import chunk_document
from rag.ingest.documents import read_documents
from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.index import load_store as load_index
from rag.index.build import build_index
from rag.index.manifest import FORMAT_VERSION
from rag.index.journal import VectorJournal
from rag.index.local import LocalBackend
from rag.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "data"
CHANGED = "000_0448039051fc396a.txt"
REMOVED = "003_52fda963314daba6.txt"
ADDED_SENTENCE = "Kommunen anordnar ytterligare ett informationsmöte om familjehem i november."


class RecordingEmbedder(FakeEmbedder):
    """Remembers every text it was asked to embed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.texts: list[str] = []
        self.titles: list[str] = []

    def encode_documents(self, texts, titles):
        self.texts.extend(texts)
        self.titles.extend(titles)
        return super().encode_documents(texts, titles)


class FailingEmbedder(FakeEmbedder):
    """Embeds `ok_calls` batches, then raises `error`."""

    def __init__(self, error: BaseException, ok_calls: int = 0):
        super().__init__()
        self.error = error
        self.ok_calls = ok_calls

    def encode_documents(self, texts, titles):
        if len(self.calls) >= self.ok_calls:
            raise self.error
        return super().encode_documents(texts, titles)


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    return folder


@pytest.fixture
def cfg(tmp_path, data) -> Settings:
    return Settings(data_dir=data, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                    feedback_log=tmp_path / "feedback.jsonl")  # fmt: skip


def _staging_left(index_dir: Path) -> list[str]:
    """Hidden leftovers, but for the journal an interrupted build keeps on purpose."""
    return sorted(p.name for p in Path(index_dir).iterdir() if p.name.startswith(".") and p.name != ".journal")


def _versions(index_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(index_dir).glob("v-*") if p.is_dir())


# -- build and load ----------------------------------------------------------------------------


def test_build_then_load(cfg):
    embedder = FakeEmbedder()
    report = build_index(cfg, embedder, progress=False)
    index = load_index(cfg, fingerprint=embedder.fingerprint())

    documents, _ = read_documents(cfg.data_dir)
    expected_chunks = [c for d in documents for c in chunk_document(d, cfg.chunk_tokens, cfg.chunk_overlap)]
    assert index.chunk_list == expected_chunks
    assert report.up_to_date is False and report.skipped == ()
    assert (report.documents, report.chunks) == (5, len(expected_chunks))
    assert report.version == index.version == LocalBackend(cfg.index_dir).current_version()
    assert (report.embedded_chunks, report.embedded_sentences) == (len(index.chunk_list), len(index.sentences))
    assert report.embedded_headings == len(index.headings) == len(
        {(c.doc_id, c.heading) for c in index.chunk_list if c.heading is not None})  # letterhead, signature: none
    assert embedder.embedded == len(index.chunk_list) + len(index.sentences) + len(index.headings)
    # every passage knows its section's heading line, quotable at exact document offsets
    for passage in index.passages(range(index.chunk_count)):
        heading, chunk = passage.heading, passage.chunk
        if chunk.heading is None:  # the letterhead and the signature have no heading line of their own
            assert heading is None and chunk.section in ("Sidhuvud", "Underskrift")
            continue
        assert heading.kind == "heading" and heading.text == chunk.section and (heading.start, heading.end) == chunk.heading

    assert index.chunk_vectors.shape == (len(index.chunk_list), 64)
    assert index.sentence_vectors.shape == (len(index.sentences), 64)
    assert np.allclose(np.linalg.norm(index.chunk_vectors, axis=1), 1.0, atol=1e-5)
    assert index.faiss.ntotal == len(index.chunk_list)
    # every chunk's sentences are sentences of the index, in the chunk, verbatim
    assert len(index.chunk_sentence_ids) == len(index.chunk_list)
    for chunk, ids in zip(index.chunk_list, index.chunk_sentence_ids):
        refs = [index.sentences[i] for i in ids]
        assert [(r.start, r.end) for r in refs] == list(chunk.sentences)
        assert all(r.doc_id == chunk.doc_id for r in refs)
    assert len(set(index.sentences)) == len(index.sentences)
    for doc in documents:
        row = index.document_rows[doc.id]
        assert (row["title"], row["date"], row["diarienummer"], row["text"], row["sha256"]) == (
            doc.title, doc.date, doc.diarienummer, doc.text, doc.sha256)  # fmt: skip
        assert row["sections"] == [s.heading for s in doc.sections]


def test_manifest_fields(cfg):
    embedder = FakeEmbedder()
    build_index(cfg, embedder, progress=False)
    index = load_index(cfg)
    manifest = json.loads((cfg.index_dir / index.version / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == index.manifest
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["model"] == {"model": "fake-hashing-embedder", "files": {}, "dim": 64}
    assert manifest["dim"] == 64
    assert (manifest["chunk_tokens"], manifest["chunk_overlap"]) == (200, 40)
    assert manifest["sources"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DATA.iterdir())
    }
    assert manifest["faiss"] == "flat"
    assert manifest["counts"] == {
        "documents": 5,
        "chunks": len(index.chunk_list),
        "sentences": len(index.sentences),
        "headings": len(index.headings),
    }
    assert manifest["version"] == index.version and manifest["version"].startswith("v-")
    assert set(manifest) == {"format_version", "pipeline_version", "model", "chunk_tokens", "chunk_overlap", "sources", "counts",
                             "version", "created", "faiss", "dim", "files"}  # fmt: skip


def test_missing_index_raises_not_found_naming_the_command(tmp_path):
    settings = Settings(data_dir=DATA, index_dir=tmp_path / "nothing", cache_dir=tmp_path / "cache")
    with pytest.raises(IndexNotFoundError) as error:
        load_index(settings)
    assert "rag index" in str(error.value)
    assert str(tmp_path / "nothing") in str(error.value)


def test_damaged_index_raises_not_found(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    (cfg.index_dir / LocalBackend(cfg.index_dir).current_version() / "manifest.json").write_text("{ trasig")
    with pytest.raises(IndexNotFoundError) as error:
        load_index(cfg)
    assert "rag index" in str(error.value)


# -- mismatches --------------------------------------------------------------------------------


def test_other_chunk_settings_raise_mismatch(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    for other in (cfg.replace(chunk_tokens=150), cfg.replace(chunk_overlap=20)):
        with pytest.raises(IndexMismatchError) as error:
            load_index(other)
        assert "rag index" in str(error.value)
    with pytest.raises(IndexMismatchError) as error:
        load_index(cfg.replace(chunk_tokens=150))
    assert "chunk_tokens=200 (settings ask for 150)" in str(error.value)


def test_other_model_fingerprint_raises_mismatch(cfg):
    embedder = FakeEmbedder()
    build_index(cfg, embedder, progress=False)
    load_index(cfg, fingerprint=embedder.fingerprint())  # the same model: fine
    for other in ({"model": "annan-modell", "files": {}, "dim": 64},
                  FakeEmbedder(dim=32).fingerprint(),
                  {"model": "fake-hashing-embedder", "files": {"model.safetensors": "abc"}, "dim": 64}):  # fmt: skip
        with pytest.raises(IndexMismatchError) as error:
            load_index(cfg, fingerprint=other)
        assert "rag index" in str(error.value)


def test_the_document_path_is_recorded_never_mixed_and_either_serves(cfg):
    onnx = FakeEmbedder(documents="onnx")
    first = build_index(cfg, onnx, progress=False)
    manifest = json.loads((cfg.index_dir / first.version / "manifest.json").read_text())
    assert manifest["model"]["documents"] == "onnx"
    fp32 = FakeEmbedder(documents="fp32")
    load_index(cfg, fingerprint=fp32.fingerprint())  # the same vectors to rounding: an onnx-built index serves
    second = build_index(cfg, fp32, progress=False)  # but a build on the other path reuses none of them
    assert second.up_to_date is False
    assert (second.embedded_chunks, second.embedded_sentences) == (first.embedded_chunks, first.embedded_sentences)
    assert fp32.embedded == onnx.embedded
    assert build_index(cfg, FakeEmbedder(documents="fp32"), progress=False).up_to_date is True


def test_the_machine_vector_cache_embeds_a_text_once_whatever_the_index_folder(cfg, tmp_path):
    first = build_index(cfg, FakeEmbedder(), progress=False)
    elsewhere = cfg.replace(index_dir=tmp_path / "another-index")
    embedder = FakeEmbedder()
    second = build_index(elsewhere, embedder, progress=False)  # a new folder: nothing of it to reuse
    assert embedder.embedded == 0 and second.chunks == first.chunks and second.version != first.version
    assert load_index(elsewhere).chunk_list == load_index(cfg).chunk_list
    off = FakeEmbedder()
    build_index(cfg.replace(index_dir=tmp_path / "third", vector_cache=False), off, progress=False)
    assert off.embedded == first.embedded_chunks + first.embedded_sentences + first.embedded_headings


def test_two_writers_of_one_cache_keep_every_key_with_its_row(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = VectorJournal(tmp_path / "vectors", {"model": "m"})

    def write(writer: int):
        for batch in range(20):
            keys = [f"{writer}-{batch}-{i}" for i in range(16)]
            rows = np.array([[writer, batch, i, 0.5] for i in range(16)], dtype=np.float32)
            VectorJournal(tmp_path / "vectors", {"model": "m"}).append(keys, rows)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    loaded = cache.load()
    assert len(loaded) == 4 * 20 * 16
    assert all(list(v[:3]) == [float(x) for x in k.split("-")] for k, v in loaded.items())


def test_other_format_version_raises_mismatch(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    path = cfg.index_dir / LocalBackend(cfg.index_dir).current_version() / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(IndexMismatchError) as error:
        load_index(cfg)
    assert "rag index" in str(error.value)


# -- incremental rebuilds ----------------------------------------------------------------------


def test_unchanged_rebuild_is_up_to_date_and_embeds_nothing(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    version = LocalBackend(cfg.index_dir).current_version()
    os.utime(cfg.data_dir / CHANGED)  # touched, same bytes
    embedder = FakeEmbedder()
    report = build_index(cfg, embedder, progress=False)
    assert report.up_to_date is True
    assert (report.embedded_chunks, report.embedded_sentences, embedder.embedded) == (0, 0, 0)
    assert report.version == version == LocalBackend(cfg.index_dir).current_version()
    assert _versions(cfg.index_dir) == [version]


def _keys(index) -> tuple[list[tuple], list[tuple]]:
    """What each chunk and sentence was embedded as: its context (title, date, section) and its text."""
    chunk_keys = [(c.title, c.date, c.section, c.text) for c in index.chunk_list]
    owner = {}
    for number, ids in enumerate(index.chunk_sentence_ids):
        for sid in ids:
            owner.setdefault(sid, index.chunk_list[number])
    sentence_keys = []
    for sid, ref in enumerate(index.sentences):
        chunk = owner[sid]
        text = index.document_rows[ref.doc_id]["text"][ref.start : ref.end]
        sentence_keys.append((chunk.title, chunk.date, chunk.section, text))
    return chunk_keys, sentence_keys


def _add_sentence(data: Path) -> None:
    """Append ADDED_SENTENCE to the last paragraph of the changed report (before the signature)."""
    path = data / CHANGED
    text = path.read_text(encoding="utf-8")
    assert text.count("hantera frågan.") == 1
    path.write_text(text.replace("hantera frågan.", f"hantera frågan. {ADDED_SENTENCE}"), encoding="utf-8")


def test_changing_one_file_embeds_only_its_new_text(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_index(cfg)
    _add_sentence(cfg.data_dir)

    embedder = RecordingEmbedder()
    report = build_index(cfg, embedder, progress=False)
    after = load_index(cfg)

    old_chunks, old_sentences = _keys(before)
    new_chunks, new_sentences = _keys(after)
    expected_chunks = [k for k in new_chunks if k not in set(old_chunks)]
    expected_sentences = [k for k in new_sentences if k not in set(old_sentences)]
    # Only the last section of the changed report changes: its chunks, and the one added sentence.
    assert expected_chunks and all(k[2] == "Beredskap för att akut ordna boendeplatser för asylsökande"
                                   for k in expected_chunks)  # fmt: skip
    assert [k[3] for k in expected_sentences] == [ADDED_SENTENCE]
    assert report.up_to_date is False
    assert (report.embedded_chunks, report.embedded_sentences) == (
        len(expected_chunks),
        len(expected_sentences),
    )
    assert embedder.embedded == len(expected_chunks) + len(expected_sentences)
    assert sorted(embedder.texts) == sorted([k[3] for k in expected_chunks] + [ADDED_SENTENCE])
    assert all(text in after.document_rows[CHANGED]["text"] for text in embedder.texts)
    # the other reports are untouched, down to their vectors
    for doc_id in after.document_rows:
        if doc_id != CHANGED:
            old = [(c, v) for c, v in zip(before.chunk_list, before.chunk_vectors) if c.doc_id == doc_id]
            new = [(c, v) for c, v in zip(after.chunk_list, after.chunk_vectors) if c.doc_id == doc_id]
            assert [c for c, _ in old] == [c for c, _ in new]
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(old, new))
    assert ADDED_SENTENCE in after.document_rows[CHANGED]["text"]
    assert (
        after.manifest["sources"][CHANGED]
        == hashlib.sha256((cfg.data_dir / CHANGED).read_bytes()).hexdigest()
    )


def test_removing_a_file_removes_its_chunks(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_index(cfg)
    (cfg.data_dir / REMOVED).unlink()
    embedder = FakeEmbedder()
    report = build_index(cfg, embedder, progress=False)
    after = load_index(cfg)
    assert report.documents == 4 and report.up_to_date is False
    assert embedder.embedded == 0  # everything else is reused
    assert REMOVED not in after.document_rows and REMOVED not in after.manifest["sources"]
    assert not any(c.doc_id == REMOVED for c in after.chunk_list)
    assert not any(s.doc_id == REMOVED for s in after.sentences)
    assert after.chunk_list == [c for c in before.chunk_list if c.doc_id != REMOVED]
    assert after.manifest["counts"]["chunks"] == len(after.chunk_list) == after.faiss.ntotal


def test_adding_a_file_embeds_only_it(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    (cfg.data_dir / "005_ny.md").write_text(
        "# Kommundirektörens rapport juni 2016\n\n## Ny förskola\n\nFörskolan öppnar i augusti. Den har 120 platser.\n",
        encoding="utf-8",
    )
    embedder = RecordingEmbedder()
    report = build_index(cfg, embedder, progress=False)
    assert (report.documents, report.embedded_chunks, report.embedded_sentences, report.embedded_headings) == (6, 1, 2, 1)
    assert sorted(embedder.texts) == ["Den har 120 platser.", "Förskolan öppnar i augusti.",
                                      "Förskolan öppnar i augusti. Den har 120 platser.", "Ny förskola"]  # fmt: skip
    assert set(embedder.titles) == {"Kommundirektörens rapport juni 2016 (2016-06) – Ny förskola"}


def test_other_chunk_settings_rebuild(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    smaller = cfg.replace(chunk_tokens=100, chunk_overlap=20)
    report = build_index(smaller, FakeEmbedder(), progress=False)
    assert report.up_to_date is False
    index = load_index(smaller)
    assert (index.manifest["chunk_tokens"], index.manifest["chunk_overlap"]) == (100, 20)


# -- atomicity ---------------------------------------------------------------------------------


def _assert_still_old(cfg: Settings, before) -> None:
    index = load_index(cfg)
    assert index.version == before.version
    assert index.chunk_list == before.chunk_list
    assert ADDED_SENTENCE not in index.document_rows[CHANGED]["text"]
    assert _staging_left(cfg.index_dir) == []
    assert _versions(cfg.index_dir) == [before.version]


@pytest.mark.parametrize("error", [RuntimeError("modellen kraschade"), KeyboardInterrupt()])
def test_embedder_failing_mid_rebuild_keeps_the_old_index(cfg, error):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_index(cfg)
    _add_sentence(cfg.data_dir)
    with pytest.raises(type(error)):
        build_index(cfg, FailingEmbedder(error, ok_calls=1), progress=False)
    _assert_still_old(cfg, before)


def test_a_build_interrupted_mid_way_resumes_without_embedding_again(cfg):
    with pytest.raises(KeyboardInterrupt):  # two batches of 32 passages are embedded, then Ctrl-C
        build_index(cfg, FailingEmbedder(KeyboardInterrupt(), ok_calls=2), progress=False)
    assert LocalBackend(cfg.index_dir).current_version() is None
    again = RecordingEmbedder()
    report = build_index(cfg, again, progress=False)
    assert report.chunks > 64
    assert report.embedded_chunks == report.chunks - 64 and report.embedded_sentences == report.sentences
    headings = load_index(cfg).headings
    assert report.embedded_headings == len(headings) > 0
    assert len(again.texts) == report.chunks - 64 + report.sentences + len(headings)
    index = load_index(cfg)
    fresh = FakeEmbedder()
    assert np.allclose(index.chunk_vectors, fresh.encode_documents([c.text for c in index.chunk_list],
                                                                   [rag.index.build.context(c) for c in index.chunk_list]))
    assert not (cfg.index_dir / ".journal").exists()  # a finished build clears it


def test_a_torn_journal_tail_is_ignored_and_cut(tmp_path):
    journal = VectorJournal(tmp_path, {"model": "m"})
    journal.append(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    with open(journal.folder / "vectors.f32", "ab") as out:  # died writing the next batch
        out.write(np.array([5, 5, 5], dtype=np.float32).tobytes())
    with open(journal.folder / "keys.txt", "a") as out:
        out.write("c")
    assert {k: v.tolist() for k, v in journal.load().items()} == {"a": [1, 0], "b": [0, 1]}
    journal.append(["d"], np.array([[0.5, 0.5]], dtype=np.float32))
    assert {k: v.tolist() for k, v in journal.load().items()} == {"a": [1, 0], "b": [0, 1], "d": [0.5, 0.5]}
    assert VectorJournal(tmp_path, {"model": "other"}).load() == {}


def test_interrupt_while_writing_the_version_keeps_the_old_index(cfg, monkeypatch):
    build_index(cfg, FakeEmbedder(), progress=False)
    before = load_index(cfg)
    _add_sentence(cfg.data_dir)
    seen = []

    def interrupted(folder, vectors):
        seen.append(folder)
        (folder / "faiss.index").write_bytes(b"halvt skriven")
        raise KeyboardInterrupt

    monkeypatch.setattr(rag.index.local, "_write_faiss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(cfg, FakeEmbedder(), progress=False)
    assert seen and seen[0].name.startswith(".v-") and seen[0].name.endswith(".tmp")
    _assert_still_old(cfg, before)
    monkeypatch.undo()
    assert build_index(cfg, FakeEmbedder(), progress=False).up_to_date is False
    assert ADDED_SENTENCE in load_index(cfg).document_rows[CHANGED]["text"]


# -- old versions ------------------------------------------------------------------------------


def _rebuild_with_change(cfg: Settings, n: int) -> str:
    path = cfg.data_dir / CHANGED
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("hantera frågan.", f"hantera frågan. Tillägg nummer {n}."), encoding="utf-8")
    return build_index(cfg, FakeEmbedder(), progress=False).version


def test_old_versions_pruned_to_two(cfg):
    versions = []
    for n in range(4):
        versions.append(_rebuild_with_change(cfg, n))
        time.sleep(1.05)  # distinct version stamps
    assert len(set(versions)) == 4
    assert _versions(cfg.index_dir) == sorted(versions[-2:])
    assert LocalBackend(cfg.index_dir).current_version() == versions[-1]
    assert _staging_left(cfg.index_dir) == []


def test_pruning_keeps_the_previous_version_within_one_second(cfg, monkeypatch):
    """Builds in the same second get random suffixes; the previous live version must survive anyway."""
    suffixes = iter([b"\xff\xff\xff", b"\x80\x00\x00", b"\x10\x00\x00", b"\x00\x00\x01"])

    class Os(types.ModuleType):
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def urandom(n):
            return next(suffixes)

    fixed_time = types.SimpleNamespace(perf_counter=time.perf_counter,
                                       strftime=lambda fmt, *a: time.strftime(fmt, time.localtime(1_800_000_000)))  # fmt: skip
    monkeypatch.setattr(rag.index.local, "os", Os("os"))
    monkeypatch.setattr(rag.index.local, "time", fixed_time)
    versions = [_rebuild_with_change(cfg, n) for n in range(4)]
    assert len(set(versions)) == 4
    assert LocalBackend(cfg.index_dir).current_version() == versions[-1]
    assert sorted(_versions(cfg.index_dir)) == sorted(versions[-2:])
