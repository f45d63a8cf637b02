"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``GET /version``.

A drop-in for ``mlflow models serve`` on a registered version of this model: the same request gives the same
answer. The registered MLflow model's signature is the ONNX graph's, ``windows`` *normalised* float32, so
``/invocations`` takes normalised windows by default, as MLflow's server does; ``"params": {"normalised":
false}`` sends raw amplitudes instead (the server then normalises, like ``/predict``).

Bodies (``application/json``; MLflow's "split" and "records" dataframe orients and its tensor formats):

- ``{"inputs": [...]}`` or ``{"inputs": {"windows": [...]}}``; ``{"instances": [...]}`` (rows, also
  ``[{"windows": ...}, ...]``) -> ``{"predictions": {"logits": ..., "probabilities": ..., "embedding": ...}}``
- ``{"dataframe_split": {"columns": [...], "data": [...]}}`` / ``{"dataframe_records": [...]}``: one row per
  window, either one ``windows`` column of nested windows or one column per sample (T or W*T columns) ->
  ``{"predictions": [{"logits": ..., "probabilities": ..., "embedding": ...}, ...]}`` (one record per row)

Status codes follow MLflow's documented rules (415 for an unsupported Content-Type, 400 for a body that is
not one of the formats above) with MLflow's error body ``{"error_code": ..., "message": ...}``; where MLflow
answers 500 (no Content-Type, bad tensor shapes) this answers 415/400/422 naming the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.protocols import ApiError, dumps, flag, media_type, parse_json, read_body, to_array

router = APIRouter()
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
OUTPUTS = ("logits", "probabilities", "embedding")


class InvocationsRequest(BaseModel):
    inputs: Any | None = Field(None, description="tensor: [N, 1, (W,) T] windows, or {'windows': tensor}")
    instances: list[Any] | None = Field(None, description="rows: windows, or {'windows': window} objects")
    dataframe_split: dict[str, Any] | None = Field(None, description="{'columns': [...], 'data': [[...]]}")
    dataframe_records: list[dict[str, Any]] | None = None
    params: dict[str, Any] | None = Field(None, description="{'normalised': false} for raw amplitudes")


class MlflowError(BaseModel):
    error_code: str
    message: str


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": InvocationsRequest.model_json_schema()}},
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": MlflowError} for code in (400, 401, 413, 415, 422, 503)
}


def _column_frame(
    columns: list[Any], rows: list[Any], window_shape: tuple[int, ...], field: str
) -> np.ndarray:
    if columns == ["windows"]:
        return to_array([row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows], field)
    arr = to_array(rows, field)
    size = int(np.prod(window_shape))
    if arr.ndim != 2 or arr.shape[1] != size or len(columns) != size:
        raise ApiError(
            400,
            f"{len(columns)} columns, data of shape {list(arr.shape)}",
            field=field,
            expected=f"one 'windows' column, or {size} sample columns ({'x'.join(map(str, window_shape))})",
        )
    return arr.reshape(len(arr), *window_shape)


def _windows(payload: dict[str, Any], window_shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """The windows and whether the body was a dataframe (which changes the response's layout)."""
    keys = [key for key in FORMATS if key in payload]
    extra = sorted(set(payload) - set(FORMATS) - {"params"})
    if len(keys) != 1 or extra:
        raise ApiError(
            400,
            f"got keys {sorted(payload)}",
            field="body",
            expected=f"exactly one of {list(FORMATS)} (plus optional 'params')",
        )
    key, value = keys[0], payload[keys[0]]
    if key == "inputs":
        if isinstance(value, dict):
            if set(value) != {"windows"}:
                raise ApiError(
                    400, f"inputs has tensors {sorted(value)}", field="inputs", expected="{'windows': ...}"
                )
            value = value["windows"]
        return to_array(value, "inputs"), False
    if key == "instances":
        if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
            if any(set(row) != {"windows"} for row in value):
                raise ApiError(
                    400, "rows with other keys", field="instances", expected="{'windows': window} rows"
                )
            value = [row["windows"] for row in value]
        return to_array(value, "instances"), False
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise ApiError(
                400, "missing 'data'", field="dataframe_split", expected="{'columns': [...], 'data': [[...]]}"
            )
        columns = value.get("columns") or ["windows"]
        return _column_frame(list(columns), value["data"], window_shape, "dataframe_split.data"), True
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value) or not value:
        raise ApiError(
            400, "not a list of records", field="dataframe_records", expected="[{column: value}, ...]"
        )
    columns = list(value[0])
    rows = [[row.get(c) for c in columns] for row in value]
    return _column_frame(columns, rows, window_shape, "dataframe_records"), True


def _check_parameters(content_type: str) -> None:
    """MLflow's rule: ``charset`` other than utf-8, or any other parameter (MLflow 1's ``format=pandas-split``
    among them), is a 415; guessing what the client meant would answer another question than MLflow does."""
    for part in content_type.split(";")[1:]:
        key, _, value = (p.strip() for p in part.partition("="))
        if not key:
            continue  # "application/json;" stays JSON here (MLflow's 415 for it helps no client)
        if key.lower() != "charset":
            raise ApiError(
                415,
                f"unsupported parameter {part.strip()!r}",
                field="Content-Type",
                expected="application/json, optionally with charset=utf-8 (the format goes in the body)",
            )
        if value.strip('"').lower() != "utf-8":
            raise ApiError(415, f"charset {value!r}", field="Content-Type", expected="charset=utf-8")


@router.post(
    "/invocations",
    response_model=None,
    responses={200: {"description": "{'predictions': ...} as MLflow's scoring server answers"}, **_ERRORS},
    openapi_extra=_BODY,
    summary="MLflow scoring protocol (normalised windows by default, as the MLflow model's signature)",
)
async def invocations(request: Request) -> Response:
    service = request.app.state.service
    kind = media_type(request)
    if kind != "application/json":
        raise ApiError(
            415,
            f"Content-Type {kind!r}" if kind else "no Content-Type header",
            field="Content-Type",
            expected="application/json (CSV is not offered for tensor models)",
        )
    _check_parameters(request.headers["content-type"])
    payload = parse_json(await read_body(request, service.settings.limits.max_body_bytes))
    if not isinstance(payload, dict):
        raise ApiError(
            400,
            f"got a JSON {type(payload).__name__}",
            field="body",
            expected=f"an object with one of {list(FORMATS)}",
        )
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "not an object", field="params", expected="{'normalised': bool}")
    normalised = flag(params.get("normalised", True), "params.normalised")
    model = service.current()
    windows, frame = _windows(payload, model.window_shape)
    result = await service.infer(
        windows, normalised=normalised, request_id=request.headers.get("x-request-id"), model=model
    )
    out = {name: result.outputs[name] for name in OUTPUTS}
    if frame:
        predictions: Any = [dict(zip(OUTPUTS, row, strict=True)) for row in zip(*out.values(), strict=True)]
    else:
        predictions = out
    return Response(dumps({"predictions": predictions}), media_type="application/json")


@router.get("/ping", summary="MLflow health check")
async def ping(request: Request) -> dict[str, str]:
    request.app.state.service.ready()
    return {"status": "ok"}


@router.get("/version", summary="Server and model versions")
async def version(request: Request) -> dict[str, Any]:
    from importlib.metadata import version as package_version

    model = request.app.state.service.model
    return {
        "server": package_version("seismic"),
        "model": None if model is None else {"name": model.name, "version": model.version},
    }
