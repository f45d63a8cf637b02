"""Tiny exported models for the serving tests and the latency benchmark (torch here; serving never)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seismic.export.onnx import export_onnx, metadata_from_hparams
from seismic.models import build_model

CLASS_NAMES = ["sand", "shale", "salt", "carbonate", "channel", "basement"]
# amplitudes far from N(0, 1), so a server that forgot the normalisation would give different classes
NORMALISATION = {"mean": 3.0, "std": 250.0, "clip_sigma": 5.0}


def export_tiny(
    folder: Path, model: str = "cnn1d", *, length: int = 64, traces: int = 1, seed: int = 0, **net: Any
) -> Path:
    """Export an untrained ``model`` (weights from ``seed``) on windows of ``traces`` x ``length`` samples to
    ``folder``; ``net``: the network's keyword arguments (default: a tiny one). Returns the folder."""
    torch.manual_seed(seed)
    kwargs = {"width": 8, "depth": 2, **net}
    module = build_model(model, num_classes=len(CLASS_NAMES), **kwargs).eval()
    window = {"length": length, "width": traces, "axis": "inline", "pad_mode": "reflect"}
    with torch.no_grad():
        _, embedding = module(torch.zeros(1, 1, *([traces] if traces > 1 else []), length))
    hparams = {
        "model": model,
        "model_kwargs": kwargs,
        "num_classes": len(CLASS_NAMES),
        "class_names": CLASS_NAMES,
        "window": window,
        "normalisation": NORMALISATION,
        "data_hash": f"tiny-{seed}",
        "metadata": {"dt_ms": 4.0},
    }
    metadata = metadata_from_hparams(hparams, embedding_dim=int(embedding.shape[1]))
    export_onnx(module, folder, metadata, large_batch=8, seed=seed)
    return folder
