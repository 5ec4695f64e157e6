"""rag/answering/reader.py: the exported models predict what scikit-learn predicts, the threshold
refuses the share it says, and a missing or stale model file is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answering.features import FEATURES
from rag.answering.reader import JUDGE_FEATURES, ReaderModel, judge_row, load_reader
from rag.errors import ConfigError
from rag.evaluation.train_reader import export_trees, fit_judge, fit_selector


def _data(n: int = 600, features: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, features))
    labels = (rows[:, 0] + 0.5 * rows[:, 1] * rows[:, 2] + rng.normal(scale=0.3, size=n)) > 0.4
    return rows, labels


def test_exported_trees_predict_exactly_what_scikit_learn_predicts():
    rows, labels = _data()
    model = fit_selector(rows, labels)
    trees = export_trees(model)
    assert trees.feature.shape[0] == model.n_iter_ and trees.depth >= 2
    fresh = _data(seed=2)[0]
    assert np.allclose(trees.probability(fresh), model.predict_proba(fresh)[:, 1], atol=1e-12)


def test_the_judge_is_a_standardized_logistic_regression_on_its_inputs_only():
    from sklearn.linear_model import LogisticRegression

    from rag.evaluation.train_reader import JUDGE_C, JUDGE_INPUTS

    rows, labels = _data(features=len(JUDGE_FEATURES))
    used = [i for i, name in enumerate(JUDGE_FEATURES) if name in JUDGE_INPUTS]
    judge = fit_judge(rows, labels)
    x = rows[:, used]
    reference = LogisticRegression(C=JUDGE_C, max_iter=3000).fit((x - x.mean(0)) / x.std(0), labels)
    assert np.allclose(judge.probability(rows), reference.predict_proba((x - x.mean(0)) / x.std(0))[:, 1])
    unused = [i for i in range(len(JUDGE_FEATURES)) if i not in used]
    assert np.all(judge.coef[unused] == 0) and np.all(judge.coef[used] != 0)


def test_the_threshold_refuses_at_most_the_given_share_of_answerable_questions():
    scores = np.linspace(0.05, 0.95, 100)
    model = ReaderModel(None, None, scores, {})
    for share in (0.05, 0.1, 0.2):
        threshold = model.threshold(share)
        assert np.mean(scores < threshold) == pytest.approx(share)
    assert model.threshold(0.0) == 0.0


def test_judge_row_reads_the_best_candidate_and_the_question():
    rows = np.zeros((3, len(FEATURES)))
    rows[:, FEATURES.index("sem")] = (0.2, 0.9, 0.5)
    rows[1, FEATURES.index("is_clause")] = 1.0
    row = judge_row(np.array([0.1, 0.8, 0.3]), rows, (1.5, 0.6, 2.0, 0.2))
    assert len(row) == len(JUDGE_FEATURES)
    value = dict(zip(JUDGE_FEATURES, row))
    assert (value["p_best"], value["p_second"], value["best_sem"], value["best_is_clause"]) == (0.8, 0.3, 0.9, 1.0)
    assert value["p_margin"] == pytest.approx(0.5) and value["n_likely"] == 1.0 and value["score_gap"] == 0.2


def test_judge_row_codes_the_asked_kind_as_indicators_and_keeps_the_prior_score():
    """kind_match is -1 (nothing asked), 0 (asked, missing) or 1 (found): "missing" must not sit
    between the other two for a linear judge, so it becomes indicators."""
    rows = np.zeros((3, len(FEATURES)))
    col = lambda name: FEATURES.index(name)  # noqa: E731
    rows[:, col("sem")] = (0.7, 0.6, 0.2)
    rows[:, col("kind_match")] = (0.0, 1.0, 0.0)
    rows[:, col("passage_rank")] = (0.0, 3.0, 0.0)
    rows[:, col("missing_max")] = (0.5, 0.0, 0.9)
    rows[:, col("passage_score")] = (1.0, 0.5, 1.0)
    value = dict(zip(JUDGE_FEATURES, judge_row(np.array([0.9, 0.2, 0.1]), rows, (1.0, 0.5, 1.0, 0.1))))
    assert (value["best_kind_asked"], value["best_kind_missing"], value["kind_found"]) == (1.0, 1.0, 1.0)
    assert value["kind_absent_top3"] == 1.0  # the one span with the kind is in the 4th passage
    assert (value["best_missing_max"], value["top_missing_max"], value["least_missing_max"]) == (0.5, 0.5, 0.0)
    # the prior score: 0.7 + 0.3 * 1.0 for the first span (0.6 + 0.3 * 0.5 + 0.05 for the second)
    assert value["prior_score"] == pytest.approx(1.0) and value["prior_missing"] == 1.0
    assert value["prior_confidence"] == pytest.approx(0.5)
    rows[:, col("kind_match")] = -1.0
    value = dict(zip(JUDGE_FEATURES, judge_row(np.array([0.9, 0.2, 0.1]), rows, (1.0, 0.5, 1.0, 0.1))))
    assert (value["best_kind_asked"], value["best_kind_missing"], value["kind_absent_top3"]) == (0.0, 0.0, 0.0)


def test_a_missing_or_stale_model_file_says_how_to_train_one(tmp_path):
    with pytest.raises(ConfigError, match="rag train-reader --out"):
        load_reader(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ nej")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_reader(broken)
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"features": ["old"], "judge_features": list(JUDGE_FEATURES)}))
    with pytest.raises(ConfigError, match="other features.*retrain"):
        load_reader(stale)


def test_the_packaged_model_loads_and_matches_this_version():
    model = load_reader()
    assert model.selector.feature.shape[0] > 0 and len(model.answerable_scores) > 50
    assert 0.0 < model.threshold(0.05) < 1.0


def test_the_packaged_model_has_a_confidence_that_rises_with_the_judge():
    model = load_reader()
    row = np.zeros(len(JUDGE_FEATURES))
    row[JUDGE_FEATURES.index("p_best")] = 0.8
    assert model.confidence is not None
    assert model.confidence_of(0.3, row) < model.confidence_of(0.9, row)
