"""The inference log's schema, and its reader for the monitoring job (pyarrow only).

Schema (:data:`LOG_SCHEMA_VERSION` 3; also in each file's Parquet metadata as
``seismic.inference_log``):

=====================  ===============================  ===================================================
column                 type                             meaning
=====================  ===============================  ===================================================
``timestamp``          timestamp[us, UTC]               when :meth:`InferenceLogWriter.log` was called
``request_id``         string                           the caller's request id (shared by a request's rows)
``model_version``      string                           the model version that answered
``window_index``       int32                            position of the window in its request
``has_features``       bool                             whether the feature columns were computed (a
                                                        rate-capped sample); null in version 1 files,
                                                        where every row has them
one per feature        float64, null without features   :data:`seismic.features.FEATURE_NAMES`, of the raw
                                                        window (what the client sent, before the model's
                                                        normalisation: what the reference profile holds)
``predicted_class``    int32                            class id (argmax of the probabilities)
``max_probability``    float32                          the winning class's probability
``probabilities``      fixed_size_list<float32>[C]      the softmax vector, in the model's class order
``class_shares``       fixed_size_list<float32>[C]      the share of the labelled samples given each class:
                                                        a segmentation model's tile (``predicted_class`` is
                                                        its majority, ``probabilities`` its samples' mean);
                                                        a window classifier labels one sample, the one-hot
                                                        of ``predicted_class``; null in files before version 3
``mean_max_probability`` float32                        the samples' winning probability, averaged (a window
                                                        classifier: ``max_probability``); null before v3
``embedding``          fixed_size_list<float32>[D]      the model's embedding
``latency_s``          float64                          the request's model latency, seconds
=====================  ===============================  ===================================================

``C`` and ``D`` are fixed within a file; a model swap may change them between files, so the reader returns
both as variable ``list<float32>``. The partition columns ``date`` (string) and ``hour`` (int32) live in the
folder names; the reader adds them.

Layout: hive partitions ``date=YYYY-MM-DD/hour=HH`` (UTC) under the log folder; files whose names start with
``.`` are being written and are skipped by every ``pyarrow.dataset`` reader.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from seismic.features import FEATURE_NAMES

__all__ = ["LOG_SCHEMA_VERSION", "PARTITIONING", "log_schema", "read_inference_log"]

LOG_SCHEMA_VERSION = 3  # 2 added has_features (features of a sample of rows only); 3 the dense tile columns
_METADATA_KEY = b"seismic.inference_log"
PARTITIONING = pa.schema([("date", pa.string()), ("hour", pa.int32())])


def log_schema(n_classes: int | None = None, embedding_dim: int | None = None) -> pa.Schema:
    """The row schema: with sizes, the fixed-size lists of a file; without, the reader's variable lists."""

    def vector(size: int | None) -> pa.DataType:
        return pa.list_(pa.float32()) if size is None else pa.list_(pa.float32(), size)

    return pa.schema(
        [
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("request_id", pa.string()),
            ("model_version", pa.string()),
            ("window_index", pa.int32()),
            ("has_features", pa.bool_()),
            *[(name, pa.float64()) for name in FEATURE_NAMES],
            ("predicted_class", pa.int32()),
            ("max_probability", pa.float32()),
            ("probabilities", vector(n_classes)),
            ("class_shares", vector(n_classes)),
            ("mean_max_probability", pa.float32()),
            ("embedding", vector(embedding_dim)),
            ("latency_s", pa.float64()),
        ],
        metadata={_METADATA_KEY: str(LOG_SCHEMA_VERSION).encode()},
    )


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _hour_filter(start: dt.datetime | None, end: dt.datetime | None) -> ds.Expression | None:
    """A filter on the partition columns only, so that pyarrow skips whole folders outside the range."""
    date, hour = ds.field("date"), ds.field("hour")
    parts = []
    if start is not None:
        d, h = start.strftime("%Y-%m-%d"), start.hour
        parts.append((date > d) | ((date == d) & (hour >= h)))
    if end is not None:
        d, h = end.strftime("%Y-%m-%d"), end.hour
        parts.append((date < d) | ((date == d) & (hour <= h)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def read_inference_log(
    directory: str | Path,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    columns: Iterable[str] | None = None,
) -> pa.Table:
    """Rows with ``start <= timestamp < end`` (naive datetimes are UTC), only the ``columns`` asked for.

    Only the hour folders that overlap the range are opened (partition pruning), and only the columns asked
    for are read. The result has the schema of :func:`log_schema` (variable-length vectors) plus ``date``
    and ``hour``; a missing or empty directory gives an empty table.
    """
    schema = log_schema()
    for field in PARTITIONING:
        schema = schema.append(field)
    cols = list(columns) if columns is not None else None
    unknown = sorted(set(cols or ()) - set(schema.names))
    if unknown:
        raise ValueError(f"inference log: unknown column(s) {unknown}; the schema has {schema.names}")
    directory = Path(directory)
    if not directory.is_dir():
        return schema.empty_table().select(cols) if cols is not None else schema.empty_table()
    start_utc = None if start is None else _as_utc(start)
    end_utc = None if end is None else _as_utc(end)
    flt = _hour_filter(start_utc, end_utc)
    stamp = ds.field("timestamp")
    if start_utc is not None:
        flt = flt & (stamp >= pa.scalar(start_utc, pa.timestamp("us", tz="UTC")))
    if end_utc is not None:
        flt = flt & (stamp < pa.scalar(end_utc, pa.timestamp("us", tz="UTC")))
    partitioning = ds.partitioning(PARTITIONING, flavor="hive")
    dataset = ds.dataset(directory, format="parquet", partitioning=partitioning, schema=schema)
    return dataset.to_table(columns=cols, filter=flt)
