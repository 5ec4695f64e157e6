"""The `rag` command through rag.cli.main, with the FakeEmbedder in place of the real model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import rag.embedding.transformer
import rag.pipeline
from rag import cli
from rag.ingest.documents import read_documents
from tests.fakes import FakeEmbedder

DATA = Path(__file__).resolve().parents[1] / "data"
PASSAGE_FIELDS = {"doc_id", "title", "date", "diarienummer", "section", "text", "start", "end", "score"}
CITATION_FIELDS = PASSAGE_FIELDS | {"n"}


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """An isolated environment: RAG_* folders in tmp_path, the fake embedder, answers never withheld."""
    import os

    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RAG_DATA_DIR", str(DATA))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "default-index"))
    monkeypatch.setenv("RAG_FEEDBACK_LOG", str(tmp_path / "feedback.jsonl"))
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "-100")
    fake = lambda settings: FakeEmbedder()
    monkeypatch.setattr(rag.embedding.transformer, "SentenceTransformerEmbedder", fake)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def index(env, capsys) -> Path:
    path = env / "index"
    assert cli.main(["index", "--data", str(DATA), "--index", str(path)]) == 0
    capsys.readouterr()
    return path


def test_index_prints_a_summary(env, capsys):
    path = env / "index"
    assert cli.main(["index", "--data", str(DATA), "--index", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Indexerade 5 rapporter: ")
    assert f"i {path}/." in out and "nya inbäddningar" in out
    version = (path / "CURRENT").read_text().strip()
    assert f"Version {version}" in out

    assert cli.main(["index", "--data", str(DATA), "--index", str(path)]) == 0
    again = capsys.readouterr().out
    assert again.startswith(f"Indexet är redan aktuellt ({version}, 5 rapporter, ")


def test_index_reports_skipped_files(env, capsys):
    data = env / "data"
    shutil.copytree(DATA, data)
    (data / "bild.txt").write_bytes(b"\x00\x01\x02")
    assert cli.main(["index", "--data", str(data), "--index", str(env / "index")]) == 0
    captured = capsys.readouterr()
    assert "Indexerade 5 rapporter" in captured.out
    assert f"Hoppade över {data / 'bild.txt'}" in captured.err


def test_index_watch_prints_each_change_and_a_failed_build_says_the_live_version_stays(env, capsys, monkeypatch):
    import rag.index.sync

    data = env / "data"
    shutil.copytree(DATA, data)
    steps = [lambda: (data / "000_0448039051fc396a.txt").unlink(), None,
             lambda: [f.unlink() for f in data.iterdir()], None]  # fmt: skip
    real_watch = rag.index.sync.watch

    def scripted(*args, **kwargs):
        def sleep(_s):
            step = steps.pop(0)
            if step:
                step()

        return real_watch(*args, **kwargs, stop=lambda: not steps, sleep=sleep)

    monkeypatch.setattr(rag.index.sync, "watch", scripted)
    assert cli.main(["index", "--watch", "--data", str(data), "--index", str(env / "index")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"Bevakar {data} (var 10:e sekund). Avsluta med Ctrl+C."
    assert "  borttagen: 000_0448039051fc396a.txt\nIndexerade 4 rapporter: " in captured.out
    assert "Den publicerade versionen svarar som förut." in captured.err and "No readable reports" in captured.err


def test_index_watch_needs_a_folder(env, capsys):
    assert cli.main(["index", "--watch", "--data", str(DATA / "000_0448039051fc396a.txt")]) == 1
    assert "--watch needs a folder of reports" in capsys.readouterr().err


def test_ask_prints_answer_and_citation(index, capsys):
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "Torstein Tysklind" in out
    assert (
        "[1] Kommundirektörens rapport maj 2017 (2017-05, dnr 2017/KS 0001 001) – Torstein Tysklind ny ekonomichef"
        in out
    )


def test_ask_json_matches_the_schema(index, capsys):
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(index), "--json"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert {"question", "answer", "answered", "citations", "passages", "timings_ms"} <= set(response)
    assert response["question"] == "Vem är ny ekonomichef?"
    assert response["answered"] is True
    assert isinstance(response["answer"], str) and "Torstein Tysklind" in response["answer"]
    assert response["citations"] and len(response["passages"]) >= 10
    texts = {d.id: d.text for d in read_documents(DATA)[0]}
    for n, citation in enumerate(response["citations"], 1):
        assert CITATION_FIELDS <= set(citation)
        assert citation["n"] == n
        assert isinstance(citation["score"], float)
        assert texts[citation["doc_id"]][citation["start"] : citation["end"]] == citation["quote"]
        assert f"{citation['quote']} [{n}]" in response["answer"]
    for passage in response["passages"]:
        assert PASSAGE_FIELDS <= set(passage)
        assert texts[passage["doc_id"]][passage["start"] : passage["end"]] == passage["text"]
        assert isinstance(passage["score"], float)
    first = response["citations"][0]
    assert (first["doc_id"], first["title"], first["date"], first["diarienummer"], first["section"]) == (
        "002_8f9c64b256dc6c50.txt", "Kommundirektörens rapport maj 2017", "2017-05", "2017/KS 0001 001",
        "Torstein Tysklind ny ekonomichef")  # fmt: skip
    assert "total" in response["timings_ms"] and response["timings_ms"]["total"] >= 0


def test_ask_json_with_filters_and_k(index, capsys):
    argv = ["ask", "Vad hände?", "--index", str(index), "--json", "--k", "15", "--date-from", "2017",
            "--date-to", "2017-12"]  # fmt: skip
    assert cli.main(argv) == 0
    response = json.loads(capsys.readouterr().out)
    assert len(response["passages"]) == 15
    assert {p["doc_id"] for p in response["passages"]} == {"002_8f9c64b256dc6c50.txt"}


def test_ask_batch_writes_one_line_per_question(index, env, capsys):
    questions = env / "q.jsonl"
    questions.write_text("\n".join([
        json.dumps({"id": "q1", "question": "Vem är ny ekonomichef?"}, ensure_ascii=False),
        json.dumps({"id": 2, "question": "Hur många Tyresöbor kom till informationsmötet?"}, ensure_ascii=False),
        "{inte json",
        json.dumps({"id": "q4"}),
        json.dumps({"id": "q5", "question": "Vad hände?", "filters": {"date_from": "maj"}}, ensure_ascii=False),
        json.dumps({"id": "q6", "question": "Vad hände i maj 2017?", "filters": {"date_from": "2017"}},
                   ensure_ascii=False),
    ]) + "\n", encoding="utf-8")  # fmt: skip
    out = env / "svar" / "r.jsonl"
    assert cli.main(["ask", "--batch", str(questions), "--out", str(out), "--index", str(index)]) == 0
    captured = capsys.readouterr()
    assert "Skrev 4 svar" in captured.out
    assert "line 3" in captured.err and "line 4" in captured.err

    responses = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in responses] == ["q1", "2", "q5", "q6"]
    assert [r["question"] for r in responses] == ["Vem är ny ekonomichef?",
                                                  "Hur många Tyresöbor kom till informationsmötet?",
                                                  "Vad hände?", "Vad hände i maj 2017?"]  # fmt: skip
    ok = [r for r in responses if r["id"] != "q5"]
    assert all(r["answered"] and len(r["passages"]) >= 10 and "error" not in r for r in ok)
    assert "Torstein Tysklind" in responses[0]["answer"]
    assert {p["doc_id"] for p in responses[3]["passages"]} == {"002_8f9c64b256dc6c50.txt"}
    bad = responses[2]
    assert bad["answered"] is False and bad["citations"] == [] and "maj" in bad["error"]


def test_batch_without_out_is_a_usage_error(index, env, capsys):
    questions = env / "q.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": "Vem?"}) + "\n")
    assert cli.main(["ask", "--batch", str(questions), "--index", str(index)]) == 2
    assert "--out" in capsys.readouterr().err


# -- bad input: exit code 1 and one clear line ---------------------------------------------------


@pytest.mark.parametrize("question", ["   ", "\t\n"])
def test_blank_question_exits_1(index, capsys, question):
    assert cli.main(["ask", question, "--index", str(index)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Fel: ") and "Skriv en fråga" in err
    assert "Traceback" not in err


def test_empty_question_exits_1(index, capsys):
    """`rag ask ""` is the same mistake as a blank question: exit code 1, like every input error."""
    assert cli.main(["ask", "", "--index", str(index)]) == 1
    assert "fråga" in capsys.readouterr().err


def test_too_long_question_exits_1(index, capsys):
    assert cli.main(["ask", "x" * 100_000, "--index", str(index)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Fel: Frågan är för lång (100000 tecken)")
    assert "2000" in err


def test_empty_data_folder_exits_1(env, capsys):
    empty = env / "tom"
    empty.mkdir()
    assert cli.main(["index", "--data", str(empty), "--index", str(env / "index")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Fel: ") and str(empty) in err
    assert not (env / "index" / "CURRENT").exists()


def test_missing_data_folder_exits_1(env, capsys):
    assert cli.main(["index", "--data", str(env / "finns-inte"), "--index", str(env / "index")]) == 1
    assert str(env / "finns-inte") in capsys.readouterr().err


def test_unknown_generator_exits_1(index, capsys):
    assert (
        cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(index), "--generator", "finns-inte"]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("Fel: ") and "finns-inte" in err and "extractive" in err


def test_missing_index_exits_1(env, capsys):
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(env / "inget")]) == 1
    assert "rag index" in capsys.readouterr().err


def test_mismatched_index_exits_1(index, monkeypatch, capsys):
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "120")
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(index)]) == 1
    err = capsys.readouterr().err
    assert "chunk_tokens=200" in err and "rag index" in err


def test_bad_setting_in_environment_exits_1(index, monkeypatch, capsys):
    """A bad RAG_* value is a user error like any other: one line on stderr, exit code 1, no traceback."""
    monkeypatch.setenv("RAG_K", "många")
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--index", str(index)]) == 1
    assert "k=" in capsys.readouterr().err


def test_default_index_dir_from_environment(env, capsys):
    assert cli.main(["index", "--data", str(DATA)]) == 0
    assert (env / "default-index" / "CURRENT").exists()
    capsys.readouterr()
    assert cli.main(["ask", "Vem är ny ekonomichef?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answered"] is True
