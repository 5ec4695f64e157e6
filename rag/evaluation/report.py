"""An eval report on disk: JSON (everything), markdown (tables and every failure) and a chart."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rag.evaluation.dataset import ws
from rag.evaluation.metrics import MAX_CONTAIN_WORDS, RECALL_KS, EvalReport, QuestionRecord

# Direction of each scalar metric for compare(); latency is shown but never decides a regression.
HIGHER_IS_BETTER = ("recall_1", "recall_5", "recall_10", "mrr_10", "ndcg_10", "exact_match", "token_f1",
                    "containment", "citation_support", "abstention_accuracy")  # fmt: skip
LOWER_IS_BETTER = ("false_refusal_rate", "distractor_rate")
INFORMATIONAL = ("latency_p50_ms", "latency_p95_ms", "fallback_rate", "dropped_sentence_share")
LABELS = {"recall_1": "recall@1", "recall_5": "recall@5", "recall_10": "recall@10", "mrr_10": "MRR@10",
          "ndcg_10": "nDCG@10"}  # fmt: skip


def report_to_dict(report: EvalReport, meta: Mapping[str, Any] | None = None) -> dict:
    flags = ("false_refusal", "false_answer", "wrong_answer", "failed_retrieval")
    records = [{**asdict(r), **{flag: getattr(r, flag) for flag in flags}} for r in report.records]
    return {**(meta or {}), "overall": asdict(report.overall),
            "per_type": {t: asdict(m) for t, m in report.per_type.items()},
            "risk_coverage": report.risk_coverage,
            "missing": list(report.missing), "records": records}  # fmt: skip


def write_report(report: EvalReport, name: str, out_dir: Path = Path("eval/reports"),
                 meta: Mapping[str, Any] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write <name>.json, <name>.md and <name>.png; each appears whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    data = json.dumps(report_to_dict(report, meta), ensure_ascii=False, indent=2)
    _write_atomic(paths["json"], lambda tmp: tmp.write_text(data + "\n", encoding="utf-8"))
    _write_atomic(paths["md"], lambda tmp: tmp.write_text(render_markdown(report, name), encoding="utf-8"))
    _write_atomic(paths["png"], lambda tmp: _plot(report, name, tmp))
    return paths


def _write_atomic(path: Path, write) -> None:
    # Readers (CI, a browser on the report folder) never see half a file.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _fmt(value: float | None, key: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"


def _metric_keys() -> list[str]:
    return [*HIGHER_IS_BETTER, *LOWER_IS_BETTER, *INFORMATIONAL]


def render_markdown(report: EvalReport, name: str) -> str:
    columns = {"overall": report.overall, **report.per_type}
    total = report.overall
    lines = [
        f"# Evaluation report: {name}",
        "",
        f"{total.n} questions ({total.n_answerable} answerable, {total.n_unanswerable} unanswerable, "
        f"{total.n_missing} without a response).",
        "",
        "| metric | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        "| n | " + " | ".join(str(m.n) for m in columns.values()) + " |",
    ]
    for key in _metric_keys():
        values = " | ".join(_fmt(getattr(m, key), key) for m in columns.values())
        lines.append(f"| {LABELS.get(key, key)} | {values} |")
    lines += _risk_coverage_lines(report.risk_coverage)
    lines += _problem_sections(report)
    return "\n".join(lines) + "\n"


def _risk_coverage_lines(curve: dict | None) -> list[str]:
    if not curve:
        return []
    points = curve["accuracy_at_coverage"]
    return ["", "## Risk–coverage", "",
            f"Accuracy of the answered questions when only the most confident share of all {curve['questions']} is "
            f"answered (a wrong quote, or any answer to an unanswerable question, is an error); area under the "
            f"curve {curve['area']:.3f}. A site picks its operating point with RAG_MAX_FALSE_REFUSAL.", "",
            "| coverage | " + " | ".join(points) + " |", "|---" * (len(points) + 1) + "|",
            "| accuracy | " + " | ".join(f"{v:.3f}" for v in points.values()) + " |",
            *_calibration_lines(curve.get("calibration"))]  # fmt: skip


def _calibration_lines(table: dict | None) -> list[str]:
    if not table:
        return []
    lines = ["", "## Does the confidence mean what it says?", "",
             f"Over the same {table['questions']} answers (before the threshold): AUROC of confidence for right "
             f"against wrong answers {_fmt(table['auroc'])}; expected calibration error {_fmt(table['ece'])}; "
             f"answers at confidence ≥ 0.9: {table['confident']}, of which right {_fmt(table['precision_at_confident'])}.",
             "", "| confidence | answers | mean confidence | right |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {row['from']:.1f}–{row['to']:.1f} | {row['n']} | {row['confidence']:.3f} | {row['right']:.3f} |"
              for row in table["reliability"]]  # fmt: skip
    return lines


def ceiling_table(followups: EvalReport, standalone: EvalReport) -> str:
    """Follow-up questions against the same questions written out in full, per conversation type."""
    keys = (("containment", "contain"), ("citation_support", "cite"), ("abstention_accuracy", "abstain"),
            ("false_refusal_rate", "falseref"), ("latency_p50_ms", "p50ms"))  # fmt: skip
    head = ["type", "n", *(f"{short} follow-up / alone" for _, short in keys)]
    rows = [head]
    for name, metrics in [*followups.per_type.items(), ("overall", followups.overall)]:
        alone = standalone.overall if name == "overall" else standalone.per_type.get(name)
        cells = [f"{_fmt(getattr(metrics, k), k)} / {_fmt(getattr(alone, k) if alone else None, k)}" for k, _ in keys]
        rows.append([name, str(metrics.n), *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    table = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    return "\nThe follow-ups against the same questions asked alone in full (their ceiling):\n" + table


def _problem_sections(report: EvalReport) -> list[str]:
    sections = [
        ("Missing or failed responses", lambda r: r.missing or r.error),
        ("Wrong answers (answered, gold answer not contained)", lambda r: r.wrong_answer),
        ("False refusals (answerable, not answered)", lambda r: r.false_refusal),
        ("False answers (unanswerable, answered)", lambda r: r.false_answer),
        ("Failed retrievals (no relevant passage in top 10)", lambda r: r.failed_retrieval),
    ]
    lines: list[str] = []
    for title, wanted in sections:
        records = [r for r in report.records if wanted(r)]
        lines += ["", f"## {title} ({len(records)})", ""]
        lines += [_record_markdown(r) for r in records] or ["None."]
    return lines


def _one_line(text: str, limit: int = 400) -> str:
    text = ws(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record_markdown(record: QuestionRecord) -> str:
    lines = [
        f"- **{record.id}** ({record.type}): {_one_line(record.question)}",
        f"  - gold: {' | '.join(record.gold_answers) or '(unanswerable)'}",
        f"  - answer: {_one_line(record.answer) or '(empty)'}",
        f"  - cited: {_cited_markdown(record.first_citation)}",
    ]
    notes = _notes(record)
    return "\n".join(lines + ([f"  - note: {'; '.join(notes)}"] if notes else []))


def _cited_markdown(cite: Mapping | None) -> str:
    if not cite:
        return "no citation"
    quote = _one_line(str(cite.get("quote") or ""))
    return f"{cite.get('doc_id')} / {cite.get('section') or '–'}: “{quote}”"


def _notes(record: QuestionRecord) -> list[str]:
    notes = [
        f"error: {record.error}" if record.error else "",
        "no response" if record.missing else "",
        f"{record.answer_words} words: too long" if record.answer_words > MAX_CONTAIN_WORDS else "",
        "contains a distractor" if record.distractor_hit else "",
        f"first relevant passage at rank {record.first_relevant_rank}" if record.first_relevant_rank else "",
    ]
    return [note for note in notes if note]


def _plot(report: EvalReport, name: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas: no pyplot global state, safe next to a running server.
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right, third = fig.subplots(1, 3)
    curve = [math.nan if v is None else v for v in report.overall.recall_curve]
    left.plot(RECALL_KS, curve, marker="o")
    left.set(title="Retrieval recall@k (overall)", xlabel="k", ylabel="recall", ylim=(0, 1.05))
    left.set_xticks(RECALL_KS)
    left.grid(alpha=0.3)
    types = list(report.per_type) or ["overall"]
    per_type = [report.per_type.get(t, report.overall) for t in types]
    xs = range(len(types))
    bars = ((-0.2, "containment", "containment"), (0.2, "citation_support", "citation support"))
    for offset, key, label in bars:
        values = [math.nan if getattr(m, key) is None else getattr(m, key) for m in per_type]
        right.bar([x + offset for x in xs], values, width=0.4, label=label)
    right.set(title="Per type", ylim=(0, 1.05), xticks=list(xs), xticklabels=types)
    right.legend(loc="upper right")
    curve = report.risk_coverage
    if curve:
        coverage = [float(c) for c in curve["accuracy_at_coverage"]]
        third.plot(coverage, list(curve["accuracy_at_coverage"].values()), marker="o")
        third.set(title=f"Risk–coverage (area {curve['area']:.3f})", xlabel="share answered",
                  ylabel="accuracy of the answered", xlim=(0, 1.05), ylim=(0, 1.05))  # fmt: skip
        third.grid(alpha=0.3)
    else:
        third.set_axis_off()
    fig.suptitle(name)
    fig.savefig(path, format="png", dpi=110)


def summary_table(report: EvalReport) -> str:
    columns = {"R@1": "recall_1", "R@5": "recall_5", "R@10": "recall_10", "MRR": "mrr_10",
               "EM": "exact_match", "F1": "token_f1", "contain": "containment", "cite": "citation_support",
               "abstain": "abstention_accuracy", "falseref": "false_refusal_rate", "p50ms": "latency_p50_ms"}
    head, keys = ("type", "n", *columns), tuple(columns.values())
    rows = [(t, m) for t, m in report.per_type.items() if t != "overall"] + [("overall", report.overall)]
    table = [head] + [(t, str(m.n), *(_fmt(getattr(m, k), k) for k in keys)) for t, m in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
    curve = report.risk_coverage or {}
    if cal := curve.get("calibration"):
        lines.append(f"Confidence: risk–coverage area {_fmt(curve['area'])}, AUROC right vs wrong {_fmt(cal['auroc'])}, "
                     f"ECE {_fmt(cal['ece'])}, right at ≥ 0.9: {_fmt(cal['precision_at_confident'])} "
                     f"({cal['confident']} answers)")  # fmt: skip
    return "\n".join(lines)

