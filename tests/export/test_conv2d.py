"""The 1D-as-2D rewrite the ONNX export uses: same numbers, 2D convolutions in the graph, and a plain export
where the rewrite does not apply."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from seismic.export.conv2d import as_conv2d
from seismic.export.onnx import ONNX_FILE, export_onnx, metadata_from_hparams, read_metadata
from seismic.models import build_model

from .test_onnx import TinyLinear


@pytest.fixture
def metadata_1d():
    hparams = {
        "model": "cnn1d",
        "model_kwargs": {},
        "num_classes": 6,
        "class_names": [f"c{i}" for i in range(6)],
        "window": {"length": 64, "width": 1, "axis": "inline", "pad_mode": "reflect"},
        "normalisation": {"mean": 0.0, "std": 1.0, "clip_sigma": 5.0},
        "data_hash": "test",
        "metadata": {"dt_ms": 4.0},
    }
    return metadata_from_hparams(hparams, embedding_dim=4)


def _conv_weight_ranks(folder) -> set[int]:
    graph = onnx.load(str(folder / ONNX_FILE)).graph
    weights = {t.name: len(t.dims) for t in graph.initializer}
    return {weights[n.input[1]] for n in graph.node if n.op_type == "Conv"}


def test_cnn1d_twin_gives_the_same_outputs_through_batchnorm_and_residuals():
    torch.manual_seed(0)
    net = build_model("cnn1d", num_classes=6, width=8, depth=2).eval()
    for m in net.modules():  # running statistics away from 0/1, so a BatchNorm copied wrongly would show
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(5, 1, 64)
    twin = as_conv2d(net, x)
    assert twin is not None
    assert not any(isinstance(m, nn.Conv1d | nn.BatchNorm1d) for m in twin.modules())
    with torch.no_grad():
        for want, got in zip(net(x), twin(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_export_writes_2d_convolutions_for_a_1d_net_and_keeps_its_input(tmp_path, metadata_1d):
    torch.manual_seed(0)
    net = build_model("cnn1d", num_classes=6, width=8, depth=2).eval()
    out = export_onnx(net, tmp_path / "m", metadata_1d, large_batch=32)
    assert out["graph_layout"] == "conv1d-as-conv2d" and read_metadata(tmp_path / "m")["graph_layout"]
    assert out["parity"]["passed"]
    assert _conv_weight_ranks(tmp_path / "m") == {4}
    session = ort.InferenceSession(str(tmp_path / "m" / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [1, 64]
    x = np.random.default_rng(0).standard_normal((7, 1, 64)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(session.run(["logits"], {"windows": x})[0], want, atol=1e-4)


class WithPooling(nn.Module):
    input_ndim, num_classes, embedding_dim = 1, 6, 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool1d(2)
        self.head = nn.Linear(4, 6)

    def forward(self, x):
        embedding = self.pool(self.conv(x)).mean(dim=-1)
        return self.head(embedding), embedding


def test_nets_the_rewrite_does_not_cover_export_as_they_are(tmp_path, metadata_1d):
    x = torch.randn(2, 1, 64)
    assert as_conv2d(WithPooling(), x) is None  # a 1D-only layer type
    assert as_conv2d(TinyLinear(), x) is None  # nothing to rewrite
    assert as_conv2d(build_model("cnn2d", num_classes=6, width=8, depth=2), torch.randn(2, 1, 8, 64)) is None
    out = export_onnx(WithPooling(), tmp_path / "p", metadata_1d, large_batch=8)
    assert out["graph_layout"] == "as-exported" and _conv_weight_ranks(tmp_path / "p") == {3}
