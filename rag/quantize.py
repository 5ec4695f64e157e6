"""Fast query embedding: the question's vector on the critical path of every `ask`, made cheaper.

Documents are always embedded by the full-precision PyTorch model (index vectors never change with
this setting); only `encode_queries` uses the backend chosen by `Settings.query_backend`:

* ``fp32``: the plain sentence-transformers model (the reference).
* ``int8``: the same model with every ``nn.Linear`` replaced by PyTorch dynamic int8 quantization
  (weights int8, activations quantized per call). Built at load (seconds; ~30 s on a busy CPU); shares the fp32
  model's embedding table and norms, so it costs ~0.1 GB of extra memory, not a second model.
* ``onnx`` / ``onnx-int8``: the model exported to ONNX and run by ONNX Runtime (fp32, or with the
  MatMul weights quantized to int8 per channel in a 7-bit range: without VNNI, AVX2's u8s8 kernels
  saturate on full-range weights and the vectors drift badly). The process never loads the PyTorch
  model for questions then. Needs ``onnxruntime`` at run time and a one-time export
  (``python -m rag.quantize export``, which also needs ``onnx`` and ``onnxscript``); without them
  the embedder falls back to ``fp32`` with a warning (the behaviour before this module existed).

bench/run.py measures each against fp32. The default, ``onnx-int8``, was 6.8x faster than fp32
on SweQUAD-MC's 962 questions with recall@5 0.942 vs 0.944, and 3.8x faster on the reports with
recall@5 0.985 vs 0.991; ``onnx`` (3.2x) and ``int8`` (2.2x) kept recall@5 within 0.001 there
(bench/results/full-int8-20261201.md; an earlier run, full-20261201.md, had onnx-int8 at 6.2x).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag.errors import ConfigError, ModelError
from rag.settings import Settings

log = logging.getLogger(__name__)

QUERY_BACKENDS = ("fp32", "int8", "onnx", "onnx-int8")
ONNX_FOLDER_SUFFIX = "-onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}

QueryEncoder = Callable[[list[str]], np.ndarray]


def check_backend(name: str) -> str:
    if name not in QUERY_BACKENDS:
        raise ConfigError(f"Unknown query_backend {name!r}; choose one of {', '.join(QUERY_BACKENDS)}.")
    return name


# -- PyTorch dynamic int8 ------------------------------------------------------------------------


def quantize_int8(model):
    """A copy of `model` (any torch module, e.g. a SentenceTransformer) whose nn.Linear layers are
    dynamically quantized to int8. Everything that is not a Linear weight (embedding table, norms,
    tokenizer) is shared with the original, not copied."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    linear = {id(p) for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()}
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers()) if id(t) not in linear}
    clone = copy.deepcopy(model, memo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.10 points eager quantization users at torchao
        quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return clone.eval()


def torch_query_encoder(model) -> QueryEncoder:
    """encode(texts) -> normalized query vectors, with the model's own query prompt."""

    def encode(texts: list[str]) -> np.ndarray:
        vectors = model.encode_query(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    return encode


# -- ONNX Runtime --------------------------------------------------------------------------------


def onnx_dir(settings: Settings) -> Path:
    """Where the exported ONNX copy of the default model lives (beside the model, in the cache)."""
    from rag.model import resolve_model

    source = Path(resolve_model(settings))
    return source.with_name(source.name + ONNX_FOLDER_SUFFIX)


def onnx_ready(settings: Settings, backend: str) -> bool:
    folder = onnx_dir(settings)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (folder / ONNX_FILES[backend]).is_file() and meta.get("source") == _source_fingerprint(settings)


def _source_fingerprint(settings: Settings) -> dict:
    from rag.model import model_fingerprint

    return model_fingerprint(settings)


class OnnxQueryEncoder:
    """Query vectors from the exported model (pooling, dense layers and normalization are in the graph)."""

    def __init__(self, settings: Settings, backend: str = "onnx-int8", threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = onnx_dir(settings)
        meta = json.loads((folder / "meta.json").read_text())
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)  # same pinning as torch
        if threads:
            options.intra_op_num_threads = threads
        # no busy-waiting between calls: on a shared CPU spinning threads slow everyone down
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # ORT warns about buffer reuse with dynamic shapes; harmless
        self.session = ort.InferenceSession(str(folder / ONNX_FILES[backend]), options,
                                            providers=["CPUExecutionProvider"])  # fmt: skip
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        self.prompt = meta["query_prompt"]
        self.max_length = int(meta["max_seq_length"])
        self.dim = settings.embedding_dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:  # one at a time: questions are short, and no padding enters the graph
            features = self.tokenizer([self.prompt + text], return_tensors="np", truncation=True,
                                      max_length=self.max_length)  # fmt: skip
            inputs = {"input_ids": features["input_ids"].astype(np.int64),
                      "attention_mask": features["attention_mask"].astype(np.int64)}  # fmt: skip
            out.append(self.session.run(None, inputs)[0][0])
        vectors = np.stack(out).astype(np.float32)
        if self.dim:  # Matryoshka: truncate, then normalize again
            vectors = vectors[:, : self.dim]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


def export_onnx(settings: Settings, *, int8: bool = True, progress: bool = True) -> Path:
    """Export the query path of the model (transformer, mean pooling, dense layers, normalization) to
    ONNX, and optionally an int8 (MatMul weights, per channel) copy. Takes minutes; run it once."""
    import onnx
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.model import resolve_model

    folder = onnx_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    model = SentenceTransformer(resolve_model(settings), device="cpu", local_files_only=True)
    wrapper = _QueryGraph(model).eval()
    prompt = (model.prompts or {}).get("query", "")
    sample = model.tokenizer([prompt + "Hur många bor i kommunen?"], return_tensors="pt")
    began = time.perf_counter()
    say(f"Exporting to ONNX in {folder} (takes minutes) ...")
    raw = folder / "export.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (sample["input_ids"], sample["attention_mask"]), str(raw),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "embedding": {0: "batch"}},
                          opset_version=18, dynamo=True)  # fmt: skip
    graph = onnx.load(str(raw))
    _repair(graph)
    onnx.save(graph, str(folder / ONNX_FILES["onnx"]), save_as_external_data=True,
              all_tensors_to_one_file=True, location=ONNX_FILES["onnx"] + ".data")  # fmt: skip
    del graph
    for leftover in folder.glob("export.onnx*"):
        leftover.unlink()
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        say("Quantizing the MatMul weights to int8 ...")
        target = folder / ONNX_FILES["onnx-int8"]
        quantize_dynamic(str(folder / ONNX_FILES["onnx"]), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=True,
                         use_external_data_format=True)  # fmt: skip
        quantized = onnx.load(str(target), load_external_data=False)
        _rename_duplicate_output(quantized)
        onnx.save(quantized, str(target))
    model.tokenizer.save_pretrained(str(folder / "tokenizer"))
    expected = model.encode_query(["Hur många bor i kommunen?"], normalize_embeddings=True)[0]
    meta = {"source": _source_fingerprint(settings), "query_prompt": prompt,
            "max_seq_length": int(model.max_seq_length), "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    for backend in ("onnx", "onnx-int8") if int8 else ("onnx",):
        got = OnnxQueryEncoder(settings.replace(embedding_dim=None), backend)(["Hur många bor i kommunen?"])[0]
        say(f"{backend}: cosine to PyTorch fp32 = {float(got @ expected):.5f}")
    return folder


class _QueryGraph:
    """Built lazily as an nn.Module subclass so importing this file does not import torch."""

    def __new__(cls, model):
        import torch

        class QueryGraph(torch.nn.Module):
            def __init__(self, st):
                super().__init__()
                self.transformer = st[0].auto_model
                self.pooling = st[1]
                self.dense = torch.nn.ModuleList(m for m in list(st)[2:] if hasattr(m, "linear"))

            def forward(self, input_ids, attention_mask):
                hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                vector = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling, prompt included
                for layer in self.dense:
                    vector = layer.activation_function(layer.linear(vector))
                return torch.nn.functional.normalize(vector, dim=-1)

        if model[1].get_config_dict().get("pooling_mode", "mean") != "mean":
            raise ModelError("ONNX export supports mean-pooling models only.")
        return QueryGraph(model)


def _repair(graph) -> None:
    """The exporter's shape annotations trip onnxruntime's quantizer, and it may name an inner tensor
    like the output; drop the annotations (ORT infers shapes) and rename the inner tensor."""
    del graph.graph.value_info[:]
    _rename_duplicate_output(graph)


def _rename_duplicate_output(graph) -> None:
    outputs = {o.name for o in graph.graph.output}
    producers: dict[str, list] = {}
    for node in graph.graph.node:
        for name in node.output:
            producers.setdefault(name, []).append(node)
    for name in outputs:
        nodes = producers.get(name, [])
        for number, node in enumerate(nodes[:-1]):  # the last producer is the graph's output
            inner = f"{name}__inner{number}"
            node.output[:] = [inner if o == name else o for o in node.output]
            for consumer in graph.graph.node:
                if consumer is not nodes[-1]:
                    consumer.input[:] = [inner if i == name else i for i in consumer.input]


# -- choosing ------------------------------------------------------------------------------------


def query_encoder(settings: Settings, load_model: Callable[[], object]) -> tuple[QueryEncoder, str]:
    """The query encoder for settings.query_backend, and the backend actually used (an ONNX backend
    without onnxruntime or its exported files falls back to fp32). `load_model()` gives the fp32 SentenceTransformer;
    the ONNX backends never call it, so a query-only process need not load the PyTorch model."""
    backend = check_backend(getattr(settings, "query_backend", "fp32"))
    if backend.startswith("onnx"):
        try:
            if onnx_ready(settings, backend):
                return OnnxQueryEncoder(settings, backend), backend
            log.warning("query_backend=%s needs a one-time export (python -m rag.quantize export); "
                        "questions are embedded in fp32 meanwhile.", backend)  # fmt: skip
        except ImportError:
            log.warning("query_backend=%s needs onnxruntime; questions are embedded in fp32.", backend)
        backend = "fp32"  # exactly the pre-export behaviour: no quantization delay at start
    if backend == "int8":
        return torch_query_encoder(quantize_int8(load_model())), backend
    return torch_query_encoder(load_model()), backend


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rag.quantize", description="Fast query encoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="export the model to ONNX (fp32 and int8) for query_backend=onnx*")
    export.add_argument("--no-int8", action="store_true")
    export.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")
    sub.add_parser("status", help="which backends are ready")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "export":
        if not args.force and onnx_ready(settings, "onnx" if args.no_int8 else "onnx-int8"):
            print(f"{onnx_dir(settings)} is up to date (--force exports again).")
            return 0
        print(export_onnx(settings, int8=not args.no_int8))
        return 0
    for backend in QUERY_BACKENDS:
        ready = True if not backend.startswith("onnx") else onnx_ready(settings, backend)
        print(f"{backend}: {'ready' if ready else 'not exported'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
