"""`rag eval`: ask (or read saved responses for) a question set, score it, write the report, and
compare it with a baseline."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.errors import InputError
from rag.evaluation.compare import compare
from rag.evaluation.dataset import filter_split, load_questions, load_responses
from rag.evaluation.metrics import EvalReport, risk_coverage, score
from rag.evaluation.report import ceiling_table, report_to_dict, summary_table, write_report
from rag.settings import Settings


def default_name(questions: Path, split: str) -> str:
    # Both our set and external ones tend to be called questions.jsonl; the folder tells them apart.
    stem = questions.stem
    if stem == "questions" and questions.parent.name not in ("", ".", "eval"):
        stem = questions.parent.name
    return f"{stem}-{split}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    questions, problems = load_questions(args.questions)
    for problem in problems:
        print(f"Warning: {args.questions}: {problem}", file=sys.stderr)
    questions = filter_split(questions, args.split)
    baseline = _load_baseline(args.compare) if args.compare else None  # fail fast, before an hour of asking
    report = _evaluate(args, settings, questions)
    standalone = _standalone_rows(questions)
    if standalone and not args.responses:  # the follow-ups' ceiling: the same questions written out in full
        ceiling = _evaluate(args, settings, standalone, save=False)
        write_report(ceiling, (args.name or default_name(Path(args.questions), args.split)) + "-standalone",
                     Path(args.out_dir), meta={"questions": str(args.questions), "split": args.split})  # fmt: skip
        print(ceiling_table(report, ceiling))
    name = args.name or default_name(Path(args.questions), args.split)
    if getattr(args, "filter_slice", False):
        _filtered(args, settings, questions, name)
    meta = {"name": name, "questions": str(args.questions), "split": args.split,
            "responses": str(args.responses) if args.responses else None}  # fmt: skip
    paths = write_report(report, name, Path(args.out_dir), meta=meta)
    print(summary_table(report))
    if (share := report.overall.dropped_sentence_share) is not None:
        print(f"Citation check: dropped {share:.3f} of the generated sentences; "
              f"fallback to extractive in {report.overall.fallback_rate:.3f} of the answers.")
    print(f"Report: {paths['md']} ({paths['json'].name}, {paths['png'].name})")
    if baseline is None:
        return 0
    lines, regressed = compare(report_to_dict(report), baseline, args.tolerance)
    print(f"\nCompared with {args.compare}, question by question (a metric fails when more questions were lost "
          f"than gained by more than max(1.5, {args.tolerance:g} × n); docs/evaluation.md):")
    print("\n".join(f"  {line}" for line in lines))
    if regressed:
        print("Regression: more questions got worse than better, beyond the allowance (REGRESSION lines "
              "above). If the change is intended and explained, regenerate the baseline: docs/evaluation.md.",
              file=sys.stderr)
    return 1 if regressed else 0


def _filtered(args: argparse.Namespace, settings: Settings, questions: list[dict], name: str) -> None:
    """The filtered-question slice (filtered.py), asked and written as its own report <name>-filtered."""
    from rag.evaluation.filtered import filter_slice
    from rag.index import load_store

    if args.responses:
        raise InputError("--filter-slice asks its questions anew; it cannot score saved --responses.")
    store = load_store(settings.replace(index_dir=args.index) if args.index else settings)
    texts: dict[str, list[str]] = {}
    for chunk in store.chunks(range(store.chunk_count)):
        texts.setdefault(chunk.doc_id, []).append(f"{chunk.section}\n{chunk.text}")
    dates = {doc_id: info.date for doc_id, info in store.documents().items()}
    rows = filter_slice(questions, dates, {d: "\n".join(t) for d, t in texts.items()})
    if not rows:
        print("Filter slice: no answerable question tied to one report; nothing to ask.")
        return
    report = _evaluate(args, settings, rows, save=False)
    paths = write_report(report, f"{name}-filtered", Path(args.out_dir), meta={"questions": str(args.questions),
                                                                             "split": args.split})  # fmt: skip
    print("Filtered questions: filter_excluded must abstain, filter_own must still answer")
    print(summary_table(report))
    print(f"Report: {paths['md']}\n")


def _load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"Cannot read the baseline report {path}: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"The baseline report {path} is not a JSON object.")
    return data


def _evaluate(args: argparse.Namespace, settings: Settings, questions: list[dict], save: bool = True) -> EvalReport:
    """The report for the questions, with the risk–coverage curve of every answer before the threshold."""
    responses, unthresholded = _get_responses(args, settings, questions, save)
    report = score(questions, responses)
    curve = risk_coverage(score(questions, unthresholded).records if unthresholded else report.records)
    return dataclasses.replace(report, risk_coverage=curve)


def _get_responses(args: argparse.Namespace, settings: Settings, questions: list[dict],
                   save: bool = True) -> tuple[dict[str, dict], dict[str, dict] | None]:  # fmt: skip
    """(the responses as the pipeline gives them, every extractive answer before its threshold)."""
    if args.responses:
        responses, problems = load_responses(args.responses)
        for problem in problems:
            print(f"Warning: {args.responses}: {problem}", file=sys.stderr)
        if args.save_responses and save:
            used = (responses[q["id"]] for q in questions if q["id"] in responses)
            _save_responses(args.save_responses, used)
        return responses, None
    pipeline = _pipeline()
    settings = settings.replace(index_dir=args.index)
    extractive = (getattr(args, "generator", None) or settings.generator) == "extractive"
    # The extractive reader is asked once without its threshold, so the report can draw the whole
    # risk–coverage curve; an answer below the threshold is then withheld exactly as the pipeline would.
    open_settings = settings.replace(abstain_threshold=float("-inf")) if extractive else settings
    asked = list(_ask_all(pipeline.ask_batch(questions, pipeline.Assistant(open_settings), progress=True), questions))
    unthresholded = {str(r["id"]): r for r in asked} if extractive else None
    if extractive:
        threshold = _threshold(settings)
        asked = [withhold(r) if _below(r, threshold) else r for r in asked]
    if args.save_responses and save:
        asked = _save_responses(args.save_responses, asked)
    return {str(r["id"]): r for r in asked}, unthresholded


def _below(response: dict, threshold: float) -> bool:
    """An answer the pipeline would withhold: the reader's answerability (or, from a version that
    had none, its confidence) is under the threshold."""
    score = response.get("answerability", response.get("confidence"))
    return bool(response.get("answered")) and score is not None and score < threshold


def _threshold(settings: Settings) -> float:
    from rag.answering.reader import load_reader

    if settings.abstain_threshold is not None:
        return settings.abstain_threshold
    return load_reader(settings.reader_file).threshold(settings.max_false_refusal)


def withhold(response: dict) -> dict:
    """The response as the pipeline gives it below the threshold: no answer, the passages kept."""
    from rag.answering.extractive import NO_ANSWER

    return {**response, "answer": NO_ANSWER, "answered": False, "citations": []}


def _standalone_rows(questions: list[dict]) -> list[dict]:
    """Conversation rows asked alone, as their `standalone` versions (no history)."""
    return [{**{k: v for k, v in row.items() if k not in ("history", "standalone")},
             "id": f"{row['id']}~standalone", "question": row["standalone"]}
            for row in questions if row.get("standalone")]  # fmt: skip


def _pipeline():
    """rag.pipeline, imported only when questions are asked (it loads the model and the index)."""
    import rag.pipeline

    return rag.pipeline


def _ask_all(responses: Iterable[dict], questions: list[dict]) -> Iterator[dict]:
    """Responses with their question id filled in if the pipeline left it out."""
    for position, response in enumerate(responses):
        if response.get("id") is None and position < len(questions):
            response = {**response, "id": questions[position]["id"]}
        yield response


def _save_responses(path: Path, responses: Iterable[dict]) -> list[dict]:
    # Written line by line as answers arrive, so an interrupted run keeps what it has.
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    with path.open("w", encoding="utf-8") as out:
        for response in responses:
            out.write(json.dumps(response, ensure_ascii=False) + "\n")
            out.flush()
            kept.append(response)
    return kept

