"""Ablations behind the retrieval and answer choices: `python eval/ablate.py [--split dev]`.

Runs the eval set once per configuration (the query embeddings are cached after the first) and
prints recall and answer metrics side by side, so each design choice can be re-checked by anyone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.evaluation.dataset import filter_split, load_questions
from rag.evaluation.metrics import score
from rag.index import lexical
from rag.pipeline import Assistant, ask_batch
from rag.settings import Settings

CONFIGS = {
    "dense only": {"fusion_weights": (1.0, 0.0, 0.0)},
    "best sentence only": {"fusion_weights": (0.0, 1.0, 0.0)},
    "BM25 only": {"fusion_weights": (0.0, 0.0, 1.0)},
    "dense + BM25": {"fusion_weights": (0.7, 0.0, 0.5)},
    "dense + sentence": {"fusion_weights": (0.7, 1.0, 0.0)},
    "chosen: dense + sentence + BM25": {},
    "chosen, BM25 weight 0.15": {"fusion_weights": (0.7, 1.0, 0.15)},
    "chosen, passage vector weight 1": {"fusion_weights": (1.0, 1.0, 0.5)},
    "chosen, no date lift": {"date_bonus": 0.0},
    "chosen, no compound splitting": {"_patch": (lexical, "_compound_parts", lambda *a, **k: [])},
}
COLUMNS = ("recall_1", "recall_5", "mrr_10", "containment", "citation_support", "abstention_accuracy",
           "false_refusal_rate")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "eval/questions.jsonl")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--index", type=Path, default=ROOT / "index")
    args = parser.parse_args(argv)
    rows = filter_split(load_questions(args.questions)[0], args.split)
    base = Settings.from_env(index_dir=args.index)
    first = Assistant(base)
    print("| configuration | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, change in CONFIGS.items():
        change = dict(change)
        patch = change.pop("_patch", None)
        with mock.patch.object(*patch) if patch else contextlib.nullcontext():
            # A fresh assistant per configuration: its own settings, and BM25 built under the patch.
            assistant = Assistant(base.replace(**change), embedder=first.embedder)
            report = score(rows, list(ask_batch(rows, assistant, progress=False)))
        values = [getattr(report.overall, c) for c in COLUMNS]
        print(f"| {name} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
