"""Serving latency and throughput: in-process onnxruntime vs torch eager, our REST server and its peers.

``python benchmarks/latency.py [--seconds 2] [--models cnn1d,cnn2d] [--quick]`` prints tables and writes
``benchmarks/results/latency.json``. All traffic goes to 127.0.0.1 and every cell is bounded in time.
``--quick`` (for iterating, not for the record) runs concurrency 8 only, 1 s a cell, and writes
``latency-quick.json``. ``--server-arg KEY=VALUE`` (repeatable) overrides our server's settings, e.g.
``inference_log.feature_rate=500`` to measure what the inference log costs; ``--no-peers``: ours and MLflow.

1. In process, per model and batch size: windows/s of onnxruntime (a session configured as the server's
   default settings configure it) and of the same network in torch eager mode (``no_grad``).
2. Our server (``scripts/serve.py`` in its own process, default settings, inference log on) and MLflow's
   scoring server (``mlflow models serve --env-manager local``, its default single worker) on the same ONNX
   graph, each driven by the same asyncio client (aiohttp, one connection per concurrent client) over
   concurrency 1, 8, 32 x batch 1, 64: requests/s, windows/s, p50/p99 latency, errors. Targets:
   ``invocations-json`` sends MLflow's own body (``{"inputs": {"windows": ...}}``, normalised windows) to
   both servers, byte for byte; ``predict-json`` and ``predict-binary`` are our API with raw amplitudes
   (JSON; float32 bytes with an ``X-Shape`` header).
3. Peers (``benchmarks/latency_peers.py``; each in its own venv: ``bash benchmarks/peers/setup.sh``): Triton
   through PyTriton (dynamic batching), LitServe (request batching) and KServe's ModelServer, each serving
   the same graph on onnxruntime with our session options, with 1 and 2 workers, on the bodies they natively
   take: v2 JSON and v2 binary (Triton's binary tensor extension; bodies built by ``tritonclient``) for
   Triton and KServe, our ``/predict`` JSON for LitServe. Ours answers the same v2 bodies, and runs as 2
   processes on one port (``reuse_port=true``) for the 2-worker row. A peer that is not installed is
   skipped and listed with the reason.

The networks are untrained (throughput does not depend on the weights) at the sizes of the default configs:
cnn1d width 32, depth 3 on 64-sample traces; cnn2d width 16, depth 3 on 32x64 patches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from latency_client import drive, free_port, launch, stop
from latency_peers import PEERS, peer_bodies, peer_command, peer_path, peer_python
from latency_targets import cpu_model, targets

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


def bodies(folder: Path, batch: int) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    from serving.runtime import load_model

    model = load_model(folder, ["CPUExecutionProvider"])
    raw = np.random.default_rng(batch).normal(3.0, 250.0, (batch, *model.window_shape)).astype(np.float32)
    normalised = model.normalise(raw)
    json_headers = {"Content-Type": "application/json"}
    return peer_bodies(folder, raw) | {
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


def sweep(
    server: str,
    port: int,
    folder: Path,
    targets: tuple[str, ...],
    seconds: float,
    levels: tuple[int, ...],
    workers: int = 1,
) -> list[dict]:
    rows = []
    for batch in BATCHES:
        payloads = bodies(folder, batch)
        for target in targets:
            path, body, headers = payloads[target]
            if server != "seismic":
                path = peer_path(path)
            for concurrency in levels:
                result = asyncio.run(
                    drive(f"http://127.0.0.1:{port}{path}", body, headers, concurrency, seconds)
                )
                rows.append(
                    {
                        "server": server,
                        "workers": workers,
                        "target": target,
                        "batch": batch,
                        "concurrency": concurrency,
                        "body_bytes": len(body),
                        **result,
                        "windows_per_s": round(result["requests_per_s"] * batch),
                    }
                )
                print(
                    f"  {server:8s} x{workers} {target:17s} b{batch:3d} c{concurrency:3d}: {rows[-1]}",
                    flush=True,
                )
    return rows


def mlflow_model(folder: Path, dst: Path) -> Path:
    import mlflow.onnx
    import onnx

    mlflow.onnx.save_model(onnx.load(str(folder / "model.onnx")), dst, save_as_external_data=False)
    return dst


def start_ours(folder: Path, name: str, work: Path, env: dict, workers: int, server_args: list[str]):
    """``workers`` processes of scripts/serve.py on one port (SO_REUSEPORT); returns (port, processes)."""
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "scripts/serve.py"),
        f"model.source={folder}",
        f"port={port}",
        f"reuse_port={str(workers > 1).lower()}",
        "log_level=WARNING",
        f"inference_log.directory={work / 'inference_log' / name}",
        f"hydra.run.dir={work}",
        *server_args,
    ]
    processes = [launch(command, port, work, env)]
    for _ in range(workers - 1):
        processes.append(
            subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    if workers > 1:
        time.sleep(8)  # the port answers already; give the others time to load the model
        if any(p.poll() is not None for p in processes):
            for process in processes:
                stop(process)
            raise RuntimeError(f"a worker of our server exited with {[p.poll() for p in processes]}")
    return port, processes


OUR_TARGETS = ("predict-binary", "predict-json", "invocations-json", "v2-json", "v2-binary")


def servers(
    folder: Path,
    name: str,
    work: Path,
    seconds: float,
    levels: tuple[int, ...],
    server_args: list[str],
    worker_counts: tuple[int, ...],
    peers: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Rows of every server, and the peers skipped (with why)."""
    # MLflow's CLI runs `uvicorn` from PATH: the venv's bin must be on it
    env = {
        **os.environ,
        "SEISMIC_ROOT": str(work),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("SEISMIC_API_KEY", None)
    rows, skipped = [], []
    for workers in worker_counts:
        port, processes = start_ours(folder, name, work, env, workers, server_args)
        try:
            rows += sweep("seismic", port, folder, OUR_TARGETS, seconds, levels, workers)
        finally:
            for process in processes:
                stop(process)
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
    from serving.settings import ModelSettings

    threads = ModelSettings(source=str(folder)).model_dump()
    for peer in PEERS if peers else ():
        python = peer_python(peer.name)
        if python is None:
            skipped.append({"peer": peer.name, "why": "not installed: bash benchmarks/peers/setup.sh"})
            continue
        for workers in (w for w in worker_counts if w in peer.workers):
            port = free_port()
            command = peer_command(peer, python, folder, port, workers, threads)
            try:
                process = launch(command, port, work, env, health=peer.health)
            except RuntimeError as err:
                skipped.append({"peer": peer.name, "workers": workers, "why": str(err)})
                continue
            try:
                rows += sweep(peer.name, port, folder, peer.targets, seconds, levels, workers)
            finally:
                stop(process)
    return [{"model": name, **row} for row in rows], [{"model": name, **s} for s in skipped]


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows
    ]
    return "\n".join(lines)


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
    parser.add_argument("--no-peers", action="store_true", help="ours and MLflow only")
    args = parser.parse_args()
    levels = (8,) if args.quick else CONCURRENCY
    worker_counts = (1,) if args.quick else (1, 2)
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
    name = "latency-quick.json" if args.quick else "latency.json"
    args.output = args.output or ROOT / "benchmarks/results" / name
    names = [n for n in args.models.split(",") if n]
    local, remote, skipped = [], [], []
    with tempfile.TemporaryDirectory(prefix="seismic-latency-") as tmp:
        work = Path(tmp)
        for name in names:
            folder = export(work, name)
            local += in_process(folder, name, args.seconds / 2)
            rows, missing = servers(
                folder, name, work, args.seconds, levels, args.server_arg, worker_counts, not args.no_peers
            )
            remote += rows
            skipped += missing
    checks = targets(local, remote)
    print("\nin process (windows/s)\n" + table(local, ["model", "runtime", "batch", "windows_per_s"]))
    print(
        "\nREST servers\n"
        + table(
            remote,
            [
                "model",
                "server",
                "workers",
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
    for s in skipped:
        print(f"skipped {s}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "peers_skipped": skipped,
        "seconds_per_cell": args.seconds,
        "server_args": args.server_arg,
        "in_process": local,
        "servers": remote,
        "targets": checks,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    import record

    record.run(main, "latency", title="Serving latency")
