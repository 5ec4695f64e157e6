from pathlib import Path

import pytest

from rag.settings import Settings
from tests.fakes import FakeEmbedder
from tests.pg import postgres_server, store, store_kind  # noqa: F401  (fixtures: both stores, a real server)

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "data"


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings isolated in tmp_path (index, cache, feedback), data from the real reports."""
    return Settings(data_dir=DATA, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                    feedback_log=tmp_path / "feedback.jsonl")
