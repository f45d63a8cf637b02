"""Table-driven bad input on every inference route, for both model kinds: each case gets its 4xx naming the
field, header or parameter; no case is a 5xx; and the process's memory levels off over repeated rounds.

Raw sockets send what ``requests`` would not (a lying Content-Length, a body cut short)."""

from __future__ import annotations

import gzip
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import amplitudes, start

JSON = {"Content-Type": "application/json"}
OCTET = {"Content-Type": "application/octet-stream"}
SHAPES = {"cnn1d": (1, 64), "cnn2d": (1, 8, 64)}


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # {model} is the model's name
    body: bytes
    headers: dict[str, str]
    status: int
    names: str  # the field, header or parameter the message must name
    raw: bool = False  # send ``body`` as the whole request, headers and all, over a socket


def _deep(levels: int, inner: str = "1.0") -> str:
    return "[" * levels + inner + "]" * levels


def _v2(shape: list[int], data: object, datatype: str = "FP32", **extra: object) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "windows", "shape": shape, "datatype": datatype, "data": data}], **extra}
    ).encode()


def _v2_binary(shape: list[int], blob: bytes, size: int | None = None, header_length: int = 0) -> Case:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "windows",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob) if size is None else size},
                }
            ]
        }
    ).encode()
    length = str(header_length or len(head))
    return head + blob, {"Inference-Header-Content-Length": length}


def _raw_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + body


def cases(kind: str) -> list[Case]:
    shape = SHAPES[kind]
    good = amplitudes(2, shape)
    size = int(np.prod(shape))
    rows = good.tolist()
    nan = good.copy()
    nan[1, 0, ..., 3] = np.nan
    inf = good.copy()
    inf[0, 0, ..., 0] = np.inf
    ragged = [rows[0], [rows[1][0][:3]]]  # the second window is 3 samples (cnn1d) or 3 traces (cnn2d) long
    v2_path = "/v2/models/{model}/infer"
    shape_text = "X-Shape: " + ",".join(map(str, (2, *shape)))
    table = [
        # JSON nested past orjson's limit (was a 500: the stdlib fallback raised RecursionError)
        Case("deep JSON", "/predict", f'{{"windows": {_deep(1025)}}}'.encode(), JSON, 400, "body"),
        Case("deep JSON", "/invocations", f'{{"inputs": {_deep(1025)}}}'.encode(), JSON, 400, "body"),
        Case("deep JSON", v2_path, f'{{"inputs": {_deep(1025)}}}'.encode(), {}, 400, "inference header"),
        # deep enough for the stdlib's recursion limit, with a NaN literal orjson refuses
        Case("deep NaN JSON", "/predict", _deep(1010, "NaN").encode(), JSON, 400, "body"),
        Case("deep lists", "/predict", _deep(70).encode(), JSON, 422, "windows"),
        Case("deep lists", "/invocations", f'{{"inputs": {_deep(70)}}}'.encode(), JSON, 422, "inputs"),
        Case("NaN", "/predict", json.dumps(nan.tolist()).encode(), JSON, 422, "windows"),
        Case("Inf", "/predict", json.dumps({"windows": inf.tolist()}).encode(), JSON, 422, "windows"),
        Case("NaN", "/invocations", json.dumps({"inputs": nan.tolist()}).encode(), JSON, 422, "windows"),
        Case("NaN", v2_path, _v2([2, *shape], nan.ravel().tolist()), {}, 400, "windows"),
        Case("NaN binary", "/predict", nan.tobytes(), {**OCTET, "X-Shape": shape_text[9:]}, 422, "windows"),
        Case("NaN binary", v2_path, *_v2_binary([2, *shape], nan.tobytes()), 400, "windows"),
        Case("ragged", "/predict", json.dumps(ragged).encode(), JSON, 422, "windows"),
        Case("ragged", "/invocations", json.dumps({"instances": ragged}).encode(), JSON, 422, "instances"),
        Case("ragged", v2_path, _v2([2, *shape], ragged), {}, 400, "windows"),
        Case("wrong rank", "/predict", json.dumps(good[0, 0].tolist()).encode(), JSON, 422, "windows"),
        Case("wrong rank", v2_path, _v2([2 * size], good.ravel().tolist()), {}, 400, "windows"),
        Case("empty body", "/predict", b"", JSON, 400, "body"),
        Case("empty body", "/invocations", b"", JSON, 400, "body"),
        Case("empty body", v2_path, b"", {}, 400, "inference header"),
        Case("empty batch", "/predict", b'{"windows": []}', JSON, 422, "windows"),
        Case("empty batch", v2_path, _v2([0, *shape], []), {}, 400, "windows"),
        Case(
            "too many windows",
            "/predict",
            json.dumps(np.zeros((1025, *shape)).tolist()).encode(),
            JSON,
            413,
            "windows",
        ),
        # float64 bytes: refused unless declared, read as float64 when declared
        Case(
            "float64 undeclared",
            "/predict",
            good.astype("<f8").tobytes(),
            {**OCTET, "X-Shape": shape_text[9:]},
            400,
            "X-Dtype",
        ),
        Case(
            "float32 declared float64",
            "/predict",
            good.tobytes(),
            {**OCTET, "X-Shape": shape_text[9:], "X-Dtype": "float64"},
            400,
            "body",
        ),
        Case(
            "unknown dtype",
            "/predict",
            good.tobytes(),
            {**OCTET, "X-Shape": shape_text[9:], "X-Dtype": "int8"},
            422,
            "X-Dtype",
        ),
        Case(
            "negative shape",
            "/predict",
            good.tobytes(),
            {**OCTET, "X-Shape": "-2," + shape_text[11:]},
            400,
            "X-Shape",
        ),
        Case("empty shape", "/predict", good.tobytes(), {**OCTET, "X-Shape": ","}, 400, "X-Shape"),
        Case(
            "lying shape",
            "/predict",
            good.tobytes(),
            {**OCTET, "X-Shape": "3," + shape_text[11:]},
            400,
            "body",
        ),
        Case(
            "truncated binary",
            "/predict",
            good.tobytes()[:-3],
            {**OCTET, "X-Shape": shape_text[9:]},
            400,
            "body",
        ),
        Case("truncated JSON", "/predict", json.dumps(rows).encode()[:-5], JSON, 400, "body"),
        Case(
            "truncated JSON",
            v2_path,
            _v2([2, *shape], good.ravel().tolist())[:-5],
            {},
            400,
            "inference header",
        ),
        Case(
            "truncated binary",
            v2_path,
            *_v2_binary([2, *shape], good.tobytes()[:-4], size=8 * size),
            400,
            "binary_data_size",
        ),
        Case(
            "lying header length",
            v2_path,
            *_v2_binary([2, *shape], good.tobytes(), header_length=10**6),
            400,
            "Inference-Header-Content-Length",
        ),
        Case(
            "lying binary size",
            v2_path,
            *_v2_binary([2, *shape], good.tobytes(), size=7),
            400,
            "binary_data_size",
        ),
        Case(
            "lying gzip",
            v2_path,
            _v2([2, *shape], good.ravel().tolist()),
            {"Content-Encoding": "gzip"},
            400,
            "Content-Encoding",
        ),
        Case(
            "bad encoding", v2_path, gzip.compress(b"{}"), {"Content-Encoding": "br"}, 415, "Content-Encoding"
        ),
        # MLflow's scoring server answers these Content-Types with 415
        Case(
            "latin-1",
            "/invocations",
            json.dumps({"inputs": rows}).encode(),
            {"Content-Type": "application/json; charset=latin-1"},
            415,
            "Content-Type",
        ),
        Case(
            "pandas-split",
            "/invocations",
            json.dumps({"inputs": rows}).encode(),
            {"Content-Type": "application/json; format=pandas-split"},
            415,
            "Content-Type",
        ),
        Case("text/csv", "/predict", b"1,2", {"Content-Type": "text/csv"}, 415, "Content-Type"),
        Case(
            "huge declared",
            "/predict",
            _raw_request("/predict", {**JSON, "Content-Length": str(10**12)}, b"[["),
            {},
            413,
            "body",
            raw=True,
        ),
        Case(
            "huge declared",
            v2_path,
            _raw_request(v2_path, {"Content-Length": str(10**12)}, b"{"),
            {},
            413,
            "body",
            raw=True,
        ),
        # the client hangs up mid-body: nobody reads the answer, but the server must count no 5xx
        Case(
            "cut short",
            "/predict",
            _raw_request("/predict", {**JSON, "Content-Length": "1000"}, b"[[1.0"),
            {},
            0,
            "",
            raw=True,
        ),
        Case("strings", v2_path, _v2([2, *shape], ["a"] * (2 * size)), {}, 400, "windows"),
        Case("wrong datatype", v2_path, _v2([2, *shape], [0] * (2 * size), "FP64"), {}, 400, "datatype"),
        Case(
            "bad flag",
            "/invocations",
            json.dumps({"inputs": rows, "params": {"normalised": "perhaps"}}).encode(),
            JSON,
            422,
            "params.normalised",
        ),
        Case(
            "bad flag",
            v2_path,
            _v2([2, *shape], good.ravel().tolist(), parameters={"binary_data_output": 3}),
            {},
            400,
            "binary_data_output",
        ),
        # found by the fuzzer: a non-string source, and a path too long for the file system, were 500s
        Case("object source", "/reload", b'{"source": {"a": 1}}', JSON, 422, "source"),
        Case("long source", "/reload", json.dumps({"source": "x" * 5000}).encode(), JSON, 422, "source"),
    ]
    return table


def _send_raw(port: int, request: bytes, hang_up: bool) -> tuple[int, bytes]:
    """Status and body of the answer to ``request``; (0, b"") when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if hang_up:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return 0, b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return int(head.split(b" ", 2)[1]), body


def send(url: str, port: int, case: Case, model: str) -> tuple[int, str]:
    """(status, the message of the protocol's error body) of ``case`` sent to the server at ``url``."""
    path = case.path.format(model=model)
    if case.raw:
        status, body = _send_raw(port, case.body.replace(case.path.encode(), path.encode()), not case.status)
    else:
        response = requests.post(url + path, data=case.body, headers=case.headers, timeout=30)
        status, body = response.status_code, response.content
    if not body:
        return status, ""
    payload = json.loads(body)
    return status, payload.get("detail") or payload.get("message") or payload.get("error") or ""


KINDS = {kind: cases(kind) for kind in SHAPES}
PARAMS = [(kind, case) for kind, table in KINDS.items() for case in table]


@pytest.fixture(scope="module")
def servers(model_dirs, tmp_path_factory):
    """A server per model kind, for this module alone: its counts hold only what these tests sent."""
    running = {kind: start(model_dirs[kind], tmp_path_factory.mktemp(kind)) for kind in SHAPES}
    yield running
    for server in running.values():
        server.stop()


@pytest.mark.parametrize(
    "kind,case", PARAMS, ids=[f"{kind}-{case.name}-{case.path.split('/')[1]}" for kind, case in PARAMS]
)
def test_bad_input_is_a_4xx_naming_the_field(servers, kind, case):
    server = servers[kind]
    status, message = send(server.url, server.port, case, kind)
    assert status == case.status, message
    assert case.names in message, message


@pytest.mark.parametrize("kind", SHAPES)
def test_float64_bytes_are_read_as_declared(servers, kind):
    server = servers[kind]
    x = amplitudes(3, SHAPES[kind])
    shape = ",".join(map(str, x.shape))
    answers = [
        requests.post(
            server.url + "/predict",
            data=x.astype(dtype).tobytes(),
            headers={**OCTET, "X-Shape": shape, "X-Dtype": name},
            timeout=10,
        )
        for dtype, name in (("<f4", "float32"), ("<f8", "float64"), ("<f8", "<f8"), ("<f2", "float16"))
    ]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert (
        answers[0].json()["probabilities"]
        == answers[1].json()["probabilities"]
        == answers[2].json()["probabilities"]
    )
    assert len(answers[3].json()["classes"]) == 3


def _rss_mib() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def test_memory_levels_off_and_nothing_was_a_server_error(servers):
    """Every case, 16 rounds: the servers run in this process, so its RSS is theirs plus a client's."""
    rss = []
    for _ in range(16):
        for kind, table in KINDS.items():
            for case in table:
                send(servers[kind].url, servers[kind].port, case, kind)
        rss.append(_rss_mib())
    print(f"bad inputs: {16 * sum(map(len, KINDS.values()))} requests, RSS MiB {[round(r) for r in rss]}")
    assert rss[-1] - rss[3] < 16, rss  # after warm-up (allocator pools, metric children), flat
    for server in servers.values():
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert 'status="5' not in text
