"""Our own API: ``POST /predict`` and the probe and introspection routes (``/health``, ``/ready``,
``/model_info``).

``/predict`` takes raw amplitudes (what a SEG-Y trace holds) and applies the model's normalisation, exactly as
training did; ``normalised=true`` (query or JSON) skips that for clients that scaled already. Bodies:

- ``application/json`` (also when no Content-Type is sent): ``{"windows": [...], "normalised": false,
  "embeddings": false}`` or a bare list; windows ``[N, 1, T]`` / ``[N, 1, W, T]``, or without the channel
  axis.
- ``application/octet-stream``: little-endian samples, C order, shape in the ``X-Shape`` header
  (``64,1,64``), dtype in ``X-Dtype`` (``float32``, the default; ``float64``; ``float16``). No parsing at
  all: use it for large batches (a 64-patch JSON body costs more to parse than the model costs to run).
- ``application/x-npy`` (or ``application/npy``): a ``.npy`` file of any float dtype (``allow_pickle`` off).

A segmentation model (metadata ``task: segmentation``) takes tiles ``[N, 1, (W,) T]`` of any size that is a
multiple of its ``tile.size_multiple`` and answers dense arrays: ``classes`` ``[N, (W,) T]``,
``probabilities`` ``[N, C, (W,) T]``, ``class_names`` the legend of the class ids, and ``task``.
"""

from __future__ import annotations

import io
import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.protocols import ApiError, dumps, flag, media_type, parse_json, read_body, to_array

router = APIRouter()
NPY_TYPES = ("application/x-npy", "application/npy")


class PredictRequest(BaseModel):
    windows: list[Any] = Field(description="[N, 1, T] or [N, 1, W, T] raw amplitudes (channel axis optional)")
    normalised: bool = Field(False, description="the windows are already normalised: skip the normalisation")
    embeddings: bool = Field(False, description="also return the embedding of each window")


class ModelRef(BaseModel):
    name: str
    version: str


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    classes: list[Any] = Field(
        description="predicted class id per window; segmentation models: [N, (W,) T], one per sample"
    )
    class_names: list[str] = Field(
        description="predicted class name per window; segmentation models: the names of the class ids"
    )
    probabilities: list[Any] = Field(
        description="[N, C] softmax, columns in the model's class order; segmentation: [N, C, (W,) T]"
    )
    task: str | None = Field(None, description="'segmentation' for dense models (absent for classifiers)")
    embeddings: list[list[float]] | None = Field(None, description="[N, D], when asked for")


class ErrorResponse(BaseModel):
    detail: str
    field: str | None = None
    expected: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "malformed body"),
        (401, "missing or wrong API key"),
        (413, "body or batch above the limit"),
        (415, "unsupported Content-Type"),
        (422, "windows of the wrong shape, dtype or values"),
        (503, "no model yet, or the queue is full (see Retry-After)"),
    )
}
# X-Dtype values -> numpy dtypes; raw bodies are little endian (what x86 and ARM clients write natively)
RAW_DTYPES = {
    "float32": "<f4",
    "<f4": "<f4",
    "f4": "<f4",
    "float64": "<f8",
    "<f8": "<f8",
    "f8": "<f8",
    "float16": "<f2",
    "<f2": "<f2",
    "f2": "<f2",
}


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "JSON windows; or raw bytes with X-Shape (and X-Dtype) headers; or a .npy file",
    },
    "parameters": [
        {
            "name": "X-Shape",
            "in": "header",
            "required": False,
            "description": "application/octet-stream: the array's shape, e.g. 64,1,64",
            "schema": {"type": "string"},
        },
        {
            "name": "X-Dtype",
            "in": "header",
            "required": False,
            "description": "application/octet-stream: the samples' dtype (little endian)",
            "schema": {"type": "string", "enum": sorted(RAW_DTYPES), "default": "float32"},
        },
    ],
}


def _shape(request: Request) -> tuple[int, ...]:
    header = request.headers.get("x-shape")
    if not header:
        raise ApiError(400, "missing header", field="X-Shape", expected="the array shape, e.g. '64,1,64'")
    try:
        shape = tuple(int(d) for d in header.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise ApiError(400, f"got {header!r}", field="X-Shape", expected="integers like '64,1,64'") from None
    if not shape or any(d < 0 for d in shape):
        raise ApiError(
            400, f"got {header!r}", field="X-Shape", expected="non-negative integers like '64,1,64'"
        )
    return shape


def _raw(body: bytes, request: Request) -> np.ndarray:
    """The body as an array of ``X-Shape`` and ``X-Dtype`` (default float32): a byte count that fits the
    shape in another dtype is named, since float64 bytes of half the windows would fit as float32."""
    shape = _shape(request)
    declared = request.headers.get("x-dtype")
    name = (declared or "float32").strip().lower()
    if name not in RAW_DTYPES:
        raise ApiError(
            422, f"got {declared!r}", field="X-Dtype", expected="float32, float64 or float16 (little endian)"
        )
    dtype = np.dtype(RAW_DTYPES[name])
    count = math.prod(shape)
    if len(body) != dtype.itemsize * count:
        fits = [f"float{8 * size}" for size in (2, 4, 8) if len(body) == size * count]
        hint = f"; the size fits {fits[0]}: declare it with X-Dtype" if fits else ""
        raise ApiError(
            400,
            f"{len(body)} bytes do not hold a {dtype.name} array of shape {list(shape)}{hint}",
            field="body",
            expected=f"{dtype.itemsize * count} bytes",
        )
    arr = np.frombuffer(body, dtype=dtype).reshape(shape)
    with np.errstate(over="ignore"):  # beyond float32's range becomes Inf, which the model check refuses
        return arr.astype(np.float32, copy=False)


def _npy(body: bytes) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as err:  # numpy raises ValueError/EOFError/... for broken or pickled files
        raise ApiError(400, f"not a readable .npy file: {err}", field="body") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        what = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else "an .npz archive"
        raise ApiError(422, what, field="body", expected="one float .npy array (float32)")
    return arr


async def _windows(request: Request, options: dict[str, Any]) -> np.ndarray:
    limit = request.app.state.service.settings.limits.max_body_bytes
    kind = media_type(request)
    body = await read_body(request, limit)
    if kind in (None, "application/json"):
        payload = parse_json(body)
        if isinstance(payload, dict):
            unknown = sorted(set(payload) - set(PredictRequest.model_fields))
            if unknown:
                raise ApiError(
                    422, f"unknown key(s) {unknown}", field="body", expected="windows, normalised, embeddings"
                )
            if "windows" not in payload:
                raise ApiError(422, "missing", field="windows", expected="a list of windows")
            for key in ("normalised", "embeddings"):
                if key in payload:
                    options[key] = flag(payload[key], key)
            payload = payload["windows"]
        return to_array(payload, "windows")
    if kind == "application/octet-stream":
        return _raw(body, request)
    if kind in NPY_TYPES:
        return _npy(body)
    raise ApiError(
        415,
        f"Content-Type {kind!r}",
        field="Content-Type",
        expected="application/json, application/octet-stream (with X-Shape) or application/x-npy",
    )


@router.post(
    "/predict",
    response_model=None,
    responses={200: {"model": PredictResponse}, **ERRORS},
    openapi_extra=_BODY,
    summary="Classify windows (raw amplitudes) into facies",
)
async def predict(
    request: Request,
    normalised: Annotated[bool, Query(description="windows are already normalised")] = False,
    embeddings: Annotated[bool, Query(description="also return embeddings")] = False,
) -> Response:
    service = request.app.state.service
    options = {"normalised": normalised, "embeddings": embeddings}
    windows = await _windows(request, options)
    result = await service.infer(
        windows, normalised=options["normalised"], request_id=request.headers.get("x-request-id")
    )
    model, out = result.model, result.outputs
    classes = out["class"].tolist()
    payload = {
        "request_id": result.request_id,
        "model": {"name": model.name, "version": model.version},
        "classes": classes,
        # a segmentation model labels every sample: the names are the legend of the class ids, not one per row
        "class_names": model.class_names if model.dense else [model.class_names[c] for c in classes],
        "probabilities": out["probabilities"],
    }
    if model.dense:
        payload["task"] = "segmentation"
    if options["embeddings"]:
        payload["embeddings"] = out["embedding"]
    return Response(
        dumps(payload), media_type="application/json", headers={"X-Request-ID": result.request_id}
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    provider: str
    source: str
    window_shape: list[int]
    class_names: list[str]
    metadata: dict[str, Any]
    batching: dict[str, Any]


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "live"}


@router.get("/ready", summary="Readiness: a model is loaded", responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> dict[str, Any]:
    model = request.app.state.service.ready()
    return {"status": "ready", "model": model.name, "version": model.version}


@router.get(
    "/model_info", response_model=ModelInfo, summary="The model being served, its metadata and provider"
)
async def model_info(request: Request) -> ModelInfo:
    service = request.app.state.service
    model = service.current()
    return ModelInfo(
        name=model.name,
        version=model.version,
        provider=model.provider,
        source=model.source,
        window_shape=list(model.window_shape),
        class_names=model.class_names,
        metadata=model.metadata,
        batching=service.settings.batching.model_dump(),
    )
