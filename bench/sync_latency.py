"""How long a report saved into the watched folder takes to answer, and a deleted one to disappear
(issue 25's 60 s targets). Not a unit test: real model, real `rag index --watch` process.

    python bench/sync_latency.py                  # report 003 arrives, then leaves; interval 5 s
    python bench/sync_latency.py --interval 10 --report 001_a3851816b6736ffa.txt

A copy of data/ without the report and a copy of index/ go into a temporary folder; the watcher runs
on them as its own process. The report is copied in, and from that moment an Assistant (what the
app serves with, reloading published versions itself) asks the report's dev questions once a second
until the first is answered with a citation of that report: "answerable". Then the file is deleted,
and the clock runs until the report is gone from the live version's documents. Prints and writes
bench/results/sync_latency.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.pipeline import Assistant  # noqa: E402
from rag.settings import Settings  # noqa: E402

LIMIT_S = 600  # give up after this long: the target is 60 s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default="003_52fda963314daba6.txt", help="the report that arrives (data/)")
    parser.add_argument("--interval", type=float, default=5.0, help="the watcher's --interval")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sync_latency.json")
    args = parser.parse_args(argv)
    questions = [json.loads(line) for line in (ROOT / "eval" / "questions.jsonl").open(encoding="utf-8")]
    own = [q["question"] for q in questions if q["doc_id"] == args.report and q["split"] == "dev"]
    if not own:
        parser.error(f"no dev questions about {args.report} in eval/questions.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        data, index = Path(tmp) / "data", Path(tmp) / "index"
        shutil.copytree(ROOT / "data", data, ignore=lambda _d, names: [n for n in names if n == args.report])
        shutil.copytree(ROOT / "index", index)  # the built five-report index: only the change is embedded
        watcher = subprocess.Popen([str(Path(sys.executable).with_name("rag")), "index", "--watch", "--data", str(data),
                                    "--index", str(index), "--interval", str(args.interval)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)
        reader.start()
        try:
            assistant = Assistant(Settings.from_env(data_dir=data, index_dir=index))
            started = wait_for(lambda: any("Indexerade" in x or "aktuellt" in x for x in lines), "first build")
            assistant.ask("uppvärmning")  # load the query model before the clock starts
            shutil.copy(ROOT / "data" / args.report, data / args.report)
            began = time.monotonic()
            answered = wait_for(lambda: answers_from(assistant, own, args.report), "the new report answering")
            answer_s = time.monotonic() - began
            (data / args.report).unlink()
            began = time.monotonic()
            wait_for(lambda: args.report not in assistant.store.documents(), "the deleted report leaving")
            gone_s = time.monotonic() - began
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
    result = {"report": args.report, "interval_s": args.interval, "first_build_s": round(started, 1),
              "new_report_answers_s": round(answer_s, 1), "answered_question": answered,
              "deleted_report_gone_s": round(gone_s, 1), "target_s": 60,
              "watcher_output": [x.rstrip() for x in lines]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "watcher_output"}, ensure_ascii=False, indent=2))
    return 0


def wait_for(check, what: str):
    """Poll `check` once a second; its first truthy result, or seconds waited when it is True."""
    began = time.monotonic()
    while time.monotonic() - began < LIMIT_S:
        found = check()
        if found:
            return time.monotonic() - began if found is True else found
        time.sleep(1.0)
    raise SystemExit(f"gave up waiting for {what} after {LIMIT_S} s")


def answers_from(assistant: Assistant, questions: list[str], doc_id: str) -> str | None:
    if doc_id not in assistant.store.documents():
        return None
    for question in questions:
        answer = assistant.ask(question)
        if answer.citations and answer.citations[0].hit.chunk.doc_id == doc_id:
            return question
    return None


if __name__ == "__main__":
    raise SystemExit(main())
