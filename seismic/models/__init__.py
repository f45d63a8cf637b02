"""Networks for facies classification, built by name through the registry.

Importing this package registers the built-in models: window-centre classifiers ``cnn1d``, ``cnn2d`` and
dense segmentation nets ``unet1d``, ``unet2d`` (each declares its ``task``, see :func:`model_task`).
"""

from seismic.models.blocks import NORMS, POOLS, ConvClassifier
from seismic.models.cnn1d import CNN1D
from seismic.models.cnn2d import CNN2D
from seismic.models.registry import (
    TASKS,
    FaciesNet,
    ModelConfigError,
    build_model,
    get_model_class,
    list_models,
    model_defaults,
    model_task,
    register_model,
)
from seismic.models.unet import UNet1D, UNet2D

__all__ = [
    "CNN1D",
    "CNN2D",
    "NORMS",
    "POOLS",
    "TASKS",
    "ConvClassifier",
    "FaciesNet",
    "ModelConfigError",
    "UNet1D",
    "UNet2D",
    "build_model",
    "get_model_class",
    "list_models",
    "model_defaults",
    "model_task",
    "register_model",
]
