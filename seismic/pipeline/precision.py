"""``trainer.precision: auto``: bf16 mixed precision wherever the hardware runs it natively, else float32.

Measured here (2 cores with AMX, ``benchmarks/throughput.py``, README "Measurements"): bf16 autocast trains
the recipes' cnn1d (128 samples) 1.68x and cnn2d 1.63x as fast as float32. On a CPU without bf16
instructions autocast is emulated and slower than float32, and on CUDA before Ampere bf16 is emulated too, so
``auto`` checks the instruction sets instead of assuming.
"""

from __future__ import annotations

import torch

AUTO = "auto"
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def cpu_has_native_bf16() -> bool:
    """AMX tiles or AVX512-BF16: oneDNN then runs bf16 convolutions in hardware."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str | int | None, accelerator: str | None) -> str:
    """The Lightning precision string for ``precision`` (any explicit value passes through unchanged)."""
    if str(precision) != AUTO:
        return str(precision)
    accelerator = str(accelerator or "auto")
    if accelerator in GPU_ACCELERATORS and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    if accelerator in ("auto", "cpu"):
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "32-true"
