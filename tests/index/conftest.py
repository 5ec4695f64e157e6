"""Fixtures of the index tests: a copy of the reports to change, and settings isolated in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.conftest import DATA


@pytest.fixture
def data(tmp_path) -> Path:
    """A copy of data/ that a test may edit, damage or add to."""
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    return folder


def index_settings(tmp_path: Path, data: Path, **overrides) -> Settings:
    """Index, cache and feedback in tmp_path; every answer given (the threshold is not what's tested)."""
    return Settings(data_dir=data, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache",
                    feedback_log=tmp_path / "feedback.jsonl", abstain_threshold=float("-inf"), **overrides)  # fmt: skip
