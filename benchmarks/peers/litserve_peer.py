"""Peer: LitServe, the same ONNX graph on onnxruntime, with its request batching on.

The body is our ``/predict`` JSON (``{"windows": raw amplitudes}``); the peer normalises as the model's
metadata says and answers ``{"probabilities": ...}``. LitServe runs the API server and the inference worker
in separate processes joined by queues; its batching merges up to ``MAX_BATCH`` queued requests (each a
batch of windows, so ``batch`` concatenates and ``unbatch`` splits them back) after at most
``BATCH_TIMEOUT_S``. Health: ``/health``.
"""

from __future__ import annotations

import litserve as ls
import numpy as np
from ort_model import OnnxModel, arguments

MAX_BATCH = 16
BATCH_TIMEOUT_S = 0.001


class WindowsAPI(ls.LitAPI):
    def __init__(self, args) -> None:
        super().__init__(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT_S)
        self.args = args

    def setup(self, device: str) -> None:
        self.model = OnnxModel(self.args)

    def decode_request(self, request: dict) -> np.ndarray:
        return self.model.normalise(np.asarray(request["windows"], np.float32))

    def batch(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        return np.concatenate(inputs), [len(x) for x in inputs]

    def predict(self, batch: tuple[np.ndarray, list[int]]) -> tuple[np.ndarray, list[int]]:
        windows, sizes = batch
        return self.model.run(windows, ["probabilities"])["probabilities"], sizes

    def unbatch(self, output: tuple[np.ndarray, list[int]]) -> list[np.ndarray]:
        probabilities, sizes = output
        return np.split(probabilities, np.cumsum(sizes)[:-1])

    def encode_response(self, output: np.ndarray) -> dict:
        return {"probabilities": output.tolist()}


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    server = ls.LitServer(WindowsAPI(args), accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=args.workers,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
