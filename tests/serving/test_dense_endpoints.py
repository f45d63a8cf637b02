"""A segmentation model behind every protocol: dense answers equal in-process onnxruntime, one log row per
tile, the same validation (a tile size the net cannot take is a 422 naming the multiple)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from conftest import amplitudes, start
from models import export_tiny

from serving.inference_log import read_inference_log
from serving.runtime import load_model


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    folder = export_tiny(tmp_path_factory.mktemp("models") / "unet2d", "unet2d", length=16, traces=8)
    log_dir = tmp_path_factory.mktemp("dense_log")
    running = start(folder, log_dir, inference_log={"directory": str(log_dir), "flush_seconds": 0.2,
                                                     "sample_fraction": 1.0})  # fmt: skip
    yield running, load_model(folder, ["CPUExecutionProvider"]), log_dir
    running.stop()


def test_predict_answers_dense_arrays_for_any_legal_tile(dense):
    running, model, log_dir = dense
    for shape in ((1, 8, 16), (1, 12, 32)):  # the trained tile and another multiple of 4
        x = amplitudes(3, shape, seed=len(shape))
        want = model.predict(x)
        response = requests.post(running.url + "/predict", json={"windows": x.tolist()}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["task"] == "segmentation" and body["class_names"] == model.class_names
        np.testing.assert_array_equal(np.asarray(body["classes"]), want["class"])
        assert np.asarray(body["probabilities"]).shape == (3, len(model.class_names), *shape[1:])
        np.testing.assert_allclose(body["probabilities"], want["probabilities"], atol=1e-5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            table = read_inference_log(log_dir)
        except Exception:  # nothing flushed yet
            table = None
        if table is not None and table.num_rows >= 6:
            break
        time.sleep(0.2)
    assert table is not None and table.num_rows == 6  # one row per tile, not per sample
    rows = np.stack(table.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    # what the tiles' samples were given: their class shares, the majority as predicted_class
    table = table.sort_by([("timestamp", "ascending"), ("window_index", "ascending")])  # request order
    shares = np.stack(table.column("class_shares").to_numpy(zero_copy_only=False))
    sent = [model.predict(amplitudes(3, s, seed=len(s)))["class"] for s in ((1, 8, 16), (1, 12, 32))]
    want = np.concatenate(
        [np.stack([(c.reshape(3, -1) == k).mean(axis=1) for k in range(rows.shape[1])], 1) for c in sent]
    )
    np.testing.assert_allclose(shares, want, atol=1e-6)
    assert (table.column("predicted_class").to_numpy() == shares.argmax(axis=1)).all()
    mean_max = table.column("mean_max_probability").to_numpy()
    assert ((mean_max >= 1 / rows.shape[1] - 1e-6) & (mean_max <= 1 + 1e-6)).all()


def test_bad_tile_size_is_a_422_naming_the_multiple(dense):
    running, _, _ = dense
    response = requests.post(running.url + "/predict", json=amplitudes(2, (1, 10, 16)).tolist(), timeout=10)
    assert response.status_code == 422
    assert "multiple of 4" in response.json()["expected"]


def test_invocations_tensor_input(dense):
    running, model, _ = dense
    x = amplitudes(2, (1, 8, 16), seed=5)
    norm = model.normalise(x)
    response = requests.post(running.url + "/invocations", json={"inputs": norm.tolist()}, timeout=10)
    assert response.status_code == 200, response.text
    probabilities = np.asarray(response.json()["predictions"]["probabilities"])
    np.testing.assert_allclose(probabilities, model.predict(x)["probabilities"], atol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_open_inference_protocol_dense_outputs(dense, binary):
    running, model, _ = dense
    x = amplitudes(4, (1, 8, 24), seed=7)
    want = model.predict(x)
    client = triton.InferenceServerClient(f"127.0.0.1:{running.port}")
    meta = client.get_model_metadata(model.name)
    assert meta["inputs"][0]["shape"] == [-1, 1, -1, -1]
    assert {o["name"]: o["shape"] for o in meta["outputs"]}["class"] == [-1, -1, -1]
    windows = triton.InferInput("windows", list(x.shape), "FP32")
    windows.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("class", "probabilities")]
    result = client.infer(model.name, [windows], outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("class"), want["class"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], atol=1e-6)
    client.close()
