"""Hot reload: a new model version is loaded beside the serving one and swapped in atomically.

Two triggers: :class:`Reloader.poll` asks the registry every ``poll_interval_s`` which version the alias
(``models:/<name>@champion``) points at and reloads when it moved; ``POST /reload`` (API key required when
one is configured) reloads on demand, optionally from another source. Loading (download, session creation,
warm-up run) happens in a worker thread, so requests keep being served from the old model meanwhile; the swap
is one assignment in :meth:`serving.service.Service.set_model`, and requests that already hold the old model
finish on it (the batcher never mixes models in a batch). A failed load leaves the old model serving.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from serving.protocols import ApiError, parse_json, read_body
from serving.runtime import LoadedModel, ModelLoadError, load_model, parse_registry_uri, resolve_version
from serving.service import Service

log = logging.getLogger(__name__)
router = APIRouter()


class Reloader:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = asyncio.Lock()  # one load at a time; a second trigger waits and re-checks
        self._task: asyncio.Task | None = None

    def _load(self, source: str) -> LoadedModel:
        cfg = self.service.settings.model
        return load_model(
            source,
            cfg.providers,
            cfg.intra_op_threads,
            cfg.inter_op_threads,
            tracking_uri=cfg.tracking_uri,
            spin_wait=cfg.spin_wait,
        )

    async def reload(self, source: str | None = None, *, only_if_changed: bool = False) -> dict[str, Any]:
        """Load ``source`` (default: the configured one) and swap it in; returns old and new versions."""
        source = source or self.service.settings.model.source
        wanted = None
        current = self.service.model
        if only_if_changed and current is not None and current.source == source:
            # asked outside the lock: a registry that is down can take minutes to fail (MLflow's client
            # retries), and POST /reload of a folder must not wait behind that
            wanted = await asyncio.to_thread(
                resolve_version, source, self.service.settings.model.tracking_uri
            )
        async with self._lock:
            current = self.service.model
            unchanged = current is not None and current.source == source and wanted in (None, current.version)
            if only_if_changed and unchanged:  # (also when it was loaded while we waited for the lock)
                return {"reloaded": False, "version": current.version}
            try:
                model = await asyncio.to_thread(self._load, source)
            except ModelLoadError:
                self.service.metrics.reloads.labels(result="failed").inc()
                raise
            old = self.service.set_model(model)
            self.service.metrics.reloads.labels(result="swapped").inc()
            log.info("serving %r (was %r)", model, old)
            return {
                "reloaded": True,
                "old": None if old is None else {"name": old.name, "version": old.version},
                "new": {"name": model.name, "version": model.version, "provider": model.provider},
            }

    def start_polling(self) -> None:
        interval = self.service.settings.reload.poll_interval_s
        if interval > 0 and parse_registry_uri(self.service.settings.model.source) is not None:
            self._task = asyncio.get_running_loop().create_task(self._poll(interval), name="registry-poll")

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload(only_if_changed=True)
            except ModelLoadError as err:
                log.error(
                    "registry poll: keeping version %s: %s", getattr(self.service.model, "version", None), err
                )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class ReloadRequest(BaseModel):
    source: str | None = None


@router.post(
    "/reload",
    summary="Load the configured model source again (or another) and swap it in",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": ReloadRequest.model_json_schema()}},
        }
    },
)
async def reload(request: Request) -> dict[str, Any]:
    body = await read_body(request, 64 * 1024)
    source = None
    if body.strip():
        payload = parse_json(body)
        if not isinstance(payload, dict) or set(payload) - {"source"}:
            raise ApiError(
                422, f"got {payload!r}", field="body", expected="{'source': folder or models:/ URI}"
            )
        source = payload.get("source")
        if source is not None and not (isinstance(source, str) and source.strip()):
            raise ApiError(
                422,
                f"got {type(source).__name__} {source!r:.100}",
                field="source",
                expected="a folder or models:/ URI",
            )
    try:
        return await request.app.state.reloader.reload(source)
    except ModelLoadError as err:
        raise ApiError(422, str(err), field="source") from None
