"""What every protocol shares: the current model, the batcher, metrics and the inference log.

``Service.model`` is swapped by :mod:`serving.reload` with one attribute assignment (atomic under the GIL). A
request reads it once in :meth:`Service.infer` and uses that model for checking, normalising and running,
so a request in flight during a swap finishes on the model it started with.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np

from seismic.inference.tiling import summarise_tiles
from serving.batcher import Batcher, InferenceFailed, QueueFull
from serving.inference_log import InferenceLogWriter
from serving.metrics import Metrics
from serving.protocols import ApiError
from serving.runtime import InputError, LoadedModel
from serving.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Result:
    model: LoadedModel
    outputs: dict[str, np.ndarray]  # logits, probabilities, embedding, class
    request_id: str


class Service:
    def __init__(self, settings: Settings, model: LoadedModel | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        b = settings.batching
        self.batcher = Batcher(
            self.metrics,
            max_batch_size=b.max_batch_size,
            max_queue_delay_us=b.max_queue_delay_us,
            max_queue_windows=b.max_queue_windows,
            retry_after_s=b.retry_after_s,
        )
        self.model: LoadedModel | None = None
        self.draining = False  # set once by SIGTERM (serving.server): readiness 503, new requests refused
        self.writer: InferenceLogWriter | None = None
        if model is not None:
            self.set_model(model)

    def set_model(self, model: LoadedModel) -> LoadedModel | None:
        """Swap in ``model``; returns the old one (still used by the requests that hold it)."""
        old, self.model = self.model, model
        self.metrics.set_model(model.name, model.version, model.provider)
        if self.writer is None and self.settings.inference_log.enabled:
            cfg = self.settings.inference_log
            self.writer = InferenceLogWriter(
                cfg.directory,
                dt_ms=model.dt_ms,
                flush_rows=cfg.flush_rows,
                flush_seconds=cfg.flush_seconds,
                max_buffer_rows=cfg.max_buffer_rows,
                sample_fraction=cfg.sample_fraction,
                feature_fraction=cfg.feature_fraction,
                feature_rate=cfg.feature_rate,
            )
        elif self.writer is not None and model.dt_ms != self.writer.dt_ms:
            # the features are computed with the writer's dt; a model on another sample interval would log
            # frequency features on the wrong axis, so say so loudly rather than silently mislabel them
            log.warning(
                "model %s v%s has dt %.3g ms, the inference log computes features with %.3g ms",
                model.name,
                model.version,
                model.dt_ms,
                self.writer.dt_ms,
            )
        return old

    def current(self) -> LoadedModel:
        model = self.model
        if model is None:
            raise ApiError(503, "no model loaded yet", headers={"Retry-After": "1"})
        return model

    def ready(self) -> LoadedModel:
        """The model, for the readiness probes: 503 while draining, so load balancers stop sending."""
        if self.draining:
            raise ApiError(
                503, "shutting down", headers={"Retry-After": str(self.settings.batching.retry_after_s)}
            )
        return self.current()

    def drain(self) -> None:
        self.draining = True
        log.warning("draining for %.3g s before shutting down", self.settings.shutdown.drain_s)

    async def infer(
        self,
        windows: np.ndarray,
        *,
        normalised: bool = False,
        request_id: str | None = None,
        model: LoadedModel | None = None,
    ) -> Result:
        """Check ``windows`` against the model, normalise them (unless ``normalised``), run them batched."""
        model = model or self.current()
        request_id = request_id or uuid.uuid4().hex
        try:
            checked = model.check(windows)
        except InputError as err:
            raise ApiError(422, str(err), field=err.field, expected=err.expected) from None
        limit = self.settings.limits.max_windows_per_request
        if len(checked) > limit:
            raise ApiError(
                413, f"{len(checked)} windows in one request", field="windows", expected=f"at most {limit}"
            )
        started = time.perf_counter()
        try:
            outputs = await self.batcher.submit(model, checked if normalised else model.normalise(checked))
        except QueueFull as err:
            raise ApiError(503, str(err), headers={"Retry-After": str(err.retry_after_s)}) from None
        except InferenceFailed as err:
            raise ApiError(500, str(err)) from None
        latency = time.perf_counter() - started
        if self.writer is not None:
            raw = model.denormalise(checked) if normalised else checked
            # a segmentation model logs one row per tile: its majority class and mean probabilities
            rows = summarise_tiles(outputs["probabilities"]) if model.dense else outputs
            self.writer.log(
                request_id,
                model.version,
                raw,
                rows["class"],
                rows["probabilities"],
                outputs["embedding"],
                latency,
                class_shares=rows.get("class_shares"),
                mean_max_probability=rows.get("mean_max_probability"),
            )
        return Result(model, outputs, request_id)

    async def close(self) -> None:
        await self.batcher.stop()
        if self.writer is not None:
            self.writer.close()
