"""Tiny data and models shared by the export, registry and profile tests (imported by their conftests)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seismic.data.datamodule import SeismicDataModule
from seismic.models import build_model

# a survey small enough for seconds-long tests; every code path stays the same as for a real one
TINY_SURVEY = {"n_inlines": 40, "n_crosslines": 16, "n_samples": 96}
PUBLISH = {
    "export": {"opset": 17, "parity_bound": 1e-4, "large_batch": 64},
    "profile": {"max_windows": 128, "max_embeddings": 50, "seed": 0},
    "calibration": {"enabled": True, "max_windows": 64},
}
NET_KWARGS = {"width": 8, "depth": 2}


def tiny_data(cache_dir: Path, **window: Any) -> dict[str, Any]:
    return {
        "source": "synthetic",
        "cache_dir": str(cache_dir),
        "survey": dict(TINY_SURVEY),
        "window": {"length": 64, **window},
        "split": {"gap": 2},
        "sampling": {"train": 512, "val": 64, "test": 256},
        "batch_size": 64,
    }


def datamodule(data: dict[str, Any]) -> SeismicDataModule:
    dm = SeismicDataModule(**copy.deepcopy(data))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def hparams_for(dm: SeismicDataModule, model: str, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What FaciesClassificationTask's hyperparameters hold for a model trained on ``dm``."""
    return {
        "model": model,
        "model_kwargs": dict(model_kwargs),
        "num_classes": len(dm.class_names),
        "class_names": list(dm.class_names),
        "window": dm.window.to_dict(),
        "normalisation": dm.normalisation.to_dict(),
        "data_hash": dm.data_hash,
        "metadata": {"dt_ms": float(dm.meta["dt_ms"]), "provenance": dm.meta.get("provenance", {})},
    }


def fit(dm: SeismicDataModule, model: str = "cnn1d", steps: int = 0, seed: int = 0) -> torch.nn.Module:
    """A net after ``steps`` AdamW steps on the training split (0: as initialised, near chance)."""
    torch.manual_seed(seed)
    net = build_model(model, num_classes=len(dm.class_names), **NET_KWARGS)
    dataset = dm.datasets["train"]
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        x, y = dataset.__getitems__(rng.choice(len(dataset), size=64, replace=False).tolist())
        loss = torch.nn.functional.cross_entropy(net(x)[0], y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval()


def constant(dm: SeismicDataModule, model: str = "cnn1d", cls: int = 0) -> torch.nn.Module:
    """A net that predicts ``cls`` for every window (a clearly worse model), through its classifier bias."""
    net = fit(dm, model, steps=0)
    bias = [
        p for name, p in net.named_parameters() if name.endswith("bias") and p.shape == (net.num_classes,)
    ]
    with torch.no_grad():
        bias[-1][cls] += 100.0
    return net
