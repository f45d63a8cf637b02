"""Open Inference Protocol v2 (KServe, Triton, MLServer) with Triton's binary tensor data extension.

Input: one tensor ``windows`` FP32 ``[N, 1, T]`` / ``[N, 1, W, T]`` of raw amplitudes (request parameter
``normalised: true`` for windows scaled already). Outputs: ``logits``, ``probabilities``, ``embedding``
(FP32) and ``class`` (INT64 ``[N]``); all four unless the request names some. A segmentation model's tiles
may have any size that is a multiple of its ``tile.size_multiple`` (``-1`` in the model metadata), and its
``logits``/``probabilities`` are ``[N, C, (W,) T]``, ``class`` ``[N, (W,) T]``: binary outputs avoid
JSON-encoding ~10^5 numbers a tile.

Measured facts this is built for (see design.md): Triton's Python client sends *no Content-Type*, for JSON
and binary bodies alike, so the body is parsed from its bytes whatever the header says; binary inputs come
after a JSON header whose length is ``Inference-Header-Content-Length``. An output is binary when its own
``parameters.binary_data`` says so, else when the request's ``parameters.binary_data_output`` does; binary
outputs carry ``parameters.binary_data_size`` and no ``data``, and are appended to the response in order.
Errors are ``{"error": "..."}`` with a 4xx, never FastAPI's 422 ``{"detail": ...}`` nor a 500.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.protocols import ApiError, dumps, flag, loads, read_body
from serving.runtime import INPUT_NAME, LoadedModel

router = APIRouter(prefix="/v2")
HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUTS = {"logits": "FP32", "probabilities": "FP32", "embedding": "FP32", "class": "INT64"}
_DTYPES = {"FP32": "<f4", "INT64": "<i8"}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="normalised, binary_data_output")
    inputs: list[InferTensor]
    outputs: list[dict[str, Any]] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferTensor]


class V2Error(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": V2Error} for code in (400, 401, 404, 413, 503)}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"JSON header of {HEADER_LENGTH} bytes, then the binary tensors",
            },
        },
    }
}


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    from importlib.metadata import version

    return {"name": "seismic", "version": version("seismic"), "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness", responses={503: {"model": V2Error}})
async def ready(request: Request) -> dict[str, bool]:
    request.app.state.service.ready()
    return {"ready": True}


def _model(request: Request, name: str, version: str | None) -> LoadedModel:
    model = request.app.state.service.current()
    if name != model.name:
        raise ApiError(404, f"unknown model {name!r}; this server serves {model.name!r}")
    if version not in (None, "", model.version):
        raise ApiError(
            404, f"model {name!r} has no version {version!r} here; serving version {model.version}"
        )
    return model


def _metadata(model: LoadedModel) -> ModelMetadata:
    embedding = model.embedding_dim
    channels = list(model.window_shape[:1])
    # segmentation models take any tile size (a multiple of tile.size_multiple) and label every sample
    spatial = [-1] * (len(model.window_shape) - 1) if model.dense else []
    spatial_in = spatial if model.dense else list(model.window_shape[1:])
    return ModelMetadata(
        name=model.name,
        versions=[model.version],
        platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="FP32", shape=[-1, *channels, *spatial_in])],
        outputs=[
            TensorMetadata(name="logits", datatype="FP32", shape=[-1, len(model.class_names), *spatial]),
            TensorMetadata(
                name="probabilities", datatype="FP32", shape=[-1, len(model.class_names), *spatial]
            ),
            TensorMetadata(name="embedding", datatype="FP32", shape=[-1, embedding]),
            TensorMetadata(name="class", datatype="INT64", shape=[-1, *spatial]),
        ],
    )


@router.get("/models/{name}", response_model=ModelMetadata, responses=_ERRORS, summary="Model metadata")
async def model_metadata(request: Request, name: str) -> ModelMetadata:
    return _metadata(_model(request, name, None))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=_ERRORS,
    summary="Model metadata",
)
async def model_version_metadata(request: Request, name: str, version: str) -> ModelMetadata:
    return _metadata(_model(request, name, version))


@router.get("/models/{name}/ready", responses=_ERRORS, summary="Model readiness")
async def model_ready(request: Request, name: str) -> dict[str, Any]:
    request.app.state.service.ready()
    return {"name": _model(request, name, None).name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=_ERRORS, summary="Model readiness")
async def model_version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
    request.app.state.service.ready()
    return {"name": _model(request, name, version).name, "ready": True}


def _decode(body: bytes, request: Request, limit: int) -> bytes:
    encoding = (request.headers.get("content-encoding") or "identity").lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ApiError(415, f"Content-Encoding {encoding!r}; expected gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # +32: gzip or zlib header, detected
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ApiError(400, f"not valid {encoding} (as Content-Encoding says): {err}", field="body") from None
    if len(out) > limit:
        raise ApiError(413, f"decompressed body exceeds {limit} bytes")
    return out


def _parse(body: bytes, request: Request) -> tuple[dict[str, Any], bytes]:
    header = request.headers.get(HEADER_LENGTH.lower())
    if header is not None:
        try:
            size = int(header)
        except ValueError:
            raise ApiError(400, f"{HEADER_LENGTH} {header!r} is not an integer") from None
        if not 0 < size <= len(body):
            raise ApiError(400, f"{HEADER_LENGTH} {size} does not fit a body of {len(body)} bytes")
        head, binary = body[:size], body[size:]
    else:
        head, binary = body, b""
    try:
        payload = loads(head, "inference header")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"malformed JSON in the inference header: {err}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"inference request must be a JSON object, got {type(payload).__name__}")
    return payload, binary


def _input(payload: dict[str, Any], binary: bytes) -> np.ndarray:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, f"'inputs' must hold exactly one tensor named {INPUT_NAME!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise ApiError(400, f"unknown input {tensor.get('name')!r}; the model takes {INPUT_NAME!r}")
    if tensor.get("datatype") != "FP32":
        raise ApiError(400, f"input {INPUT_NAME!r} has datatype {tensor.get('datatype')!r}; expected FP32")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ApiError(400, f"input {INPUT_NAME!r} shape {shape!r}: expected a list of non-negative integers")
    count = int(np.prod(shape))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != 4 * count or size > len(binary):
            raise ApiError(
                400,
                f"input {INPUT_NAME!r}: binary_data_size {size!r} with {len(binary)} binary bytes; "
                f"expected {4 * count} bytes for FP32 shape {shape}",
            )
        return np.frombuffer(binary, dtype="<f4", count=count).reshape(shape)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise ApiError(400, f"input {INPUT_NAME!r} has neither 'data' nor parameters.binary_data_size")
    try:
        arr = np.asarray(data)
    except ValueError:
        raise ApiError(400, f"input {INPUT_NAME!r}: 'data' is ragged") from None
    if arr.dtype.kind not in "fiu":
        raise ApiError(400, f"input {INPUT_NAME!r}: 'data' holds non-numbers ({arr.dtype}); expected FP32")
    if arr.size != count:
        raise ApiError(400, f"input {INPUT_NAME!r}: {arr.size} values for shape {shape} ({count} values)")
    with np.errstate(over="ignore"):  # beyond float32's range becomes Inf, which the model check refuses
        return arr.astype(np.float32).reshape(shape)


def _requested(payload: dict[str, Any]) -> list[tuple[str, bool]]:
    """Output names and whether each is binary (its own flag wins over the request-level default)."""
    params = payload.get("parameters") or {}
    default = flag(params.get("binary_data_output", False), "parameters.binary_data_output")
    outputs = payload.get("outputs")
    if outputs is None:
        return [(name, default) for name in OUTPUTS]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ApiError(400, "'outputs' must be a list of {name, parameters} objects")
    chosen = []
    for output in outputs:
        name = output.get("name")
        if name not in OUTPUTS:
            raise ApiError(400, f"unknown output {name!r}; the model has {list(OUTPUTS)}")
        binary = (output.get("parameters") or {}).get("binary_data", default)
        chosen.append((name, flag(binary, f"outputs[{name}].parameters.binary_data")))
    return chosen


def _infer_route(path: str):  # one handler body for the two infer paths
    @router.post(
        path,
        response_model=None,
        responses={200: {"model": InferResponse}, **_ERRORS},
        openapi_extra=_BODY,
        summary="Inference (JSON tensors or the binary tensor data extension)",
    )
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        service = request.app.state.service
        model = _model(request, name, version)
        limit = service.settings.limits.max_body_bytes
        body = _decode(await read_body(request, limit), request, limit)
        payload, binary = _parse(body, request)
        windows = _input(payload, binary)
        requested = _requested(payload)
        normalised = flag((payload.get("parameters") or {}).get("normalised", False), "parameters.normalised")
        result = await service.infer(
            windows, normalised=normalised, request_id=payload.get("id"), model=model
        )
        tensors, blobs = [], []
        for output, binary_out in requested:
            value = np.ascontiguousarray(result.outputs[output], dtype=_DTYPES[OUTPUTS[output]])
            tensor: dict[str, Any] = {"name": output, "datatype": OUTPUTS[output], "shape": list(value.shape)}
            if binary_out:
                blobs.append(value.tobytes())
                tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
            else:
                tensor["data"] = value.ravel()
            tensors.append(tensor)
        response = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
        if payload.get("id") is not None:
            response["id"] = payload["id"]
        head = dumps(response)
        if not blobs:
            return Response(head, media_type="application/json")
        return Response(
            b"".join([head, *blobs]),
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(len(head))},
        )

    return infer


infer = _infer_route("/models/{name}/infer")
infer_version = _infer_route("/models/{name}/versions/{version}/infer")
