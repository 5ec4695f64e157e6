"""The `rag` command, the only one: model, index, ask, eval, train-reader, serve, llm, hash-password.

Each subcommand is a small function that turns arguments into calls of the packages below; errors
(RagError) become one line starting "Fel:" and exit code 1, never a traceback.

Length: ~370 lines, one small function per subcommand and its Swedish output; split by topic it would
only scatter the one command line over several files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rag.errors import InputError, RagError
from rag.settings import Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        settings = Settings.from_env(
            index_dir=getattr(args, "index", None),
            k=getattr(args, "k", None),
            generator=getattr(args, "generator", None),
            model=getattr(args, "model", None),
            store=getattr(args, "store", None),
        )
        return args.run(args, settings)
    except RagError as error:
        print(f"Fel: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Avbrutet.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Frågor och svar över kommundirektörens rapporter.")
    parser.add_argument("--model", help="embedding model: a sentence-transformers id or folder")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    _model_commands(sub)
    _index_command(sub)
    _ask_command(sub)
    _eval_commands(sub)
    _serve_commands(sub)
    _llm_commands(sub)
    return parser


# -- provisioning ----------------------------------------------------------------------------------


def _model_commands(sub) -> None:
    model = sub.add_parser("model", help="provision the embedding model")
    actions = model.add_subparsers(required=True, metavar="ACTION")
    actions.add_parser("fetch", help="download, verify and assemble the default model").set_defaults(run=_model_fetch)
    export = actions.add_parser("export-onnx", help="export the query path to ONNX (fp32 and int8), once")
    export.add_argument("--no-int8", action="store_true", help="only the fp32 ONNX model")
    export.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")
    export.set_defaults(run=_model_export)
    actions.add_parser("status", help="which query backends are ready").set_defaults(run=_model_status)


def _model_fetch(args, settings: Settings) -> int:
    from rag.provision.model import fetch_model

    print(fetch_model(settings))
    return 0


def _model_export(args, settings: Settings) -> int:
    from rag.embedding.query_backends import export_check
    from rag.provision.onnx import export_onnx, onnx_dir, onnx_ready

    if not args.force and onnx_ready(settings, "onnx" if args.no_int8 else "onnx-int8"):
        print(f"{onnx_dir(settings)} is up to date (--force exports again).")
        return 0
    print(export_onnx(settings, int8=not args.no_int8))
    for backend, cosine in export_check(settings).items():
        print(f"{backend}: cosine to PyTorch fp32 = {cosine:.5f}")
    return 0


def _model_status(args, settings: Settings) -> int:
    from rag.embedding.query_backends import QUERY_BACKENDS
    from rag.provision.onnx import onnx_ready

    for backend in QUERY_BACKENDS:
        ready = not backend.startswith("onnx") or onnx_ready(settings, backend)
        print(f"{backend}: {'ready' if ready else 'not exported (rag model export-onnx)'}")
    return 0


def _llm_commands(sub) -> None:
    llm = sub.add_parser("llm", help="the local LLM server (llama.cpp) for the openai generator")
    actions = llm.add_subparsers(required=True, metavar="ACTION", dest="llm_action")
    actions.add_parser("fetch", help="build llama-cpp-python once and assemble the model").set_defaults(run=_llm)
    for name, text in (("start", "start in the background, return when ready"), ("serve", "run until Ctrl-C")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--host", default="127.0.0.1")
        action.add_argument("--port", type=int, default=8080)
        action.add_argument("--n-ctx", type=int, default=4096)
        action.add_argument("--threads", type=int, default=2)
        action.add_argument("--timeout", type=float, default=300.0, help="seconds to wait until ready")
        if name == "start":
            action.add_argument("--pidfile", type=Path, help="default: <cache>/llm/server.pid")
        action.set_defaults(run=_llm)
    stop = actions.add_parser("stop", help="stop the server `rag llm start` started")
    stop.add_argument("--pidfile", type=Path, help="default: <cache>/llm/server.pid")
    stop.set_defaults(run=_llm)


def _llm(args, settings: Settings) -> int:
    from rag.provision import llm_fetch, llm_server

    action = args.llm_action
    cache = settings.cache_dir
    if action == "fetch":
        print(llm_fetch.ensure_llm(cache))
        return 0
    if action == "stop":
        print(llm_server.stop_background(cache, args.pidfile))
        return 0
    options = {"n_ctx": args.n_ctx, "threads": args.threads, "timeout": args.timeout}
    if action == "start":
        print(llm_server.start_background(cache, args.host, args.port, pidfile=args.pidfile, **options))
        return 0
    return llm_server.serve_foreground(cache, args.host, args.port, **options)


# -- the main job ----------------------------------------------------------------------------------


def _index_command(sub) -> None:
    index = sub.add_parser("index", help="index a folder of reports or a corpus.jsonl (incremental)")
    index.add_argument("--data", type=Path, help="folder of reports or corpus.jsonl (default: data/)")
    index.add_argument("--index", type=Path, help="index folder (default: index/)")
    _store_flag(index)
    index.add_argument("--watch", action="store_true",
                       help="keep running: index again whenever reports are added, changed or removed")
    index.add_argument("--interval", type=float, default=10.0, help="with --watch: seconds between looks (10)")
    index.set_defaults(run=_index)


def _store_flag(parser) -> None:
    parser.add_argument("--store", help="local (default: the --index folder) or a postgresql://… URL (RAG_STORE)")


def _index(args, settings: Settings) -> int:
    from rag.embedding import real_embedder
    from rag.index import open_backend
    from rag.index.build import build_index

    if args.watch:
        return _watch(args, settings)
    _print_build(build_index(settings, real_embedder(settings), open_backend(settings), data=args.data), settings)
    return 0


def _watch(args, settings: Settings) -> int:
    from rag.embedding import real_embedder
    from rag.index import open_backend
    from rag.index.sync import watch

    data = Path(args.data or settings.data_dir)
    if not data.is_dir():
        raise InputError(f"--watch needs a folder of reports; {data} is not one. Pass it with --data.")
    print(f"Bevakar {data} (var {args.interval:g}:e sekund). Avsluta med Ctrl+C.", flush=True)

    def show(event) -> None:
        change = event.change
        for label, names in (("ny", change.added), ("ändrad", change.changed), ("borttagen", change.removed)):
            for name in names:
                print(f"  {label}: {name}")
        if event.error:
            print(f"Fel: {event.error} Den publicerade versionen svarar som förut.", file=sys.stderr, flush=True)
        else:
            _print_build(event.report, settings)

    watch(settings, real_embedder(settings), open_backend(settings), data, interval=args.interval, on_event=show)
    return 0


def _print_build(report, settings: Settings) -> None:
    for item in report.skipped:
        print(f"Hoppade över {item.source}: {item.reason}", file=sys.stderr)
    if report.up_to_date:
        print(f"Indexet är redan aktuellt ({report.version}, {report.documents} rapporter, "
              f"{report.chunks} passager; {report.seconds:.1f} s).", flush=True)  # fmt: skip
    else:
        new = report.embedded_chunks + report.embedded_sentences + report.embedded_headings
        print(f"Indexerade {report.documents} rapporter: {report.chunks} passager och {report.sentences} "
              f"meningar, varav {new} nya inbäddningar ({report.seconds:.1f} s). "
              f"Version {report.version} i {_where(settings)}.", flush=True)  # fmt: skip


def _where(settings: Settings) -> str:
    from rag.index import open_backend

    return open_backend(settings).location


def _ask_command(sub) -> None:
    ask = sub.add_parser("ask", help="ask a question, or a batch of questions")
    ask.add_argument("question", nargs="?", help="the question")
    ask.add_argument("--index", type=Path)
    _store_flag(ask)
    ask.add_argument("--k", type=int, help="number of passages to return (at least 10)")
    ask.add_argument("--json", action="store_true", help="print the response as JSON")
    ask.add_argument("--batch", type=Path, help="JSONL file of {id, question} rows")
    ask.add_argument("--out", type=Path, help="where --batch writes its JSONL responses")
    ask.add_argument("--date-from", help="only reports dated on or after (ISO, e.g. 2017 or 2017-05)")
    ask.add_argument("--date-to", help="only reports dated on or before (ISO)")
    ask.add_argument("--doc", action="append", default=[], help="only this document id (repeatable)")
    ask.add_argument("--generator", help="extractive (default), openai, or a plugin backend")
    ask.set_defaults(run=_ask)


def _ask(args, settings: Settings) -> int:
    from rag.pipeline import Assistant
    from rag.types import Filters, answer_to_dict

    if args.batch:
        return _ask_batch(args, settings)
    if args.question is None:
        print("Fel: skriv en fråga, eller använd --batch FIL --out FIL.", file=sys.stderr)
        return 2
    filters = Filters(args.date_from, args.date_to, tuple(args.doc))
    answer = Assistant(settings).ask(args.question, k=args.k, filters=filters)
    if args.json:
        print(json.dumps(answer_to_dict(answer), ensure_ascii=False, indent=2))
        return 0
    print(answer.text)
    for citation in answer.citations:
        chunk = citation.hit.chunk
        print(f"  [{citation.n}] {chunk.title} ({chunk.date or 'odaterad'}, dnr {chunk.diarienummer or '–'})"
              f" – {chunk.section}")  # fmt: skip
    if not answer.answered:
        print("Närmaste passager:")
        for hit in answer.passages[:3]:
            print(f"  - {hit.chunk.title} – {hit.chunk.section}: {hit.chunk.text[:120]}…")
    return 0


def _ask_batch(args, settings: Settings) -> int:
    from rag.evaluation.dataset import load_questions
    from rag.pipeline import Assistant, ask_batch

    if not args.out:
        print("Fel: --batch behöver --out FIL för svaren.", file=sys.stderr)
        return 2
    rows, problems = load_questions(args.batch)
    for problem in problems:
        print(f"Varning: {args.batch}: {problem}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for response in ask_batch(rows, Assistant(settings)):
            out.write(json.dumps(response, ensure_ascii=False) + "\n")
    print(f"Skrev {len(rows)} svar till {args.out}.")
    return 0


# -- measuring -------------------------------------------------------------------------------------


def _eval_commands(sub) -> None:
    from rag.evaluation.dataset import SPLITS

    evaluate = sub.add_parser("eval", help="measure answer quality on a question set")
    add = evaluate.add_argument
    add("--questions", type=Path, default=Path("eval/questions.jsonl"), help="question set (JSONL)")
    add("--index", type=Path, help="index folder (default: index/)")
    _store_flag(evaluate)
    add("--responses", type=Path, metavar="RESPONSES.jsonl", help="score saved responses instead of asking")
    add("--split", choices=SPLITS, default="all", help="which questions to use (default: all)")
    add("--name", help="report name (default: from the questions file and split)")
    add("--out-dir", type=Path, default=Path("eval/reports"), help="report folder (default: eval/reports)")
    add("--compare", type=Path, metavar="BASELINE.json", help="exit 1 if worse than this earlier report")
    add("--tolerance", type=float, default=0.02,
        help="allowed net loss per metric as a share of its questions, at least 1.5 questions (default: 0.02)")
    add("--save-responses", type=Path, metavar="PATH", help="also write the responses as JSONL")
    add("--filter-slice", action="store_true",
        help="also ask each answerable question with a filter that excludes its report (must abstain) and with "
             "its own report's filter (must answer); written as <name>-filtered")
    add("--generator", help="extractive (default), openai, or a plugin backend")
    evaluate.set_defaults(run=_eval)

    train = sub.add_parser("train-reader", help="learn the answer reader from SweQUAD-MC and the eval set's dev split")
    train.add_argument("--out", type=Path, required=True, help="where to write the model (the packaged one: "
                       "rag/answering/reader.json); use it with RAG_READER_FILE")  # fmt: skip
    train.add_argument("--questions", type=Path, default=Path("eval/questions.jsonl"))
    train.add_argument("--index", type=Path, help="index of the eval set's reports (default: index/)")
    train.add_argument("--swequad", type=Path, default=Path("../shared/bench/swequad_mc"),
                       help="folder with SweQUAD-MC's questions.jsonl (default: ../shared/bench/swequad_mc)")
    train.add_argument("--swequad-index", type=Path, default=Path("bench/cache/swequad_index"),
                       help="its index (built once: rag index --data <swequad>/corpus.jsonl --index <this>)")
    train.add_argument("--near-misses", action="store_true",
                       help="let the selector learn from the near-miss variants too (ablation)")
    train.add_argument("--judge-near-misses", action="store_true",
                       help="let the selector and the judge learn from the near-miss variants (ablation)")
    train.add_argument("--report-dir", type=Path, default=Path("eval/reports"), help="where the figures go")
    train.add_argument("--samples", type=Path, help="cache of the collected training samples (reused while "
                       "questions, indexes and features are unchanged)")  # fmt: skip
    train.add_argument("--confidence-only", action="store_true",
                       help="refit only the confidence (P(the quote is right)) of the reader in --reader on the eval "
                            "set's dev split; needs no SweQUAD-MC index")  # fmt: skip
    train.add_argument("--reader", type=Path, default=Path("rag/answering/reader.json"),
                       help="with --confidence-only: the reader whose selector and judge are kept")
    train.set_defaults(run=_train_reader)


def _eval(args, settings: Settings) -> int:
    from rag.evaluation.run import run

    return run(args, settings)


def _train_reader(args, settings: Settings) -> int:
    from rag.evaluation.train_reader import train_command

    if args.confidence_only:
        from rag.evaluation.train_confidence import confidence_command

        done = confidence_command(settings, args.questions, args.reader, args.out)
        print(f"Wrote {args.out}: confidence fitted on {done['questions']} dev questions ({done['right']} answered right).")
        return 0
    report = train_command(settings, args.questions, args.swequad, args.swequad_index, args.out,
                           args.report_dir, near_misses=args.near_misses,
                           samples_cache=args.samples, judge_near_misses=args.judge_near_misses)  # fmt: skip
    print(f"Wrote {args.out} (held-out figures: {report['markdown']}). Use it with RAG_READER_FILE={args.out}.")
    return 0


# -- serving ---------------------------------------------------------------------------------------


def _serve_commands(sub) -> None:
    serve = sub.add_parser("serve", help="serve the chat UI and the JSON API")
    serve.add_argument("--index", type=Path)
    _store_flag(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--root-path", help="path prefix when served behind a reverse proxy")
    serve.add_argument("--generator", help="extractive (default), openai, or a plugin backend")
    serve.set_defaults(run=_serve)
    hash_password = sub.add_parser("hash-password", help="a PBKDF2 hash for the auth file (RAG_AUTH_FILE)")
    hash_password.add_argument("password", nargs="?", help="asked for when left out (not echoed)")
    hash_password.set_defaults(run=_hash_password)


def _serve(args, settings: Settings) -> int:
    from rag.web.app import serve

    return serve(settings.replace(host=args.host, port=args.port, root_path=args.root_path))


def _hash_password(args, settings: Settings) -> int:
    import getpass

    from rag.web.auth import hash_password

    print(hash_password(args.password if args.password is not None else getpass.getpass("Lösenord: ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
