"""``unet1d`` / ``unet2d``: fully convolutional encoder-decoders that label every sample (dense facies).

Contract (the segmentation side of :class:`~seismic.models.registry.FaciesNet`): ``forward(x)`` takes
``[B, in_channels, T]`` (1D, single traces) or ``[B, in_channels, W, T]`` (2D, tiles of W traces by T
samples) and returns ``(logits [B, num_classes, T] or [B, num_classes, W, T], embedding [B, D])``. The class
attribute ``task = "segmentation"`` is what makes the training pipeline pick
:class:`~seismic.tasks.segmentation.FaciesSegmentationTask` for these models.

Sizes: ``depth`` stride-2 stages halve every spatial axis, so each spatial size must be a multiple of
``size_multiple = 2 ** depth``; any such size works (the net has no size-dependent layer), so a model trained
on 64 x 128 tiles also scores 128 x 256 tiles or whole sections. Other sizes raise a ValueError naming the
size and the multiple; whole-volume inference (:mod:`seismic.inference.tiling`) pads the volume edge by
reflection to a legal tile instead of asking the network to pad (a pad inside the graph would need shape
arithmetic that the ONNX tracer freezes into constants).

Embedding: the global average of the bottleneck feature map (``embedding_dim`` sets the bottleneck's
channels, default ``width * 2 ** depth``), so it is on the path to the logits and monitoring compares the
representation the decoder actually uses.

Layers are the classifiers' own blocks (:mod:`seismic.models.blocks`): ``Conv1d``/``BatchNorm1d`` only in the
1D net, so the exporter's ``1 x k`` 2D rewrite (:mod:`seismic.export.conv2d`, ~4x faster in onnxruntime)
applies to ``unet1d`` too; upsampling scales only the net's own trailing axes for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seismic.models.blocks import NORMS, ConvNormAct, Stage, as_tuple
from seismic.models.registry import register_model

__all__ = ["UNet", "UNet1D", "UNet2D"]


class Up(nn.Module):
    """Nearest 2x upsampling of the last ``ndim`` axes (a unit axis the 2D rewrite inserts stays as it is)."""

    def __init__(self, ndim: int) -> None:
        super().__init__()
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factors = (1.0,) * (x.dim() - 2 - self.ndim) + (2.0,) * self.ndim
        return F.interpolate(x, scale_factor=factors, mode="nearest")


class UNet(nn.Module):
    """Encoder (stem + ``depth`` residual stride-2 stages, ``width * 2**i`` channels) and a mirrored decoder
    (upsample, concatenate the skip, one residual stage), then a 1x1 conv to the class logits."""

    task = "segmentation"

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        num_classes: int,
        width: int,
        depth: int,
        kernel_size: int | Sequence[int],
        dropout: float,
        norm: str,
        embedding_dim: int | None,
        residual: bool,
    ) -> None:
        super().__init__()
        kernel = as_tuple(kernel_size, ndim, "kernel_size")
        if any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be odd ('same' padding keeps the grid), got {kernel_size!r}")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 1 <= int(depth) <= 6:
            raise ValueError(f"depth must be in 1..6 (each stage halves the tile), got {depth}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if embedding_dim is not None and int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be >= 1 or None, got {embedding_dim}")

        self.input_ndim = ndim
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.depth = int(depth)
        self.size_multiple = 2**self.depth
        channels = [int(width) * 2**i for i in range(self.depth + 1)]
        if embedding_dim is not None:
            channels[-1] = int(embedding_dim)
        self.embedding_dim = channels[-1]

        self.stem = ConvNormAct(ndim, self.in_channels, channels[0], kernel, 1, norm)
        self.down = nn.ModuleList(
            Stage(ndim, channels[i], channels[i + 1], kernel, 2, norm, residual) for i in range(self.depth)
        )
        self.up = nn.ModuleList(Up(ndim) for _ in range(self.depth))
        self.decode = nn.ModuleList(
            Stage(ndim, channels[i + 1] + channels[i], channels[i], kernel, 1, norm, residual)
            for i in reversed(range(self.depth))
        )
        self.dropout = nn.Dropout(float(dropout))
        self.head = (nn.Conv1d if ndim == 1 else nn.Conv2d)(channels[0], self.num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_size(self, x: torch.Tensor) -> None:
        spatial = tuple(int(n) for n in x.shape[-self.input_ndim :])
        # only the trailing axes: the exporter's 1D->2D rewrite feeds [B, C, 1, T]
        if x.dim() < self.input_ndim + 2 or any(n % self.size_multiple for n in spatial):
            axes = "[B, C, T]" if self.input_ndim == 1 else "[B, C, W, T]"
            raise ValueError(
                f"{type(self).__name__} (depth {self.depth}) takes {axes} with every spatial size a multiple "
                f"of {self.size_multiple}, got shape {list(x.shape)}; pad the input (whole-volume inference "
                "pads by reflection) or pick another tile size"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the tracer and torch.export see fixed example sizes: the check would only freeze them
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_size(x)
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        bottleneck = skips.pop()
        embedding = bottleneck.mean(dim=tuple(range(2, bottleneck.dim())))
        y = bottleneck
        for up, stage in zip(self.up, self.decode, strict=True):
            y = stage(torch.cat([up(y), skips.pop()], dim=1))
        return self.head(self.dropout(y)), embedding


@register_model("unet1d")
class UNet1D(UNet):
    """Dense labels of single traces ``[B, 1, T]`` (T a multiple of ``2 ** depth``, any length)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 6,
        width: int = 16,
        depth: int = 4,
        kernel_size: int = 7,
        dropout: float = 0.1,
        norm: str = "batch",
        embedding_dim: int | None = None,
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
            residual=residual,
        )


@register_model("unet2d")
class UNet2D(UNet):
    """Dense labels of tiles ``[B, 1, W, T]`` of W neighbouring traces (W, T multiples of ``2 ** depth``)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 6,
        width: int = 16,
        depth: int = 3,
        kernel_size: int | Sequence[int] = 3,
        dropout: float = 0.1,
        norm: str = "batch",
        embedding_dim: int | None = None,
        residual: bool = True,
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
            residual=residual,
        )
