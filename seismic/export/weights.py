"""``model.pt`` in a model folder: the PyTorch net behind the ONNX graph, so parity can be re-checked later.

Only the registry name, the constructor arguments and the state dict (plain tensors): it loads with
``torch.load(weights_only=True)`` and :func:`seismic.models.build_model`, without Lightning, the task class
or the training config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seismic.export.layout import WEIGHTS_FILE
from seismic.io.atomic import atomic_file
from seismic.models import build_model

__all__ = ["WEIGHTS_FILE", "load_weights", "save_weights"]


def save_weights(net: nn.Module, hparams: Mapping[str, Any], folder: str | Path) -> Path:
    path = Path(folder) / WEIGHTS_FILE
    payload = {
        "architecture": str(hparams["model"]),
        "num_classes": int(hparams["num_classes"]),
        "model_kwargs": dict(hparams.get("model_kwargs") or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_weights(folder: str | Path) -> nn.Module:
    """The net of ``folder/model.pt`` in eval mode on the CPU."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no PyTorch weights beside the ONNX model")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    net = build_model(payload["architecture"], num_classes=payload["num_classes"], **payload["model_kwargs"])
    net.load_state_dict(payload["state_dict"])
    return net.eval()
