"""The naive reference pipeline: what a first RAG prototype would do, with the same model.

* chunks: paragraphs packed greedily into ~120-word pieces (a longer paragraph is cut every 120 words),
  embedded with the model's plain document prompt ("title: none | text: ...");
* retrieval: dense only, exact inner product over all chunk vectors, top k;
* answer: the sentence of the top passage that shares the most words with the question.

Responses come out in our response format (rag.types) so rag.evaluation.metrics.score judges all pipelines
alike. Chunk vectors are cached in bench/cache/ by a hash of exactly what was embedded.

    python bench/naive.py --data data --questions eval/questions.jsonl --out bench/cache/naive.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.ingest.documents import Document, read_documents
from rag.ingest.sentences import split_sentences

WORDS = 120
CACHE = ROOT / "bench" / "cache"
_PARAGRAPH = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class NaiveChunk:
    id: str
    doc_id: str
    title: str
    text: str
    start: int
    end: int


def paragraph_chunks(doc: Document, words: int = WORDS) -> list[NaiveChunk]:
    """Paragraphs packed into pieces of at most `words` words (document character offsets kept)."""
    text = doc.text
    spans: list[tuple[int, int]] = []  # word spans, paragraph breaks marked by None-separated groups
    pieces: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    pos = 0
    paragraphs = []
    for match in _PARAGRAPH.finditer(text):
        paragraphs.append((pos, match.start()))
        pos = match.end()
    paragraphs.append((pos, len(text)))
    for p_start, p_end in paragraphs:
        spans = [(m.start() + p_start, m.end() + p_start) for m in _WORD.finditer(text[p_start:p_end])]
        if not spans:
            continue
        if current and len(current) + len(spans) > words:
            pieces.append((current[0][0], current[-1][1]))
            current = []
        while len(spans) > words:  # a long paragraph: cut it every `words` words
            if current:
                pieces.append((current[0][0], current[-1][1]))
                current = []
            pieces.append((spans[0][0], spans[words - 1][1]))
            spans = spans[words:]
        current.extend(spans)
    if current:
        pieces.append((current[0][0], current[-1][1]))
    return [NaiveChunk(f"{doc.id}#n{i}", doc.id, doc.title, text[s:e], s, e) for i, (s, e) in enumerate(pieces)]


def corpus_chunks(documents: list[Document], words: int = WORDS) -> list[NaiveChunk]:
    return [chunk for doc in documents for chunk in paragraph_chunks(doc, words)]


def embed_chunks(chunks: list[NaiveChunk], embedder, cache_dir: Path = CACHE, progress: bool = True,
                 batch: int = 32) -> np.ndarray:  # fmt: skip
    """Chunk vectors with the plain document prompt, cached by a hash of texts and model."""
    digest = hashlib.sha256(json.dumps([embedder.fingerprint(), [c.text for c in chunks]]).encode()).hexdigest()
    path = Path(cache_dir) / f"naive-vectors-{digest[:16]}.npy"
    if path.is_file():
        return np.load(path)
    from tqdm import tqdm

    out = []
    texts = [c.text for c in chunks]
    for i in tqdm(range(0, len(texts), batch), desc="naive: embedding", disable=not progress):
        out.append(embedder.encode_documents(texts[i : i + batch], [""] * len(texts[i : i + batch])))
    vectors = np.vstack(out).astype(np.float32) if out else np.zeros((0, embedder.dim), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def best_overlap_sentence(question: str, text: str) -> tuple[int, int] | None:
    """Span of the sentence of `text` sharing the most (lower-cased) words with the question."""
    wanted = {w for w in _TOKEN.findall(question.lower()) if len(w) > 1}
    best, best_span = -1, None
    for start, end in split_sentences(text):
        overlap = len(wanted & set(_TOKEN.findall(text[start:end].lower())))
        if overlap > best:
            best, best_span = overlap, (start, end)
    return best_span


class NaivePipeline:
    """Dense-only retrieval over naive chunks, answers by word overlap; `ask` returns a response dict."""

    def __init__(self, chunks: list[NaiveChunk], vectors: np.ndarray, embedder, k: int = 10):
        self.chunks, self.vectors, self.embedder, self.k = chunks, vectors, embedder, k

    def ask(self, question: str, question_id: str | None = None, cache: bool = False) -> dict:
        began = time.perf_counter()
        if not cache and hasattr(self.embedder, "_cache"):
            self.embedder._cache.clear()  # time the model, not the LRU cache
        query = self.embedder.encode_queries([question])[0]
        embedded = time.perf_counter()
        scores = self.vectors @ query
        k = min(self.k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        searched = time.perf_counter()
        passages = [_passage(self.chunks[i], float(scores[i])) for i in top]
        citations = []
        if passages:
            chunk = self.chunks[top[0]]
            span = best_overlap_sentence(question, chunk.text)
            if span:
                start, end = chunk.start + span[0], chunk.start + span[1]
                citations = [{"n": 1, **passages[0], "start": start, "end": end, "passage_start": chunk.start,
                              "passage_end": chunk.end, "quote": chunk.text[span[0] : span[1]],
                              "score": passages[0]["score"]}]  # fmt: skip
        done = time.perf_counter()
        return {
            "id": question_id,
            "question": question,
            "answer": f"{citations[0]['quote']} [1]" if citations else "",
            "answered": bool(citations),
            "citations": citations,
            "passages": passages,
            "timings_ms": {"embed": (embedded - began) * 1000, "search": (searched - embedded) * 1000,
                           "answer": (done - searched) * 1000, "total": (done - began) * 1000},  # fmt: skip
        }


def _passage(chunk: NaiveChunk, score: float) -> dict:
    return {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "title": chunk.title, "date": None,
            "diarienummer": None, "section": "", "text": chunk.text, "start": chunk.start,
            "end": chunk.end, "score": round(score, 6)}  # fmt: skip


def build(data: Path, embedder, k: int = 10, progress: bool = True) -> NaivePipeline:
    documents, _ = read_documents(Path(data))
    chunks = corpus_chunks(documents)
    return NaivePipeline(chunks, embed_chunks(chunks, embedder, progress=progress), embedder, k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of reports or corpus.jsonl")
    parser.add_argument("--questions", type=Path, help="questions JSONL (omit to only embed the chunks)")
    parser.add_argument("--out", type=Path, help="responses JSONL")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.settings import Settings

    settings = Settings.from_env().replace(query_backend="fp32") if _has_backend() else Settings.from_env()
    pipeline = build(args.data, SentenceTransformerEmbedder(settings), args.k)
    print(f"{len(pipeline.chunks)} naive chunks", file=sys.stderr)
    if args.questions:
        from rag.evaluation.dataset import load_questions

        rows, _ = load_questions(args.questions)
        with (args.out or Path("/dev/stdout")).open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(pipeline.ask(row["question"], row["id"]), ensure_ascii=False) + "\n")
    return 0


def _has_backend() -> bool:
    from rag.settings import Settings

    return "query_backend" in Settings.__dataclass_fields__


if __name__ == "__main__":
    raise SystemExit(main())
