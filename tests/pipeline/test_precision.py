from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seismic.pipeline import precision
from seismic.pipeline.precision import resolve_precision


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", 64])
def test_an_explicit_precision_passes_through(explicit):
    assert resolve_precision(explicit, "cpu") == str(explicit)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cpu_follows_the_instruction_set(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_on_cuda_prefers_native_bf16_then_fp16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert resolve_precision("auto", "gpu") == expected
    assert resolve_precision("auto", "auto") == expected


def test_auto_with_cpu_forced_ignores_a_present_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"


def test_this_machine_reports_its_bf16_capability():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = cpuinfo.read_text()
    expected = " amx_tile" in flags or " avx512_bf16" in flags
    assert precision.cpu_has_native_bf16() == expected
