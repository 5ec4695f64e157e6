"""The framework reference pipeline: Haystack doing the same job with the same model and k.

Runs in its OWN virtual environment (never the project's), as a subprocess of bench/run.py:

    python3.11 -m venv bench/cache/venv-framework
    bench/cache/venv-framework/bin/pip install "torch==2.13.0+cpu" haystack-ai sentence-transformers-haystack
    bench/cache/venv-framework/bin/python bench/framework.py --documents docs.jsonl \
        --questions questions.jsonl --model ~/.cache/tyreso-rag/models/embeddinggemma-300m --out responses.jsonl

Pipeline (Haystack 2/3 components, all defaults except what keeps the comparison fair):
  DocumentSplitter(split_by="word", split_length=120)            ~120-word chunks
  SentenceTransformersDocumentEmbedder(prefix="title: none | text: ", normalize_embeddings=True)
  InMemoryDocumentStore(embedding_similarity_function="dot_product")
  query: SentenceTransformersTextEmbedder(prefix="task: search result | query: ") -> InMemoryEmbeddingRetriever(top_k=k)
The prefixes are EmbeddingGemma's own prompts (what sentence-transformers' encode_query/encode_document
add), so the framework embeds exactly as our pipeline does. The answer is the sentence of the top
passage sharing the most words with the question (no LLM). Each response is written in our response
format (rag/response.py) with timings_ms measured around the query pipeline's run().

Document vectors are cached in --cache (by a hash of the chunk texts and the model folder), so a
second run only measures queries. This file imports nothing from `rag`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

QUERY_PREFIX = "task: search result | query: "
DOCUMENT_PREFIX = "title: none | text: "
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Haystack reference pipeline")
    parser.add_argument("--documents", type=Path, required=True, help="JSONL of {id, title, text}")
    parser.add_argument("--questions", type=Path, required=True, help="JSONL of {id, question}")
    parser.add_argument("--model", required=True, help="local sentence-transformers model folder")
    parser.add_argument("--out", type=Path, required=True, help="responses JSONL")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="folder for cached document vectors")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    began = time.perf_counter()

    import numpy as np
    import torch
    from haystack import Document, Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.documents.read_text(encoding="utf-8").splitlines() if line.strip()]
    documents = [Document(content=r["text"], meta={"doc_id": r["id"], "title": r.get("title", "")}) for r in rows]
    splitter = DocumentSplitter(split_by="word", split_length=args.words, split_overlap=0)
    chunks = splitter.run(documents=documents)["documents"]

    digest = hashlib.sha256(json.dumps([str(args.model), DOCUMENT_PREFIX, [c.content for c in chunks]]).encode()).hexdigest()
    cached = args.cache / f"haystack-vectors-{digest[:16]}.npy" if args.cache else None
    embed_s = None
    if cached is not None and cached.is_file():
        for chunk, vector in zip(chunks, np.load(cached)):
            chunk.embedding = vector.tolist()
    else:
        embedder = SentenceTransformersDocumentEmbedder(model=str(args.model), prefix=DOCUMENT_PREFIX,
                                                        normalize_embeddings=True, local_files_only=True,
                                                        progress_bar=False, batch_size=16)  # fmt: skip
        embedder.warm_up()
        t0 = time.perf_counter()
        chunks = embedder.run(documents=chunks)["documents"]
        embed_s = time.perf_counter() - t0
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, np.array([c.embedding for c in chunks], dtype=np.float32))
    store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
    store.write_documents(chunks)

    query = Pipeline()
    query.add_component("embedder", SentenceTransformersTextEmbedder(
        model=str(args.model), prefix=QUERY_PREFIX, normalize_embeddings=True, local_files_only=True,
        progress_bar=False))  # fmt: skip
    query.add_component("retriever", InMemoryEmbeddingRetriever(document_store=store, top_k=args.k))
    query.connect("embedder.embedding", "retriever.query_embedding")
    query.warm_up()
    ready_s = time.perf_counter() - began

    questions = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = {r["id"]: r["text"] for r in rows}
    for row in questions[: args.warmup]:
        query.run({"embedder": {"text": "uppvärmning " + row["question"]}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for row in questions:
            question = " ".join(str(row["question"]).split())
            t0 = time.perf_counter()
            found = query.run({"embedder": {"text": question}})["retriever"]["documents"]
            retrieved = time.perf_counter()
            response = _response(row["id"], question, found, texts)
            done = time.perf_counter()
            response["timings_ms"] = {"retrieve": (retrieved - t0) * 1000, "answer": (done - retrieved) * 1000,
                                      "total": (done - t0) * 1000}  # fmt: skip
            out.write(json.dumps(response, ensure_ascii=False) + "\n")
    info = {"framework": "haystack", "chunks": len(chunks), "ready_s": round(ready_s, 2),
            "document_embedding_s": None if embed_s is None else round(embed_s, 1),
            "versions": _versions()}  # fmt: skip
    print(json.dumps(info), file=sys.stderr)
    (args.out.with_suffix(".info.json")).write_text(json.dumps(info))
    return 0


def _response(question_id, question: str, found, texts: dict) -> dict:
    passages = []
    for rank, doc in enumerate(found):
        start = int(doc.meta.get("split_idx_start", 0))
        passages.append({"chunk_id": f"{doc.meta['doc_id']}#h{doc.meta.get('split_id', rank)}",
                         "doc_id": doc.meta["doc_id"], "title": doc.meta.get("title"), "date": None,
                         "diarienummer": None, "section": "", "text": doc.content, "start": start,
                         "end": start + len(doc.content), "score": round(float(doc.score or 0.0), 6)})  # fmt: skip
    citations = []
    if found:
        best = _best_sentence(question, found[0].content)
        if best:
            s, e = best
            top = passages[0]
            citations = [{"n": 1, **top, "start": top["start"] + s, "end": top["start"] + e,
                          "passage_start": top["start"], "passage_end": top["end"],
                          "quote": found[0].content[s:e], "score": top["score"]}]  # fmt: skip
    return {"id": question_id, "question": question, "answer": f"{citations[0]['quote']} [1]" if citations else "",
            "answered": bool(citations), "citations": citations, "passages": passages}  # fmt: skip


def _best_sentence(question: str, text: str) -> tuple[int, int] | None:
    wanted = {w for w in _TOKEN.findall(question.lower()) if len(w) > 1}
    best, span = -1, None
    for match in _SENTENCE.finditer(text):
        sentence = match.group().strip()
        if not sentence:
            continue
        overlap = len(wanted & set(_TOKEN.findall(sentence.lower())))
        if overlap > best:
            start = match.start() + (len(match.group()) - len(match.group().lstrip()))
            best, span = overlap, (start, start + len(sentence))
    return span


def _versions() -> dict:
    from importlib.metadata import version

    out = {}
    for name in ("haystack-ai", "sentence-transformers-haystack", "sentence-transformers", "torch", "transformers"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
