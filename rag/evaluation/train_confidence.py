"""`rag train-reader --confidence-only`: refit only the reader's confidence (P(the quote is right)).

The full `rag train-reader` fits the confidence too, on held-out outputs; this refits it alone on the
eval set's dev split for a reader whose selector and judge are kept, in a minute and without the
SweQUAD-MC index.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rag.answering.reader import judge_row, load_reader
from rag.evaluation.dataset import filter_split, load_questions
from rag.evaluation.reader_data import collect
from rag.evaluation.train_reader import confidence_json, fit_confidence, pick, write


def confidence_command(settings, questions: Path, model_file: Path, out: Path) -> dict:
    """Fit only the confidence model of the reader in `model_file` (selector and judge kept), on the
    eval set's dev split as asked over settings.index_dir, and write the model to `out`: minutes, with
    no SweQUAD-MC index. The judge and selector saw these questions in training, so their outputs are
    surer than on new questions; `rag eval` on the test split says how well it holds."""
    from rag.pipeline import Assistant  # loads the model: only when asked

    reader = load_reader(Path(model_file))
    dev = filter_split(load_questions(questions)[0], "dev")  # never the test split
    samples = [s for s in collect(dev, Assistant(settings), "eval") if s.variant == "asked" and len(s.labels)]
    probabilities = [reader.selector.probability(s.rows) for s in samples]
    judged = np.stack([judge_row(p, s.rows, s.hits) for p, s in zip(probabilities, samples)])
    answerability = reader.judge.probability(judged)
    right = np.array([s.answerable and bool(s.labels[pick(p, s.words)]) for p, s in zip(probabilities, samples)])
    fitted = fit_confidence(answerability, judged, right)
    data = json.loads(Path(model_file).read_text(encoding="utf-8"))
    data["confidence"] = confidence_json(fitted, f"{questions} (dev split, {len(samples)} questions as asked; "
                                                 f"the packaged selector and judge's outputs)")  # fmt: skip
    write(data, out)
    load_reader.cache_clear()
    return {"questions": len(samples), "right": int(right.sum()), "out": str(out)}
