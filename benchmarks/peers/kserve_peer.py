"""Peer: KServe's Python ModelServer, the same ONNX graph on onnxruntime, Open Inference Protocol v2.

KServe's ``Model.predict`` receives an ``InferRequest`` (JSON, or Triton's binary tensor extension with an
``Inference-Header-Content-Length`` header) and answers the outputs the request asks for, binary where the
request asks for binary. No request batching (KServe's Python server has none; its batcher is an
``InferenceService`` sidecar). Health: ``/v2/health/ready``. Its HTTP server listens on all interfaces (no
host option); the benchmark sends to 127.0.0.1 only.
"""

from __future__ import annotations

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from ort_model import OnnxModel, arguments


class Seismic(Model):
    def __init__(self, args) -> None:
        super().__init__("seismic")
        self.args = args
        self.model: OnnxModel | None = OnnxModel(args)  # fails here, at start, on a bad model folder
        self.ready = True

    def __getstate__(self) -> dict:
        # workers > 1: KServe pickles the model into each worker process; an onnxruntime session cannot be
        # pickled, so each worker opens its own on its first request
        return {**self.__dict__, "model": None}

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        if self.model is None:
            self.model = OnnxModel(self.args)
        windows = payload.inputs[0].as_numpy()
        wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else None
        results = self.model.run(windows, wanted)
        binary = {o.name: bool(o.parameters.get("binary_data")) for o in payload.request_outputs or []}
        outputs = []
        for name, value in results.items():
            out = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            out.set_data_from_numpy(value, binary_data=binary.get(name, False))
            outputs.append(out)
        # v2 makes the id optional; KServe's response model requires one
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    server = ModelServer(
        http_port=args.port, workers=args.workers, enable_grpc=False, enable_latency_logging=False
    )
    server.start([Seismic(args)])


if __name__ == "__main__":
    main()
