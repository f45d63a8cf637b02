"""Prometheus metrics of one app, on its own registry (so several apps in one process never collide).

Names follow promtool's conventions: base units (seconds), ``_total`` on counters, ``_info`` gauge at 1 for
the model identity. ``endpoint`` is the route template (``/v2/models/{name}/infer``), never the raw path, so a
scanner cannot blow up the label cardinality.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# request latency: from sub-millisecond probes to multi-second large batches
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "seismic_http_requests_total",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "seismic_http_request_duration_seconds",
            "Request latency from first byte read to response start",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "seismic_batch_queue_duration_seconds",
            "Time a request waited in the batching queue before its batch ran",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_time = Histogram(
            "seismic_batch_compute_duration_seconds",
            "onnxruntime time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "seismic_batch_size_windows",
            "Windows per batch run by onnxruntime",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "seismic_batch_queue_windows", "Windows waiting in the batching queue", registry=r
        )
        self.rejected = Counter(
            "seismic_batch_rejected_total", "Requests refused with 503 because the queue was full", registry=r
        )
        self.predictions = Counter(
            "seismic_predictions_total", "Windows predicted, by predicted class", ["class_name"], registry=r
        )
        self.inference_errors = Counter(
            "seismic_inference_errors_total", "Batches whose onnxruntime run raised", registry=r
        )
        self.model_info = Gauge(
            "seismic_model_info",
            "The model being served (value 1)",
            ["name", "version", "provider"],
            registry=r,
        )
        self.reloads = Counter("seismic_model_reloads_total", "Model reload attempts", ["result"], registry=r)

    def set_model(self, name: str, version: str, provider: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version, provider=provider).set(1)

    def count_predictions(self, classes: np.ndarray, class_names: list[str]) -> None:
        counts = np.bincount(np.ravel(classes), minlength=len(class_names))  # dense models: every sample
        for index in np.flatnonzero(counts):
            self.predictions.labels(class_name=class_names[index]).inc(int(counts[index]))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
