"""SIGTERM as orchestrators expect it: readiness 503 at once, in-flight and queued requests finish, new ones
are refused with a 503 that closes the connection during the drain, exit status 0."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import amplitudes, serve_script, start

BODY = {"windows": amplitudes(1, (1, 64)).tolist()}


def test_drain_refuses_new_requests_and_finishes_queued_ones(model_dirs, tmp_path):
    running = start(
        model_dirs["cnn1d"],
        tmp_path,
        # a one-window request waits out the 600 ms queue delay: still queued when the drain starts
        batching={"max_batch_size": 64, "max_queue_delay_us": 600_000},
        shutdown={"drain_s": 1.5},
    )
    session = requests.Session()  # one kept-alive connection, as a load balancer's
    assert session.get(running.url + "/ready", timeout=10).ok
    with ThreadPoolExecutor(4) as pool:
        queued = [
            pool.submit(requests.post, running.url + "/predict", json=BODY, timeout=10) for _ in range(4)
        ]
        time.sleep(0.3)
        started = time.monotonic()
        running.server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler calls
        not_ready = session.get(running.url + "/ready", timeout=10)
        assert not_ready.status_code == 503 and not_ready.headers["Connection"] == "close"
        assert requests.get(running.url + "/v2/health/ready", timeout=10).status_code == 503
        assert requests.get(running.url + "/health", timeout=10).ok  # live, only not ready
        refused = session.post(running.url + "/predict", json=BODY, timeout=10)
        assert refused.status_code == 503 and refused.json()["detail"] == "shutting down"
        assert refused.headers["Connection"] == "close" and refused.headers["Retry-After"] == "1"
        v2 = requests.post(running.url + "/v2/models/cnn1d/infer", json={}, timeout=10)
        assert v2.status_code == 503 and v2.json() == {"error": "shutting down"}
        answers = [future.result() for future in queued]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert all(a.headers["Connection"] == "close" for a in answers)
    running.thread.join(30)
    assert not running.thread.is_alive() and time.monotonic() - started >= 1.5
    assert running.server.drain_until is not None


def test_serve_script_exits_0_after_a_clean_drain(model_dirs, tmp_path):
    process, url = serve_script(
        tmp_path,
        f"model.source={model_dirs['cnn1d']}",
        f"inference_log.directory={tmp_path / 'log'}",
        "shutdown.drain_s=1",
    )
    try:
        assert requests.post(url + "/predict", json=BODY, timeout=10).ok
        process.send_signal(signal.SIGTERM)
        assert requests.get(url + "/ready", timeout=10).status_code == 503
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
