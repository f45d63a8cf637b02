"""ONNX export: graph contract, metadata in both places, parity on random and survey windows, refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from seismic.export.heldout import held_out
from seismic.export.onnx import (
    METADATA_FILE,
    ONNX_FILE,
    ExportError,
    ParityError,
    export_onnx,
    metadata_from_hparams,
    onnx_metadata,
    read_metadata,
    stamp,
)
from seismic.features import FEATURE_NAMES

from .support import NET_KWARGS, fit, hparams_for

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def exported(dm, data_options, tmp_path_factory):
    net = fit(dm, steps=0)
    hparams = hparams_for(dm, "cnn1d", NET_KWARGS)
    held = held_out(data_options, hparams["window"], 128)
    folder = tmp_path_factory.mktemp("export") / "model"
    metadata = metadata_from_hparams(
        hparams,
        embedding_dim=net.embedding_dim,
        run_id="run123",
        git_commit="abc",
        test_metrics={"test/f1": 0.5},
    )
    written = export_onnx(
        net, folder, metadata, real_windows=held.model_input(hparams["normalisation"]), large_batch=64
    )
    return net, folder, written, held, hparams


def test_graph_has_named_input_dynamic_batch_and_three_outputs(exported):
    _, folder, _, _, _ = exported
    graph = onnx.load(str(folder / ONNX_FILE))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["windows"]
    assert [o.name for o in graph.graph.output] == ["logits", "probabilities", "embedding"]
    for value in (*graph.graph.input, *graph.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param, f"{value.name}: batch axis must be symbolic"
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim[1:]] == [1, 64]


def test_metadata_json_and_onnx_props_agree_and_describe_the_model(exported, dm):
    _, folder, written, _, _ = exported
    on_disk = json.loads((folder / METADATA_FILE).read_text())
    assert on_disk == written == read_metadata(folder) == onnx_metadata(folder / ONNX_FILE)
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map  # what a serving process without onnx sees
    assert json.loads(props["class_names"]) == list(dm.class_names)
    assert on_disk["architecture"] == "cnn1d" and on_disk["model_kwargs"] == NET_KWARGS
    assert on_disk["model_name"] is None and on_disk["model_version"] is None  # not registered yet
    assert on_disk["window"] == dm.window.to_dict() and on_disk["dt_ms"] == dm.meta["dt_ms"]
    assert on_disk["normalisation"] == dm.normalisation.to_dict()
    assert on_disk["feature_names"] == list(FEATURE_NAMES)
    assert (
        on_disk["data_hash"] == dm.data_hash
        and on_disk["provenance"]["generator"] == "seismic.data.synthetic"
    )
    assert on_disk["mlflow_run_id"] == "run123" and on_disk["test_metrics"] == {"test/f1": 0.5}
    assert on_disk["opset"] == 17 and "dynamo=False" in on_disk["exporter"]
    assert on_disk["input"] == {
        "name": "windows",
        "dtype": "float32",
        "shape": [None, 1, 64],
        "normalised": True,
    }
    assert on_disk["outputs"]["embedding"] == [None, exported[0].embedding_dim]
    assert on_disk["outputs"]["logits"] == on_disk["outputs"]["probabilities"] == [None, len(dm.class_names)]
    assert len(on_disk["graph_sha256"]) == 64


def test_parity_checked_on_random_and_real_windows_at_batch_1_and_large(exported):
    _, _, written, _, _ = exported
    parity = written["parity"]
    assert {(c["inputs"], c["batch"]) for c in parity["checks"]} == {
        ("random", 1),
        ("random", 64),
        ("real", 1),
        ("real", 64),
    }
    assert parity["passed"] and parity["bound"] == 1e-4
    assert 0 <= parity["max_abs_error"] == max(c["max_abs"] for c in parity["checks"]) < 1e-4


def test_onnxruntime_matches_torch_at_any_batch(exported):
    net, folder, _, held, hparams = exported
    x = held.model_input(hparams["normalisation"])[:37]
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    logits, probabilities, embedding = session.run(None, {"windows": x})
    with torch.no_grad():
        want_logits, want_embedding = net(torch.from_numpy(x))
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(embedding, want_embedding.numpy(), atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == want_logits.numpy().argmax(axis=1)).all()


class TinyLinear(nn.Module):
    input_ndim, num_classes, embedding_dim = 1, 6, 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(64, 4)
        self.head = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x.flatten(1))
        return self.head(embedding), embedding


class ExportsDifferently(TinyLinear):
    """Runs one way in PyTorch and exports another: what an exporter bug looks like to the check."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = super().forward(x)
        if torch.onnx.is_in_onnx_export():
            logits = logits + 1e-2
        return logits, embedding


def test_parity_failure_refuses_and_writes_nothing(exported, tmp_path):
    _, _, written, held, _ = exported
    folder = tmp_path / "model"
    with pytest.raises(ParityError, match=r"max \|onnxruntime - torch\| = 0\.01 > bound 0\.0001") as info:
        export_onnx(ExportsDifferently(), folder, written, real_windows=held.raw, large_batch=16)
    assert "nothing was written" in str(info.value)
    assert info.value.report["checks"][0]["worst_output"] == "logits"
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    # an existing model folder is left exactly as it was
    export_onnx(TinyLinear(), folder, written, large_batch=16)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ParityError):
        export_onnx(ExportsDifferently(), folder, written, large_batch=16)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_looser_bound_accepts_the_same_model(exported, tmp_path):
    _, _, written, _, _ = exported
    out = export_onnx(ExportsDifferently(), tmp_path / "m", written, bound=0.05, large_batch=16)
    assert out["parity"]["max_abs_error"] == pytest.approx(1e-2, rel=1e-3)
    assert (tmp_path / "m" / ONNX_FILE).is_file()


def test_wrong_window_shape_and_bad_bound_are_refused(exported, tmp_path):
    net, _, written, _, _ = exported
    with pytest.raises(ExportError, match=r"real windows have shape \(1, 32\)"):
        export_onnx(net, tmp_path / "m", written, real_windows=np.zeros((4, 1, 32), np.float32))
    with pytest.raises(ValueError, match="bound"):
        export_onnx(net, tmp_path / "m", written, bound=-1.0)
    assert not (tmp_path / "m").exists()


def test_stamp_changes_metadata_not_the_graph(exported, tmp_path):
    net, _, written, _, _ = exported
    folder = tmp_path / "m"
    export_onnx(net, folder, written, large_batch=16)
    graph_before = onnx.load(str(folder / ONNX_FILE)).graph.SerializeToString()
    stamp(folder, model_name="facies", model_version="7")
    assert read_metadata(folder)["model_version"] == "7" == onnx_metadata(folder / ONNX_FILE)["model_version"]
    assert onnx.load(str(folder / ONNX_FILE)).graph.SerializeToString() == graph_before
