"""Soak: mixed traffic on every protocol (own JSON and binary, /invocations, v2 JSON, v2 binary through
Triton's client) at concurrency 64, with a hot reload every few seconds, against scripts/serve.py in its own
process. No request may fail, the server's memory must stay flat, and every 200 must be in the inference
log exactly once (one row per window, under the request's id).

``SEISMIC_SOAK_S`` sets the duration (default 180 s, what CI runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import pyarrow.dataset as ds
import pytest
import tritonclient.http.aio as triton
from conftest import amplitudes, serve_script

DURATION_S = float(os.environ.get("SEISMIC_SOAK_S", "180"))
CONCURRENCY = 64
RELOAD_EVERY_S = 3.0
PROTOCOLS = ("own-json", "own-binary", "invocations", "v2-json", "v2-binary")


def _rss_mib(pid: int) -> float:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


async def _one(
    protocol: str,
    url: str,
    http: aiohttp.ClientSession,
    v2: triton.InferenceServerClient,
    rid: str,
    x: np.ndarray,
) -> int:
    """Send ``x`` under request id ``rid``; the number of windows the answer classified."""
    headers = {"X-Request-ID": rid}
    if protocol == "own-json":
        async with http.post(url + "/predict", json={"windows": x.tolist()}, headers=headers) as r:
            r.raise_for_status()
            return len((await r.json())["classes"])
    if protocol == "own-binary":  # float64 on the wire, declared: the X-Dtype path under load
        headers |= {
            "Content-Type": "application/octet-stream",
            "X-Shape": f"{len(x)},1,64",
            "X-Dtype": "float64",
        }
        async with http.post(url + "/predict", data=x.astype("<f8").tobytes(), headers=headers) as r:
            r.raise_for_status()
            return len((await r.json())["classes"])
    if protocol == "invocations":
        body = {"inputs": x.tolist(), "params": {"normalised": False}}
        async with http.post(url + "/invocations", json=body, headers=headers) as r:
            r.raise_for_status()
            return len((await r.json())["predictions"]["probabilities"])
    if protocol == "v2-json":
        tensor = {"name": "windows", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        async with http.post(url + "/v2/models/cnn1d/infer", json={"id": rid, "inputs": [tensor]}) as r:
            r.raise_for_status()
            return (await r.json())["outputs"][0]["shape"][0]
    windows = triton.InferInput("windows", list(x.shape), "FP32")
    windows.set_data_from_numpy(x, binary_data=True)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=True)]
    result = await v2.infer("cnn1d", [windows], outputs=wanted, request_id=rid)
    return len(result.as_numpy("probabilities"))


async def _traffic(
    url: str, pid: int, sources: list[str]
) -> tuple[dict[str, int], list[str], list[float], int]:
    """(windows per answered request id, failures, server RSS samples in MiB, reloads) over DURATION_S."""
    answered: dict[str, int] = {}
    failures: list[str] = []
    rss: list[float] = []
    stop = time.monotonic() + DURATION_S
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        v2 = triton.InferenceServerClient(url.removeprefix("http://"), conn_limit=CONCURRENCY)

        async def client(worker: int) -> None:
            rng = np.random.default_rng(worker)
            k = 0
            while time.monotonic() < stop:
                protocol = PROTOCOLS[(worker + k) % len(PROTOCOLS)]
                rid = f"{protocol}/{worker}/{k}"
                x = amplitudes(int(rng.integers(1, 9)), (1, 64), seed=worker * 100_000 + k)
                k += 1
                try:
                    got = await _one(protocol, url, http, v2, rid, x)
                except Exception as err:  # every kind of failure counts, with what it was
                    failures.append(f"{rid}: {type(err).__name__}: {err}")
                    continue
                if got != len(x):
                    failures.append(f"{rid}: {got} answers for {len(x)} windows")
                answered[rid] = len(x)

        async def reloader() -> int:
            n = 0
            while time.monotonic() < stop:
                await asyncio.sleep(RELOAD_EVERY_S)
                async with http.post(url + "/reload", json={"source": sources[n % 2]}) as r:
                    if r.status != 200:
                        failures.append(f"reload {n}: {r.status} {await r.text()}")
                n += 1
            return n

        async def sampler() -> None:
            while time.monotonic() < stop:
                rss.append(_rss_mib(pid))
                await asyncio.sleep(2)

        try:
            *_, reloads, _ = await asyncio.gather(
                *(client(i) for i in range(CONCURRENCY)), reloader(), sampler()
            )
        finally:
            await v2.close()
    return answered, failures, rss, reloads


@pytest.mark.slow
@pytest.mark.timeout(DURATION_S + 300)
def test_soak_mixed_protocols_with_reloads(model_dirs, tmp_path):
    log_dir = tmp_path / "log"
    process, url = serve_script(
        tmp_path,
        f"model.source={model_dirs['cnn1d']}",
        f"inference_log.directory={log_dir}",
        "inference_log.flush_seconds=1",
        "reload.poll_interval_s=0",
        "shutdown.drain_s=0",
    )
    try:
        sources = [str(model_dirs["cnn1d_other"]), str(model_dirs["cnn1d"])]
        answered, failures, rss, reloads = asyncio.run(_traffic(url, process.pid, sources))
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    third = max(len(rss) // 3, 1)
    print(
        f"soak {DURATION_S:.0f} s: {len(answered)} requests, {sum(answered.values())} windows, "
        f"{reloads} reloads, {len(failures)} failed; server RSS MiB {[round(r) for r in rss[::third]]}"
    )
    assert not failures, failures[:10]
    assert reloads >= DURATION_S / RELOAD_EVERY_S / 2 and len(answered) > 10 * CONCURRENCY
    assert {rid.split("/")[0] for rid in answered} == set(PROTOCOLS)
    # flat: after warm-up (the first third), the median of the last third within 32 MiB of the second's
    assert statistics.median(rss[-third:]) - statistics.median(rss[third : 2 * third]) < 32, rss
    table = ds.dataset(log_dir, format="parquet", partitioning="hive").to_table(["request_id"])
    assert Counter(table["request_id"].to_pylist()) == Counter(answered)  # rows per id: its windows
