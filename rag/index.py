"""Chunks -> a saved index: FAISS over normalized vectors, chunk and sentence metadata, a manifest.

Layout of the index folder:
    CURRENT            name of the live version folder (replaced atomically)
    v-<stamp>/         manifest.json, chunks.jsonl, sentences.jsonl, documents.json,
                       chunk_vectors.npy, sentence_vectors.npy, faiss.index
A build writes a new version folder completely, then swaps CURRENT, so a crash or Ctrl-C never
leaves a broken index and readers of the old version finish undisturbed. Vectors are reused by a
hash of exactly what was embedded, so only new or changed text is sent to the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.chunks import Chunk, chunk_document
from rag.documents import Document, Skipped, read_documents
from rag.embed import Embedder
from rag.errors import IndexMismatchError, IndexNotFoundError, InputError
from rag.journal import VectorJournal
from rag.settings import Settings

FORMAT_VERSION = 1
# Bump when parsing, sentence splitting or chunking changes what gets indexed: `rag index` then
# rebuilds instead of calling an index of the same files up to date (unchanged text keeps its vectors).
PIPELINE_VERSION = 2
# Up to this many 768-d chunk vectors `retrieve` scores them all exactly (a numpy matrix product,
# memory-bandwidth bound: 16 ms CPU p50 / 22 ms p95 at 50k on 2 busy cores, bench/results/scale.md);
# above it the chunk vectors go into HNSW (M=32), which held p95 8.9 ms (0.5 ms p50) at recall@10
# 0.965 for 1M synthetic 256-d vectors, also when asked for retrieve's 1,000 candidates.
# Smaller (Matryoshka) vectors get a proportionally higher limit. See docs/scaling.md.
EXACT_SEARCH_LIMIT = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
_KEEP_VERSIONS = 2
_BATCH = 32  # texts per model call (and per journal write)


@dataclass(frozen=True, slots=True)
class SentenceRef:
    doc_id: str
    start: int
    end: int


@dataclass(slots=True)
class Index:
    """A loaded index version. Heavy parts (FAISS, BM25) are built once, on first use."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    chunk_vectors: np.ndarray
    sentences: list[SentenceRef]
    sentence_vectors: np.ndarray
    chunk_sentence_ids: list[list[int]]
    documents: dict[str, dict]
    _faiss: object = None
    _lexical: object = None
    _sentence_lookup: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def faiss(self):
        if self._faiss is None:
            import faiss

            self._faiss = faiss.read_index(str(self.path / "faiss.index"))
        return self._faiss

    @property
    def sentence_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sentence ids of all chunks, flattened; where each chunk's run starts (for reduceat); its length."""
        if "table" not in self._sentence_lookup:
            lengths = np.array([len(ids) for ids in self.chunk_sentence_ids], dtype=np.int64)
            flat = np.fromiter((i for ids in self.chunk_sentence_ids for i in ids), dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            self._sentence_lookup["table"] = (flat, starts, lengths)
        return self._sentence_lookup["table"]

    def sentence_text(self, sentence_id: int) -> str:
        ref = self.sentences[sentence_id]
        return self.documents[ref.doc_id]["text"][ref.start : ref.end]

    def sentence_stems(self, sentence_id: int) -> frozenset[str]:
        """Stems of a sentence, computed once: the answer stage compares them with every question."""
        cache = self._sentence_lookup.setdefault("stems", {})
        if sentence_id not in cache:
            from rag.lexical import stems

            cache[sentence_id] = frozenset(stems(self.sentence_text(sentence_id), self.lexical.vocabulary))
        return cache[sentence_id]

    @property
    def lexical(self):
        if self._lexical is None:
            from rag.lexical import LexicalIndex

            self._lexical = LexicalIndex.build([_lexical_text(c) for c in self.chunks])
        return self._lexical


@dataclass(frozen=True, slots=True)
class BuildReport:
    version: str
    documents: int
    chunks: int
    sentences: int
    embedded_chunks: int
    embedded_sentences: int
    skipped: tuple[Skipped, ...]
    up_to_date: bool
    seconds: float


def build_index(
    settings: Settings, embedder: Embedder, data: Path | None = None, progress: bool = True
) -> BuildReport:
    """Index the reports at `data` (default settings.data_dir) into settings.index_dir, incrementally."""
    began = time.perf_counter()
    documents, skipped = read_documents(Path(data or settings.data_dir))
    if not documents:
        raise InputError(
            f"No readable reports in {data or settings.data_dir}. Add .txt, .md, .pdf or .docx files "
            "(or pass a corpus.jsonl) and run `rag index` again."
        )
    fingerprint = embedder.fingerprint()
    head = _manifest_head(settings, fingerprint, documents)
    previous = _load_previous(settings.index_dir)
    if previous is not None and _same_build(previous.manifest, head):
        m = previous.manifest
        return BuildReport(m["version"], len(documents), m["counts"]["chunks"], m["counts"]["sentences"],
                           0, 0, tuple(skipped), True, time.perf_counter() - began)  # fmt: skip
    journal = VectorJournal(settings.index_dir, fingerprint)  # what an interrupted build already embedded
    reusable = {**journal.load(), **_reusable_vectors(previous, fingerprint)}
    chunks = _chunk_all(documents, settings, embedder, reusable)
    if not chunks:
        raise InputError(f"The reports in {data or settings.data_dir} hold no text to index.")
    sentences, chunk_sentence_ids = _sentences_of(chunks)
    chunk_vectors, new_chunks = _vectors(
        [_context(c) for c in chunks], [c.text for c in chunks], embedder, reusable, journal, progress,
        "passager",
    )
    texts_by_doc = {d.id: d.text for d in documents}
    sentence_texts = [texts_by_doc[s.doc_id][s.start : s.end] for s in sentences]
    sentence_contexts = [_context(chunks[owner]) for owner in _owners(chunk_sentence_ids, len(sentences))]
    sentence_vectors, new_sentences = _vectors(
        sentence_contexts, sentence_texts, embedder, reusable, journal, progress, "meningar"
    )
    manifest = {**head, "counts": {"documents": len(documents), "chunks": len(chunks),
                                   "sentences": len(sentences)}}  # fmt: skip
    version = _write_version(settings.index_dir, manifest, documents, chunks, chunk_vectors,
                             sentences, sentence_vectors, chunk_sentence_ids,
                             _keys(chunks, sentences, sentence_contexts, sentence_texts))  # fmt: skip
    journal.clear()
    return BuildReport(version, len(documents), len(chunks), len(sentences), new_chunks, new_sentences,
                       tuple(skipped), False, time.perf_counter() - began)  # fmt: skip


def load_index(settings: Settings, check: dict | None = None) -> Index:
    """The live index in settings.index_dir. `check` (a model fingerprint) refuses a mismatched one."""
    index = _load_previous(settings.index_dir)
    if index is None:
        raise IndexNotFoundError(
            f"No index in {settings.index_dir}/. Build it first: rag index --data {settings.data_dir} "
            f"--index {settings.index_dir}"
        )
    _check_compatible(index.manifest, settings, check)
    return index


def current_version(index_dir: Path) -> str | None:
    """Cheap: the live version's name, for noticing a rebuilt index without reloading it."""
    try:
        return (Path(index_dir) / "CURRENT").read_text().strip() or None
    except FileNotFoundError:
        return None


# -- building -----------------------------------------------------------------------------------


def _manifest_head(settings: Settings, fingerprint: dict, documents: list[Document]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "pipeline_version": PIPELINE_VERSION,
        "model": fingerprint,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "sources": {d.id: d.sha256 for d in documents},
    }


def _same_build(manifest: dict, head: dict) -> bool:
    return all(manifest.get(key) == value for key, value in head.items())


def _reusable_vectors(previous: Index | None, fingerprint: dict) -> dict[str, np.ndarray]:
    """Vectors of the previous version by content key, if it was built with the same model."""
    if previous is None or previous.manifest.get("model") != fingerprint:
        return {}
    keys = json.loads((previous.path / "keys.json").read_text())
    vectors = {k: v for k, v in zip(keys["chunks"], previous.chunk_vectors)}
    vectors.update(zip(keys["sentences"], previous.sentence_vectors))
    return vectors


def _chunk_all(documents, settings: Settings, embedder: Embedder, reusable) -> list[Chunk]:
    def fits(chunk: Chunk) -> bool:
        # Only new text needs the (model-loading) length check; reused text fitted when embedded.
        return _key(_context(chunk), chunk.text) in reusable or embedder.fits(chunk.text, _context(chunk))

    return [
        chunk
        for doc in documents
        for chunk in chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap, fits)
    ]


def _sentences_of(chunks: list[Chunk]) -> tuple[list[SentenceRef], list[list[int]]]:
    """Unique sentences (overlapping chunks share some) and, per chunk, the ids of its sentences."""
    ids: dict[SentenceRef, int] = {}
    per_chunk = []
    for chunk in chunks:
        refs = [SentenceRef(chunk.doc_id, s, e) for s, e in chunk.sentences]
        per_chunk.append([ids.setdefault(ref, len(ids)) for ref in refs])
    return list(ids), per_chunk


def _owners(chunk_sentence_ids: list[list[int]], count: int) -> list[int]:
    """For each sentence, the first chunk that holds it (its context for embedding)."""
    owners = [-1] * count
    for chunk_number, ids in enumerate(chunk_sentence_ids):
        for sentence_id in ids:
            if owners[sentence_id] < 0:
                owners[sentence_id] = chunk_number
    return owners


def _context(chunk: Chunk) -> str:
    """What the embedder is told about where a text comes from."""
    parts = [chunk.title + (f" ({chunk.date})" if chunk.date else "")]
    if chunk.section and chunk.section != chunk.title:
        parts.append(chunk.section)
    return " – ".join(parts)


def _lexical_text(chunk: Chunk) -> str:
    return f"{chunk.section}\n{chunk.text}"


def _key(context: str, text: str) -> str:
    return hashlib.sha256(f"{context}\x00{text}".encode()).hexdigest()[:32]


def _keys(chunks, sentences, sentence_contexts, sentence_texts) -> dict:
    return {
        "chunks": [_key(_context(c), c.text) for c in chunks],
        "sentences": [_key(c, t) for c, t in zip(sentence_contexts, sentence_texts)],
    }


def _vectors(contexts, texts, embedder: Embedder, reusable, journal: VectorJournal, progress: bool,
             label: str) -> tuple[np.ndarray, int]:  # fmt: skip
    """Vectors for all texts, embedding only those whose key is not reusable (each distinct one once)."""
    from tqdm import tqdm

    keys = [_key(c, t) for c, t in zip(contexts, texts)]
    todo = list({k: i for i, k in enumerate(keys) if k not in reusable}.values())
    # Longest first, so each batch holds texts of about one length: less padding for the model to
    # chew on, and the build's memory peak shows in its first batch.
    todo.sort(key=lambda i: -(len(texts[i]) + len(contexts[i])))
    found: dict[str, np.ndarray] = {}
    with tqdm(total=len(todo), desc=f"Bäddar in {label}", unit="st", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), _BATCH):
            batch = todo[start : start + _BATCH]
            vectors = embedder.encode_documents([texts[i] for i in batch], [contexts[i] for i in batch])
            journal.append([keys[i] for i in batch], vectors)
            found.update(zip((keys[i] for i in batch), vectors))
            bar.update(len(batch))
    rows = [found[k] if k in found else reusable[k] for k in keys]
    dim = len(rows[0]) if rows else 0
    return (np.vstack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)), len(todo)


def _write_version(index_dir: Path, manifest, documents, chunks, chunk_vectors, sentences,
                   sentence_vectors, chunk_sentence_ids, keys) -> str:  # fmt: skip
    """Write a complete version folder aside, then point CURRENT at it in one rename."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
    staging = index_dir / f".{version}.tmp"
    try:
        staging.mkdir()
        manifest = {**manifest, "version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "faiss": _write_faiss(staging, chunk_vectors), "dim": int(chunk_vectors.shape[1])}  # fmt: skip
        np.save(staging / "chunk_vectors.npy", chunk_vectors)
        np.save(staging / "sentence_vectors.npy", sentence_vectors)
        _write_jsonl(staging / "chunks.jsonl",
                     ({**asdict(c), "sentence_ids": ids} for c, ids in zip(chunks, chunk_sentence_ids)))  # fmt: skip
        _write_jsonl(staging / "sentences.jsonl", (asdict(s) for s in sentences))
        _write_json(staging / "documents.json", {d.id: _document_row(d) for d in documents})
        _write_json(staging / "keys.json", keys)
        _write_json(staging / "manifest.json", manifest)
        _fsync_dir(staging)
        staging.rename(index_dir / version)
        _point_current(index_dir, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(index_dir, keep=version)
    return version


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
            "sha256": doc.sha256, "text": doc.text,
            "sections": [s.heading for s in doc.sections]}  # fmt: skip


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


def _point_current(index_dir: Path, version: str) -> None:
    tmp = index_dir / f".CURRENT.{os.getpid()}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, index_dir / "CURRENT")


def _prune(index_dir: Path, keep: str) -> None:
    """Keep the live version and the one before it (questions in flight may still read it)."""
    versions = sorted((p for p in index_dir.glob("v-*") if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
    for old in versions[:-_KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in index_dir.glob(".v-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


# -- loading ------------------------------------------------------------------------------------


def _load_previous(index_dir: Path) -> Index | None:
    version = current_version(index_dir)
    if version is None:
        return None
    folder = Path(index_dir) / version
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as error:
        raise IndexNotFoundError(
            f"The index in {index_dir}/ is damaged ({error}). Delete the folder and run `rag index`."
        ) from error
    rows = _read_jsonl(folder / "chunks.jsonl")
    chunks = [_chunk_from_row(r) for r in rows]
    return Index(
        path=folder,
        manifest=manifest,
        chunks=chunks,
        chunk_vectors=np.load(folder / "chunk_vectors.npy"),
        sentences=[SentenceRef(**r) for r in _read_jsonl(folder / "sentences.jsonl")],
        sentence_vectors=np.load(folder / "sentence_vectors.npy"),
        chunk_sentence_ids=[r["sentence_ids"] for r in rows],
        documents=json.loads((folder / "documents.json").read_text(encoding="utf-8")),
    )


def _chunk_from_row(row: dict) -> Chunk:
    row = {k: v for k, v in row.items() if k != "sentence_ids"}
    return Chunk(**{**row, "sentences": tuple(tuple(s) for s in row["sentences"])})


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _check_compatible(manifest: dict, settings: Settings, fingerprint: dict | None) -> None:
    problems = []
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(f"format {manifest.get('format_version')} (this version reads {FORMAT_VERSION})")
    if fingerprint is not None and manifest.get("model") != fingerprint:
        problems.append(
            f"model {manifest.get('model', {}).get('model')!r} (settings ask for {fingerprint.get('model')!r}"
            + (", same name but other files or dimension" if manifest.get("model", {}).get("model") == fingerprint.get("model") else "")
            + ")"
        )
    for key, value in (("chunk_tokens", settings.chunk_tokens), ("chunk_overlap", settings.chunk_overlap)):
        if manifest.get(key) != value:
            problems.append(f"{key}={manifest.get(key)} (settings ask for {value})")
    if problems:
        raise IndexMismatchError(
            f"The index in {settings.index_dir}/ was built with {', '.join(problems)}. Rebuild it with "
            f"these settings: rag index --data {settings.data_dir} --index {settings.index_dir}"
        )
