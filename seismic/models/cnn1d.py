"""``cnn1d``: a small residual 1D CNN on single-trace windows ``[B, 1, T]``."""

from __future__ import annotations

from seismic.models.blocks import ConvClassifier
from seismic.models.registry import register_model


@register_model("cnn1d")
class CNN1D(ConvClassifier):
    """Trace-window classifier: stem + ``depth`` stride-2 stages (``width * 2**i`` channels) + pooled head.

    Input ``[B, in_channels, T]`` with the labelled sample at ``T // 2``; output ``(logits, embedding)``.
    ``pool`` is ``"avg" | "centre" | "avg_centre"`` (see :mod:`seismic.models.blocks`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 6,
        width: int = 32,
        depth: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.1,
        norm: str = "batch",
        embedding_dim: int | None = 64,
        pool: str = "avg_centre",
        centre_size: int = 1,
        residual: bool = True,
    ) -> None:
        super().__init__(
            ndim=1,
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
