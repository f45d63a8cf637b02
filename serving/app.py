"""The app factory: ``create_app(settings)`` -> a FastAPI app serving one model on every protocol.

Routes: ``/predict``, ``/health``, ``/ready``, ``/model_info`` (own, :mod:`serving.protocols.own`);
``/invocations``, ``/ping``, ``/version`` (MLflow, :mod:`serving.protocols.mlflow`); ``/v2/...`` (Open
Inference Protocol, :mod:`serving.protocols.v2`); ``/reload`` (:mod:`serving.reload`); ``/metrics``.

The model is loaded during the lifespan start-up (off the event loop), so a source that cannot be loaded
stops the server with its error instead of leaving it up and never ready. Shutdown (uvicorn's answer to
SIGTERM) stops polling, lets queued batches finish, then closes the inference log, which writes every row
it accepted.

API key: when one is configured (``auth.api_key_env``), every route except the probes, the docs and (unless
``auth.metrics``) ``/metrics`` needs it, in the ``X-API-Key`` header (configurable) or as ``Authorization:
Bearer <key>`` (any case of the scheme); a 401 carries ``WWW-Authenticate``. While draining (SIGTERM, see
:mod:`serving.server`) those routes answer 503 and every response closes its connection.

Hot path: the inference POSTs (``/predict`` without a query string, ``/invocations``, v2 ``.../infer``) are
called by :class:`Guard` directly, not through FastAPI's router. Their handlers take the raw request and
return a ``Response`` (no dependencies, no response model), so the router only added cost: profiled at batch
1, matching, dependency solving and the extra middleware layers were ~40 % of the event loop's time per
request. They stay registered with FastAPI, for the OpenAPI schema and for requests the hot path passes on.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.protocols import ApiError, mlflow, own, v2
from serving.reload import Reloader
from serving.reload import router as reload_router
from serving.runtime import LoadedModel, load_model
from serving.service import Service
from serving.settings import Settings

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset(
    {
        "/health",
        "/ready",
        "/ping",
        "/v2/health/live",
        "/v2/health/ready",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/redoc",
    }
)


def error_response(path: str, err: ApiError) -> Response:
    """``err`` in the error format of the protocol that ``path`` belongs to."""
    status = err.status
    if path.startswith("/v2"):
        body: dict[str, Any] = {"error": err.text()}
        status = 400 if status == 422 else status  # Triton answers every invalid request with 400
    elif path == "/invocations":
        code = {413: "RESOURCE_EXHAUSTED", 415: "BAD_REQUEST", 503: "TEMPORARILY_UNAVAILABLE"}
        body = {"error_code": code.get(err.status, "BAD_REQUEST"), "message": err.text()}
    else:
        body = {"detail": err.text(), "field": err.field, "expected": err.expected}
    return JSONResponse(body, status_code=status, headers=err.headers)


Handler = Callable[..., Awaitable[Response]]
_V2_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


def hot_route(scope: Scope) -> tuple[str, Handler, dict[str, str]] | None:
    """(route template, handler, path parameters) of an inference POST the hot path serves, else None."""
    if scope["method"] != "POST":
        return None
    path = scope["path"]
    if path == "/invocations":
        return "/invocations", mlflow.invocations, {}
    if path == "/predict" and not scope["query_string"]:  # query flags need FastAPI's parsing
        return "/predict", own.predict, {}
    match = _V2_INFER.match(path)
    if match is None:
        return None
    if match["version"] is None:
        return "/v2/models/{name}/infer", v2.infer, {"name": match["name"]}
    return "/v2/models/{name}/versions/{version}/infer", v2.infer_version, match.groupdict()


class Guard:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): API key check, metrics, and
    the hot path (module docstring)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        key = service.settings.api_key
        self.key = None if key is None else key.get_secret_value().encode()
        self.header = service.settings.auth.header.lower().encode()
        self.open = open_paths(service.settings)
        # metric children by label values: ``labels()`` takes a lock and builds a key on every call
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == self.header and hmac.compare_digest(value, self.key):
                return True
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                # the scheme is case-insensitive (RFC 7235 section 2.1): "bearer" is as good as "Bearer"
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
                    return True
        return False

    def _refusal(self, scope: Scope) -> ApiError | None:
        """Why this request is not served (shutting down, no key), or None."""
        if scope["path"] in self.open:
            return None
        if self.service.draining:
            retry = str(self.service.settings.batching.retry_after_s)
            return ApiError(503, "shutting down", headers={"Retry-After": retry})
        if self.key is not None and not self._authorised(scope):
            header = self.service.settings.auth.header
            return ApiError(
                401,
                "missing or wrong API key",
                field=header,
                expected=f"{header}: <key> or Authorization: Bearer <key>",
                headers={"WWW-Authenticate": 'Bearer realm="seismic"'},
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = scope["path"]

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.service.draining:  # uvicorn then closes the connection after this response, so no
                    # client sends another request on a kept-alive connection that shutdown is about to close
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        endpoint = None
        try:
            if (refusal := self._refusal(scope)) is not None:
                await error_response(path, refusal)(scope, receive, record)
            elif (hot := hot_route(scope)) is not None:
                endpoint, handler, params = hot
                try:
                    response = await handler(StarletteRequest(scope, receive), **params)
                except ApiError as err:
                    response = error_response(path, err)
                await response(scope, receive, record)
            else:
                await self.app(scope, receive, record)
        finally:
            if endpoint is None:
                route = scope.get("route")
                refused = {401: "unauthorised", 503: "refused"}.get(status, "unmatched")
                endpoint = getattr(route, "path", None) or refused
            self._observe(endpoint, status, time.perf_counter() - started)

    def _observe(self, endpoint: str, status: int, seconds: float) -> None:
        metrics = self.service.metrics
        counter = self._counters.get((endpoint, status))
        if counter is None:
            counter = self._counters[(endpoint, status)] = metrics.requests.labels(
                endpoint=endpoint, status=str(status)
            )
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._histograms[endpoint] = metrics.latency.labels(endpoint=endpoint)
        counter.inc()
        histogram.observe(seconds)


def open_paths(settings: Settings) -> frozenset[str]:
    """The paths served without the API key (and while draining): probes and docs; /metrics unless
    ``auth.metrics``."""
    return OPEN_PATHS - {"/metrics"} if settings.auth.metrics else OPEN_PATHS


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated schema plus the API key scheme on every protected operation."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": settings.auth.header},
            "bearer": {"type": "http", "scheme": "bearer"},
        }
        for path, operations in schema["paths"].items():
            if path not in open_paths(settings):
                for operation in operations.values():
                    operation["security"] = [{"apiKey": []}, {"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings, model: LoadedModel | None = None) -> FastAPI:
    """The server for ``settings``; ``model`` (already loaded) skips loading ``settings.model.source``."""
    service = Service(settings)
    reloader = Reloader(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        if model is not None:
            service.set_model(model)
        else:
            await reloader.reload()
        reloader.start_polling()
        try:
            yield
        finally:
            await reloader.stop()
            await service.close()
            log.info("stopped; inference log: %s", getattr(service.writer, "stats", None))

    from importlib.metadata import version

    app = FastAPI(
        title="seismic",
        version=version("seismic"),
        description="Facies classification of seismic windows: own API, MLflow scoring protocol, "
        "Open Inference "
        "Protocol v2 (with the binary tensor data extension).",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.reloader = reloader
    for router in (own.router, mlflow.router, v2.router, reload_router):
        app.include_router(router)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Response:
        return error_response(request.url.path, err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()))
        status = 400 if request.url.path.startswith("/v2") or request.url.path == "/invocations" else 422
        return error_response(
            request.url.path, ApiError(status, first.get("msg", "invalid request"), field=field)
        )

    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    app.add_middleware(Guard, service=service)
    return app


def app_from_settings(settings: Settings) -> FastAPI:
    """Load the model now (fails fast, before a socket is bound), then build the app around it."""
    cfg = settings.model
    model = load_model(
        cfg.source,
        cfg.providers,
        cfg.intra_op_threads,
        cfg.inter_op_threads,
        tracking_uri=cfg.tracking_uri,
        spin_wait=cfg.spin_wait,
    )
    return create_app(settings, model)
