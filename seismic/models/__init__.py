"""Networks for facies classification, built by name through the registry.

Importing this package registers the built-in models (``cnn1d``, ``cnn2d``).
"""

from seismic.models.blocks import NORMS, POOLS, ConvClassifier
from seismic.models.cnn1d import CNN1D
from seismic.models.cnn2d import CNN2D
from seismic.models.registry import (
    FaciesNet,
    ModelConfigError,
    build_model,
    get_model_class,
    list_models,
    model_defaults,
    register_model,
)

__all__ = [
    "CNN1D",
    "CNN2D",
    "NORMS",
    "POOLS",
    "ConvClassifier",
    "FaciesNet",
    "ModelConfigError",
    "build_model",
    "get_model_class",
    "list_models",
    "model_defaults",
    "register_model",
]
