"""The peer servers of ``benchmarks/latency.py``: how each is started, what it is sent, where it is healthy.

Each peer (``benchmarks/peers/*_peer.py``) runs in its own virtual environment, made by
``benchmarks/peers/setup.sh`` under ``.peers/<name>`` (or named by ``SEISMIC_PEER_<NAME>``: the path of
its Python). A peer without one is skipped, and the result says why. Open Inference Protocol v2 bodies are
built by Triton's own client library (``tritonclient.http``), the way a Triton user's client builds them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "benchmarks" / "peers"


@dataclass(frozen=True)
class Peer:
    name: str
    health: str
    targets: tuple[str, ...]  # bodies it natively takes (keys of ``peer_bodies``)
    workers: tuple[int, ...]  # worker counts it supports (Triton: model instances)


PEERS = (
    Peer("triton", "/v2/models/seismic/ready", ("v2-json", "v2-binary"), (1, 2)),
    Peer("litserve", "/health", ("predict-json",), (1, 2)),  # our /predict body, raw amplitudes
    Peer("kserve", "/v2/models/seismic/ready", ("v2-json", "v2-binary"), (1, 2)),
)


def peer_python(name: str) -> Path | None:
    explicit = os.environ.get(f"SEISMIC_PEER_{name.upper()}")
    path = Path(explicit) if explicit else ROOT / ".peers" / name / "bin" / "python"
    return path if path.exists() else None


def peer_command(peer: Peer, python: Path, folder: Path, port: int, workers: int, threads: dict) -> list[str]:
    return [
        str(python),
        str(PEER_DIR / f"{peer.name}_peer.py"),
        f"--model-dir={folder}",
        f"--port={port}",
        f"--intra-op-threads={threads.get('intra_op_threads') or 0}",
        f"--inter-op-threads={threads.get('inter_op_threads') or 0}",
        f"--spin-wait={int(bool(threads.get('spin_wait')))}",
        f"--workers={workers}",
    ]


def model_name(folder: Path) -> str:
    """The name our server answers to on ``/v2/models/{name}`` (serving.runtime's rule)."""
    meta = json.loads((folder / "metadata.json").read_text())
    return str(meta.get("model_name") or meta.get("architecture") or folder.name)


def v2_body(raw: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """A v2 request for ``probabilities``, JSON or with binary input and output, from Triton's client."""
    import tritonclient.http as http

    tensor = http.InferInput("windows", list(raw.shape), "FP32")
    tensor.set_data_from_numpy(raw, binary_data=binary)
    wanted = [http.InferRequestedOutput("probabilities", binary_data=binary)]
    body, json_size = http.InferenceServerClient.generate_request_body([tensor], outputs=wanted)
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers


def peer_bodies(folder: Path, raw: np.ndarray) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Bodies keyed by target: ``(path on our server, body, headers)``; peers serve the v2 model as
    ``seismic``, so :func:`peer_path` maps the path for them."""
    v2_path = f"/v2/models/{model_name(folder)}/infer"
    json_body, json_headers = v2_body(raw, binary=False)
    binary_body, binary_headers = v2_body(raw, binary=True)
    return {
        "v2-json": (v2_path, json_body, json_headers),
        "v2-binary": (v2_path, binary_body, binary_headers),
    }


def peer_path(path: str) -> str:
    return "/v2/models/seismic/infer" if path.startswith("/v2/") else path
