"""Calibrate abstention on data: `python -m rag.calibrate [--questions ...] [--split dev]`.

Asks the eval set's questions, then picks two numbers together: the penalty taken off an answer's
confidence when its quote lacks the kind of thing asked for (a name, a sum, a year...), and the
confidence threshold below which the assistant abstains. The pair chosen abstains on the most
unanswerable questions while refusing at most the budgeted share of answerable ones; among equals,
the smallest penalty wins. Both are written, with the chosen penalty's whole trade-off curve, to
rag/calibration.json, which Settings reads as its defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
PENALTIES = tuple(round(p, 2) for p in np.arange(0.0, 1.01, 0.1))


def choose_threshold(answerable: np.ndarray, unanswerable: np.ndarray, max_false_refusal: float) -> dict:
    """The threshold that abstains on the most unanswerable questions within the refusal budget, and
    among those the one that refuses fewest answerable ones. Each threshold sits halfway between two
    neighbouring confidences (it classifies the data as any value between them would), so neither
    side is decided by a hair."""
    values = np.unique(np.concatenate([answerable, unanswerable, [0.0]]))
    cuts = np.concatenate([[values[0]], (values[1:] + values[:-1]) / 2])
    best = {"threshold": 0.0, "abstention": 0.0, "false_refusal": 0.0}
    curve = []
    for threshold in cuts:
        point = {
            "threshold": round(float(threshold), 4),
            "abstention": round(float(np.mean(unanswerable < threshold)) if len(unanswerable) else 0.0, 4),
            "false_refusal": round(float(np.mean(answerable < threshold)) if len(answerable) else 0.0, 4),
        }
        curve.append(point)
        within = point["false_refusal"] <= max_false_refusal
        if within and (point["abstention"], -point["false_refusal"]) > (best["abstention"], -best["false_refusal"]):
            best = point
    return {**best, "max_false_refusal": max_false_refusal, "curve": curve}


def choose_calibration(scores: np.ndarray, missing: np.ndarray, answerable: np.ndarray,
                       max_false_refusal: float, penalties=PENALTIES) -> dict:  # fmt: skip
    """Penalty and threshold together. `scores` are confidences before any penalty; `missing` marks
    answers whose quote lacks what the question asks for; `answerable` marks answerable questions."""
    best = None
    for penalty in penalties:
        confidence = scores - penalty * missing
        result = choose_threshold(confidence[answerable], confidence[~answerable], max_false_refusal)
        if best is None or result["abstention"] > best["abstention"]:
            best = {"missing_penalty": float(penalty), **result}
    return best


def load_calibration() -> dict:
    try:
        return json.loads(CALIBRATION_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=Path("eval/questions.jsonl"))
    parser.add_argument("--split", default="dev", help="never calibrate on the test split")
    parser.add_argument("--index", type=Path)
    parser.add_argument("--max-false-refusal", type=float, default=0.05)
    args = parser.parse_args(argv)

    from rag.evaluate import filter_split, load_questions
    from rag.pipeline import Assistant
    from rag.settings import Settings

    rows = filter_split(load_questions(args.questions)[0], args.split)
    settings = Settings.from_env(index_dir=args.index, abstain_threshold=float("-inf"))
    assistant = Assistant(settings.replace(missing_penalty=0.0))
    scores = np.array([assistant.ask(row["question"]).confidence for row in rows])
    # Asked again with a penalty of 1: the answers it lowers are those missing what was asked for.
    assistant.settings = settings.replace(missing_penalty=1.0)
    missing = scores - np.array([assistant.ask(row["question"]).confidence for row in rows]) > 0.5
    answerable = np.array([row.get("type") != "none" for row in rows])
    result = choose_calibration(scores, missing, answerable, args.max_false_refusal)
    result.update(questions=str(args.questions), split=args.split, count=len(rows))
    CALIBRATION_FILE.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"penalty {result['missing_penalty']}, threshold {result['threshold']}: abstains on "
          f"{result['abstention']:.0%} of unanswerable, refuses {result['false_refusal']:.0%} of answerable "
          f"({len(rows)} questions, split {args.split}).")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
