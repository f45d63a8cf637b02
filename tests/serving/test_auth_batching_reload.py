"""API key, dynamic micro-batching (batches form, queue bound -> 503), hot reload under load."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import amplitudes, settings_for, start
from pydantic import ValidationError

from serving.batcher import Batcher, QueueFull
from serving.metrics import Metrics
from serving.runtime import load_model


def test_api_key_guards_everything_but_probes(model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_API_KEY", "s3cret")
    running = start(model_dirs["cnn1d"], tmp_path)
    try:
        body = {"windows": amplitudes(1, (1, 64)).tolist()}
        refused = requests.post(running.url + "/predict", json=body, timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="seismic"'
        assert requests.get(running.url + "/v2/models/cnn1d", timeout=10).json() == {
            "error": "X-API-Key: missing or wrong API key "
            "(expected X-API-Key: <key> or Authorization: Bearer <key>)"
        }
        for headers in ({"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
            wrong = requests.post(running.url + "/predict", json=body, headers=headers, timeout=10)
            assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers, headers
        # the scheme is case-insensitive (RFC 7235), and may be followed by more than one space
        for headers in (
            {"X-API-Key": "s3cret"},
            {"Authorization": "Bearer s3cret"},
            {"Authorization": "bearer s3cret"},
            {"Authorization": "BEARER  s3cret"},
        ):
            assert requests.post(running.url + "/predict", json=body, headers=headers, timeout=10).ok, headers
        for path in ("/health", "/ready", "/ping", "/v2/health/ready", "/metrics"):
            assert requests.get(running.url + path, timeout=10).ok, path
        schema = requests.get(running.url + "/openapi.json", timeout=10).json()
        assert "apiKey" in schema["components"]["securitySchemes"]
        assert "security" not in schema["paths"]["/metrics"]["get"]
    finally:
        running.stop()


def test_metrics_need_the_key_when_configured(model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_API_KEY", "s3cret")
    running = start(model_dirs["cnn1d"], tmp_path, auth={"metrics": True})
    try:
        assert requests.get(running.url + "/metrics", timeout=10).status_code == 401
        scraped = requests.get(
            running.url + "/metrics", headers={"Authorization": "bearer s3cret"}, timeout=10
        )
        assert scraped.ok and "seismic_http_requests_total" in scraped.text
        assert requests.get(running.url + "/ready", timeout=10).ok
        schema = requests.get(running.url + "/openapi.json", timeout=10).json()
        assert schema["paths"]["/metrics"]["get"]["security"] == [{"apiKey": []}, {"bearer": []}]
    finally:
        running.stop()


def test_auth_required_not_env_decides_whether_a_key_is_needed(model_dirs, tmp_path, monkeypatch):
    monkeypatch.delenv("SEISMIC_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="SEISMIC_API_KEY"):
        settings_for(model_dirs["cnn1d"], tmp_path, env="staging", auth={"required": True})
    # an environment named prod that does not require auth starts (its config decides, not its name)
    assert settings_for(model_dirs["cnn1d"], tmp_path, env="prod").api_key is None
    with pytest.raises(ValidationError, match="environment only"):
        settings_for(model_dirs["cnn1d"], tmp_path, api_key="in-a-file")
    with pytest.raises(ValidationError, match="max_queue_dely_us"):
        settings_for(model_dirs["cnn1d"], tmp_path, batching={"max_queue_dely_us": 5})


def test_concurrent_requests_run_in_shared_batches_with_their_own_answers(model_dirs):
    model = load_model(model_dirs["cnn1d"], ["CPUExecutionProvider"])
    metrics = Metrics()
    requests_ = [model.normalise(amplitudes(n, (1, 64), seed=n)) for n in (1, 3, 5, 2, 7, 1, 4)]

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(metrics, max_batch_size=64, max_queue_delay_us=20_000)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(model, x) for x in requests_))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    for x, got in zip(requests_, results, strict=True):
        np.testing.assert_allclose(got["probabilities"], model.run(x)["probabilities"], atol=1e-6)
    batches = metrics.registry.get_sample_value("seismic_batch_size_windows_count")
    assert batches < len(requests_)  # requests waited for each other within the delay


def test_full_queue_refuses_at_once(model_dirs):
    model = load_model(model_dirs["cnn1d"], ["CPUExecutionProvider"])
    metrics = Metrics()
    x = model.normalise(amplitudes(6, (1, 64)))

    async def main() -> int:
        batcher = Batcher(metrics, max_batch_size=4, max_queue_delay_us=200_000, max_queue_windows=8)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(model, x))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(model, x)
        await first
        await batcher.stop()
        return int(metrics.registry.get_sample_value("seismic_batch_rejected_total"))

    assert asyncio.run(main()) == 1


def test_queue_full_is_a_503_with_retry_after(model_dirs, tmp_path):
    running = start(
        model_dirs["cnn1d"],
        tmp_path,
        # a request of 8 windows does not fill a batch of 16, so it waits out the 300 ms delay holding the
        # whole queue: the others, sent meanwhile, cannot fit (with batch 8 it ran at once: a timing race)
        batching={"max_batch_size": 16, "max_queue_delay_us": 300_000, "max_queue_windows": 8},
    )
    try:
        body = {"windows": amplitudes(8, (1, 64)).tolist()}
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda _: requests.post(running.url + "/predict", json=body, timeout=10), range(4))
            )
        refused = [r for r in statuses if r.status_code == 503]
        assert refused and all(r.headers["Retry-After"] == "1" for r in refused)
        assert all(r.status_code in (200, 503) for r in statuses)
    finally:
        running.stop()


def test_hot_swap_under_concurrent_load_fails_no_request(model_dirs, tmp_path):
    running = start(model_dirs["cnn1d"], tmp_path)
    x = amplitudes(4, (1, 64))
    answers = {
        version: load_model(model_dirs[name], ["CPUExecutionProvider"]).predict(x)["class"].tolist()
        for version, name in (("a", "cnn1d"), ("b", "cnn1d_other"))
    }
    stop, failures, seen = threading.Event(), [], []

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(running.url + "/predict", json={"windows": x.tolist()}, timeout=10)
            if response.status_code != 200:
                failures.append(response.text)
                continue
            classes = response.json()["classes"]
            if classes not in answers.values():  # a mix of two models would be neither
                failures.append(f"unexpected classes {classes}")
            seen.append(classes)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for i in range(6):
            time.sleep(0.15)
            source = model_dirs["cnn1d_other" if i % 2 == 0 else "cnn1d"]
            swapped = requests.post(running.url + "/reload", json={"source": str(source)}, timeout=30)
            assert swapped.status_code == 200 and swapped.json()["reloaded"], swapped.text
        time.sleep(0.15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        running.stop()
    assert not failures, failures[:3]
    assert len(seen) > 20 and {tuple(a) for a in answers.values()} <= {tuple(s) for s in seen}


def test_reload_of_a_broken_source_keeps_the_old_model(server):
    response = requests.post(server.url + "/reload", json={"source": "/nonexistent/model"}, timeout=10)
    assert response.status_code == 422 and "no such model folder" in response.json()["detail"]
    assert requests.get(server.url + "/ready", timeout=10).ok


def test_failed_registry_reload_says_where_it_looked(server, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default store is a database in the working directory
    response = requests.post(server.url + "/reload", json={"source": "models:/nope@champion"}, timeout=60)
    detail = response.json()["detail"]
    assert response.status_code == 422 and "in None" not in detail, detail
    assert "MLFLOW_TRACKING_URI is set" in detail and "cannot resolve the alias" in detail
