"""The local store, the default: index versions as files in a folder, loaded into one process.

Layout of the index folder:
    CURRENT            name of the live version folder (replaced atomically)
    v-<stamp>/         manifest.json, chunks.jsonl, sentences.jsonl, documents.json, keys.json,
                       chunk_vectors.npy, sentence_vectors.npy, faiss.index
A build writes a new version folder completely, then swaps CURRENT, so a crash or Ctrl-C never
leaves a broken index and readers of the old version finish undisturbed. The manifest records every
file's size and sha256, and a version is checked against them (and its arrays against each other)
before it is used, so a file damaged later is reported by name instead of failing a question.

One loaded version is a `LocalStore` (local_store.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rag.errors import IndexDamagedError
from rag.index.local_store import EXACT_SEARCH_LIMIT, LocalStore
from rag.index.protocol import IndexContent, SentenceRef
from rag.ingest.documents import Document
from rag.types import Chunk

# Above EXACT_SEARCH_LIMIT chunks the chunk vectors go into HNSW (M=32), which held p95 8.9 ms (0.5 ms p50) at recall@10 0.965 for 1M
# synthetic 256-d vectors, also when asked for retrieve's 1,000 candidates. Smaller (Matryoshka)
# vectors get a proportionally higher limit. See docs/scaling.md. (EXACT_SEARCH_LIMIT: local_store.py)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
_KEEP_VERSIONS = 2


class LocalBackend:
    """Index versions in `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def location(self) -> str:
        return f"{self.folder}/"

    @property
    def journal_dir(self) -> Path:
        return self.folder / ".journal"

    def current_version(self) -> str | None:
        """Cheap: the live version's name, for noticing a rebuilt index without reloading it."""
        try:
            return (self.folder / "CURRENT").read_text().strip() or None
        except FileNotFoundError:
            return None

    def open(self, version: str | None = None) -> LocalStore | None:
        """The live version (or the one named), or None when nothing was published yet."""
        return self._load(version or self.current_version())

    def versions(self) -> list[str]:
        """The version folders kept, oldest first: by the time stamp their names begin with, then (two
        builds in one second) by when their manifest was written."""

        def written(folder: Path) -> int:
            try:
                return (folder / "manifest.json").stat().st_mtime_ns
            except OSError:
                return 0

        folders = [p for p in self.folder.glob("v-*") if p.is_dir()]
        return [p.name for p in sorted(folders, key=lambda p: (p.name[:17], written(p), p.name))]

    def previous_manifest(self) -> dict | None:
        version = self.current_version()
        return None if version is None else _read_manifest(self.folder, version)

    def reusable_vectors(self, fingerprint: dict) -> dict[str, np.ndarray]:
        """Vectors of the live version by content key, if it was built with the same model."""
        previous = self.open()
        if previous is None or previous.manifest.get("model") != fingerprint:
            return {}
        keys = json.loads((previous.path / "keys.json").read_text())
        vectors = dict(zip(keys["chunks"], previous.chunk_vectors))
        vectors.update(zip(keys["sentences"], previous.sentence_vectors))
        vectors.update(zip(keys.get("headings", ()), previous.heading_vectors))
        return vectors

    def publish(self, content: IndexContent) -> str:
        """Write a complete version folder aside, then point CURRENT at it in one rename."""
        self.folder.mkdir(parents=True, exist_ok=True)
        version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
        staging = self.folder / f".{version}.tmp"
        try:
            staging.mkdir()
            _write_version(staging, version, content)
            staging.rename(self.folder / version)
            _point_current(self.folder, version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _prune(self.folder, keep=version)
        return version

    def _load(self, version: str | None) -> LocalStore | None:
        if version is None:
            return None
        folder = self.folder / version
        if not folder.is_dir():
            raise _damaged(folder, "its folder is missing")
        manifest = _read_manifest(self.folder, version)
        _verify_files(folder, manifest)
        # Old versions have no checksums, so a malformed field reaches the reading code: any error
        # there (json's are ValueErrors, a wrong type a TypeError) is damage, not a bug to show as a 500.
        try:
            store = _read_store(folder, manifest)
            _verify_shapes(store)
        except IndexDamagedError:
            raise
        except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as error:
            raise _damaged(folder, f"{type(error).__name__}: {error}") from error
        return store


# -- writing ------------------------------------------------------------------------------------


def _write_version(staging: Path, version: str, content: IndexContent) -> None:
    vectors = content.chunk_vectors
    manifest = {**content.manifest, "version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "faiss": _write_faiss(staging, vectors), "dim": int(vectors.shape[1])}  # fmt: skip
    np.save(staging / "chunk_vectors.npy", vectors)
    np.save(staging / "sentence_vectors.npy", content.sentence_vectors)
    np.save(staging / "heading_vectors.npy", content.heading_vectors)
    rows = zip(content.chunks, content.chunk_sentence_ids, content.chunk_heading_ids)
    _write_jsonl(staging / "chunks.jsonl", ({**asdict(c), "sentence_ids": ids, "heading_id": heading}
                                            for c, ids, heading in rows))  # fmt: skip
    _write_jsonl(staging / "sentences.jsonl", (asdict(s) for s in content.sentences))
    _write_jsonl(staging / "headings.jsonl", (asdict(h) for h in content.headings))
    _write_json(staging / "documents.json", {d.id: _document_row(d) for d in content.documents})
    _write_json(staging / "keys.json", content.keys)
    manifest["files"] = {p.name: _describe(p) for p in sorted(staging.iterdir())}
    _write_json(staging / "manifest.json", manifest)
    _fsync_dir(staging)


def _write_faiss(folder: Path, vectors: np.ndarray) -> str:
    import faiss

    count, dim = vectors.shape
    if count <= EXACT_SEARCH_LIMIT * 768 // max(dim, 1):  # exact cost grows with count x dim
        index, kind = faiss.IndexFlatIP(dim), "flat"
    else:
        index, kind = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT), f"hnsw{HNSW_M}"
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    faiss.write_index(index, str(folder / "faiss.index"))
    return kind


def _document_row(doc: Document) -> dict:
    return {"title": doc.title, "date": doc.date, "diarienummer": doc.diarienummer,
            "sha256": doc.sha256, "text": doc.text, "sections": [s.heading for s in doc.sections],
            "signed_by": asdict(doc.signed_by) if doc.signed_by else None}  # fmt: skip


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fsync_dir(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _point_current(folder: Path, version: str) -> None:
    tmp = folder / f".CURRENT.{os.getpid()}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, folder / "CURRENT")


def _prune(folder: Path, keep: str) -> None:
    """Keep the live version and the one before it (questions in flight may still read it)."""
    versions = sorted((p for p in folder.glob("v-*") if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
    for old in versions[:-_KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".v-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------


def _read_store(folder: Path, manifest: dict) -> LocalStore:
    rows = _read_jsonl(folder / "chunks.jsonl")
    return LocalStore(
        path=folder,
        manifest=manifest,
        chunk_list=[_chunk_from_row(r) for r in rows],
        chunk_vectors=np.load(folder / "chunk_vectors.npy"),
        sentences=[SentenceRef(**r) for r in _read_jsonl(folder / "sentences.jsonl")],
        sentence_vectors=np.load(folder / "sentence_vectors.npy"),
        chunk_sentence_ids=[r["sentence_ids"] for r in rows],
        document_rows=json.loads((folder / "documents.json").read_text(encoding="utf-8")),
        headings=[SentenceRef(**r) for r in _read_jsonl(folder / "headings.jsonl")],
        heading_vectors=np.load(folder / "heading_vectors.npy"),
        chunk_heading_ids=[r.get("heading_id") for r in rows],
    )


def _describe(path: Path) -> dict:
    with path.open("rb") as handle:
        return {"bytes": path.stat().st_size, "sha256": hashlib.file_digest(handle, "sha256").hexdigest()}


def _verify_files(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists is there with its size and sha256 (versions written before
    checksums were recorded have no list and get only the shape checks)."""
    for name, expected in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise _damaged(folder, f"{name} is missing")
        found = _describe(path)
        if found["bytes"] != expected["bytes"]:
            raise _damaged(folder, f"{name} has {found['bytes']} bytes, the manifest says {expected['bytes']}")
        if found["sha256"] != expected["sha256"]:
            raise _damaged(folder, f"{name} was changed after the build (its sha256 differs from the manifest's)")


def _verify_shapes(store: LocalStore) -> None:
    dim = store.manifest.get("dim")
    arrays = (("chunk_vectors.npy", store.chunk_vectors, len(store.chunk_list)),
              ("sentence_vectors.npy", store.sentence_vectors, len(store.sentences)),
              ("heading_vectors.npy", store.heading_vectors, len(store.headings)))  # fmt: skip
    for name, vectors, rows in arrays:
        if rows == 0 and vectors.size == 0:
            continue
        if vectors.ndim != 2 or vectors.shape[0] != rows or (rows and dim is not None and vectors.shape[1] != dim):
            raise _damaged(store.path, f"{name} has shape {vectors.shape}, expected ({rows}, {dim})")
    for number, chunk in enumerate(store.chunk_list):
        if chunk.heading is not None and (len(chunk.heading) != 2 or any(type(x) is not int for x in chunk.heading)):
            raise _damaged(store.path, f"chunks.jsonl line {number + 1} has a malformed heading {chunk.heading!r:.40}")
    for number, ids in enumerate(store.chunk_sentence_ids):
        if not isinstance(ids, list) or any(type(i) is not int or not 0 <= i < len(store.sentences) for i in ids):
            raise _damaged(store.path, f"chunks.jsonl line {number + 1} names a sentence that is not in sentences.jsonl")


def _damaged(folder: Path, what: str) -> IndexDamagedError:
    return IndexDamagedError(
        f"The index version {folder.name} in {folder.parent}/ is damaged: {what}. "
        f"Rebuild it with `rag index` (the reports in the data folder are not touched)."
    )


def _read_manifest(folder: Path, version: str) -> dict:
    try:
        return json.loads((folder / version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # missing, unreadable, not UTF-8 or not JSON
        raise _damaged(folder / version, f"manifest.json cannot be read ({error})") from error


def _chunk_from_row(row: dict) -> Chunk:
    row = {k: v for k, v in row.items() if k not in ("sentence_ids", "heading_id")}
    heading = tuple(row["heading"]) if row.get("heading") else None
    return Chunk(**{**row, "sentences": tuple(tuple(s) for s in row["sentences"]), "heading": heading})


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
