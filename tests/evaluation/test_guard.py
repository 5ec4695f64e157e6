"""The regression guard on real answers: green when only the floats move the way machines make them
move, red when the system really gets worse (docs/evaluation.md says how it decides).

Slow: the real model answers the eval set's dev split three times. The noise sizes are the measured
ones (bench/noise.py): ONNX fp32 question vectors move by 1 - cos < 1e-6 when a kernel's float order
changes, onnx-int8 ones by 7.1e-3 on average; Gaussian noise of σ per component on a unit vector moves
it by d·σ²/2, so σ = sqrt(2 · 1-cos / d).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.evaluation.compare import compare
from rag.evaluation.dataset import filter_split, load_questions
from rag.evaluation.metrics import score
from rag.evaluation.noise import NoisyBackend, NoisyEmbedder
from rag.evaluation.report import report_to_dict
from rag.index import open_backend
from rag.index.build import build_index
from rag.pipeline import Assistant, ask_batch
from rag.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIM = 768
FP32_MOVE, INT8_MOVE = 1e-6, 7.07e-3  # mean 1 - cos across machines, measured (docs/evaluation.md)


def _sigma(one_minus_cos: float) -> float:
    return math.sqrt(2 * one_minus_cos / DIM)


@pytest.fixture(scope="module")
def dev():
    return filter_split(load_questions(ROOT / "eval" / "questions.jsonl")[0], "dev")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Assistant:
    settings = Settings.from_env(data_dir=ROOT / "data", index_dir=ROOT / "index",
                                 feedback_log=tmp_path_factory.mktemp("guard") / "feedback.jsonl")  # fmt: skip
    assistant = Assistant(settings)
    build_index(settings, assistant.embedder, progress=False)  # up to date after scripts/test.sh's build
    return assistant


@pytest.fixture(scope="module")
def reference(plain, dev) -> dict:
    return _report(plain, dev)


def _report(assistant: Assistant, rows: list[dict]) -> dict:
    return report_to_dict(score(rows, list(ask_batch(rows, assistant, progress=False))))


def _noisy(plain: Assistant, sigma: float, seed: int = 1) -> Assistant:
    return Assistant(plain.settings, embedder=NoisyEmbedder(plain.embedder, sigma, seed),
                     backend=NoisyBackend(open_backend(plain.settings), sigma, seed))  # fmt: skip


@pytest.mark.parametrize("move", [FP32_MOVE, INT8_MOVE], ids=["fp32 machine noise", "int8 machine noise"])
def test_vectors_moved_by_machine_noise_keep_the_guard_green(plain, dev, reference, move):
    noisy = _report(_noisy(plain, _sigma(move)), dev)
    lines, regressed = compare(noisy, reference)
    assert not regressed, "\n".join(lines)


def test_a_real_regression_fails_the_guard(plain, dev, reference):
    """The best-sentence signal switched off in the fusion (weight 0): retrieval and quotes get worse."""
    weights = plain.settings.fusion_weights
    broken = Assistant(plain.settings.replace(fusion_weights=(weights[0], 0.0, weights[2])), embedder=plain.embedder)
    lines, regressed = compare(_report(broken, dev), reference)
    assert regressed, "\n".join(lines)
    assert any("REGRESSION" in line for line in lines)
