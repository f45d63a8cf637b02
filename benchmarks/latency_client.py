"""Starting servers on 127.0.0.1 and driving them: the client side of ``benchmarks/latency.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    command: list[str], port: int, cwd: Path, env: dict[str, str], health: str = "/ping"
) -> subprocess.Popen:
    """Start a server in its own process group and wait until ``health`` answers on 127.0.0.1:port."""
    import requests

    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:3]} exited with {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}{health}", timeout=1).ok:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop(process)
    raise RuntimeError(f"{command[:3]} did not answer on port {port}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the group this script started (MLflow's CLI runs uvicorn in a child), then wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def drive(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients send ``body`` back to back for ``seconds`` (after a short warm-up)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        await asyncio.gather(
            *(client(time.perf_counter() + min(0.5, seconds / 4), False) for _ in range(concurrency))
        )
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "errors": errors,
    }
