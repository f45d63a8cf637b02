from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SEGY = REPO_ROOT.parent / "shared" / "data" / "segy"


@pytest.fixture(scope="session")
def shared_segy_dir() -> Path:
    """The real SEG-Y files written by other tools; absent in a user's clone, so tests skip."""
    if not SHARED_SEGY.is_dir():
        pytest.skip(f"real SEG-Y fixtures not found at {SHARED_SEGY} (only present beside the dev checkout)")
    return SHARED_SEGY


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny tensors: one intra-op thread is as fast, and avoids oversubscribing a busy CI machine (with
    several torch processes on 2 cores, spinning OpenMP threads made these tests 10-20x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
