"""``cnn2d``: a small residual 2D CNN on patches ``[B, 1, W, T]`` (W traces by T samples), channels-last."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seismic.models.blocks import ConvClassifier
from seismic.models.registry import register_model


@register_model("cnn2d")
class CNN2D(ConvClassifier):
    """Patch classifier: stem + ``depth`` stages that halve both axes + pooled head.

    Input ``[B, in_channels, W, T]`` with the labelled sample at ``(W // 2, T // 2)``; output
    ``(logits, embedding)``. ``kernel_size`` is one odd int or ``(k_trace, k_time)``.

    With ``channels_last`` (default) the module converts its own weights at construction and its input at
    the start of ``forward``, so callers (the task, the exporter) pass ordinary contiguous tensors. The
    conversion is a layout change only: it is a no-op in an exported ONNX graph.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 6,
        width: int = 16,
        depth: int = 3,
        kernel_size: int | Sequence[int] = 3,
        dropout: float = 0.1,
        norm: str = "batch",
        embedding_dim: int | None = 64,
        pool: str = "avg_centre",
        centre_size: int = 1,
        residual: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__(
            ndim=2,
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            depth=depth,
            kernel_size=kernel_size,
            dropout=dropout,
            norm=norm,
            embedding_dim=embedding_dim,
            pool=pool,
            centre_size=centre_size,
            residual=residual,
        )
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return super().features(x)
