"""Shared test setup: offline hub, quiet Ray/MLflow, and where the real data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports transformers, ray or mlflow.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (read-only; never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kdtune_cache(tmp_path_factory) -> Path:
    """One preset/teacher cache for the whole test session, so presets are built once."""
    path = Path(os.environ.get("KDTUNE_TEST_CACHE") or tmp_path_factory.mktemp("kdtune-cache"))
    os.environ["KDTUNE_CACHE"] = str(path)
    return path
