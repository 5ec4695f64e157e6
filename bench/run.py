"""The benchmark: speed, cost and quality of our pipeline, side by side with a naive one and Haystack.

    python bench/run.py --quick          # a few minutes: question subsets, no fresh build
    python bench/run.py                  # everything (see bench/README.md for what each number means)

In one run, on the reports (eval/questions.jsonl over data/) and on SweQUAD-MC (its questions over its
own index, bench/cache/swequad_index; or a 64-document sample of it with --sample):
  * per-stage latency p50/p95 after warm-up: query embedding, dense search (chunks, sentences), BM25,
    fusion + ranking, sentence selection, and the whole `Assistant.ask`;
  * every query backend (rag/quantize.py): encode latency, speed-up over fp32, recall@5;
  * the naive pipeline (bench/naive.py) and Haystack (bench/framework.py, own venv, subprocess):
    recall@5 and latency, as ratios to ours;
  * (reports, not --quick) a fresh index build in a subprocess: throughput and peak memory, against
    bare encoding of the same texts; re-index of the unchanged corpus; cold start of `rag ask`.
Results: bench/results/<name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / "cache"
RESULTS = ROOT / "bench" / "results"
SWEQUAD = Path(os.environ.get("BENCH_SWEQUAD", ROOT.parent / "shared" / "bench" / "swequad_mc"))
FRAMEWORK_PYTHON = Path(os.environ.get("BENCH_FRAMEWORK_PYTHON", CACHE / "venv-framework" / "bin" / "python"))
WARMUP = 5
SAMPLE_DOCS = 64

TARGETS = {
    "ask_vs_embed": 1.3,  # warm ask p50 <= 1.3 x bare query-embedding p50
    "vs_framework": 0.5,  # our latency <= 0.5 x the framework's, at equal or better recall@5
    "reindex_s": 2.0,  # unchanged corpus, zero passages embedded
    "build_vs_bare": 0.9,  # build throughput >= 0.9 x bare encoding of the same texts
    "query_speedup": 2.0,  # query embedding >= 2 x faster than fp32 ...
    "recall_drop": 0.01,  # ... within 0.01 recall@5 on SweQUAD-MC
}


# ---------------------------------------------------------------------------------------- helpers


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summary(values) -> dict:
    return {"p50_ms": _r(pct(values, 50)), "p95_ms": _r(pct(values, 95)), "n": len(values)}


def _r(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - began) * 1000


def machine_meta(threads: int | None) -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    import torch

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch_threads": threads or torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def child_env(threads: int | None, **extra) -> dict:
    env = {**os.environ, **extra}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    return env


# --------------------------------------------------------------------------------------- datasets


def datasets(args) -> list[dict]:
    out = [{"name": "reports", "data": ROOT / "data", "questions": ROOT / "eval" / "questions.jsonl",
            "index": CACHE / "reports_index"}]  # fmt: skip
    if args.reports_only:
        return out
    full_index = CACHE / "swequad_index"
    if args.sample or not _has_index(full_index):
        if not args.sample:
            print(f"note: {full_index} is not built; using the {SAMPLE_DOCS}-document sample of SweQUAD-MC. "
                  "Build the full index once with: rag index --data "
                  f"{SWEQUAD / 'corpus.jsonl'} --index {full_index}", file=sys.stderr)  # fmt: skip
        corpus, questions = make_sample()
        out.append({"name": "swequad_sample", "data": corpus, "questions": questions,
                    "index": CACHE / "swequad_sample_index"})  # fmt: skip
    else:
        out.append({"name": "swequad_mc", "data": SWEQUAD / "corpus.jsonl", "questions": SWEQUAD / "questions.jsonl",
                    "index": full_index})  # fmt: skip
    return out


def _has_index(folder: Path) -> bool:
    return (folder / "CURRENT").is_file()


def make_sample(docs: int = SAMPLE_DOCS, seed: int = 0) -> tuple[Path, Path]:
    """A fixed random sample of SweQUAD-MC documents and every question about them."""
    import random

    folder = CACHE / "swequad_sample"
    corpus, questions = folder / "corpus.jsonl", folder / "questions.jsonl"
    if corpus.is_file() and questions.is_file():
        return corpus, questions
    rows = [json.loads(x) for x in (SWEQUAD / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    chosen = sorted(random.Random(seed).sample(range(len(rows)), docs))
    ids = {rows[i]["id"] for i in chosen}
    folder.mkdir(parents=True, exist_ok=True)
    corpus.write_text("".join(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in chosen), encoding="utf-8")
    kept = [x for x in (SWEQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()
            if x.strip() and set(json.loads(x)["relevant_ids"]) <= ids]  # fmt: skip
    questions.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return corpus, questions


def ensure_index(ds: dict, threads: int | None) -> None:
    if _has_index(ds["index"]):
        return
    print(f"building {ds['index']} (once; embedding takes a while) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "rag.cli", "index", "--data", str(ds["data"]), "--index", str(ds["index"])],
                   cwd=ROOT, env=child_env(threads), check=True)  # fmt: skip


def pick_questions(path: Path, limit: int | None) -> list[dict]:
    from rag.evaluation.dataset import load_questions

    rows, _ = load_questions(path)
    if limit and len(rows) > limit:
        step = len(rows) / limit  # spread over the file, not just its start
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


# ----------------------------------------------------------------------------------- our pipeline


class Ours:
    """Our pipeline with one shared fp32 model and one embedder per query backend."""

    def __init__(self, backends: list[str], default: str):
        from rag.embedding.transformer import SentenceTransformerEmbedder
        from rag.settings import Settings

        self.settings = Settings.from_env()
        self.base = SentenceTransformerEmbedder(self.settings.replace(query_backend="fp32"))
        _, self.model_load_ms = timed(lambda: self.base.model)
        self.embedders = {"fp32": self.base}
        self.prepare_ms = {"fp32": 0.0}
        for backend in backends:
            if backend == "fp32":
                continue
            embedder = SentenceTransformerEmbedder(self.settings.replace(query_backend=backend))
            embedder._model = self.base.model  # share the loaded weights (bench only)
            _, self.prepare_ms[backend] = timed(lambda e=embedder: e.query_encoder)
            if embedder.query_backend != backend:
                print(f"note: query backend {backend} is not available here (fell back to "
                      f"{embedder.query_backend}); skipped", file=sys.stderr)  # fmt: skip
                continue
            self.embedders[backend] = embedder
        self.default = default if default in self.embedders else "fp32"

    def assistant(self, index_dir: Path, backend: str):
        from rag.pipeline import Assistant

        settings = self.settings.replace(index_dir=index_dir, query_backend=backend)
        return Assistant(settings, embedder=self.embedders[backend])

    def encode(self, backend: str, question: str) -> tuple[np.ndarray, float, float]:
        """(vector, wall ms, process CPU ms) of one uncached query embedding."""
        embedder = self.embedders[backend]
        embedder._cache.clear()
        cpu = time.process_time()
        vector, ms = timed(embedder.encode_queries, [question])
        return vector[0], ms, (time.process_time() - cpu) * 1000


def stage_times(assistant, question: str, vector: np.ndarray) -> dict:
    """Each stage of one question, by calling the stage functions of the local store, rag.search.retrieve
    and rag.answering.extractive."""
    import rag.search.retrieve as R
    from rag.answering.extractive import extract_answer

    index = assistant.store
    settings = assistant.settings
    out = {}
    _, out["dense_chunks"] = timed(lambda: index.chunk_vectors @ vector)
    _, out["dense_sentences"] = timed(index._best_sentence_scores, vector, slice(None))
    _, out["bm25"] = timed(index.lexical.scores, question)
    kwargs = {}
    params = inspect.signature(R.retrieve).parameters
    if "weights" in params and hasattr(settings, "fusion_weights"):
        kwargs["weights"] = settings.fusion_weights
    if "date_bonus" in params and hasattr(settings, "date_bonus"):
        kwargs["date_bonus"] = settings.date_bonus
    hits, out["retrieve"] = timed(R.retrieve, question, vector, index, k=max(settings.k, 10), **kwargs)
    parts = out["dense_chunks"] + out.get("dense_sentences", 0.0) + out["bm25"]
    out["fusion"] = max(0.0, out["retrieve"] - parts)  # weighted sum, date lift, filters, sort, Hit objects
    _, out["sentence_selection"] = timed(extract_answer, question, vector, hits, index, settings)
    return out


def run_ours(ours: Ours, ds: dict, questions: list[dict], progress: bool) -> dict:
    """Interleaved per question: encode with every backend, the stages, and a full `ask` per backend."""
    from tqdm import tqdm

    from rag.types import answer_to_dict

    assistants = {b: ours.assistant(ds["index"], b) for b in ours.embedders}
    default = ours.default
    index = assistants[default].store
    index.lexical  # noqa: B018 - build BM25 once, outside the timings
    for row in questions[:WARMUP]:  # warm-up: first calls allocate, JIT-compile regexes, fill caches
        for backend, assistant in assistants.items():
            ours.encode(backend, "uppvärmning " + row["question"])
            assistant.ask(row["question"])
    encode = {b: [] for b in assistants}
    encode_cpu = {b: [] for b in assistants}
    stages: dict[str, list[float]] = {}
    ask_ms: list[float] = []
    responses = {b: [] for b in assistants}
    for row in tqdm(questions, desc=f"{ds['name']}: ours", disable=not progress):
        question = " ".join(row["question"].split())
        for backend, assistant in assistants.items():
            vector, ms, cpu = ours.encode(backend, question)
            encode[backend].append(ms)
            encode_cpu[backend].append(cpu)
            if backend == default:
                for stage, value in stage_times(assistant, question, vector).items():
                    stages.setdefault(stage, []).append(value)
                ours.embedders[backend]._cache.clear()  # the real thing, end to end, uncached
                answer, ms = timed(assistant.ask, question)
                ask_ms.append(ms)
            else:
                answer = assistant.ask(question)  # vector cached just above: this is for quality only
            responses[backend].append({"id": row["id"], **answer_to_dict(answer)})
    return {
        "default_backend": default,
        "index_chunks": index.chunk_count,
        "index_sentences": len(index.sentence_vectors),
        "faiss": index.manifest.get("faiss"),
        "encode": {b: {**summary(v), "cpu_p50_ms": _r(pct(encode_cpu[b], 50))} for b, v in encode.items()},
        "encode_raw": encode,
        "stages": {s: summary(v) for s, v in stages.items()},
        "ask": summary(ask_ms),
        "ask_raw": ask_ms,
        "responses": responses,
    }


# ------------------------------------------------------------------------------ reference pipelines


def run_naive(ours: Ours, ds: dict, questions: list[dict], progress: bool) -> dict:
    from tqdm import tqdm

    from bench.naive import build

    began = time.perf_counter()
    pipeline = build(ds["data"], ours.base, k=10, progress=progress)
    ready_s = time.perf_counter() - began
    for row in questions[:WARMUP]:
        pipeline.ask("uppvärmning " + row["question"])
    responses = [pipeline.ask(" ".join(r["question"].split()), r["id"])
                 for r in tqdm(questions, desc=f"{ds['name']}: naive", disable=not progress)]  # fmt: skip
    return {"chunks": len(pipeline.chunks), "ready_s": round(ready_s, 1),
            "latency": summary([r["timings_ms"]["total"] for r in responses]),
            "embed": summary([r["timings_ms"]["embed"] for r in responses]), "responses": responses}  # fmt: skip


def run_framework(ds: dict, questions: list[dict], threads: int | None, work: Path) -> dict:
    """Haystack in its own venv, as a subprocess writing responses in our format."""
    from rag.ingest.documents import read_documents
    from rag.provision.model import resolve_model
    from rag.settings import Settings

    if not FRAMEWORK_PYTHON.is_file():
        return {"error": f"no framework venv at {FRAMEWORK_PYTHON} (see bench/README.md)"}
    documents, _ = read_documents(Path(ds["data"]))  # the same texts our pipeline indexes
    docs_file, questions_file, out = work / f"{ds['name']}-docs.jsonl", work / f"{ds['name']}-q.jsonl", work / f"{ds['name']}-fw.jsonl"
    docs_file.write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n"
                                 for d in documents), encoding="utf-8")  # fmt: skip
    questions_file.write_text("".join(json.dumps({"id": r["id"], "question": r["question"]}, ensure_ascii=False) + "\n"
                                      for r in questions), encoding="utf-8")  # fmt: skip
    cmd = [str(FRAMEWORK_PYTHON), str(ROOT / "bench" / "framework.py"), "--documents", str(docs_file),
           "--questions", str(questions_file), "--model", resolve_model(Settings.from_env()), "--out", str(out),
           "--k", "10", "--warmup", str(WARMUP), "--cache", str(CACHE)]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(threads), capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    responses = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines() if x.strip()]
    info = json.loads(out.with_suffix(".info.json").read_text())
    return {**info, "wall_s": round(time.perf_counter() - began, 1),
            "latency": summary([r["timings_ms"]["total"] for r in responses]), "responses": responses}  # fmt: skip


# ---------------------------------------------------------------------------------------- quality


def quality(questions: list[dict], responses: list[dict]) -> dict:
    from rag.evaluation.metrics import score

    overall = score(questions, responses).overall
    return {key: _r(getattr(overall, key), 4) for key in
            ("recall_1", "recall_5", "recall_10", "mrr_10", "containment", "citation_support", "token_f1")}  # fmt: skip


# ------------------------------------------------------------------------- build, re-index, cold start


def build_child(out_dir: Path, data: Path, threads: int | None) -> int:
    """In a fresh process: build `data` into `out_dir`, then encode the same texts bare; print JSON."""
    import resource
    import tracemalloc

    if threads:
        import torch

        torch.set_num_threads(threads)
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.index import load_store as load_index
    from rag.index.build import build_index
    from rag.index.build import context as _context
    from rag.index.build import owners as _owners
    from rag.settings import Settings

    settings = Settings.from_env().replace(index_dir=out_dir)
    embedder = SentenceTransformerEmbedder(settings)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, load_ms = timed(lambda: embedder.model)
    embedder.encode_documents(["uppvärmning", "ett andra stycke text"], ["", ""])  # warm-up
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    report, build_ms = timed(build_index, settings, embedder, data, False)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = load_index(settings)
    chunk_texts = [c.text for c in index.chunk_list]
    chunk_titles = [_context(c) for c in index.chunk_list]
    owners = _owners(index.chunk_sentence_ids, len(index.sentences))
    sentence_texts = [index.sentence_text(i) for i in range(len(index.sentences))]
    sentence_titles = [_context(index.chunk_list[o]) for o in owners]

    def bare(texts, titles):
        began = time.perf_counter()
        for i in range(0, len(texts), 32):  # the batches build_index uses
            embedder.encode_documents(texts[i : i + 32], titles[i : i + 32])
        return time.perf_counter() - began

    chunks_s = bare(chunk_texts, chunk_titles)
    sentences_s = bare(sentence_texts, sentence_titles)
    again, reindex_ms = timed(build_index, settings, embedder, data, False)
    print(json.dumps({
        "documents": report.documents, "chunks": report.chunks, "sentences": report.sentences,
        "embedded_chunks": report.embedded_chunks, "embedded_sentences": report.embedded_sentences,
        "model_load_s": round(load_ms / 1000, 2), "build_s": round(build_ms / 1000, 2),
        "bare_chunks_s": round(chunks_s, 2), "bare_sentences_s": round(sentences_s, 2),
        "peak_rss_mb": round(rss_build / 1024, 1), "rss_after_model_mb": round(rss_model / 1024, 1),
        "rss_start_mb": round(rss0 / 1024, 1), "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
        "reindex_s": round(reindex_ms / 1000, 3), "reindex_up_to_date": again.up_to_date,
        "reindex_embedded": again.embedded_chunks + again.embedded_sentences, "faiss": index.manifest.get("faiss"),
    }))  # fmt: skip
    return 0


def run_build(threads: int | None) -> dict:
    """Fresh build of data/ in a subprocess (clean peak-memory numbers); the result becomes the reports index."""
    target = CACHE / "reports_index"
    fresh = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_build-child", str(fresh)],
                              cwd=ROOT, env=child_env(threads), capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        shutil.rmtree(target, ignore_errors=True)
        fresh.rename(target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    n_all = result["chunks"] + result["sentences"]
    result["throughput"] = {
        "build_chunks_per_s": _r(result["chunks"] / result["build_s"]),
        "build_texts_per_s": _r(n_all / result["build_s"]),
        "bare_chunks_per_s": _r(result["chunks"] / result["bare_chunks_s"]),
        "bare_texts_per_s": _r(n_all / (result["bare_chunks_s"] + result["bare_sentences_s"])),
    }
    t = result["throughput"]
    t["ratio_total"] = _r(t["build_texts_per_s"] / t["bare_texts_per_s"], 3)  # like for like: the same texts
    t["ratio_chunks_only"] = _r(t["build_chunks_per_s"] / t["bare_chunks_per_s"], 3)  # build also embeds sentences
    return result


def run_reindex(ds: dict, threads: int | None) -> dict:
    """`rag index` of the unchanged corpus, in-process (build_index) and as the CLI (process start to exit)."""
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.index.build import build_index
    from rag.settings import Settings

    settings = Settings.from_env().replace(index_dir=ds["index"])
    report, ms = timed(build_index, settings, SentenceTransformerEmbedder(settings), Path(ds["data"]), False)
    began = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "rag.cli", "index", "--data", str(ds["data"]), "--index", str(ds["index"])],
                         cwd=ROOT, env=child_env(threads), capture_output=True, text=True)  # fmt: skip
    return {"in_process_s": round(ms / 1000, 3), "up_to_date": report.up_to_date,
            "embedded": report.embedded_chunks + report.embedded_sentences,
            "cli_s": round(time.perf_counter() - began, 2), "cli_ok": cli.returncode == 0}  # fmt: skip


def run_cold_start(ds: dict, question: str, backend: str, threads: int | None) -> dict:
    """Process start to first answer: `rag ask --json` in a new process, timed until its answer is printed."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rag.cli", "ask", question, "--json", "--index", str(ds["index"])],
                          cwd=ROOT, env=child_env(threads, RAG_QUERY_BACKEND=backend), capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - began
    try:
        answered = json.loads(done.stdout)["answered"]
    except (json.JSONDecodeError, KeyError):
        answered = None
    return {"backend": backend, "seconds": round(seconds, 2), "ok": done.returncode == 0, "answered": answered}


# ------------------------------------------------------------------------------------------ report


def evaluate_dataset(ds: dict, ours_run: dict, naive: dict | None, framework: dict | None,
                     questions: list[dict]) -> dict:  # fmt: skip
    default = ours_run["default_backend"]
    fp32_encode = ours_run["encode"]["fp32"]["p50_ms"]
    backends = {}
    for backend, stats in ours_run["encode"].items():
        backends[backend] = {**stats, "speedup_p50": _r(fp32_encode / stats["p50_ms"], 2),
                             "speedup_cpu_p50": _r(ours_run["encode"]["fp32"]["cpu_p50_ms"] / stats["cpu_p50_ms"], 2),
                             "quality": quality(questions, ours_run["responses"][backend])}  # fmt: skip
    pipelines = {f"ours ({default})": {"quality": backends[default]["quality"], "latency": ours_run["ask"]}}
    ours_p50 = ours_run["ask"]["p50_ms"]
    for name, run in (("naive", naive), ("haystack", framework)):
        if run is None:
            continue
        if "error" in run:
            pipelines[name] = {"error": run["error"]}
            continue
        pipelines[name] = {"quality": quality(questions, run["responses"]), "latency": run["latency"],
                           "chunks": run.get("chunks"), "ours_latency_ratio": _r(ours_p50 / run["latency"]["p50_ms"], 3)}  # fmt: skip
    return {"questions": len(questions), "index": os.path.relpath(ds["index"], ROOT), "chunks": ours_run["index_chunks"],
            "sentences": ours_run["index_sentences"], "faiss": ours_run["faiss"], "default_backend": default,
            "stages": ours_run["stages"], "ask": ours_run["ask"],
            "ask_vs_embed": _r(ours_p50 / ours_run["encode"][default]["p50_ms"], 3),
            "backends": backends, "pipelines": pipelines}  # fmt: skip


def targets(result: dict) -> list[dict]:
    rows = []
    for name, ds in result["datasets"].items():
        rows.append({"target": f"{name}: warm ask p50 ≤ 1.3× query embedding p50", "value": ds["ask_vs_embed"],
                     "met": ds["ask_vs_embed"] is not None and ds["ask_vs_embed"] <= TARGETS["ask_vs_embed"]})  # fmt: skip
        fw = ds["pipelines"].get("haystack", {})
        if "ours_latency_ratio" in fw:
            ours_q = ds["pipelines"][f"ours ({ds['default_backend']})"]["quality"]["recall_5"]
            ok = fw["ours_latency_ratio"] <= TARGETS["vs_framework"] and ours_q >= fw["quality"]["recall_5"]
            rows.append({"target": f"{name}: latency ≤ 0.5× Haystack at ≥ its recall@5",
                         "value": f"{fw['ours_latency_ratio']}× (recall@5 {ours_q:.3f} vs {fw['quality']['recall_5']:.3f})",
                         "met": ok})  # fmt: skip
    build = result.get("build") or {}
    if "throughput" in build:
        t = build["throughput"]
        rows.append({"target": "build throughput ≥ 0.9× bare encoding (same texts: chunks + sentences)",
                     "value": t["ratio_total"], "met": t["ratio_total"] >= TARGETS["build_vs_bare"]})  # fmt: skip
        rows.append({"target": "build throughput ≥ 0.9× bare encoding (chunks only; build also embeds sentences)",
                     "value": t["ratio_chunks_only"], "met": t["ratio_chunks_only"] >= TARGETS["build_vs_bare"]})  # fmt: skip
    for name, info in (result.get("reindex") or {}).items():
        ok = info["up_to_date"] and info["embedded"] == 0 and info["in_process_s"] <= TARGETS["reindex_s"]
        rows.append({"target": f"{name}: re-index unchanged ≤ 2 s, 0 embedded",
                     "value": f"{info['in_process_s']} s in process ({info['cli_s']} s as `rag index`), "
                              f"{info['embedded']} embedded", "met": ok})  # fmt: skip
    quad = next((ds for n, ds in result["datasets"].items() if n.startswith("swequad")), None)
    if quad:
        base = quad["backends"]["fp32"]["quality"]["recall_5"]
        best = None
        for backend, info in quad["backends"].items():
            if backend == "fp32":
                continue
            drop = base - info["quality"]["recall_5"]
            ok = info["speedup_p50"] >= TARGETS["query_speedup"] and drop <= TARGETS["recall_drop"] + 1e-9
            rows.append({"target": f"query backend {backend}: ≥ 2× fp32, recall@5 within 0.01 ({quad['name'] if 'name' in quad else 'swequad'})",
                         "value": f"{info['speedup_p50']}× wall ({info['speedup_cpu_p50']}× CPU), Δrecall@5 {-drop:+.3f}",
                         "met": ok})  # fmt: skip
            if ok and (best is None or info["speedup_p50"] > best[1]):
                best = (backend, info["speedup_p50"])
        result["recommended_backend"] = best[0] if best else "fp32"
    return rows


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# Benchmark: {result['name']}", "",
             f"Commit {meta['commit'][:12]}{' (+ uncommitted changes)' if meta['dirty'] else ''}, {meta['cores']} cores "
             f"({meta['cpu']}), {meta['memory_gb']} GB, torch threads {meta['torch_threads']}, load average "
             f"{meta['load_average_start']} at start, {meta.get('load_average_end')} at end. The machine was shared "
             "with other work: wall-clock timings are noisy; ratios are measured interleaved, question by question.",
             ""]  # fmt: skip
    for name, ds in result["datasets"].items():
        lines += [f"## {name}: {ds['questions']} questions, {ds['chunks']} chunks / {ds['sentences']} sentences "
                  f"(faiss: {ds['faiss']})", "",
                  "| pipeline | recall@5 | recall@10 | MRR@10 | containment | p50 ms | p95 ms | ours ÷ theirs (p50) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for pname, p in ds["pipelines"].items():
            if "error" in p:
                lines.append(f"| {pname} | – | – | – | – | – | – | {p['error']} |")
                continue
            q, lat = p["quality"], p["latency"]
            lines.append(f"| {pname} | {_f(q['recall_5'])} | {_f(q['recall_10'])} | {_f(q['mrr_10'])} | "
                         f"{_f(q['containment'])} | {lat['p50_ms']:.0f} | {lat['p95_ms']:.0f} | "
                         f"{p.get('ours_latency_ratio', '–')} |")  # fmt: skip
        lines += ["", f"Stages of ours ({ds['default_backend']}), ms:", "", "| stage | p50 | p95 |", "|---|---:|---:|"]
        embed = ds["backends"][ds["default_backend"]]
        lines.append(f"| query embedding | {embed['p50_ms']:.1f} | {embed['p95_ms']:.1f} |")
        for stage, s in ds["stages"].items():
            lines.append(f"| {stage.replace('_', ' ')} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} |")
        lines.append(f"| **ask (total)** | {ds['ask']['p50_ms']:.1f} | {ds['ask']['p95_ms']:.1f} |")
        lines += ["", f"ask p50 ÷ query-embedding p50 = {ds['ask_vs_embed']}", "",
                  "| query backend | p50 ms | p95 ms | CPU p50 ms | speed-up (wall) | speed-up (CPU) | recall@5 | Δ vs fp32 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        base = ds["backends"]["fp32"]["quality"]["recall_5"]
        for backend, b in ds["backends"].items():
            r5 = b["quality"]["recall_5"]
            lines.append(f"| {backend} | {b['p50_ms']:.1f} | {b['p95_ms']:.1f} | {b['cpu_p50_ms']:.1f} | "
                         f"{b['speedup_p50']}× | {b['speedup_cpu_p50']}× | {_f(r5)} | {r5 - base:+.3f} |")  # fmt: skip
        lines.append("")
    build = result.get("build")
    if build and "throughput" in build:
        t = build["throughput"]
        lines += ["## Index build (fresh build of data/ in a new process)", "",
                  f"{build['documents']} documents → {build['chunks']} chunks + {build['sentences']} sentences, "
                  f"all embedded ({build['embedded_chunks']} + {build['embedded_sentences']}); faiss {build['faiss']}.", "",
                  "| | value |", "|---|---:|",
                  f"| build time (model already loaded) | {build['build_s']} s |",
                  f"| model load | {build['model_load_s']} s |",
                  f"| build throughput, chunks/s (chunks ÷ build time) | {t['build_chunks_per_s']} |",
                  f"| bare encoding, chunks/s (same chunks, same batches) | {t['bare_chunks_per_s']} |",
                  f"| build throughput, texts/s (chunks + sentences) | {t['build_texts_per_s']} |",
                  f"| bare encoding, texts/s (same chunks + sentences) | {t['bare_texts_per_s']} |",
                  f"| ratio, same texts | {t['ratio_total']} |",
                  f"| ratio, chunks only | {t['ratio_chunks_only']} |",
                  f"| peak RSS of the build process | {build['peak_rss_mb']} MB (after model load {build['rss_after_model_mb']} MB) |",
                  f"| peak Python/numpy allocations during build (tracemalloc) | {build['tracemalloc_peak_mb']} MB |",
                  ""]  # fmt: skip
    elif build:
        lines += [f"Index build: {build.get('error')}", ""]
    if result.get("cold_start"):
        lines += ["## Cold start (`rag ask --json`, process start to answer printed)", "", "| backend | seconds |", "|---|---:|"]
        lines += [f"| {c['backend']} | {c['seconds']} |" for c in result["cold_start"]]
        lines.append("")
    lines += ["## Targets", "", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]]
    if "recommended_backend" in result:
        lines += ["", f"Recommended query backend (fastest meeting both bounds): **{result['recommended_backend']}**."]
    return "\n".join(lines) + "\n"


def _f(value) -> str:
    return "–" if value is None else f"{value:.3f}"


# -------------------------------------------------------------------------------------------- main


def cold_start_only(args) -> int:
    """Re-measure cold start for some backends and merge it into an existing result."""
    path = RESULTS / f"{args.name}.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    ds = datasets(argparse.Namespace(reports_only=True))[0]
    question = pick_questions(ds["questions"], None)[0]["question"]
    wanted = (args.cold_start or "fp32").split(",")
    measured = {c["backend"]: c for c in result.get("cold_start", [])}
    for backend in wanted:
        measured[backend] = run_cold_start(ds, question, backend, args.threads)
        print(measured[backend], file=sys.stderr)
    result["cold_start"] = list(measured.values())
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (RESULTS / f"{args.name}.md").write_text(markdown(result), encoding="utf-8")
    return 0



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Speed, cost and quality benchmark (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="question subsets, no fresh build: a few minutes")
    parser.add_argument("--name", help="result name (default: quick or full, with the date)")
    parser.add_argument("--threads", type=int, help="torch/BLAS threads for every pipeline (default: library default)")
    parser.add_argument("--backends", default="fp32,int8,onnx,onnx-int8", help="query backends to compare")
    parser.add_argument("--questions", type=int, help="at most this many questions per dataset")
    parser.add_argument("--sample", action="store_true", help=f"SweQUAD-MC: a {SAMPLE_DOCS}-document sample")
    parser.add_argument("--reports-only", action="store_true")
    parser.add_argument("--no-framework", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="skip the fresh build of data/")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--cold-start", help="comma-separated backends for the cold-start measurement "
                        "(default: the default backend and fp32)")  # fmt: skip
    parser.add_argument("--cold-start-only", action="store_true",
                        help="only measure cold start and merge it into results/<name>.json (needs --name)")  # fmt: skip
    parser.add_argument("--stores", action="store_true",
                        help="only the local and PostgreSQL stores side by side (bench/stores.py)")  # fmt: skip
    parser.add_argument("--store", help="with --stores: this postgresql://… database (default: a throwaway server)")
    parser.add_argument("--_build-child", dest="build_child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_child:
        return build_child(args.build_child, ROOT / "data", args.threads)
    os.chdir(ROOT)
    if args.cold_start_only:
        return cold_start_only(args)
    if args.stores:
        from bench.stores import main as stores

        return stores(args, datasets(args))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from rag.settings import Settings

    limit = args.questions or (40 if args.quick else None)
    name = args.name or f"{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d-%H%M')}"
    result: dict = {"name": name, "meta": machine_meta(args.threads), "datasets": {}, "reindex": {}}
    progress = not args.no_progress
    if not (args.quick or args.no_build):
        print("fresh build of data/ ...", file=sys.stderr)
        result["build"] = run_build(args.threads)
    default = getattr(Settings.from_env(), "query_backend", "fp32")
    backends = list(dict.fromkeys(["fp32", default, *[b for b in args.backends.split(",") if b]]))
    ours = Ours(backends, default)
    result["model_load_s"] = round(ours.model_load_ms / 1000, 2)
    result["backend_prepare_s"] = {b: round(ms / 1000, 2) for b, ms in ours.prepare_ms.items()}
    work = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    try:
        for ds in datasets(args):
            ensure_index(ds, args.threads)
            questions = pick_questions(ds["questions"], limit)
            print(f"{ds['name']}: {len(questions)} questions", file=sys.stderr)
            ours_run = run_ours(ours, ds, questions, progress)
            naive = run_naive(ours, ds, questions, progress)
            framework = None if args.no_framework else run_framework(ds, questions, args.threads, work)
            result["datasets"][ds["name"]] = {"name": ds["name"], **evaluate_dataset(ds, ours_run, naive, framework, questions)}
            result["reindex"][ds["name"]] = run_reindex(ds, args.threads)
            if ds["name"] == "reports":
                first = questions[0]["question"]
                wanted = args.cold_start.split(",") if args.cold_start else [ours.default, "fp32"]
                result["cold_start"] = [run_cold_start(ds, first, b, args.threads) for b in dict.fromkeys(wanted)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = targets(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(result)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
