"""The one-time ONNX export of the embedding model's query path (`rag model export-onnx`), and where it
lives: beside the model in the cache, stamped with the model's fingerprint so a changed model is
exported again. The encoder that runs it, for questions and for documents, is rag/embedding/onnx_runtime.py.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from rag.errors import ModelError
from rag.provision.model import model_fingerprint, resolve_model
from rag.settings import Settings

ONNX_FOLDER_SUFFIX = "-onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
CHECK_QUESTION = "Hur många bor i kommunen?"


def onnx_dir(settings: Settings) -> Path:
    """Where the exported ONNX copy of the default model lives (beside the model, in the cache)."""
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
    return model_fingerprint(settings)


def export_onnx(settings: Settings, *, int8: bool = True, progress: bool = True) -> Path:
    """Export the query path of the model (transformer, mean pooling, dense layers, normalization) to
    ONNX, and optionally an int8 (MatMul weights, per channel) copy. Takes minutes; run it once."""
    import onnx
    import torch
    from sentence_transformers import SentenceTransformer

    folder = onnx_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    model = SentenceTransformer(resolve_model(settings), device="cpu", local_files_only=True)
    wrapper = _QueryGraph(model).eval()
    prompt = (model.prompts or {}).get("query", "")
    sample = model.tokenizer([prompt + CHECK_QUESTION], return_tensors="pt")
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
    reference = model.encode_query([CHECK_QUESTION], normalize_embeddings=True)[0]
    meta = {"source": _source_fingerprint(settings), "query_prompt": prompt,
            "max_seq_length": int(model.max_seq_length), "seconds": round(time.perf_counter() - began, 1),
            "reference": [float(x) for x in reference]}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
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


