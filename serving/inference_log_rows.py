"""Rows of the inference log: what one ``log()`` call queues, and how queued calls become Parquet tables.

The writer thread of :mod:`serving.inference_log` calls :func:`partition_tables` at each flush: one table per
hour partition and output shape, the handcrafted features of the rows that carry them computed in one call.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from seismic.features import FEATURE_NAMES, window_features
from serving.inference_log_schema import log_schema

logger = logging.getLogger("serving.inference_log")


@dataclass
class LogItem:
    """One log() call's sampled rows, as the caller handed them (copied)."""

    micros: int
    request_id: str
    model_version: str
    index: np.ndarray
    has_features: np.ndarray  # per row
    windows: np.ndarray  # the rows with features only
    classes: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray
    latency_s: float
    # segmentation models' tiles: [N, C] share of samples per class and [N] mean winning probability
    class_shares: np.ndarray | None = None
    mean_max_probability: np.ndarray | None = None


def partition_tables(items: Sequence[LogItem], dt_ms: float) -> tuple[list[tuple[str, str, pa.Table]], int]:
    """``(date, hour, table)`` per partition and output shape, and the rows lost to malformed requests."""
    groups: dict[tuple[Any, ...], list[LogItem]] = defaultdict(list)
    for item in items:
        stamp = dt.datetime.fromtimestamp(item.micros / 1e6, dt.UTC)
        shapes = (item.windows.shape[1:], item.probabilities.shape[1:], item.embeddings.shape[1:])
        groups[(stamp.strftime("%Y-%m-%d"), stamp.strftime("%H"), shapes)].append(item)
    out, lost = [], 0
    for (date, hour, _), group in groups.items():
        try:
            out.append((date, hour, tabulate(group, dt_ms)))
            continue
        except (ValueError, TypeError, IndexError, pa.ArrowException):
            pass  # some request's outputs are malformed (log() checks lengths only): find it below
        for item in group:
            try:
                out.append((date, hour, tabulate([item], dt_ms)))
            except (ValueError, TypeError, IndexError, pa.ArrowException):
                # lose this request only, keep the writer thread alive
                n = len(item.index)
                logger.exception(
                    "inference log: cannot tabulate request %s; %d row(s) lost", item.request_id, n
                )
                lost += n
    return out, lost


def tabulate(group: Sequence[LogItem], dt_ms: float) -> pa.Table:
    """One table of the rows of ``group`` (requests of one partition and output shape)."""
    counts = [len(i.index) for i in group]

    def per_row(values: list[Any], dtype: Any) -> np.ndarray:  # one value per request -> per row
        return np.repeat(np.asarray(values, dtype=dtype), counts)

    probs = np.concatenate([i.probabilities for i in group])
    emb = np.concatenate([i.embeddings for i in group])
    has = np.concatenate([i.has_features for i in group])
    features = np.full((len(has), len(FEATURE_NAMES)), np.nan)
    if has.any():
        features[has] = window_features(np.concatenate([i.windows for i in group]), dt_ms)
    columns: dict[str, Any] = {
        "timestamp": per_row([i.micros for i in group], "datetime64[us]"),
        "request_id": per_row([i.request_id for i in group], object),
        "model_version": per_row([i.model_version for i in group], object),
        "window_index": np.concatenate([i.index for i in group]),
        "has_features": has,
    }
    # null, not NaN, where no features were computed: NaN is a feature value a broken window can have
    columns.update({name: pa.array(features[:, j], mask=~has) for j, name in enumerate(FEATURE_NAMES)})
    columns["predicted_class"] = np.concatenate([i.classes for i in group]).astype(np.int32)
    columns["max_probability"] = probs.max(axis=1)
    columns["probabilities"] = pa.FixedSizeListArray.from_arrays(probs.ravel(), probs.shape[1])
    # a window classifier labels one sample: its shares are the one-hot of its class, its mean max the max
    n_classes = probs.shape[1]
    shares, mean_max = [], []
    for item in group:
        given = item.class_shares is not None and item.mean_max_probability is not None
        one_hot = np.eye(n_classes, dtype=np.float32)[np.asarray(item.classes, dtype=np.int64)]
        shares.append(item.class_shares if given else one_hot)
        mean_max.append(item.mean_max_probability if given else item.probabilities.max(axis=1))
    columns["class_shares"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate(shares).ravel(), pa.float32()), n_classes
    )
    columns["mean_max_probability"] = np.concatenate(mean_max).astype(np.float32)
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(emb.ravel(), emb.shape[1])
    columns["latency_s"] = per_row([i.latency_s for i in group], np.float64)
    schema = log_schema(probs.shape[1], emb.shape[1])
    return pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)
