"""Serving latency and throughput: in-process onnxruntime vs torch eager, our REST server, MLflow's server.

``python benchmarks/latency.py [--seconds 2] [--models cnn1d,cnn2d] [--quick]`` prints tables and writes
``benchmarks/results/latency.json``. All traffic goes to 127.0.0.1 and every cell is bounded in time.
``--quick`` (for iterating, not for the record) runs concurrency 8 only, 1 s a cell, and writes
``latency-quick.json``. ``--server-arg KEY=VALUE`` (repeatable) overrides our server's settings, e.g.
``inference_log.sample_fraction=0.5`` to measure what logging every window costs.

1. In process, per model and batch size: windows/s of onnxruntime (a session configured as the server's
   default settings configure it) and of the same network in torch eager mode (``no_grad``).
2. Our server (``scripts/serve.py`` in its own process, default settings, inference log on) and MLflow's
   scoring server (``mlflow models serve --env-manager local``, its default single worker) on the same ONNX
   graph, each driven by the same asyncio client (aiohttp, one connection per concurrent client) over
   concurrency 1, 8, 32 x batch 1, 64: requests/s, windows/s, p50/p99 latency, errors. Targets:
   ``invocations-json`` sends MLflow's own body (``{"inputs": {"windows": ...}}``, normalised windows) to
   both servers, byte for byte; ``predict-json`` and ``predict-binary`` are our API with raw amplitudes
   (JSON; float32 bytes with an ``X-Shape`` header).

The networks are untrained (throughput does not depend on the weights) at the sizes of the default configs:
cnn1d width 32, depth 3 on 64-sample traces; cnn2d width 16, depth 3 on 32x64 patches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serving"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

MODELS = {
    "cnn1d": {"width": 32, "depth": 3, "shape": (1, 64)},
    "cnn2d": {"width": 16, "depth": 3, "shape": (1, 32, 64)},
}
CONCURRENCY = (1, 8, 32)
BATCHES = (1, 64)


def export(folder: Path, name: str) -> Path:
    from models import export_tiny

    spec = MODELS[name]
    traces = spec["shape"][1] if len(spec["shape"]) == 3 else 1
    return export_tiny(
        folder / name, name, length=spec["shape"][-1], traces=traces, width=spec["width"], depth=spec["depth"]
    )


def in_process(folder: Path, name: str, seconds: float) -> list[dict]:
    import torch

    from seismic.models import build_model
    from serving.runtime import load_model
    from serving.settings import ModelSettings

    cfg = ModelSettings(source=str(folder))
    model = load_model(
        folder, ["CPUExecutionProvider"], cfg.intra_op_threads, cfg.inter_op_threads, spin_wait=cfg.spin_wait
    )
    meta = model.metadata
    torch.manual_seed(0)
    net = build_model(name, num_classes=len(model.class_names), **meta["model_kwargs"]).eval()
    rows = []
    for batch in BATCHES:
        x = np.random.default_rng(0).normal(0, 1, (batch, *model.window_shape)).astype(np.float32)
        xt = torch.from_numpy(x)
        for runtime, step in (
            ("onnxruntime", lambda x=x: model.run(x)),
            ("torch_eager", lambda xt=xt: net(xt)),
        ):
            with torch.no_grad():
                step()
                n, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    step()
                    n += 1
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "model": name,
                    "runtime": runtime,
                    "batch": batch,
                    "windows_per_s": round(n * batch / elapsed),
                }
            )
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], port: int, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a server in its own process group and wait until it answers on 127.0.0.1:port."""
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
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).ok:
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


def bodies(folder: Path, batch: int) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    from serving.runtime import load_model

    model = load_model(folder, ["CPUExecutionProvider"])
    raw = np.random.default_rng(batch).normal(3.0, 250.0, (batch, *model.window_shape)).astype(np.float32)
    normalised = model.normalise(raw)
    json_headers = {"Content-Type": "application/json"}
    return {
        "invocations-json": (
            "/invocations",
            json.dumps({"inputs": {"windows": normalised.tolist()}}).encode(),
            json_headers,
        ),
        "predict-json": ("/predict", json.dumps({"windows": raw.tolist()}).encode(), json_headers),
        "predict-binary": (
            "/predict",
            raw.tobytes(),
            {"Content-Type": "application/octet-stream", "X-Shape": ",".join(map(str, raw.shape))},
        ),
    }


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


def sweep(
    server: str, port: int, folder: Path, targets: tuple[str, ...], seconds: float, levels: tuple[int, ...]
) -> list[dict]:
    rows = []
    for batch in BATCHES:
        payloads = bodies(folder, batch)
        for target in targets:
            path, body, headers = payloads[target]
            for concurrency in levels:
                result = asyncio.run(
                    drive(f"http://127.0.0.1:{port}{path}", body, headers, concurrency, seconds)
                )
                rows.append(
                    {
                        "server": server,
                        "target": target,
                        "batch": batch,
                        "concurrency": concurrency,
                        "body_bytes": len(body),
                        **result,
                        "windows_per_s": round(result["requests_per_s"] * batch),
                    }
                )
                print(
                    f"  {server:7s} {target:17s} batch {batch:3d} conc {concurrency:3d}: {rows[-1]}",
                    flush=True,
                )
    return rows


def mlflow_model(folder: Path, dst: Path) -> Path:
    import mlflow.onnx
    import onnx

    mlflow.onnx.save_model(onnx.load(str(folder / "model.onnx")), dst, save_as_external_data=False)
    return dst


def servers(
    folder: Path, name: str, work: Path, seconds: float, levels: tuple[int, ...], server_args: list[str]
) -> list[dict]:
    # MLflow's CLI runs `uvicorn` from PATH: the venv's bin must be on it
    env = {
        **os.environ,
        "SEISMIC_ROOT": str(work),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("SEISMIC_API_KEY", None)
    rows = []
    port = free_port()
    ours = launch(
        [
            sys.executable,
            str(ROOT / "scripts/serve.py"),
            f"model.source={folder}",
            f"port={port}",
            "log_level=WARNING",
            f"inference_log.directory={work / 'inference_log' / name}",
            f"hydra.run.dir={work}",
            *server_args,
        ],
        port,
        work,
        env,
    )
    try:
        rows += sweep(
            "seismic", port, folder, ("predict-binary", "predict-json", "invocations-json"), seconds, levels
        )
    finally:
        stop(ours)
    port = free_port()
    path = mlflow_model(folder, work / f"mlflow-{name}")
    theirs = launch(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            str(path),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        port,
        work,
        env,
    )
    try:
        rows += sweep("mlflow", port, folder, ("invocations-json",), seconds, levels)
    finally:
        stop(theirs)
    return [{"model": name, **row} for row in rows]


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows
    ]
    return "\n".join(lines)


def targets(local: list[dict], remote: list[dict]) -> list[dict]:
    """The issue's acceptance checks, per model."""
    checks = []
    levels = sorted({r["concurrency"] for r in remote})
    for name in sorted({r["model"] for r in remote}):

        def cell(server, target, batch, conc, name=name):
            return next(
                r
                for r in remote
                if (r["model"], r["server"], r["target"], r["batch"], r["concurrency"])
                == (name, server, target, batch, conc)
            )

        ort64 = next(
            r["windows_per_s"]
            for r in local
            if (r["model"], r["runtime"], r["batch"]) == (name, "onnxruntime", 64)
        )
        best_binary = max(cell("seismic", "predict-binary", 64, c)["windows_per_s"] for c in levels)
        best_ours_json = max(cell("seismic", "invocations-json", 64, c)["windows_per_s"] for c in levels)
        best_mlflow_json = max(cell("mlflow", "invocations-json", 64, c)["windows_per_s"] for c in levels)
        ours1, theirs1 = cell("seismic", "invocations-json", 1, 8), cell("mlflow", "invocations-json", 1, 8)
        checks += [
            {
                "model": name,
                "check": "batch 64 binary >= 60% of in-process onnxruntime",
                "value": round(best_binary / ort64, 2),
                "target": 0.6,
                "met": best_binary >= 0.6 * ort64,
            },
            {
                "model": name,
                "check": "batch 64 JSON >= 3x MLflow windows/s",
                "value": round(best_ours_json / max(best_mlflow_json, 1), 2),
                "target": 3.0,
                "met": best_ours_json >= 3 * best_mlflow_json,
            },
            {
                "model": name,
                "check": "batch 1 conc 8 >= 2x MLflow req/s",
                "value": round(ours1["requests_per_s"] / max(theirs1["requests_per_s"], 1e-9), 2),
                "target": 2.0,
                "met": ours1["requests_per_s"] >= 2 * theirs1["requests_per_s"],
            },
            {
                "model": name,
                "check": "batch 1 conc 8 p99 below MLflow's",
                "value": f"{ours1['p99_ms']} vs {theirs1['p99_ms']} ms",
                "target": "lower",
                "met": ours1["p99_ms"] < theirs1["p99_ms"],
            },
        ]
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    parser.add_argument("--models", default="cnn1d,cnn2d")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/results/latency.json")
    parser.add_argument("--quick", action="store_true", help="concurrency 8 only, 1 s a cell (iterating)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="override for our server (scripts/serve.py), e.g. inference_log.sample_fraction=0.5; repeatable",
    )
    args = parser.parse_args()
    levels = (8,) if args.quick else CONCURRENCY
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
    name = "latency-quick.json" if args.quick else "latency.json"
    args.output = args.output or ROOT / "benchmarks/results" / name
    names = [n for n in args.models.split(",") if n]
    local, remote = [], []
    with tempfile.TemporaryDirectory(prefix="seismic-latency-") as tmp:
        work = Path(tmp)
        for name in names:
            folder = export(work, name)
            local += in_process(folder, name, args.seconds / 2)
            remote += servers(folder, name, work, args.seconds, levels, args.server_arg)
    checks = targets(local, remote)
    print("\nin process (windows/s)\n" + table(local, ["model", "runtime", "batch", "windows_per_s"]))
    print(
        "\nREST servers\n"
        + table(
            remote,
            [
                "model",
                "server",
                "target",
                "batch",
                "concurrency",
                "requests_per_s",
                "windows_per_s",
                "p50_ms",
                "p99_ms",
                "errors",
            ],
        )
    )
    print("\ntargets\n" + table(checks, ["model", "check", "value", "target", "met"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "seconds_per_cell": args.seconds,
        "server_args": args.server_arg,
        "in_process": local,
        "servers": remote,
        "targets": checks,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
