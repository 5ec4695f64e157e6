"""Calibrate the abstention threshold on data: `python -m rag.calibrate [--questions ...] [--split dev]`.

Asks the eval set's questions, then picks the highest threshold on answer confidence whose
false-refusal rate on answerable questions stays within the budget, and writes it with the whole
trade-off curve to rag/calibration.json, which Settings reads as its default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def choose_threshold(answerable: np.ndarray, unanswerable: np.ndarray, max_false_refusal: float) -> dict:
    """The threshold that abstains on the most unanswerable questions within the refusal budget."""
    candidates = np.unique(np.concatenate([answerable, unanswerable, [0.0]]))
    best = {"threshold": 0.0, "abstention": 0.0, "false_refusal": 0.0}
    curve = []
    for threshold in candidates:
        point = {
            "threshold": round(float(threshold), 4),
            "abstention": round(float(np.mean(unanswerable < threshold)) if len(unanswerable) else 0.0, 4),
            "false_refusal": round(float(np.mean(answerable < threshold)) if len(answerable) else 0.0, 4),
        }
        curve.append(point)
        if point["false_refusal"] <= max_false_refusal and point["abstention"] >= best["abstention"]:
            best = point
    return {**best, "max_false_refusal": max_false_refusal, "curve": curve}


def load_threshold(default: float = 0.0) -> float:
    try:
        return float(json.loads(CALIBRATION_FILE.read_text())["threshold"])
    except (FileNotFoundError, KeyError, ValueError):
        return default


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
    assistant = Assistant(Settings.from_env(index_dir=args.index, abstain_threshold=float("-inf")))
    confidences = {row["id"]: assistant.ask(row["question"]).confidence for row in rows}
    unanswerable = np.array([confidences[r["id"]] for r in rows if r.get("type") == "none"])
    answerable = np.array([confidences[r["id"]] for r in rows if r.get("type") != "none"])
    result = choose_threshold(answerable, unanswerable, args.max_false_refusal)
    result.update(questions=str(args.questions), split=args.split, count=len(rows))
    CALIBRATION_FILE.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"threshold {result['threshold']}: abstains on {result['abstention']:.0%} of unanswerable, "
          f"refuses {result['false_refusal']:.0%} of answerable ({len(rows)} questions, split {args.split}).")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
