"""rag train-reader's core on small synthetic samples: held-out figures per source and variant, a
model file the runtime loads, and the same file from the same samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answering.features import FEATURES
from rag.answering.reader import load_reader
from rag.evaluation.reader_data import Sample
from rag.evaluation.train_reader import train, write

SEM, OVERLAP = FEATURES.index("sem"), FEATURES.index("overlap_sentence")


def _samples(count: int = 120, seed: int = 3) -> list[Sample]:
    """Questions with 6 spans each; in answerable ones span 0 holds the answer and is the most similar."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        source = "eval" if i % 3 == 0 else "swequad"
        variant = "asked" if i % 4 else "passage removed"
        answerable = variant == "asked" and i % 7 != 0  # unanswerable ones in every group
        rows = rng.normal(scale=0.1, size=(6, len(FEATURES)))
        labels = np.zeros(6, dtype=bool)
        if answerable:
            rows[0, SEM] += 0.8
            rows[0, OVERLAP] += 0.5
            labels[0] = True
        out.append(Sample(f"q{i}", f"{source}:doc{i % 10}", variant, answerable, rows, labels,
                          np.full(6, 12), (1.0, 0.5, 2.0, 0.1)))  # fmt: skip
    return out


def test_training_reports_held_out_figures_and_writes_a_loadable_model(tmp_path):
    model, report = train(_samples())
    table = report["cross_validated"]
    assert set(table) == {"eval / asked", "eval / passage removed", "swequad / asked", "swequad / passage removed"}
    assert table["eval / asked"]["containment"] > 0.9  # the planted answer span is found on held-out folds
    assert table["swequad / passage removed"]["answerable"] == 0
    assert 0 < report["threshold_at_5_percent"] < 1
    path = tmp_path / "reader.json"
    write(model, path)
    reader = load_reader(path)
    assert reader.threshold(0.05) == pytest.approx(report["threshold_at_5_percent"], rel=1e-9)  # 12 digits kept
    again, _ = train(_samples())
    assert json.dumps(again, sort_keys=True) == json.dumps(model, sort_keys=True)  # same samples, same model


def test_the_confidence_is_fitted_on_held_out_outputs_and_rises_with_the_evidence(tmp_path):
    from rag.answering.reader import JUDGE_FEATURES

    model, _ = train(_samples())
    assert model["confidence"]["inputs"] == ["judge_logit", "p_best", "p_margin"]
    path = tmp_path / "reader.json"
    write(model, path)
    reader = load_reader(path)
    row = np.zeros(len(JUDGE_FEATURES))
    row[JUDGE_FEATURES.index("p_best")] = 0.9
    sure, unsure = reader.confidence_of(0.95, row), reader.confidence_of(0.2, row)
    assert 0.0 < unsure < sure < 1.0


def test_a_confidence_over_other_inputs_is_refused(tmp_path):
    from rag.errors import ConfigError

    model, _ = train(_samples())
    model["confidence"]["inputs"] = ["judge_logit"]
    path = tmp_path / "reader.json"
    write(model, path)
    with pytest.raises(ConfigError, match="confidence-only"):
        load_reader(path)
