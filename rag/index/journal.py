"""A journal of vectors embedded by a build that has not finished yet, so a crash, Ctrl-C or power
cut in the middle of a long `rag index` loses no work: the next build reads the journal back and
embeds only what is still missing. A finished build clears it.

One journal per model fingerprint, under <journal dir>/<hash>/ (the local store's: <index>/.journal/): `vectors.f32` (raw float32 rows)
and `keys.txt` (one content key per row). Vectors are written before their keys, so every key in
the file has its row; a half-written tail is ignored. A lock file keeps two processes from writing
at once.

The same format, never cleared, is the machine's vector cache (<cache dir>/vectors/, build.py): every
text embedded by any build, whatever its index folder or store, so that the same text with the same
model and path is embedded once on a machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np


class VectorJournal:
    def __init__(self, root: Path, fingerprint: dict):
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(root)
        self.folder = self.root / digest

    @contextlib.contextmanager
    def _locked(self):
        """One writer or reader at a time: two builds appending at once would interleave rows and keys."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def load(self) -> dict[str, np.ndarray]:
        """Vectors of an unfinished build with the same model, by content key."""
        if not self.folder.is_dir():
            return {}
        with self._locked():
            return self._load()

    def _load(self) -> dict[str, np.ndarray]:
        dim = self._dim()
        try:
            text = (self.folder / "keys.txt").read_text()
            raw = np.fromfile(self.folder / "vectors.f32", dtype=np.float32)
        except FileNotFoundError:
            return {}
        if not dim:
            return {}
        keys = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # drop a torn line
        keys = keys[: raw.size // dim]
        # Cut any torn tail, so what the next build appends lines up with its keys again.
        (self.folder / "keys.txt").write_text("".join(f"{k}\n" for k in keys))
        with open(self.folder / "vectors.f32", "r+b") as handle:
            handle.truncate(len(keys) * dim * 4)
        return dict(zip(keys, raw[: len(keys) * dim].reshape(-1, dim)))

    def append(self, keys: list[str], vectors: np.ndarray) -> None:
        with self._locked():
            self._append(keys, vectors)

    def _append(self, keys: list[str], vectors: np.ndarray) -> None:
        (self.folder / "dim").write_text(str(vectors.shape[1]))
        with open(self.folder / "vectors.f32", "ab") as out:
            out.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        with open(self.folder / "keys.txt", "a") as out:
            out.write("".join(f"{k}\n" for k in keys))

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _dim(self) -> int:
        try:
            return int((self.folder / "dim").read_text())
        except (FileNotFoundError, ValueError):
            return 0
