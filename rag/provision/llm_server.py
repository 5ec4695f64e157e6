"""Run the local OpenAI-compatible LLM server (provisioned by llm_fetch.py): start it in the background
or the foreground, wait until it answers, stop it. The API is then at http://HOST:PORT/v1, model "local".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rag.errors import GeneratorError
from rag.provision.llm_fetch import DEFAULT_HOST, DEFAULT_PORT, MODEL_ALIAS, _say, _tail, ensure_llm


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_server(
    model_path: Path | str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    n_ctx: int = 4096,
    threads: int = 2,
    *,
    log_path: Path | None = None,
    alias: str = MODEL_ALIAS,
) -> subprocess.Popen:
    """Start `python -m llama_cpp.server` in its own session; output goes to a log file
    (default <cache>/llm/server-<port>.log, also at `proc.log_path`). Returns at once: use
    wait_ready() before sending requests and stop_server() to end it."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise GeneratorError(f"No model at {model_path}: run `rag llm fetch` first.")
    if _port_in_use(host, port):
        raise GeneratorError(
            f"Port {port} on {host} is already in use: stop that server (`rag llm stop`) "
            "or choose another --port."
        )
    if log_path is None:
        log_path = model_path.parent / f"server-{port}.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--model_alias", alias,
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    # llama.cpp's CPU backend is built with OpenMP, whose threads spin while waiting. On a busy
    # 2-core machine that is ruinous (measured: 0.7 tok/s spinning vs 2.9 tok/s passive, 2 threads,
    # both cores shared with other work); on an idle machine passive costs little.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # survives the CLI that started it; Ctrl-C handled by us
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _models_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    base = base.removesuffix("/v1")
    return base + "/v1/models"


def wait_ready(base_url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    """Poll GET <base_url>/v1/models until it answers 200 (base_url with or without /v1).

    Raises GeneratorError on timeout, or at once if `proc` exits first.
    """
    import json
    import urllib.error
    import urllib.request

    url = _models_url(base_url)
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            log = getattr(proc, "log_path", None)
            raise GeneratorError(
                f"The LLM server exited with code {proc.returncode} before it was ready."
                + (f" End of {log}:\n{_tail(Path(log))}" if log else "")
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    json.loads(resp.read() or b"{}")
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise GeneratorError(
                f"The LLM server at {url} was not ready after {timeout:.0f} s. Look at its log"
                + (f" ({proc.log_path})" if proc is not None and hasattr(proc, "log_path") else "")
                + "; a slow machine may need a longer timeout."
            )
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after `timeout`). Safe to call twice."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (not Linux): trust the pidfile
    return b"llama_cpp.server" in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def stop_pid(pid: int, timeout: float = 15.0) -> bool:
    """Stop a server started by `start` in another process. False if it was not running."""
    if not _alive(pid) or not _is_our_server(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.2)
    return True


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def default_pidfile(cache_dir: Path) -> Path:
    return Path(cache_dir) / "llm" / "server.pid"


def start_background(cache_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, n_ctx: int = 4096,
                     threads: int = 2, timeout: float = 300.0, pidfile: Path | None = None,
                     progress: bool = True) -> str:  # fmt: skip
    """`rag llm start`: fetch if needed, start the server in the background, wait until it answers."""
    pidfile = pidfile or default_pidfile(cache_dir)
    pid = _read_pid(pidfile)
    if pid is not None and _alive(pid) and _is_our_server(pid):
        return f"LLM server already running (pid {pid}); stop it first to restart"
    proc = _start_ready(cache_dir, host, port, n_ctx, threads, timeout, progress)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{proc.pid}\n")
    return f"LLM server ready at http://{host}:{port}/v1 (model '{MODEL_ALIAS}', pid {proc.pid}, pidfile {pidfile})"


def stop_background(cache_dir: Path, pidfile: Path | None = None) -> str:
    """`rag llm stop`: stop what `start_background` started."""
    pidfile = pidfile or default_pidfile(cache_dir)
    pid = _read_pid(pidfile)
    stopped = pid is not None and stop_pid(pid)
    with contextlib.suppress(OSError):
        pidfile.unlink()
    return f"stopped LLM server (pid {pid})" if stopped else "no LLM server was running"


def serve_foreground(cache_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, n_ctx: int = 4096,
                     threads: int = 2, timeout: float = 300.0, progress: bool = True) -> int:  # fmt: skip
    """`rag llm serve`: run the server until Ctrl-C (or SIGTERM to this process)."""
    proc = _start_ready(cache_dir, host, port, n_ctx, threads, timeout, progress)
    print(f"LLM server ready at http://{host}:{port}/v1 (model '{MODEL_ALIAS}'). Ctrl-C stops it.", flush=True)

    def _on_term(signum, frame):  # `kill <pid>` of this CLI stops the server too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(proc)


def _start_ready(cache_dir, host, port, n_ctx, threads, timeout, progress) -> subprocess.Popen:
    model = ensure_llm(cache_dir, progress=progress)
    proc = start_server(model, host, port, n_ctx, threads)
    _say(progress, f"starting llama.cpp server (pid {proc.pid}); log: {proc.log_path}")
    try:
        wait_ready(f"http://{host}:{port}/v1", timeout, proc)
    except BaseException:
        stop_server(proc)
        raise
    return proc
