"""The promotion gate on a segmentation model: scored on its tiles' centre samples, parity re-measured."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from seismic.export.heldout import HeldOut
from seismic.export.weights import save_weights
from seismic.models import build_model
from seismic.registry.gate import evaluate
from seismic.registry.policy import GateConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from models import CLASS_NAMES, NORMALISATION, export_tiny


def test_dense_model_is_gated_on_tile_centres_with_parity(tmp_path):
    folder = export_tiny(tmp_path / "unet2d", "unet2d", length=16, traces=8)
    torch.manual_seed(0)  # export_tiny's weights: the same seed and arguments
    net = build_model("unet2d", num_classes=len(CLASS_NAMES), width=8, depth=2).eval()
    save_weights(
        net,
        {"model": "unet2d", "num_classes": len(CLASS_NAMES), "model_kwargs": {"width": 8, "depth": 2}},
        folder,
    )
    rng = np.random.default_rng(0)
    raw = rng.normal(NORMALISATION["mean"], NORMALISATION["std"], (40, 1, 8, 16)).astype(np.float32)
    with torch.no_grad():
        logits, _ = net(torch.from_numpy((raw - NORMALISATION["mean"]) / NORMALISATION["std"]))
    centre = logits[:, :, 4, 8].argmax(dim=1).numpy()
    labels = centre.copy()
    labels[:10] = (labels[:10] + 1) % len(CLASS_NAMES)  # a quarter wrong: accuracy 0.75 exactly
    held = HeldOut(
        raw=raw, labels=labels, survey=np.zeros(40, int), inline=np.zeros(40, int),
        window={"length": 16, "width": 8, "axis": "inline", "pad_mode": "reflect"},
        class_names=tuple(CLASS_NAMES), dt_ms=4.0, data_hash="tiny-0",
    )  # fmt: skip
    result = evaluate(folder, lambda window: held, GateConfig(), parity=True)
    assert result["metrics"]["accuracy"] == 0.75 and result["n_windows"] == 40
    assert result["parity"] < 1e-4
