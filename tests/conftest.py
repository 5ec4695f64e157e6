import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import FakeEmbedder  # noqa: E402

from rag.settings import Settings  # noqa: E402

DATA = ROOT / "data"


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings isolated in tmp_path (index, cache, feedback), data from the real reports."""
    return Settings(data_dir=DATA, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                    feedback_log=tmp_path / "feedback.jsonl")
