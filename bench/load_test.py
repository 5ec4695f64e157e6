"""Load test (not a unit test): N concurrent users asking POST /api/ask for a bounded time, on loopback.

    python bench/load_test.py          # starts `python app.py` itself on a free port
    python bench/load_test.py --url http://127.0.0.1:7860/ --users 20 --seconds 60
    python bench/load_test.py --users 50 --worst-case --probe   # issue 27: one client's 50 connections
        # flood with 2,000-digit questions; /api/health every 0.5 s and another client's normal question
        # every 2 s are timed meanwhile
    python bench/load_test.py --postgres --servers 2 --publish-after 20
        # two app.py processes on one database (--postgres: a throwaway server with data/ indexed into it,
        # vectors from the index folder; or RAG_STORE=postgresql://…), users split between them; 20 s in,
        # `rag index` publishes a new version (one report changed) and both servers must switch to it

Each user asks questions back to back (no think time) until the time is up or it has sent
--max-requests; then the test stops by itself. Every question is made unique (a "#user-n" tag), so
the app's cache of question vectors never helps: each request pays for embedding the question.
--repeat lets the 80 questions repeat instead (the cached, best case). Latency percentiles,
throughput and errors are written as JSON to bench/results/load_test.json and printed. Only
loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = [
    "Vad står det om {}?",
    "Vad har hänt med {}?",
    "Finns det något nytt om {}?",
    "Berätta om {}.",
]
TOPICS = [
    "ny ekonomichef",
    "attentatet i Stockholm",
    "flyktingmottagningen",
    "telefonisystemet",
    "bisysslor",
    "krisövningen Henning",
    "HBTQ-certifiering",
    "lokalförsörjning",
    "ledarutveckling",
    "brandskyddsarbetet",
    "Södertörnssamarbetet",
    "servicenivån per telefon",
    "IT-miljön",
    "trygghetslarm",
    "företagsklimatet",
    "effektiviseringsmålet",
    "internkontrollen",
    "boendeplatser för asylsökande",
    "ESF-medel",
    "medborgarmötet",
]
QUESTIONS = [t.format(topic) for topic in TOPICS for t in TEMPLATES]
FLOOD_CLIENT, PROBE_CLIENT = "10.0.0.1", "10.9.9.9"  # as X-Forwarded-For from loopback, the trusted proxy


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    servers, urls = [], [args.url] if args.url else []
    publisher = database = None
    try:
        if args.postgres:
            database = _database()
        for number in range(args.servers if not args.url else 0):
            server, url = _start_app(args.start_timeout, number % os.cpu_count() if args.pin else None)
            servers.append(server)
            urls.append(url)
        for url in urls:
            _require_loopback(url)
        health = httpx.get(urls[0].rstrip("/") + "/api/health", timeout=30).json()
        if args.publish_after is not None:
            publisher = threading.Timer(args.publish_after, lambda: _publish(args))
            publisher.start()
        began = time.monotonic()
        probes = _Probes(urls[0], args.seconds) if args.probe else None
        results = run(urls, args.users, args.seconds, args.max_requests, unique=not args.repeat,
                      worst_case=args.worst_case)  # fmt: skip
        if probes is not None:
            probes.join()
        if publisher is not None:
            publisher.join()
            _PUBLISHED["published_at_s"] = round(_PUBLISHED.pop("done", began) - began, 1)
            for url in urls:  # a question after the publish: each server must notice it between questions
                httpx.post(url.rstrip("/") + "/api/ask", json={"question": "Vem är ny ekonomichef?"}, timeout=120)
        after = [httpx.get(u.rstrip("/") + "/api/health", timeout=30).json().get("index_version") for u in urls]
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        if database is not None:
            database.stop()
    report = _report(results, args, health)
    report["servers"] = len(urls)
    if probes is not None:
        report["probes"] = probes.report()
    if args.publish_after is not None:
        report["published"] = {**_PUBLISHED, "index_version_before": health.get("index_version"),
                               "index_version_after_per_server": after}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app on loopback (default: start app.py on a free port)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    parser.add_argument(
        "--max-requests", type=int, default=2000, help="per user, a hard bound (default 2000)"
    )
    parser.add_argument("--repeat", action="store_true", help="let questions repeat (cached embeddings)")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for app.py")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load_test.json")
    parser.add_argument("--servers", type=int, default=1, help="app.py processes to start (users split evenly)")
    parser.add_argument("--publish-after", type=float, help="seconds in: `rag index` a changed copy of data/")
    parser.add_argument("--postgres", action="store_true", help="serve from a throwaway PostgreSQL (RAG_STORE)")
    parser.add_argument("--pin", action="store_true", help="pin server i to core i (taskset): one core per server")
    parser.add_argument("--worst-case", action="store_true", help="2,000-digit questions (the costliest to embed)")
    parser.add_argument("--probe", action="store_true",
                        help="meanwhile time /api/health (every 0.5 s) and a normal question (every 2 s)")
    return parser


def _database():
    """A throwaway PostgreSQL with data/ indexed into it; RAG_STORE then names it for every child."""
    import tempfile

    from rag.provision.postgres_server import TempPostgres

    server = TempPostgres(Path(tempfile.mkdtemp(prefix="load-pg-")), settings={"shared_buffers": "512MB"}).start()
    os.environ["RAG_STORE"] = server.create_database("rag")
    subprocess.run([sys.executable, "-m", "rag.cli", "index", "--data", str(ROOT / "data")], cwd=ROOT, check=True)
    return server


_PUBLISHED: dict = {}


def _publish(args) -> None:
    """`rag index` of data/ with one sentence added to one report, into the store the servers use."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="load-data-"))
    shutil.copytree(ROOT / "data", folder / "data")
    report = min((folder / "data").iterdir())
    report.write_text(report.read_text(encoding="utf-8") + "\nKommunen öppnar ett nytt medborgarkontor.\n",
                      encoding="utf-8")  # fmt: skip
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index", "--data", str(folder / "data")], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    _PUBLISHED.update(seconds=round(time.monotonic() - began, 1), exit=done.returncode, done=time.monotonic(),
                      output=(done.stdout or done.stderr).strip()[-300:])  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)


class _Probes:
    """What the other users see during the load: /api/health and a normal question, each timed."""

    def __init__(self, url: str, seconds: float):
        self.url, self.health, self.normal = url.rstrip("/"), [], []
        deadline = time.monotonic() + seconds
        loops = ((self.health, 0.5, None), (self.normal, 2.0, "Vem är ny ekonomichef?"))
        self.threads = [threading.Thread(target=self._loop, args=(out, deadline, every, question), daemon=True)
                        for out, every, question in loops]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _loop(self, out: list, deadline: float, every: float, question: str | None) -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    if question is None:
                        status = client.get(self.url + "/api/health").status_code
                    else:  # another user than the flood's (the app trusts loopback as its proxy)
                        status = client.post(self.url + "/api/ask", json={"question": question},
                                             headers={"X-Forwarded-For": PROBE_CLIENT}).status_code  # fmt: skip
                except httpx.HTTPError:
                    status = None
                out.append((time.perf_counter() - began, status))
                time.sleep(max(0.0, every - (time.perf_counter() - began)))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(300)

    def report(self) -> dict:
        def summary(rows):
            times = sorted(t for t, _ in rows)
            counts: dict[str, int] = {}
            for _, status in rows:
                counts[str(status)] = counts.get(str(status), 0) + 1
            return {"requests": len(rows), "statuses": dict(sorted(counts.items())),
                    "p50_ms": _ms(_percentile(times, 50)), "p95_ms": _ms(_percentile(times, 95))}  # fmt: skip

        return {"health": summary(self.health), "normal_question": summary(self.normal)}


def run(url: str | list[str], users: int, seconds: float, max_requests: int, unique: bool = True,
        worst_case: bool = False) -> list[dict]:  # fmt: skip
    """Every request's outcome: {user, started, latency_s, status, error}. With several urls the users
    are dealt out round-robin (a load balancer's even split)."""
    urls = [url] if isinstance(url, str) else url
    results: list[dict] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def user(number: int) -> None:
        endpoint = urls[number % len(urls)].rstrip("/") + "/api/ask"
        # Each user has an address of its own, as the proxy reports it (the app gives one client a share
        # of the answer line); with --worst-case all of them are one client flooding.
        headers = {"X-Forwarded-For": FLOOD_CLIENT if worst_case else f"10.0.1.{number % 250 + 1}"}
        with httpx.Client(timeout=120, headers=headers) as client:
            for i in range(max_requests):
                if time.monotonic() >= deadline:
                    return
                question = QUESTIONS[(number * 7 + i) % len(QUESTIONS)]
                question = f"{question} #{number}-{i}" if unique else question
                if worst_case:  # one token per digit: 2,000 of them, unique per request
                    question = (f"{number}{i}" + "1234567890" * 200)[:2000]
                outcome = _ask(client, endpoint, question)
                with lock:
                    results.append({"user": number, **outcome})

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return results


def _ask(client: httpx.Client, endpoint: str, question: str) -> dict:
    began = time.perf_counter()
    try:
        response = client.post(endpoint, json={"question": question})
        error = None if response.status_code == 200 else response.text[:200]
        status = response.status_code
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:200]
    retry_after = response.headers.get("Retry-After") if status == 503 else None
    return {"started": began, "latency_s": time.perf_counter() - began, "status": status, "error": error,
            "retry_after": retry_after}  # fmt: skip


def _report(results: list[dict], args, health: dict) -> dict:
    ok = sorted(r["latency_s"] for r in results if r["error"] is None)
    errors = [r for r in results if r["error"] is not None]
    span = (
        (max(r["started"] + r["latency_s"] for r in results) - min(r["started"] for r in results))
        if results
        else 0
    )
    return {
        "users": args.users,
        "seconds": args.seconds,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(errors),
        "error_examples": sorted({f"{r['status']}: {r['error']}" for r in errors})[:5],
        "refused_503_with_retry_after": sum(1 for r in errors if _refused(r)),
        "other_5xx": sum(1 for r in errors if (r["status"] or 0) >= 500 and not _refused(r)),
        "throughput_rps": round(len(ok) / span, 2) if span else 0.0,
        "latency_ms": {
            "p50": _ms(_percentile(ok, 50)),
            "p95": _ms(_percentile(ok, 95)),
            "p99": _ms(_percentile(ok, 99)),
            "mean": _ms(statistics.fmean(ok)) if ok else None,
            "max": _ms(ok[-1]) if ok else None,
        },
        "questions": "unique (no embedding cache hits)" if not args.repeat else f"{len(QUESTIONS)} repeating",
        "server": {k: health.get(k) for k in ("index_version", "model", "documents", "chunks", "generator")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _refused(result: dict) -> bool:
    """Busy, as the app says it: 503 with Retry-After."""
    return result["status"] == 503 and bool(result.get("retry_after"))


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    rank = (len(values) - 1) * p / 100
    low, high = int(rank), min(int(rank) + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"Refusing to load-test {host!r}: only loopback addresses (127.0.0.1, localhost).")


def _start_app(timeout: float, core: int | None = None) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free loopback port, with the environment's RAG_* settings."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "RAG_HOST": "127.0.0.1",
        "RAG_PORT": str(port),
        "RAG_ROOT_PATH": "",
        "RAG_MOUNT_PATH": "/",
    }
    for name in ("RAG_SSO_HEADER", "RAG_AUTH_FILE", "RAG_USERS"):
        env.pop(name, None)
    pin = ["taskset", "-c", str(core)] if core is not None else []
    process = subprocess.Popen([*pin, sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with {process.returncode}; is the index built (rag index)?")
        try:
            if httpx.get(url + "api/health", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    raise SystemExit(f"app.py did not answer within {timeout} s.")


if __name__ == "__main__":
    sys.exit(main())
