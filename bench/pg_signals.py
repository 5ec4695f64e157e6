"""What one question's retrieval signals cost in each store, on a mid-size corpus (`python bench/pg_signals.py`).

SweQUAD-MC's 521 documents (2,807 chunks, ~14,000 sentences: below the exact-search limit, so the
PostgreSQL store scores every chunk in SQL) are indexed with the tests' hashing embedder at the real
model's 768 dimensions, plus a little seeded noise so that no vector is sparse (sparse vectors
compress, real ones do not, and storage is part of what is measured): the SQL does the same work
whatever the vectors mean, and nothing has to be embedded by the model. Both stores get the same index; each question's
`Store.signals` is timed on both, interleaved, and the signals are compared (same chunk numbers,
dense, sentence and keyword scores within float32 rounding). Writes bench/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import CACHE, RESULTS, SWEQUAD, machine_meta, pct  # noqa: E402


def dense_fake(dim: int = 768):
    """The hashing embedder with seeded noise added: like a real model's, its vectors are dense."""
    import hashlib

    from tests.fakes import FakeEmbedder

    class DenseFake(FakeEmbedder):
        def _vector(self, text: str) -> np.ndarray:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = super()._vector(text) + 0.05 * np.random.default_rng(seed).standard_normal(self.dim)
            return (v / np.linalg.norm(v)).astype(np.float32)

    return DenseFake(dim)


def _top(signals, terms, k: int = 10) -> list[int]:
    """The chunk numbers retrieval would rank first (the stores may score different pools)."""
    from rag.search.retrieve import WEIGHTS, fuse

    fused = fuse(signals.dense, signals.sentence, signals.keyword / (terms.mass or 1.0), WEIGHTS)
    return signals.numbers[np.argsort(-fused, kind="stable")[:k]].tolist()


def measure(url: str, questions: list[str], folder: Path) -> dict:
    from rag.index import load_store
    from rag.index.build import build_index
    from rag.settings import Settings

    embedder = dense_fake()
    local = Settings.from_env().replace(index_dir=folder / "index", data_dir=SWEQUAD / "corpus.jsonl")
    remote = local.replace(store=url)
    builds = {}
    for name, settings in (("local", local), ("postgres", remote)):
        began = time.perf_counter()
        build_index(settings, embedder, data=SWEQUAD / "corpus.jsonl", progress=False)
        builds[name] = round(time.perf_counter() - began, 1)
    stores = {name: load_store(s, embedder.fingerprint()) for name, s in (("local", local), ("postgres", remote))}
    vectors = embedder.encode_queries(questions)
    ms = {name: [] for name in stores}
    same = 0
    for i, (question, vector) in enumerate(zip(questions, vectors)):
        signals, top = {}, {}
        for name in (list(stores) if i % 2 == 0 else list(reversed(stores))):
            terms = stores[name].terms(question)
            began = time.perf_counter()
            signals[name] = stores[name].signals(vector, terms, None)
            ms[name].append((time.perf_counter() - began) * 1000)
            top[name] = _top(signals[name], terms)
        same += top["local"] == top["postgres"]
    return {"chunks": stores["postgres"].chunk_count, "vectors": stores["postgres"].manifest.get("faiss"),
            "build_s": builds, "questions": len(questions), "top10_identical": round(same / len(questions), 4),
            "signals_ms": {name: {"p50": round(pct(v, 50), 2), "p95": round(pct(v, 95), 2)} for name, v in ms.items()},
            "ratio_p50": round(pct(ms["postgres"], 50) / pct(ms["local"], 50), 2)}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--name", default=f"pg-signals-{time.strftime('%Y%m%d-%H%M')}")
    args = parser.parse_args(argv)
    from rag.index.postgres import close_pools
    from rag.provision.postgres_server import TempPostgres

    rows = [json.loads(line) for line in (SWEQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    questions = [" ".join(r["question"].split()) for r in rows[: args.questions]]
    CACHE.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="pg-signals-", dir=CACHE))
    server = TempPostgres(folder / "pg", settings={"shared_buffers": "1GB"}).start()
    try:
        result = {"name": args.name, "meta": machine_meta(None), "command": "python " + " ".join(sys.argv),
                  **measure(server.create_database("signals"), questions, folder)}  # fmt: skip
    finally:
        close_pools()
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = (f"# {args.name}\n\n`{result['command']}`: {result['chunks']:,} chunks ({result['vectors']}), "
            f"{result['questions']} questions, dense hashing embedder at 768 dimensions; code "
            f"{result['meta']['commit'][:7]}{' with uncommitted changes' if result['meta']['dirty'] else ''}.\n\n"
            f"| store | signals p50 ms | p95 ms |\n|---|---:|---:|\n"
            + "".join(f"| {n} | {v['p50']} | {v['p95']} |\n" for n, v in result["signals_ms"].items())
            + f"\nPostgreSQL / local p50: {result['ratio_p50']}×; fused top 10 identical: "
              f"{result['top10_identical']}; build s: {result['build_s']}.\n")  # fmt: skip
    (RESULTS / f"{args.name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
