"""The `rag` command: model fetch, index, ask, eval, serve. Errors become one clear line, exit code 1."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rag.errors import RagError
from rag.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        settings = Settings.from_env(
            index_dir=getattr(args, "index", None),
            k=getattr(args, "k", None),
            generator=getattr(args, "generator", None),
            model=getattr(args, "model", None),
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

    model = sub.add_parser("model", help="provision the embedding model")
    model_sub = model.add_subparsers(required=True, metavar="ACTION")
    model_sub.add_parser("fetch", help="download, verify and assemble the default model").set_defaults(run=_fetch)

    index = sub.add_parser("index", help="index a folder of reports or a corpus.jsonl (incremental)")
    index.add_argument("--data", type=Path, help="folder of reports or corpus.jsonl (default: data/)")
    index.add_argument("--index", type=Path, help="index folder (default: index/)")
    index.set_defaults(run=_index)

    ask = sub.add_parser("ask", help="ask a question, or a batch of questions")
    ask.add_argument("question", nargs="?", help="the question")
    ask.add_argument("--index", type=Path)
    ask.add_argument("--k", type=int, help="number of passages to return (at least 10)")
    ask.add_argument("--json", action="store_true", help="print the response as JSON")
    ask.add_argument("--batch", type=Path, help="JSONL file of {id, question} rows")
    ask.add_argument("--out", type=Path, help="where --batch writes its JSONL responses")
    ask.add_argument("--date-from", help="only reports dated on or after (ISO, e.g. 2017 or 2017-05)")
    ask.add_argument("--date-to", help="only reports dated on or before (ISO)")
    ask.add_argument("--doc", action="append", default=[], help="only this document id (repeatable)")
    ask.add_argument("--generator", help="extractive (default), openai, or a plugin backend")
    ask.set_defaults(run=_ask)

    evaluate = sub.add_parser("eval", help="measure answer quality on a question set")
    from rag.evaluate import add_arguments

    add_arguments(evaluate)
    evaluate.add_argument("--generator", help="extractive (default), openai, or a plugin backend")
    evaluate.set_defaults(run=_eval)

    serve = sub.add_parser("serve", help="serve the chat UI and the JSON API")
    serve.add_argument("--index", type=Path)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--root-path", help="path prefix when served behind a reverse proxy")
    serve.add_argument("--generator", help="extractive (default), openai, or a plugin backend")
    serve.set_defaults(run=_serve)
    return parser


def _fetch(args, settings: Settings) -> int:
    from rag.model import main_fetch

    return main_fetch(settings)


def _index(args, settings: Settings) -> int:
    from rag.embed import SentenceTransformerEmbedder
    from rag.index import build_index

    report = build_index(settings, SentenceTransformerEmbedder(settings), data=args.data)
    for item in report.skipped:
        print(f"Hoppade över {item.source}: {item.reason}", file=sys.stderr)
    if report.up_to_date:
        print(f"Indexet är redan aktuellt ({report.version}, {report.documents} rapporter, "
              f"{report.chunks} passager; {report.seconds:.1f} s).")  # fmt: skip
    else:
        print(f"Indexerade {report.documents} rapporter: {report.chunks} passager och {report.sentences} "
              f"meningar, varav {report.embedded_chunks} + {report.embedded_sentences} nya inbäddningar "
              f"({report.seconds:.1f} s). Version {report.version} i {settings.index_dir}/.")  # fmt: skip
    return 0


def _ask(args, settings: Settings) -> int:
    from rag.pipeline import Assistant, ask_batch
    from rag.response import answer_to_dict
    from rag.retrieve import Filters

    assistant = Assistant(settings)
    if args.batch:
        return _ask_batch(args, settings, assistant, ask_batch)
    if args.question is None:
        print("Fel: skriv en fråga, eller använd --batch FIL --out FIL.", file=sys.stderr)
        return 2
    filters = Filters(args.date_from, args.date_to, tuple(args.doc))
    answer = assistant.ask(args.question, k=args.k, filters=filters)
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


def _ask_batch(args, settings: Settings, assistant, ask_batch) -> int:
    from rag.evaluate import load_questions

    if not args.out:
        print("Fel: --batch behöver --out FIL för svaren.", file=sys.stderr)
        return 2
    rows, problems = load_questions(args.batch)
    for problem in problems:
        print(f"Varning: {args.batch}: {problem}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for response in ask_batch(rows, settings, assistant=assistant):
            out.write(json.dumps(response, ensure_ascii=False) + "\n")
    print(f"Skrev {len(rows)} svar till {args.out}.")
    return 0


def _eval(args, settings: Settings) -> int:
    from rag.evaluate import run

    return run(args, settings)


def _serve(args, settings: Settings) -> int:
    from rag.api import serve

    return serve(settings.replace(host=args.host, port=args.port, root_path=args.root_path))


if __name__ == "__main__":
    sys.exit(main())
