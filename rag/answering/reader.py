"""The learned reader: which span to quote, and the probability that it answers the question.

Two small models trained by `rag train-reader` (rag/evaluation/train_reader.py) and kept as JSON
(rag/answering/reader.json), evaluated here with numpy alone:

* the selector, gradient-boosted trees over the candidate features (features.py): the probability
  that a candidate span holds the answer;
* the judge, a logistic regression over what the selector saw for the whole question (the selector's
  certainty, whether the asked kind is there, the passages' scores, the prior hand-set score;
  train_reader.JUDGE_INPUTS picks which of JUDGE_FEATURES it weighs): the probability that the
  passages answer the question at all (the answer's `answerability`). The assistant abstains below
  the threshold that refuses at most `max_false_refusal` of answerable questions, read off the judge's
  held-out probabilities of the answerable training questions (stored with the model), so a site can
  pick its own operating point;
* the confidence, a logistic regression over the judge's logit and the selector's certainty about
  the quote it picked (CONFIDENCE_INPUTS): the probability that the quote is right, which is what a
  user reads. The judge alone could not say it: it is sure the passages answer when the quote is the
  wrong sentence of the right passage (answers it gave at >= 0.9 were right no more often than the rest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.answering.features import FEATURES, QUESTION_FEATURES
from rag.errors import ConfigError

DEFAULT_READER = Path(__file__).with_name("reader.json")
JUDGE_FEATURES = (
    "p_best", "p_second", "p_margin", "p_top3", "n_likely", "best_sem", "best_overlap", "best_kind_asked",
    "best_kind_missing", "kind_absent_top3", "kind_found", "best_is_heading", "best_is_clause", "best_words",
    "best_passage_rank", "best_misses_year", "best_novel", "best_passage_coverage", "best_missing_max",
    "best_missing_share", "top_missing_max", "least_missing_max", "sem_max", "overlap_max", "top_score",
    "top_dense", "top_coverage", "score_gap", "prior_score", "prior_missing", "prior_confidence", *QUESTION_FEATURES,
)  # fmt: skip
# The hand-set sentence score of the reader before this one (semantic + 0.2 overlap + 0.3 passage score
# + 0.05 kind found; 0.5 off when the asked kind or year is missing): kept as one input of the judge,
# which learns how far to trust it. Its maximum over the spans is a max of a sum, which the judge's
# linear form could not build from the per-span columns; on the eval set's near misses it abstained
# more often than the judge did without it.
CONFIDENCE_INPUTS = ("judge_logit", "p_best", "p_margin")
PRIOR = {"sem": 1.0, "overlap_sentence": 0.2, "passage_score": 0.3, "kind": 0.05, "missing": 0.5}
_INDEX = {name: i for i, name in enumerate(FEATURES)}
_JUDGE = {name: i for i, name in enumerate(JUDGE_FEATURES)}


@dataclass(frozen=True, slots=True)
class Trees:
    """A scikit-learn HistGradientBoostingClassifier's trees as arrays, one row per tree (leaves: feature -1)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    init: float
    rate: float
    depth: int

    def probability(self, rows: np.ndarray) -> np.ndarray:
        trees, count = self.feature.shape[0], rows.shape[0]
        node = np.zeros((trees, count), dtype=np.int64)
        tree = np.arange(trees)[:, None]
        row = np.arange(count)[None, :]
        for _ in range(self.depth):
            feature = self.feature[tree, node]
            inner = feature >= 0
            go_left = rows[row, np.where(inner, feature, 0)] <= self.threshold[tree, node]
            node = np.where(inner, np.where(go_left, self.left[tree, node], self.right[tree, node]), node)
        return _sigmoid(self.init + self.rate * self.value[tree, node].sum(axis=0))

    @classmethod
    def from_json(cls, data: dict) -> Trees:
        arrays = {k: np.asarray(data[k], dtype=np.int64 if k in ("feature", "left", "right") else np.float64)
                  for k in ("feature", "threshold", "left", "right", "value")}  # fmt: skip
        return cls(**arrays, init=float(data["init"]), rate=float(data["rate"]), depth=int(data["depth"]))


@dataclass(frozen=True, slots=True)
class Logistic:
    """Standardized inputs, one weight each: a calibrated probability that is easy to read."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def probability(self, rows: np.ndarray) -> np.ndarray:
        return _sigmoid((rows - self.mean) / self.scale @ self.coef + self.intercept)

    @classmethod
    def from_json(cls, data: dict) -> Logistic:
        return cls(*(np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef")), float(data["intercept"]))


@dataclass(frozen=True, slots=True)
class ReaderModel:
    selector: Trees
    judge: Logistic
    answerable_scores: np.ndarray  # the judge's held-out probabilities of answerable questions, sorted
    meta: dict
    confidence: Logistic | None = None  # None in a model trained before it: the judge's probability is shown

    def confidence_of(self, answerability: float, judged: np.ndarray) -> float:
        """The probability that the picked quote is right, from the judge's probability and its row."""
        if self.confidence is None:
            return answerability
        return float(self.confidence.probability(confidence_row(answerability, judged)[None, :])[0])

    def threshold(self, max_false_refusal: float) -> float:
        """The probability below which the assistant abstains: the `max_false_refusal` quantile of the
        answerable questions' held-out probabilities (refusing at most that share of them)."""
        scores = self.answerable_scores
        if not len(scores) or max_false_refusal <= 0:
            return 0.0
        cut = int(np.floor(max_false_refusal * len(scores)))  # this many may fall below
        return float(scores[min(cut, len(scores) - 1)]) if cut else float(scores[0])


def judge_row(probabilities: np.ndarray, rows: np.ndarray, hits_scores: tuple[float, float, float, float]) -> np.ndarray:
    """The judge's features for one question from the selector's probabilities and the candidate rows.
    `hits_scores`: the top hit's fused score relative to 1, its dense cosine and BM25 coverage, and the
    gap to the second hit."""
    order = np.argsort(-probabilities, kind="stable")
    best = rows[order[0]]
    p = probabilities[order]
    column = lambda name: best[_INDEX[name]]  # noqa: E731
    kinds, ranks, missing = (rows[:, _INDEX[n]] for n in ("kind_match", "passage_rank", "missing_max"))
    asked = column("kind_match") >= 0  # -1: the question asks for no particular kind of item
    top = missing[ranks == ranks.min()]
    return np.array([
        p[0], p[1] if len(p) > 1 else 0.0, p[0] - (p[1] if len(p) > 1 else 0.0), float(p[:3].mean()),
        float((p > 0.5).sum()), column("sem"), column("overlap"),
        # the kind as indicators: "asked and missing" is the near miss, not a value between the other two
        float(asked), float(column("kind_match") == 0), float(asked and not (kinds[ranks <= 2] == 1).any()),
        float((kinds == 1).sum()), column("is_heading"), column("is_clause"), column("words"),
        column("passage_rank"), column("misses_year"), column("novel"), column("passage_coverage"),
        column("missing_max"), column("missing_share"), float(top.min()), float(missing.min()),
        float(rows[:, _INDEX["sem"]].max()), float(rows[:, _INDEX["overlap"]].max()), *hits_scores,
        *_prior(rows), *best[[_INDEX[name] for name in QUESTION_FEATURES]],
    ])  # fmt: skip


def confidence_row(answerability: float, judged: np.ndarray) -> np.ndarray:
    """CONFIDENCE_INPUTS from the judge's probability and its feature row (judge_row)."""
    p = min(max(float(answerability), 1e-6), 1 - 1e-6)
    return np.array([np.log(p / (1 - p)), judged[_JUDGE["p_best"]], judged[_JUDGE["p_margin"]]])


def _prior(rows: np.ndarray) -> tuple[float, float, float]:
    """The prior reader's best span score, whether that span misses the asked kind or year, and the two combined."""
    kinds = rows[:, _INDEX["kind_match"]]
    scores = (PRIOR["sem"] * rows[:, _INDEX["sem"]] + PRIOR["overlap_sentence"] * rows[:, _INDEX["overlap_sentence"]]
              + PRIOR["passage_score"] * rows[:, _INDEX["passage_score"]] + PRIOR["kind"] * (kinds == 1))  # fmt: skip
    best = int(np.argmax(scores))
    missing = float(kinds[best] == 0 or rows[best, _INDEX["misses_year"]] > 0)
    return float(scores[best]), missing, float(scores[best] - PRIOR["missing"] * missing)


@lru_cache(maxsize=4)
def load_reader(path: Path = DEFAULT_READER) -> ReaderModel:
    """The model at `path`, read once per process."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No reader model at {path}. Train one with `rag train-reader --out {path}`, or "
                          "unset RAG_READER_FILE to use the packaged one.") from None  # fmt: skip
    except ValueError as error:
        raise ConfigError(f"The reader model {path} is not valid JSON ({error}); train it again.") from None
    if tuple(data.get("features", ())) != FEATURES or tuple(data.get("judge_features", ())) != JUDGE_FEATURES:
        raise ConfigError(f"The reader model {path} was trained on other features than this version computes; "
                          f"retrain it: rag train-reader --out {path}")  # fmt: skip
    confidence = data.get("confidence")
    if confidence is not None and tuple(confidence.get("inputs", ())) != CONFIDENCE_INPUTS:
        raise ConfigError(f"The reader model {path} has a confidence model over other inputs than this version "
                          f"computes; retrain it: rag train-reader --confidence-only --out {path}")  # fmt: skip
    return ReaderModel(Trees.from_json(data["selector"]), Logistic.from_json(data["judge"]),
                       np.sort(np.asarray(data["answerable_scores"], dtype=np.float64)), data.get("meta", {}),
                       None if confidence is None else Logistic.from_json(confidence))  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
