"""Building blocks shared by the 1D and 2D facies CNNs, written once for both dimensionalities.

:class:`ConvClassifier` is the whole network: a stem, ``depth`` stages of conv-norm-ReLU (optionally residual)
that each halve every spatial axis, a pooling step, and a head ``Linear -> ReLU -> Dropout -> Linear``.

Pooling and the window centre
-----------------------------
The target is the facies at the window *centre*, and a 64-sample window spans several units of other facies.
Global average pooling throws away *where* a texture was seen, so a window centred just above a boundary
looks the same as one centred just below it. ``pool`` therefore offers:

- ``"avg"``: global average over all positions (plain classification of the whole window).
- ``"centre"``: the features of the positions at the centre (``centre_size`` of them per axis, averaged).
  Windows are cut with the centre at index ``size // 2`` and every conv is "same"-padded with an odd kernel,
  so stride-2 stages keep that position at ``size // 2`` of every feature map; its receptive field still
  covers most of the window.
- ``"avg_centre"`` (default): both concatenated, the centre features plus the window's context.

All sizes involved are static Python ints (the spatial size of a window never changes), so nothing in
``forward`` depends on data and the graph exports to ONNX with a dynamic batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("batch", "group", "none")
POOLS = ("avg", "centre", "avg_centre")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def as_tuple(value: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    out = (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ValueError(f"{what} must be an int or {ndim} ints, got {value!r}")
    return out


def norm_layer(norm: str, channels: int, ndim: int) -> nn.Module:
    """BatchNorm, GroupNorm (8 groups, or fewer when the channels do not divide) or nothing."""
    if norm == "batch":
        return _BATCHNORM[ndim](channels)
    if norm == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> ReLU`` with "same" padding (odd kernels keep the centre where it is)."""

    def __init__(
        self,
        ndim: int,
        c_in: int,
        c_out: int,
        kernel_size: tuple[int, ...],
        stride: int = 1,
        norm: str = "batch",
        act: bool = True,
    ) -> None:
        padding = tuple(k // 2 for k in kernel_size)
        layers: list[nn.Module] = [
            _CONV[ndim](c_in, c_out, kernel_size, stride=stride, padding=padding, bias=norm == "none"),
            norm_layer(norm, c_out, ndim),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Stage(nn.Module):
    """Two convs, the first with ``stride``; ``residual`` adds a (projected) shortcut before the last ReLU."""

    def __init__(
        self,
        ndim: int,
        c_in: int,
        c_out: int,
        kernel_size: tuple[int, ...],
        stride: int,
        norm: str,
        residual: bool,
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(ndim, c_in, c_out, kernel_size, stride, norm, act=True)
        self.conv2 = ConvNormAct(ndim, c_out, c_out, kernel_size, 1, norm, act=False)
        self.shortcut: nn.Module | None = None
        if residual:
            if c_in == c_out and stride == 1:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = ConvNormAct(ndim, c_in, c_out, (1,) * ndim, stride, norm, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


def centre_slice(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``size`` positions of ``x`` along ``dim`` around index ``x.shape[dim] // 2`` (static shapes only)."""
    n = x.shape[dim]
    size = min(size, n)
    start = min(max(n // 2 - size // 2, 0), n - size)
    return x.narrow(dim, start, size)


class ConvClassifier(nn.Module):
    """The network behind ``cnn1d`` and ``cnn2d``; see the module docstring for the pooling modes.

    ``forward(x)`` takes ``[B, in_channels, T]`` (``ndim=1``) or ``[B, in_channels, W, T]`` (``ndim=2``) and
    returns ``(logits [B, num_classes], embedding [B, embedding_dim])``. The embedding is the head's hidden
    layer (after its ReLU, before dropout and the last linear); with ``embedding_dim=None`` there is no hidden
    layer and the embedding is the pooled feature vector itself.
    """

    task = "classification"

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
        pool: str,
        centre_size: int,
        residual: bool,
    ) -> None:
        super().__init__()
        if ndim not in (1, 2):
            raise ValueError(f"ndim must be 1 or 2, got {ndim}")
        kernel = as_tuple(kernel_size, ndim, "kernel_size")
        if any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(
                f"kernel_size must be odd (it keeps the window centre in place), got {kernel_size!r}"
            )
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if int(depth) < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if int(centre_size) < 1:
            raise ValueError(f"centre_size must be >= 1, got {centre_size}")
        if embedding_dim is not None and int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be >= 1 or None, got {embedding_dim}")

        self.input_ndim = ndim
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.pool = pool
        self.centre_size = int(centre_size)

        self.stem = ConvNormAct(ndim, self.in_channels, width, kernel, 1, norm)
        stages: list[nn.Module] = []
        c_in = width
        for i in range(int(depth)):
            c_out = width * 2**i
            stages.append(Stage(ndim, c_in, c_out, kernel, 2, norm, residual))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.feature_channels = c_in
        pooled_dim = c_in * (2 if pool == "avg_centre" else 1)

        if embedding_dim is None:
            self.embed: nn.Module = nn.Identity()
            self.embedding_dim = pooled_dim
        else:
            self.embed = nn.Sequential(nn.Linear(pooled_dim, int(embedding_dim)), nn.ReLU(inplace=True))
            self.embedding_dim = int(embedding_dim)
        self.dropout = nn.Dropout(float(dropout))
        self.classifier = nn.Linear(self.embedding_dim, self.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``[B, C, T']`` or ``[B, C, W', T']``."""
        return self.stages(self.stem(x))

    def pool_features(self, f: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, f.dim()))
        if self.pool == "avg":
            return f.mean(dim=spatial)
        centre = f
        for d in spatial:
            centre = centre_slice(centre, d, self.centre_size)
        centre = centre.mean(dim=spatial)
        if self.pool == "centre":
            return centre
        return torch.cat([f.mean(dim=spatial), centre], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(self.pool_features(self.features(x)))
        return self.classifier(self.dropout(embedding)), embedding
