"""The one thing every peer server shares: the exported ONNX graph on onnxruntime, set up as ours sets it up.

Peers run in their own virtual environments (``benchmarks/peers/setup.sh``), with numpy and onnxruntime but
without ``seismic``, so this reads ``metadata.json`` and builds the session itself, with the session options
of ``serving.runtime`` (threads, no spinning) passed on the command line by ``benchmarks/latency.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="0: onnxruntime's default")
    parser.add_argument("--inter-op-threads", type=int, default=0)
    parser.add_argument("--spin-wait", type=int, default=0, choices=(0, 1))
    parser.add_argument("--workers", type=int, default=1, help="server processes, where the peer has them")
    return parser.parse_args()


class OnnxModel:
    def __init__(self, args: argparse.Namespace) -> None:
        self.metadata = json.loads((args.model_dir / "metadata.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.intra_op_threads
        options.inter_op_num_threads = args.inter_op_threads
        flag = str(args.spin_wait)
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
        self.session = ort.InferenceSession(
            str(args.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        norm = self.metadata["normalisation"]
        self.mean, self.std, self.clip = float(norm["mean"]), float(norm["std"]), norm.get("clip_sigma")
        self.window_shape = tuple(self.session.get_inputs()[0].shape[1:])

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        x = (np.asarray(raw, np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return np.clip(x, -self.clip, self.clip) if self.clip else x

    def run(self, windows: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = outputs or [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {"windows": windows}), strict=True))
