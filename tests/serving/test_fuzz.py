"""Schemathesis against a live server, every operation of its OpenAPI schema, both model kinds, valid and
invalid requests: no answer is a 5xx, and every error is in its protocol's format and says what was wrong.

The default run is bounded (a fixed number of examples per operation, derandomised, so CI sees the same
requests each time); the ``slow`` run takes many more, freshly random."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
import schemathesis
from conftest import amplitudes, start
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

KINDS = ("cnn1d", "cnn2d")


@pytest.fixture(scope="module", params=KINDS)
def fuzzed(request, model_dirs, tmp_path_factory):
    """A server of its own per kind: the fuzzer's reloads and counts touch no other test's."""
    running = start(model_dirs[request.param], tmp_path_factory.mktemp("log"))
    yield request.param, running
    running.stop()


def _problem(path: str, response: requests.Response) -> str | None:
    """What is wrong with ``response`` (None: nothing): a 5xx, or an error not in its protocol's format."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except json.JSONDecodeError:
        return f"{response.status_code} is not JSON: {response.text[:300]}"
    if response.status_code in (404, 405) and set(body) in ({"detail"}, {"error"}):
        return None  # a path or method no route has: the router's answer, in either format
    if path.startswith("/v2"):
        ok = set(body) == {"error"} and body["error"]
    elif path == "/invocations":
        ok = set(body) == {"error_code", "message"} and body["message"]
    else:
        ok = isinstance(body.get("detail"), str) and body["detail"]
    return None if ok else f"{response.status_code} in the wrong format: {body}"


def _valid_bodies(shape: tuple[int, ...]) -> dict[str, dict]:
    """A valid JSON body per inference operation: random ones rarely get past the checks to the model."""
    x = amplitudes(2, shape)
    tensor = {"name": "windows", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    v2 = {"inputs": [tensor]}
    return {
        "/predict": {"windows": x.tolist()},
        "/invocations": {"inputs": x.tolist()},
        "/v2/models/{name}/infer": v2,
        "/v2/models/{name}/versions/{version}/infer": v2,
    }


def _strategies(operation, kind: str, running):  # type: ignore[no-untyped-def]
    """Strategies for ``operation``: positive, and negative where it has something to make invalid, each also
    on the served model's name and version (so v2 routes get past their 404); inference operations also
    with a valid body and everything else generated."""
    model = running.service.model
    fixed = {"name": kind, "version": model.version}
    params = {k: v for k, v in fixed.items() if "{" + k + "}" in operation.path} or None
    parts = (operation.path_parameters, operation.query, operation.headers, operation.cookies, operation.body)
    invalid = (GenerationMode.NEGATIVE,) if any(len(part) for part in parts) else ()
    for mode in (GenerationMode.POSITIVE, *invalid):
        yield operation.as_strategy(generation_mode=mode)
        if params:
            yield operation.as_strategy(generation_mode=mode, path_parameters=params)
    body = _valid_bodies(model.window_shape).get(operation.path)
    if body is not None:
        yield operation.as_strategy(path_parameters=params, body=body, media_type="application/json")


def fuzz(kind: str, running, examples: int, derandomize: bool) -> tuple[Counter, list[str]]:  # type: ignore[no-untyped-def]
    """Requests sent per (method, operation, status) and the problems found."""
    schema = schemathesis.openapi.from_url(running.url + "/openapi.json")
    session = requests.Session()
    sent: Counter = Counter()
    problems: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(base_url=running.url, session=session, timeout=30)
        sent[case.operation.method.upper(), case.operation.path, response.status_code] += 1
        problem = _problem(case.operation.path, response)
        if problem is not None:
            problems.append(f"{case.method} {case.formatted_path}: {problem}")

    for result in schema.get_all_operations():
        for strategy in _strategies(result.ok(), kind, running):
            given(strategy)(call)()
    return sent, problems


def _check(fuzzed, examples: int, derandomize: bool, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # a fuzzed reload of a models:/ source would make MLflow's default store here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    kind, running = fuzzed
    sent, problems = fuzz(kind, running, examples, derandomize)
    per_operation: Counter = Counter()
    for (method, path, _), count in sent.items():
        per_operation[method, path] += count
    statuses: Counter = Counter()
    for (_, _, status), count in sent.items():
        statuses[status] += count
    print(
        f"{kind}: {sum(sent.values())} requests, {len(per_operation)} operations, by status {dict(statuses)}"
    )
    assert not problems, "\n".join(problems[:20])
    operations = {path for _, path in per_operation}
    assert {"/predict", "/invocations", "/v2/models/{name}/infer", "/reload", "/metrics"} <= operations
    assert min(n for (method, _), n in per_operation.items() if method == "POST") >= examples
    for path in ("/predict", "/invocations", "/v2/models/{name}/infer"):
        assert sent["POST", path, 200] > 0, path  # the fuzzer reached the model, not only the checks
    metrics = requests.get(running.url + "/metrics", timeout=10).text
    assert 'status="5' not in metrics  # also what the fuzzer's client never saw (a hung-up request)


def test_fuzzed_requests_get_no_5xx_and_well_formed_errors(fuzzed, tmp_path, monkeypatch):
    _check(fuzzed, 20, True, tmp_path, monkeypatch)


@pytest.mark.slow
def test_fuzzed_requests_get_no_5xx_and_well_formed_errors_long(fuzzed, tmp_path, monkeypatch):
    _check(fuzzed, 150, False, tmp_path, monkeypatch)
