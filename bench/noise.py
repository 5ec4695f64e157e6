"""How far vectors move between machines, and what that does to answers: `python bench/noise.py`.

1. Kernel sensitivity of each ONNX question backend: the token-embedding table perturbed by a relative
   1e-7 (one float32 ulp, the size of difference another CPU's kernels make), question vectors compared.
2. Passage vectors (PyTorch fp32) embedded one at a time vs in the build's batches of 32.
3. The eval set's dev split asked with its vectors perturbed (rag.evaluation.noise), several seeds
   each: every vector at the fp32 size (another machine, default backends), and question vectors at
   the size that reproduces the onnx-int8 movement with stored vectors at the fp32 size (another
   machine serving with RAG_QUERY_BACKEND=onnx-int8), compared with the unperturbed run by the
   regression guard: how many questions flip, and does the guard stay green.
Writes bench/results/noise.json and noise.md. Needs the model, the ONNX export and index/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.embedding import onnx_runtime  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def kernel_sensitivity(settings: Settings, questions: list[str], backend: str, relative: float = 1e-7) -> dict:
    """1 - cos between question vectors of the exported model and of a copy whose token embeddings
    were scaled by (1 + relative * N(0, 1)) per element."""
    import onnx
    from onnx import numpy_helper

    from rag.provision.onnx import ONNX_FILES, onnx_dir

    source, name = onnx_dir(settings), ONNX_FILES[backend]
    reference = onnx_runtime.OnnxEncoder(settings, backend)(questions)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        copy = Path(tmp)
        shutil.copy(source / "meta.json", copy / "meta.json")
        shutil.copytree(source / "tokenizer", copy / "tokenizer")
        model = onnx.load(str(source / name))
        table = max(model.graph.initializer,
                    key=lambda t: int(np.prod(t.dims)) if t.data_type == onnx.TensorProto.FLOAT else 0)  # fmt: skip
        values = numpy_helper.to_array(table, base_dir=str(source))
        noise = np.random.default_rng(0).standard_normal(values.shape).astype(np.float32)
        table.CopyFrom(numpy_helper.from_array(values * (1 + relative * noise), table.name))
        onnx.save(model, str(copy / name), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=name + ".data")  # fmt: skip
        original = onnx_runtime.onnx_dir
        onnx_runtime.onnx_dir = lambda s: copy
        try:
            moved = onnx_runtime.OnnxEncoder(settings, backend)(questions)
        finally:
            onnx_runtime.onnx_dir = original
    distance = 1.0 - np.sum(reference * moved, axis=1)
    return {"backend": backend, "relative": relative, **_stats(distance)}


def batch_sensitivity(settings: Settings, count: int = 48) -> dict:
    """Max |difference| of passage vectors embedded alone vs in one batch (padding changes the shapes)."""
    from rag.embedding.transformer import SentenceTransformerEmbedder
    from rag.index import load_store
    from rag.index.build import context

    store = load_store(settings)
    chunks = store.chunk_list[:count]
    embedder = SentenceTransformerEmbedder(settings)
    texts, titles = [c.text for c in chunks], [context(c) for c in chunks]
    batched = embedder.encode_documents(texts, titles)
    single = np.vstack([embedder.encode_documents([t], [c]) for t, c in zip(texts, titles)])
    return {"texts": count, "max_abs": float(np.abs(batched - single).max()),
            "one_minus_cos_max": float((1 - np.sum(batched * single, axis=1)).max())}  # fmt: skip


def answer_flips(settings: Settings, rows: list[dict], configs: list[tuple[str, float, float]],
                 seeds: int) -> list[dict]:  # fmt: skip
    """The dev split unperturbed, then perturbed per (label, question σ, stored σ); the guard's verdict per run."""
    from rag.evaluation.compare import compare, flips
    from rag.evaluation.metrics import score
    from rag.evaluation.noise import NoisyBackend, NoisyEmbedder
    from rag.evaluation.report import report_to_dict
    from rag.index import open_backend
    from rag.pipeline import Assistant, ask_batch

    plain = Assistant(settings)
    reference = report_to_dict(score(rows, list(ask_batch(rows, plain, progress=False))))
    out = []
    for label, question_sigma, stored_sigma in configs:
        for seed in range(seeds):
            noisy = Assistant(settings, embedder=NoisyEmbedder(plain.embedder, question_sigma, seed),
                              backend=NoisyBackend(open_backend(settings), stored_sigma, seed))  # fmt: skip
            current = report_to_dict(score(rows, list(ask_batch(rows, noisy, progress=False))))
            changed = sum(a["answer"] != b["answer"] for a, b in zip(reference["records"], current["records"]))
            overall = [f for f in flips(current["records"], reference["records"]) if f.group == "overall"]
            out.append({"config": label, "question_sigma": question_sigma, "stored_sigma": stored_sigma,
                        "seed": seed, "answers_changed": changed, "questions": len(rows),
                        "flipped": {f.outcome: [len(f.lost), len(f.gained)] for f in overall if f.lost or f.gained},
                        "guard_regressed": compare(current, reference)[1]})  # fmt: skip
            print(out[-1], flush=True)
    return out


def _stats(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "p50": float(np.median(values)), "p95": float(np.percentile(values, 95)),
            "max": float(values.max())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--index", type=Path, default=ROOT / "index")
    args = parser.parse_args(argv)
    from rag.evaluation.dataset import filter_split, load_questions

    settings = Settings.from_env(index_dir=args.index)
    rows = filter_split(load_questions(ROOT / "eval" / "questions.jsonl")[0], "dev")
    questions = [r["question"] for r in rows]
    kernels = [kernel_sensitivity(settings, questions, b) for b in ("onnx", "onnx-int8")]
    int8 = kernels[1]["mean"]
    # Unit vectors + N(0, s²) per component move by 1 - cos ≈ d·s²/2: the s that gives int8's mean movement.
    sigma_int8, sigma_fp32 = float(np.sqrt(2 * int8 / 768)), float(np.sqrt(2 * 1e-6 / 768))
    configs = [("fp32 everywhere", sigma_fp32, sigma_fp32), ("int8 questions, fp32 stored", sigma_int8, sigma_fp32)]
    result = {"kernels": kernels, "batches": batch_sensitivity(settings),
              "flips": answer_flips(settings, rows, configs, args.seeds), "sigma_int8": sigma_int8}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "noise.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "noise.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    lines = ["# Machine noise: how far vectors move, and what it does to answers", "",
             "`python bench/noise.py` (dev split of eval/questions.jsonl, index/ of data/).", "",
             "| question backend | 1-cos after a 1e-7 relative change of the token embeddings: mean | p50 | p95 | max |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {k['backend']} | {k['mean']:.2e} | {k['p50']:.2e} | {k['p95']:.2e} | {k['max']:.2e} |"
              for k in result["kernels"]]  # fmt: skip
    b = result["batches"]
    lines += ["", f"Passage vectors (PyTorch fp32), {b['texts']} texts alone vs in one batch: max |Δ| "
                  f"{b['max_abs']:.1e}, max 1-cos {b['one_minus_cos_max']:.1e}.", "",
              "| noise | σ questions | σ stored | seed | answers changed | flipped (lost/gained) | guard |",
              "|---|---:|---:|---:|---:|---|---|"]
    for run in result["flips"]:
        flipped = "; ".join(f"{k} {v[0]}/{v[1]}" for k, v in run["flipped"].items()) or "–"
        verdict = "REGRESSION" if run["guard_regressed"] else "green"
        lines.append(f"| {run['config']} | {run['question_sigma']:.1e} | {run['stored_sigma']:.1e} | {run['seed']} | "
                     f"{run['answers_changed']}/{run['questions']} | "
                     f"{flipped} | {verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
