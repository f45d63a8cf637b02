"""Peer: Triton Inference Server through PyTriton, the same ONNX graph on onnxruntime, dynamic batching on.

Triton's C++ HTTP front end speaks Open Inference Protocol v2 with its binary tensor extension; PyTriton binds
a Python function as the model (Triton's Python backend), which runs the graph with the session options of
``ort_model.py``. The dynamic batcher is configured as Triton's docs advise for a small model: merge queued
requests up to ``max_batch_size`` windows, waiting at most 100 us for more. Every output of the graph is
declared; clients ask for the ones they want, as with our server. Health: ``/v2/health/ready``.

PyTriton's Python backend stub links the system ``libpython3.11``; a venv made from another build of Python
3.11 (pyenv's 3.11.7 here) fails to load the model (``RLock`` has no ``_recursion_count``), so
``setup.sh`` builds this peer's venv from Debian's ``/usr/bin/python3.11``.
"""

from __future__ import annotations

import numpy as np
from ort_model import OnnxModel, arguments
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MAX_BATCH = 512
QUEUE_DELAY_US = 100


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    model = OnnxModel(args)
    outputs = [o.name for o in model.session.get_outputs()]
    dims = {o.name: tuple(o.shape[1:]) for o in model.session.get_outputs()}

    @batch
    def infer(windows: np.ndarray) -> dict[str, np.ndarray]:
        return model.run(windows, outputs)

    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.port, allow_grpc=False, allow_metrics=False, log_verbose=0
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="seismic",
            infer_func=[infer] * args.workers,  # model instances, each its own Python process
            inputs=[Tensor(name="windows", dtype=np.float32, shape=model.window_shape)],
            outputs=[Tensor(name=name, dtype=np.float32, shape=dims[name]) for name in outputs],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=QUEUE_DELAY_US),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
