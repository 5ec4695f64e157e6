"""The exported model run by ONNX Runtime, for questions and for documents alike.

The graph holds the whole sentence-transformers path (transformer, mean pooling, dense layers,
normalization), so a vector is one `session.run`. Questions go one at a time (short, no padding).
Documents go in batches of like length (`batch_tokens`): sorted by token count and cut where a batch's padding would
exceed a small share of its tokens, so the model spends its time on text, not on pad tokens.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from rag.provision.onnx import ONNX_FILES, onnx_dir, onnx_ready
from rag.settings import Settings

log = logging.getLogger(__name__)

# ONNX Runtime 1.29+ sends telemetry on Linux too (a thread looks up mobile.events.data.microsoft.com):
# this variable, read when its environment is created, is the full opt-out; disable_telemetry_events()
# alone is not (tests/web/test_offline.py traces the app to prove it).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

def onnx_usable(settings: Settings, backend: str, setting: str, what: str) -> bool:
    """Whether `backend` (onnx, onnx-int8) can run here: onnxruntime installed and the model exported.
    If not, the warning says what to do and that `what` ("questions", "documents") go through fp32; the
    one rule for the question path (`setting` "query_backend") and the document path."""
    try:
        import onnxruntime  # noqa: F401 - imported after this module set the telemetry opt-out
    except ImportError:
        log.warning("%s=%s needs onnxruntime; %s are embedded in fp32.", setting, backend, what)
        return False
    if not onnx_ready(settings, backend):
        log.warning("%s=%s needs a one-time export (rag model export-onnx); %s are embedded in fp32 meanwhile.",
                    setting, backend, what)  # fmt: skip
        return False
    return True


BATCH_TOKENS = 2048  # tokens per document batch (padding included): large enough to fill both cores
PAD_SHARE = 0.1  # a batch is cut before padding would take more than this share of it


class OnnxEncoder:
    """encode(texts) -> normalized vectors from the exported model; `prompt` is put before each text
    (the query prompt by default; documents come already formatted, with prompt "")."""

    def __init__(self, settings: Settings, backend: str = "onnx", *, prompt: str | None = None,
                 batch_tokens: int = 0, max_tokens: int | None = None, threads: int | None = None):  # fmt: skip
        import onnxruntime as ort
        from transformers import AutoTokenizer

        ort.disable_telemetry_events()  # and the events, should the variable above come too late
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
        self.prompt = meta["query_prompt"] if prompt is None else prompt
        self.max_length = min(int(meta["max_seq_length"]), max_tokens or int(meta["max_seq_length"]))
        self.dim = settings.embedding_dim
        self.batch_tokens = batch_tokens  # 0: one text per call (questions: no padding ever enters the graph)

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(self.prompt + text, add_special_tokens=True)["input_ids"])

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        ids = self.tokenizer([self.prompt + t for t in texts], truncation=True, max_length=self.max_length)["input_ids"]
        vectors = [None] * len(texts)
        for batch in like_length_batches([len(i) for i in ids], self.batch_tokens):
            width = max(len(ids[i]) for i in batch)
            input_ids = np.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            out = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
            for row, i in enumerate(batch):
                vectors[i] = out[row]
        stacked = np.stack(vectors).astype(np.float32)
        if self.dim:  # Matryoshka: truncate, then normalize again (the graph normalized the full vector)
            stacked = stacked[:, : self.dim]
            stacked /= np.linalg.norm(stacked, axis=1, keepdims=True)
        return stacked


def like_length_batches(lengths: list[int], batch_tokens: int = BATCH_TOKENS,
                        pad_share: float = PAD_SHARE) -> list[list[int]]:  # fmt: skip
    """Indices grouped for batching: by length, a batch cut when it would hold more than `batch_tokens`
    (padding included) or when padding would exceed `pad_share` of it. A text alone is its own batch."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            width = lengths[i]  # the longest so far: sorted ascending
            tokens = width * (len(current) + 1)
            real = sum(lengths[j] for j in current) + lengths[i]
            if tokens > batch_tokens or (tokens - real) > pad_share * tokens:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
