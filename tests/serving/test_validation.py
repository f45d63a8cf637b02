"""Every bad input gets a 4xx naming the field and the expectation; never a 5xx."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from conftest import amplitudes, start
from tritonclient.utils import InferenceServerException

GOOD = amplitudes(2, (1, 64))
JSON = {"Content-Type": "application/json"}
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def small(model_dirs, tmp_path_factory):
    """A server with small limits, so the limit checks cost nothing to trigger."""
    running = start(
        model_dirs["cnn1d"],
        tmp_path_factory.mktemp("log"),
        limits={"max_windows_per_request": 8, "max_body_bytes": 64 * 1024},
    )
    yield running
    running.stop()


def nested(x: np.ndarray) -> list:
    return x.tolist()


CASES = [
    # (name, path, body bytes, headers, status, text the message must hold)
    ("wrong shape", "/predict", json.dumps(np.zeros((2, 1, 32)).tolist()), JSON, 422, "[batch, 1, 64]"),
    ("wrong rank", "/predict", json.dumps([1.0, 2.0]), JSON, 422, "windows"),
    ("strings", "/predict", json.dumps([["a"] * 64]), JSON, 422, "numbers"),
    ("ragged", "/predict", json.dumps([[1.0] * 64, [1.0] * 3]), JSON, 422, "ragged"),
    ("nulls", "/predict", json.dumps([[None] * 64]), JSON, 422, "numbers"),
    ("NaN", "/predict", json.dumps([[float("nan")] * 64]), JSON, 422, "NaN"),
    ("Inf", "/predict", json.dumps([[1e39] * 64]), JSON, 422, "NaN or Inf"),
    ("empty batch", "/predict", json.dumps({"windows": []}), JSON, 422, "empty"),
    ("batch above limit", "/predict", json.dumps(np.zeros((9, 1, 64)).tolist()), JSON, 413, "at most 8"),
    (
        "body above limit",
        "/predict",
        json.dumps(np.zeros((8, 1, 64)).tolist()) + " " * 70000,
        JSON,
        413,
        "bytes",
    ),
    ("malformed JSON", "/predict", '{"windows": [[1.0,', JSON, 400, "malformed JSON"),
    ("missing windows", "/predict", json.dumps({"inputs": []}), JSON, 422, "windows"),
    (
        "bad flag",
        "/predict",
        json.dumps({"windows": nested(GOOD), "normalised": "maybe"}),
        JSON,
        422,
        "normalised",
    ),
    ("text/plain", "/predict", "1,2,3", {"Content-Type": "text/plain"}, 415, "application/json"),
    ("octet no shape", "/predict", GOOD.tobytes(), OCTET, 400, "X-Shape"),
    ("octet wrong size", "/predict", GOOD.tobytes()[:-4], {**OCTET, "X-Shape": "2,1,64"}, 400, "512 bytes"),
    (
        "octet dtype",
        "/predict",
        GOOD.tobytes(),
        {**OCTET, "X-Shape": "2,1,64", "X-Dtype": "int16"},
        422,
        "float32",
    ),
    ("npy garbage", "/predict", b"not numpy", {"Content-Type": "application/x-npy"}, 400, ".npy"),
    ("mlflow text/plain", "/invocations", "1,2", {"Content-Type": "text/plain"}, 415, "application/json"),
    ("mlflow no content type", "/invocations", json.dumps({"inputs": nested(GOOD)}), {}, 415, "Content-Type"),
    ("mlflow bare list", "/invocations", json.dumps(nested(GOOD)), JSON, 400, "one of"),
    ("mlflow malformed", "/invocations", "{", JSON, 400, "malformed"),
    (
        "mlflow two formats",
        "/invocations",
        json.dumps({"inputs": [], "instances": []}),
        JSON,
        400,
        "exactly one",
    ),
    (
        "mlflow wrong shape",
        "/invocations",
        json.dumps({"inputs": [[[1.0] * 3]]}),
        JSON,
        422,
        "[batch, 1, 64]",
    ),
    (
        "mlflow columns",
        "/invocations",
        json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0, 2.0]]}}),
        JSON,
        400,
        "64 sample columns",
    ),
    ("v2 malformed", "/v2/models/cnn1d/infer", "{", {}, 400, "malformed JSON"),
    (
        "v2 wrong dtype",
        "/v2/models/cnn1d/infer",
        json.dumps(
            {"inputs": [{"name": "windows", "shape": [1, 1, 64], "datatype": "INT32", "data": [0] * 64}]}
        ),
        {},
        400,
        "FP32",
    ),
    (
        "v2 wrong shape",
        "/v2/models/cnn1d/infer",
        json.dumps(
            {"inputs": [{"name": "windows", "shape": [1, 1, 32], "datatype": "FP32", "data": [0.0] * 32}]}
        ),
        {},
        400,
        "[batch, 1, 64]",
    ),
    (
        "v2 data/shape mismatch",
        "/v2/models/cnn1d/infer",
        json.dumps(
            {"inputs": [{"name": "windows", "shape": [2, 1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
        ),
        {},
        400,
        "128 values",
    ),
    (
        "v2 wrong input",
        "/v2/models/cnn1d/infer",
        json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 64], "datatype": "FP32", "data": [0.0] * 64}]}),
        {},
        400,
        "windows",
    ),
    (
        "v2 unknown output",
        "/v2/models/cnn1d/infer",
        json.dumps(
            {
                "inputs": [{"name": "windows", "shape": [1, 1, 64], "datatype": "FP32", "data": [0.0] * 64}],
                "outputs": [{"name": "nope"}],
            }
        ),
        {},
        400,
        "unknown output",
    ),
    ("v2 binary too short", "/v2/models/cnn1d/infer", None, {}, 400, "binary_data_size"),
    ("v2 unknown model", "/v2/models/nope/infer", "{}", {}, 404, "unknown model"),
    ("v2 unknown version", "/v2/models/cnn1d/versions/9/infer", "{}", {}, 404, "no version"),
]


def _v2_short_binary() -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "windows",
                    "shape": [2, 1, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 512},
                }
            ]
        }
    ).encode()
    return head + b"\0" * 100, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize("name,path,body,headers,status,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_that_says_why(small, name, path, body, headers, status, text):
    if body is None:
        body, headers = _v2_short_binary()
    response = requests.post(small.url + path, data=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    payload = response.json()
    message = payload.get("detail") or payload.get("message") or payload.get("error")
    assert text in message, message
    if path.startswith("/v2"):
        assert set(payload) == {"error"}
    if path == "/invocations":
        assert set(payload) == {"error_code", "message"}


def test_tritonclient_sees_a_400_for_a_wrong_shape(small):
    client = triton.InferenceServerClient(f"127.0.0.1:{small.port}")
    windows = triton.InferInput("windows", [2, 1, 32], "FP32")
    windows.set_data_from_numpy(np.zeros((2, 1, 32), np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match="expected"):
        client.infer("cnn1d", [windows])
    client.close()


def test_nothing_above_was_a_server_error(small):
    text = requests.get(small.url + "/metrics", timeout=10).text
    assert 'status="5' not in text
