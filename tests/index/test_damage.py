"""A damaged index version is named, file by file, and never replaces a good one that is serving.

The manifest records each file's size and sha256; a version is checked before it is used. These
tests damage real files of a built index (the fake embedder's) the ways a disk or an operator does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import rag.pipeline
from rag.cli import main
from rag.errors import IndexDamagedError
from rag.index import load_store
from rag.index.build import build_index
from rag.index.local import LocalBackend
from rag.pipeline import Assistant
from rag.settings import Settings
from tests.fakes import FakeEmbedder
from tests.index.conftest import index_settings


@pytest.fixture
def cfg(tmp_path, data) -> Settings:
    return index_settings(tmp_path, data)


def _live(cfg: Settings) -> Path:
    return cfg.index_dir / LocalBackend(cfg.index_dir).current_version()


def _truncate(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _rebuild_with_a_new_report(cfg: Settings) -> str:
    (cfg.data_dir / "999_ny.md").write_text(
        "# Kommundirektörens rapport december 2017\n\n## Ny simhall\n\nSimhallen öppnar i mars.\n", encoding="utf-8"
    )
    return build_index(cfg, FakeEmbedder(), progress=False).version


def test_the_manifest_records_every_file_with_its_size_and_checksum(cfg):
    build_index(cfg, FakeEmbedder(), progress=False)
    folder = _live(cfg)
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert sorted(files) == sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert all(files[name]["bytes"] == (folder / name).stat().st_size for name in files)
    assert all(len(entry["sha256"]) == 64 for entry in files.values())


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: _truncate(f / "chunk_vectors.npy"), "chunk_vectors.npy has 200 bytes, the manifest says"),
        (lambda f: _flip_a_byte(f / "chunks.jsonl"), "chunks.jsonl was changed after the build"),
        (lambda f: (f / "faiss.index").unlink(), "faiss.index is missing"),
        (lambda f: _truncate(f / "manifest.json", 30), "manifest.json cannot be read"),
    ],
    ids=["truncated vectors", "changed chunk text", "missing faiss file", "truncated manifest"],
)  # fmt: skip
def test_a_damaged_file_is_named_with_what_to_do(cfg, damage, expected):
    build_index(cfg, FakeEmbedder(), progress=False)
    damage(_live(cfg))
    with pytest.raises(IndexDamagedError) as error:
        load_store(cfg)
    assert expected in str(error.value) and "rag index" in str(error.value)


def test_arrays_that_disagree_with_the_chunks_are_caught_without_checksums(cfg):
    """An index written before checksums were recorded still gets the shape checks."""
    build_index(cfg, FakeEmbedder(), progress=False)
    folder = _live(cfg)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    vectors = np.load(folder / "sentence_vectors.npy")
    np.save(folder / "sentence_vectors.npy", vectors[:-3])
    with pytest.raises(IndexDamagedError) as error:
        load_store(cfg)
    assert f"sentence_vectors.npy has shape ({len(vectors) - 3}, 64), expected ({len(vectors)}, 64)" in str(error.value)


def test_a_damaged_new_version_leaves_the_old_one_serving_until_a_good_one_is_published(cfg):
    first = build_index(cfg, FakeEmbedder(), progress=False).version
    assistant = Assistant(cfg, embedder=FakeEmbedder())
    assert assistant.store.version == first and assistant.index_problem is None
    second = _rebuild_with_a_new_report(cfg)
    _truncate(cfg.index_dir / second / "chunk_vectors.npy")
    assert assistant.ask("Vem är ny ekonomichef?").answered  # still answering, from the first version
    assert assistant.store.version == first
    assert second in assistant.index_problem and "chunk_vectors.npy" in assistant.index_problem
    assert f"Still serving version {first}" in assistant.index_problem
    third = build_index(cfg, FakeEmbedder(), progress=False).version  # the fix: rebuild
    assert assistant.store.version == third and assistant.index_problem is None


def test_health_says_degraded_with_the_reason_and_503_only_when_nothing_good_is_loaded(cfg):
    from rag.web.app import create_app

    build_index(cfg, FakeEmbedder(), progress=False)
    assistant = Assistant(cfg, embedder=FakeEmbedder())
    client = TestClient(create_app(cfg, assistant))
    assert client.get("/api/health").json()["status"] == "ok"
    second = _rebuild_with_a_new_report(cfg)
    _flip_a_byte(cfg.index_dir / second / "sentences.jsonl")
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert "sentences.jsonl was changed" in health.json()["index_problem"]
    assert str(cfg.index_dir) not in health.json()["index_problem"]  # no server paths to clients
    assert client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"}).status_code == 200

    for version in LocalBackend(cfg.index_dir).versions():  # with no intact version at all, a restart
        if version != second:
            _flip_a_byte(cfg.index_dir / version / "chunks.jsonl")
    fresh = TestClient(create_app(cfg, Assistant(cfg, embedder=FakeEmbedder())))
    health = fresh.get("/api/health")
    assert health.status_code == 503 and "sentences.jsonl was changed" in health.json()["detail"]
    answer = fresh.post("/api/ask", json={"question": "Vem är ny ekonomichef?"})
    assert answer.status_code == 503 and "rag index" in answer.json()["detail"]


def _old_format(folder: Path, **fields) -> None:
    """A version as written before checksums: no `files` in the manifest, and chunk rows with `fields`."""
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = [json.loads(line) for line in (folder / "chunks.jsonl").read_text().splitlines()]
    rows[0].update(fields)
    (folder / "chunks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: _truncate(f / "chunk_vectors.npy"), "chunk_vectors.npy has 200 bytes"),
        (lambda f: _flip_a_byte(f / "sentence_vectors.npy"), "sentence_vectors.npy was changed"),
        (lambda f: [p.unlink() for p in f.iterdir()] and f.rmdir(), "its folder is missing"),
        (lambda f: (f / "manifest.json").write_bytes(b"\xff{"), "manifest.json cannot be read"),
        (lambda f: _old_format(f, sentence_ids="3"), "names a sentence that is not in sentences.jsonl"),
        (lambda f: _old_format(f, sentence_ids=None), "names a sentence that is not in sentences.jsonl"),
        (lambda f: _old_format(f, heading="x"), "chunks.jsonl line 1 has a malformed heading ('x',)"),
        (lambda f: _old_format(f, sentences=7), "TypeError"),
    ],
    ids=["truncated vectors", "flipped byte", "missing folder", "unreadable manifest", "old format, ids a string",
         "old format, ids null", "old format, bad heading", "old format, bad sentences"],
)  # fmt: skip
def test_a_restart_on_a_damaged_live_version_serves_the_newest_intact_one(cfg, damage, expected):
    from rag.web.app import create_app

    first = build_index(cfg, FakeEmbedder(), progress=False).version
    second = _rebuild_with_a_new_report(cfg)
    damage(cfg.index_dir / second)
    client = TestClient(create_app(cfg, Assistant(cfg, embedder=FakeEmbedder())), raise_server_exceptions=False)
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["index_version"] == first
    problem = health.json()["index_problem"]
    assert second in problem and expected in problem and f"Serving the newest intact version, {first}" in problem
    answer = client.post("/api/ask", json={"question": "Vem är ny ekonomichef?"})
    assert answer.status_code == 200 and answer.json()["answered"] is True
    assert client.get("/api/documents").status_code == 200


def test_rag_ask_prints_one_fel_line_not_a_traceback(cfg, monkeypatch, capsys):
    build_index(cfg, FakeEmbedder(), progress=False)
    _truncate(_live(cfg) / "heading_vectors.npy", 10)
    monkeypatch.setattr(rag.pipeline, "real_embedder", lambda settings: FakeEmbedder())
    for name, value in (("DATA_DIR", cfg.data_dir), ("INDEX_DIR", cfg.index_dir), ("CACHE_DIR", cfg.cache_dir)):
        monkeypatch.setenv(f"RAG_{name}", str(value))
    assert main(["ask", "Vem är ny ekonomichef?"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Fel: The index version v-") and "heading_vectors.npy has 10 bytes" in err
    assert "Traceback" not in err and err.count("\n") == 1
