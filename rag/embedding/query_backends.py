"""Fast query embedding: the question's vector on the critical path of every `ask`, made cheaper.

Index vectors never change with this setting (documents take `Settings.document_backend`, fp32 ONNX or
PyTorch, transformer.py); only `encode_queries` uses the backend chosen by `Settings.query_backend`:

* ``fp32``: the plain sentence-transformers model (the reference).
* ``int8``: the same model with every ``nn.Linear`` replaced by PyTorch dynamic int8 quantization
  (weights int8, activations quantized per call). Built at load (seconds; ~30 s on a busy CPU); shares the fp32
  model's embedding table and norms, so it costs ~0.1 GB of extra memory, not a second model.
* ``onnx`` / ``onnx-int8``: the model exported to ONNX and run by ONNX Runtime (fp32, or with the
  MatMul weights quantized to int8 per channel in a 7-bit range: without VNNI, AVX2's u8s8 kernels
  saturate on full-range weights and the vectors drift badly). The process never loads the PyTorch
  model for questions then. Needs ``onnxruntime`` at run time and a one-time export
  (``rag model export-onnx``, rag/provision/onnx.py, which also needs ``onnx`` and ``onnxscript``);
  without them the embedder falls back to ``fp32`` with a warning.

bench/run.py measures each against fp32: ``onnx-int8`` was 6.8x faster than fp32 on SweQUAD-MC's 962
questions with recall@5 0.942 vs 0.944, ``onnx`` 3.2x and ``int8`` 2.2x within 0.001
(bench/results/full-int8-20261201.md). The default is ``onnx``: its vectors are the same, to rounding,
on every machine. Dynamic int8 quantization is chaotic instead: a relative 1e-7 change of the token
embeddings (a last-bit difference, as another CPU's kernels make) moves onnx-int8 question vectors by
1-cos 7.1e-3 on average (max 1.9e-2) and fp32 ONNX ones by < 1e-6 (docs/evaluation.md), so int8 answers
near the abstention threshold differ from machine to machine.
"""

from __future__ import annotations

import copy
import itertools
import json
import warnings
from collections.abc import Callable

import numpy as np

from rag.embedding.onnx_runtime import OnnxEncoder, onnx_usable
from rag.errors import ConfigError
from rag.provision.onnx import CHECK_QUESTION, ONNX_FILES, onnx_dir, onnx_ready
from rag.settings import Settings


QUERY_BACKENDS = ("fp32", "int8", "onnx", "onnx-int8")
# A question is embedded from its first 128 tokens (~90 words; keyword search still reads all of it):
# 2,000 digits are 2,000 tokens, which took ~20 s of CPU each to embed in full (issue 27).
QUERY_MAX_TOKENS = 128

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


# -- choosing ------------------------------------------------------------------------------------


def query_encoder(settings: Settings, load_model: Callable[[], object]) -> tuple[QueryEncoder, str]:
    """The query encoder for settings.query_backend, and the backend actually used (an ONNX backend
    without onnxruntime or its exported files falls back to fp32). `load_model()` gives the fp32 SentenceTransformer;
    the ONNX backends never call it, so a query-only process need not load the PyTorch model."""
    backend = check_backend(getattr(settings, "query_backend", "fp32"))
    if backend.startswith("onnx"):
        if onnx_usable(settings, backend, "query_backend", "questions"):
            return OnnxEncoder(settings, backend, max_tokens=QUERY_MAX_TOKENS), backend
        backend = "fp32"  # exactly the pre-export behaviour: no quantization delay at start
    if backend == "int8":
        return torch_query_encoder(quantize_int8(load_model())), backend
    return torch_query_encoder(load_model()), backend


def export_check(settings: Settings) -> dict[str, float]:
    """Cosine of each exported backend's vector to the fp32 model's, for the question the export
    recorded: ~1.0 for onnx, ≥ 0.99 for onnx-int8 (lower means a broken export)."""
    meta = json.loads((onnx_dir(settings) / "meta.json").read_text())
    if "reference" not in meta:  # an export made before the reference vector was recorded
        return {}
    reference = np.asarray(meta["reference"], dtype=np.float32)
    full = settings.replace(embedding_dim=None)
    return {backend: float(OnnxEncoder(full, backend)([CHECK_QUESTION])[0] @ reference)
            for backend in ONNX_FILES if onnx_ready(settings, backend)}  # fmt: skip
