"""benchmarks/gpu_check.py: skips cleanly without CUDA, and its CPU-runnable parts measure what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU host: the script measures instead of skipping")
def test_without_cuda_the_script_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "gpu_check: skipped: torch sees no CUDA device" in done.stdout
    result = json.loads(out.read_text())
    assert result["cuda"]["cuda_available"] is False and "skipped" in result


@pytest.mark.parametrize("name", gpu_check.RECIPES)
def test_recipe_shapes_and_the_cpu_provider_rows(tmp_path, name):
    spec = gpu_check.recipe(name)
    assert spec["batch"] >= 1 and spec["shape"][0] == 1
    folder = gpu_check.export(spec, tmp_path / name)
    rows = gpu_check.ort_rows(folder, spec, seconds=0.05)
    assert [r["batch"] for r in rows] == list(gpu_check.BATCHES)  # CPU only here: one row per batch
    assert all(r["provider"] == "CPU" and r["max_abs_diff_vs_cpu"] == 0.0 for r in rows)
    assert all(r["windows_per_s"] > 0 for r in rows)
