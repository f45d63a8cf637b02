"""Every endpoint of a real server (uvicorn, free 127.0.0.1 port); answers equal in-process onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from conftest import amplitudes
from prometheus_client.parser import text_string_to_metric_families

from serving.runtime import load_model


@pytest.fixture(scope="module")
def reference(model_dirs):
    return {name: load_model(path, ["CPUExecutionProvider"]) for name, path in model_dirs.items()}


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/ready",
        "/ping",
        "/version",
        "/model_info",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/cnn1d",
        "/v2/models/cnn1d/versions/0",
        "/v2/models/cnn1d/ready",
        "/v2/models/cnn1d/versions/0/ready",
        "/openapi.json",
        "/docs",
    ],
)
def test_get_endpoints_answer(server, path):
    response = requests.get(server.url + path, allow_redirects=False, timeout=10)
    assert response.status_code == 200, response.text


def test_model_info_reports_provider_and_metadata(server):
    info = requests.get(server.url + "/model_info", timeout=10).json()
    assert info["provider"] == "CPUExecutionProvider"
    assert info["window_shape"] == [1, 64]
    assert info["metadata"]["normalisation"]["std"] == 250.0


def test_predict_json_binary_npy_agree_with_onnxruntime(server, reference):
    x = amplitudes(9, (1, 64))
    want = reference["cnn1d"].predict(x)
    url = server.url + "/predict"
    bodies = [
        requests.post(url, json={"windows": x.tolist(), "embeddings": True}, timeout=10),
        requests.post(
            url, json=x[:, 0].tolist(), params={"embeddings": "true"}, timeout=10
        ),  # no channel axis
        requests.post(
            url + "?embeddings=true",
            data=x.tobytes(),
            headers={"Content-Type": "application/octet-stream", "X-Shape": "9,1,64"},
            timeout=10,
        ),
    ]
    buffer = io.BytesIO()
    np.save(buffer, x.astype(np.float64))
    bodies.append(
        requests.post(
            url + "?embeddings=1", data=buffer.getvalue(), headers={"Content-Type": "application/x-npy"}
        )
    )
    for response in bodies:
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["classes"] == want["class"].tolist()
        assert got["class_names"] == [reference["cnn1d"].class_names[c] for c in want["class"]]
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-6)
        np.testing.assert_allclose(got["embeddings"], want["embedding"], atol=1e-5)


def test_predict_normalised_flag_skips_normalisation(server, reference):
    model = reference["cnn1d"]
    x = amplitudes(5, (1, 64), seed=3)
    got = requests.post(
        server.url + "/predict", json={"windows": model.normalise(x).tolist(), "normalised": True}, timeout=10
    ).json()
    assert got["classes"] == model.predict(x)["class"].tolist()
    assert "embeddings" not in got


def test_mlflow_protocol_formats_agree(server, reference):
    model = reference["cnn1d"]
    x = amplitudes(6, (1, 64), seed=1)
    norm = model.normalise(x)
    want = model.predict(x)
    url = server.url + "/invocations"
    tensors = [
        {"inputs": norm.tolist()},
        {"inputs": {"windows": norm.tolist()}},
        {"instances": norm.tolist()},
        {"instances": [{"windows": w.tolist()} for w in norm]},
        {"inputs": x.tolist(), "params": {"normalised": False}},
    ]
    for body in tensors:
        response = requests.post(url, json=body, timeout=10)
        assert response.status_code == 200, (body.keys(), response.text)
        predictions = response.json()["predictions"]
        assert set(predictions) == {"logits", "probabilities", "embedding"}
        assert np.argmax(predictions["probabilities"], axis=1).tolist() == want["class"].tolist()
    frames = [
        {"dataframe_split": {"columns": [f"t{i}" for i in range(64)], "data": norm[:, 0].tolist()}},
        {"dataframe_split": {"columns": ["windows"], "data": [[w.tolist()] for w in norm]}},
        {"dataframe_records": [{"windows": w.tolist()} for w in norm]},
    ]
    for body in frames:
        response = requests.post(
            url, data=__import__("json").dumps(body), headers={"Content-Type": "application/json;"}
        )
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        assert [int(np.argmax(r["probabilities"])) for r in rows] == want["class"].tolist()


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("kind", ["cnn1d", "cnn2d"])
def test_open_inference_protocol_with_tritonclient(server, server_2d, reference, kind, binary):
    running = server if kind == "cnn1d" else server_2d
    model = reference[kind]
    x = amplitudes(7, model.window_shape, seed=2)
    want = model.predict(x)
    client = triton.InferenceServerClient(f"127.0.0.1:{running.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(kind)
    meta = client.get_model_metadata(kind)
    assert meta["inputs"][0] == {"name": "windows", "datatype": "FP32", "shape": [-1, *model.window_shape]}
    windows = triton.InferInput("windows", list(x.shape), "FP32")
    windows.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("class", "probabilities", "embedding")
    ]
    result = client.infer(kind, [windows], outputs=outputs, request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    np.testing.assert_array_equal(result.as_numpy("class"), want["class"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("embedding"), want["embedding"], atol=1e-5)
    everything = client.infer(kind, [windows], model_version="0")  # no outputs named: all, binary by default
    np.testing.assert_array_equal(everything.as_numpy("class"), want["class"])
    assert all("binary_data_size" in o["parameters"] for o in everything.get_response()["outputs"])
    client.close()


def test_metrics_parse_and_count(server):
    requests.post(server.url + "/predict", json=amplitudes(3, (1, 64)).tolist(), timeout=10)
    response = requests.get(server.url + "/metrics", allow_redirects=False, timeout=10)
    assert response.status_code == 200  # at the path itself: no 307 to /metrics/
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "seismic_http_requests",
        "seismic_http_request_duration_seconds",
        "seismic_batch_queue_duration_seconds",
        "seismic_batch_size_windows",
        "seismic_predictions",
        "seismic_inference_errors",
        "seismic_model_info",
    ):
        assert name in families, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("seismic_http_requests_total", (("endpoint", "/predict"), ("status", "200")))] >= 1
    assert (
        samples[
            (
                "seismic_model_info",
                (("name", "cnn1d"), ("provider", "CPUExecutionProvider"), ("version", "0")),
            )
        ]
        == 1
    )
    assert sum(v for (n, _), v in samples.items() if n == "seismic_predictions_total") >= 3


def test_openapi_documents_every_route(server):
    schema = requests.get(server.url + "/openapi.json", timeout=10).json()
    for path in (
        "/predict",
        "/invocations",
        "/ping",
        "/version",
        "/health",
        "/ready",
        "/model_info",
        "/metrics",
        "/reload",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ):
        assert path in schema["paths"], path
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/octet-stream", "application/x-npy"} <= set(body)
    assert "200" in schema["paths"]["/v2/models/{name}/infer"]["post"]["responses"]


def test_inference_log_gets_a_row_per_window(server):
    writer = server.service.writer
    before = writer.stats.rows_accepted
    requests.post(server.url + "/predict", json=amplitudes(4, (1, 64)).tolist(), timeout=10)
    assert writer.stats.rows_accepted == before + 4


def test_hot_path_and_router_agree_and_are_counted_by_route(server, reference):
    """Inference POSTs skip FastAPI's router (serving/app.py); with a query string /predict goes through it.
    Both give the same answer, errors keep each protocol's format, metrics name the route template."""
    x = amplitudes(4, (1, 64), seed=5)
    want = reference["cnn1d"].predict(x)["class"].tolist()
    for url in ("/predict", "/predict?embeddings=false"):
        got = requests.post(server.url + url, json=x.tolist(), timeout=10)
        assert got.status_code == 200 and got.json()["classes"] == want
    bad = requests.post(server.url + "/predict", json=[[1.0] * 63], timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "windows"
    bad = requests.post(server.url + "/v2/models/nope/infer", json={"inputs": []}, timeout=10)
    assert bad.status_code == 404 and "nope" in bad.json()["error"]
    bad = requests.post(server.url + "/invocations", data=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST"
    text = requests.get(server.url + "/metrics", timeout=10).text
    samples = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "seismic_http_requests"
        for s in f.samples
    }
    assert samples[(("endpoint", "/v2/models/{name}/infer"), ("status", "404"))] >= 1
    assert samples[(("endpoint", "/invocations"), ("status", "400"))] >= 1
    assert samples[(("endpoint", "/predict"), ("status", "422"))] >= 1
