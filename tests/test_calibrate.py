"""Choosing the abstention penalty and threshold from confidences (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.calibrate import choose_calibration, choose_threshold


def test_threshold_abstains_most_within_the_refusal_budget_halfway_between_confidences():
    result = choose_threshold(np.array([0.9, 0.8, 0.5]), np.array([0.4, 0.6, 0.85]), max_false_refusal=0.0)
    assert (result["threshold"], result["abstention"], result["false_refusal"]) == (0.45, pytest.approx(1 / 3, abs=1e-4), 0.0)
    looser = choose_threshold(np.array([0.9, 0.8, 0.5]), np.array([0.4, 0.6, 0.85]), max_false_refusal=0.34)
    assert (looser["threshold"], looser["abstention"], looser["false_refusal"]) == (0.7, pytest.approx(2 / 3, abs=1e-4), pytest.approx(1 / 3, abs=1e-4))


def test_among_equal_abstention_the_fewest_refusals_win():
    # Abstaining on the 0.4 is possible at any threshold in (0.4, 0.7]; 0.75 would also refuse the 0.7.
    result = choose_threshold(np.array([0.7, 0.9]), np.array([0.4, 0.95]), max_false_refusal=0.5)
    assert (result["threshold"], result["abstention"], result["false_refusal"]) == (0.55, 0.5, 0.0)


def test_the_smallest_penalty_that_separates_is_chosen():
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.6])
    missing = np.array([False, False, False, True, False])
    answerable = np.array([True, True, True, False, False])
    result = choose_calibration(scores, missing, answerable, max_false_refusal=0.0)
    assert (result["missing_penalty"], result["threshold"], result["abstention"]) == (0.3, 0.675, 1.0)
    without = choose_calibration(scores, missing, answerable, max_false_refusal=0.0, penalties=(0.0,))
    assert (without["threshold"], without["abstention"]) == (0.65, 0.5)
