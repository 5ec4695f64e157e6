"""Writing one version's rows into its PostgreSQL schema (binary COPY), inside the caller's transaction.

The keyword side is computed here once per version, exactly as the local store computes it on load:
the same bm25s index over the same stemmed texts, whose per-term weights become `postings`, the same
idf (`terms`) and compound vocabulary; sentence and heading stems are stored with their rows.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from rag.index.lexical import LexicalIndex, stems
from rag.index.local_store import _lexical_text
from rag.index.postgres_sql import version_tables
from rag.index.protocol import IndexContent


def write_version(conn, schema: str, content: IndexContent, dim: int) -> None:
    conn.execute(version_tables(schema, dim))
    lexical = LexicalIndex.build([_lexical_text(c) for c in content.chunks])
    doc_codes = {d.id: i for i, d in enumerate(content.documents)}
    dates = list(dict.fromkeys(d.date for d in content.documents))
    date_codes = {d: i for i, d in enumerate(dates)}
    per_doc = {d.id: 0 for d in content.documents}
    for chunk in content.chunks:
        per_doc[chunk.doc_id] += 1
    texts = {d.id: d.text for d in content.documents}

    copy_rows(conn, f"{schema}.dates (code, date)", ["int4", "text"], enumerate(dates))
    copy_rows(conn, f"{schema}.documents (code, doc_id, title, date, diarienummer, sha256, sections, signed_by, "
                    "date_code, chunks, text)",
              ["int4", "text", "text", "text", "text", "text", "jsonb", "jsonb", "int4", "int4", "text"],
              ((doc_codes[d.id], d.id, d.title, d.date, d.diarienummer, d.sha256,
                [s.heading for s in d.sections], asdict(d.signed_by) if d.signed_by else None,
                date_codes[d.date], per_doc[d.id], d.text) for d in content.documents))  # fmt: skip
    keys = content.keys
    copy_rows(conn, f"{schema}.chunks (number, doc_code, date_code, fields, sentence_ids, heading_id, key, vector)",
              ["int4", "int4", "int4", "jsonb", "int4[]", "int4", "text", "vector"],
              ((n, doc_codes[c.doc_id], date_codes[c.date], asdict(c), ids, heading,
                keys["chunks"][n], content.chunk_vectors[n])
               for n, (c, ids, heading) in enumerate(zip(content.chunks, content.chunk_sentence_ids,
                                                         content.chunk_heading_ids))))  # fmt: skip
    copy_rows(conn, f"{schema}.chunk_sentences (number, sentence_id)", ["int4", "int4"],
              ((n, s) for n, ids in enumerate(content.chunk_sentence_ids) for s in ids))  # fmt: skip
    for table, refs, vectors, key in (("sentences", content.sentences, content.sentence_vectors, "sentences"),
                                      ("headings", content.headings, content.heading_vectors, "headings")):
        def rows(refs=refs, vectors=vectors, key=key):
            for i, ref in enumerate(refs):
                text = texts[ref.doc_id][ref.start : ref.end]
                yield (i, doc_codes[ref.doc_id], ref.start, ref.end, text, sorted(set(stems(text, lexical.vocabulary))),
                       keys.get(key, [""] * len(refs))[i], vectors[i])  # fmt: skip

        copy_rows(conn, f"{schema}.{table} (id, doc_code, start_offset, end_offset, text, stems, key, vector)",
                  ["int4", "int4", "int4", "int4", "text", "text[]", "text", "vector"], rows())  # fmt: skip
    copy_rows(conn, f"{schema}.terms (term, idf)", ["text", "float8"], lexical.idf.items())
    copy_rows(conn, f"{schema}.vocabulary (stem)", ["text"], ((s,) for s in sorted(lexical.vocabulary)))
    copy_rows(conn, f"{schema}.postings (term, numbers, weights)", ["text", "int4[]", "float4[]"],
              postings(lexical))  # fmt: skip


def postings(lexical: LexicalIndex):
    """Per term, the chunks holding it and bm25s's own BM25 weight for each (its CSC score matrix)."""
    matrix = lexical.bm25.scores
    indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
    for term, token_id in lexical.bm25.vocab_dict.items():
        if term not in lexical.idf:  # bm25s' own filler tokens ("", "<empty>") are never asked for
            continue
        lo, hi = int(indptr[token_id]), int(indptr[token_id + 1])
        yield term, indices[lo:hi].astype(np.int64).tolist(), data[lo:hi].astype(np.float64).tolist()


def copy_rows(conn, target: str, types: list[str], rows) -> None:
    with conn.cursor().copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
