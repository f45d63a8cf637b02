"""Late labels: ground truth that arrives after the predictions, kept in an append-only table beside the log.

Two kinds of key, each in its own folder of ``labels_dir`` (default ``data/labels``, beside
``data/inference_log``):

``online/``  ``request_id`` (string), ``window_index`` (int32): a window served by the API (the id its
             response carried, the window's position in the request), joined to the inference log
``survey/``  ``volume`` (string: which scored cube), ``inline``, ``crossline`` (header numbers), ``sample``
             (index): a sample of a batch-scored cube, joined to its class volume (:func:`evaluate_volume`)

Every row also has ``label`` (int32, the model's class order), ``source`` (the file it came from) and
``ingested_at``. Sources: CSV or Parquet with those key columns and ``label`` (a class id) or ``class_name``;
or a label volume, ``.npy`` ``[n_il, n_xl, n_t]`` of class ids (-1 = unlabelled; inline/crossline numbers
from ``grid``, the scored SEG-Y) or a SEG-Y cube of class ids (numbers from its own headers).

**Validation, not silent loss.** Rows with an unknown class, an id that is not in the inference log (never
served, or sampled out of the log), coordinates outside ``grid``, or two different labels for one key in one
source are not stored: they go to ``rejected/`` with a ``reason`` column, and :func:`ingest_labels` returns
their counts and examples. A key already stored with the same label is skipped (``duplicates``); with another
label the new row is stored and wins on reading (``relabelled``: the table is append-only, corrections are
new rows). Files are written under temporary names and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seismic.io.atomic import atomic_file
from seismic.io.segy import open_segy, read_cube
from serving.inference_log_schema import read_inference_log

__all__ = [
    "KEYS",
    "IngestResult",
    "LabelError",
    "evaluate_volume",
    "ingest_labels",
    "join_online",
    "read_labels",
]

KEYS = {"online": ("request_id", "window_index"), "survey": ("volume", "inline", "crossline", "sample")}
_KEY_TYPES = {
    "request_id": pa.string(),
    "window_index": pa.int32(),
    "volume": pa.string(),
    "inline": pa.int32(),
    "crossline": pa.int32(),
    "sample": pa.int32(),
}
_EXAMPLES = 5


class LabelError(ValueError):
    """A label source or table that cannot be used; the message names the file and the field."""


def schema(kind: str) -> pa.Schema:
    return pa.schema(
        [
            *[(k, _KEY_TYPES[k]) for k in KEYS[kind]],
            ("label", pa.int32()),
            ("source", pa.string()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    )


@dataclass
class IngestResult:
    kind: str
    source: str
    rows: int
    stored: int = 0
    duplicates: int = 0
    relabelled: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- reading sources
def _table_source(path: Path) -> pa.Table:
    try:
        if path.suffix.lower() == ".csv":
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise LabelError(f"{path}: cannot read the label file: {err}") from None


def _volume_source(path: Path, grid: str | Path | None, volume: str) -> pa.Table:
    """A label cube -> one row per labelled sample (class id >= 0), keyed by survey coordinates."""
    if path.suffix.lower() == ".npy":
        try:
            cube = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise LabelError(f"{path}: cannot read the label volume: {err}") from None
        if grid is None:
            raise LabelError(
                f"{path}: a .npy label volume has no inline/crossline numbers; pass grid=<the scored SEG-Y>"
            )
        with open_segy(grid, mmap=False) as segy:
            inlines, crosslines, shape = segy.inlines, segy.crosslines, segy.shape
        if cube.shape != tuple(shape or ()):
            raise LabelError(f"{path}: label volume shape {cube.shape} differs from the grid {grid} {shape}")
    else:
        cube, _, inlines, crosslines = read_cube(path)
    if cube.ndim != 3:
        raise LabelError(
            f"{path}: a label volume must be [inline, crossline, sample], got shape {cube.shape}"
        )
    if not np.array_equal(cube, np.round(cube)) or not np.isfinite(cube).all():
        raise LabelError(f"{path}: a label volume must hold integer class ids (-1 = unlabelled)")
    il, xl, t = np.nonzero(cube >= 0)
    return pa.table(
        {
            "volume": pa.array([volume] * len(il), pa.string()),
            "inline": inlines[il].astype(np.int32),
            "crossline": crosslines[xl].astype(np.int32),
            "sample": t.astype(np.int32),
            "label": cube[il, xl, t].astype(np.int32),
        }
    )


def _normalise(
    table: pa.Table, path: Path, class_names: Sequence[str], volume: str | None
) -> tuple[str, pa.Table]:
    """(kind, the kind's key columns + ``label``, ``given`` and ``reason``: null, or why it is unknown)."""
    names = set(table.column_names)
    if volume is not None and "volume" not in names and {"inline", "crossline", "sample"} <= names:
        table = table.append_column("volume", pa.array([volume] * table.num_rows, pa.string()))
        names.add("volume")
    kind = next((k for k, cols in KEYS.items() if set(cols) <= names), None)
    if kind is None:
        raise LabelError(
            f"{path}: label rows need the columns request_id + window_index (online traffic) or inline + "
            f"crossline + sample (batch scoring, with volume=NAME or a volume column); it has {sorted(names)}"
        )
    if "label" not in names and "class_name" not in names:
        raise LabelError(
            f"{path}: no label column: give 'label' (class id) or 'class_name' ({list(class_names)})"
        )
    columns = {}
    for key in KEYS[kind]:
        try:
            columns[key] = table[key].cast(_KEY_TYPES[key])
        except pa.ArrowException as err:
            raise LabelError(f"{path}: column {key!r} cannot be read as {_KEY_TYPES[key]}: {err}") from None
        if columns[key].null_count:
            raise LabelError(f"{path}: column {key!r} has {columns[key].null_count} empty values")
    if "label" in names:
        raw = table["label"].to_numpy(zero_copy_only=False)
        ids = np.asarray(_as_float(raw, path), dtype=np.float64)
        unknown = ~np.isfinite(ids) | (ids < 0) | (ids >= len(class_names)) | (ids != np.round(ids))
        label = np.where(unknown, -1, np.nan_to_num(ids)).astype(np.int32)
        shown = [str(v) for v in raw]
    else:
        lookup = {name: i for i, name in enumerate(class_names)}
        shown = [str(v) for v in table["class_name"].to_pylist()]
        label = np.asarray([lookup.get(v, -1) for v in shown], dtype=np.int32)
        unknown = label < 0
    why = f"unknown class (the model has {len(class_names)}: {list(class_names)})"
    reason = [why if u else None for u in unknown]
    columns["label"] = pa.array(label, pa.int32())
    columns["given"] = pa.array(shown, pa.string())  # the label as written, for the rejected rows' report
    columns["reason"] = pa.array(reason, pa.string())
    return kind, pa.table(columns)


def _as_float(values: np.ndarray, path: Path) -> np.ndarray:
    """Class ids as floats; text that is no number becomes NaN (an unknown class, reported)."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            continue
    return out


# ---------------------------------------------------------------- validation against what was scored
def _reject_where(table: pa.Table, bad: np.ndarray, why: str) -> pa.Table:
    reason = np.asarray(table["reason"].to_pylist(), dtype=object)
    reason[bad & (reason == None)] = why  # noqa: E711  (element-wise comparison with None)
    return table.set_column(table.column_names.index("reason"), "reason", pa.array(list(reason), pa.string()))


def _matched(table: pa.Table, other: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """For each row of ``table``: is its key in ``other`` (a table with those key columns)?"""
    distinct = other.select(list(keys)).group_by(list(keys)).aggregate([])
    distinct = distinct.append_column("_hit", pa.array(np.ones(distinct.num_rows, bool)))
    rows = table.select(list(keys)).append_column("_row", pa.array(np.arange(table.num_rows)))
    joined = rows.join(distinct, list(keys), join_type="left outer").sort_by("_row")
    return np.asarray(joined["_hit"].fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _check_online(table: pa.Table, log_dir: str | Path | None) -> pa.Table:
    if log_dir is None:
        return table
    if not Path(log_dir).is_dir():
        raise LabelError(f"log_dir {log_dir}: no inference log there to check the request ids against")
    served = read_inference_log(log_dir, columns=["request_id", "window_index"])
    bad = ~_matched(table, served, KEYS["online"])
    return _reject_where(table, bad, f"request id / window index not in the inference log {log_dir}")


def _check_grid(table: pa.Table, grid: str | Path | None) -> pa.Table:
    if grid is None:
        return table
    with open_segy(grid, mmap=False) as segy:
        inlines, crosslines, n_samples = segy.inlines, segy.crosslines, segy.n_samples
    if inlines is None:
        raise LabelError(f"grid {grid}: not an inline/crossline cube ({segy.geometry_error})")
    il, xl, t = (table[k].to_numpy() for k in ("inline", "crossline", "sample"))
    bad = ~np.isin(il, inlines) | ~np.isin(xl, crosslines) | (t < 0) | (t >= n_samples)
    return _reject_where(table, bad, f"coordinates outside the grid of {grid}")


def _within_source(table: pa.Table, keys: Sequence[str]) -> tuple[pa.Table, int]:
    """Rows of one source with one key: the same label twice is one row (a duplicate); different labels are
    all rejected (which one is true cannot be told)."""
    grouped = table.group_by(list(keys)).aggregate([("label", "min"), ("label", "max"), ("label", "count")])
    conflict = grouped.filter(pc.not_equal(grouped["label_min"], grouped["label_max"]))
    table = _reject_where(
        table, _matched(table, conflict, keys), "different labels for one key in this source"
    )
    good = table.filter(pc.is_null(table["reason"]))
    first = (
        good.append_column("_row", pa.array(np.arange(good.num_rows)))
        .group_by(list(keys))
        .aggregate([("_row", "min")])
    )
    keep = np.zeros(good.num_rows, bool)
    keep[first["_row_min"].to_numpy()] = True
    bad = table.filter(pc.is_valid(table["reason"]))
    return pa.concat_tables([good.filter(pa.array(keep)), bad]), int(good.num_rows - keep.sum())


def read_labels(labels_dir: str | Path, kind: str) -> pa.Table:
    """The stored labels of ``kind``, one row per key: the latest ingested wins (corrections are new rows)."""
    if kind not in KEYS:
        raise LabelError(f"label kind must be one of {sorted(KEYS)}, got {kind!r}")
    folder = Path(labels_dir) / kind
    files = (
        sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []
    )
    if not files:
        return schema(kind).empty_table()
    try:
        table = pa.concat_tables([pq.read_table(p, schema=schema(kind)) for p in files])
    except (OSError, pa.ArrowException) as err:
        raise LabelError(f"{folder}: cannot read the label table: {err}") from None
    order = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    latest = order.sort_by([("ingested_at", "ascending"), ("_row", "ascending")])
    last = latest.group_by(list(KEYS[kind])).aggregate([("_row", "max")])
    keep = np.zeros(table.num_rows, bool)
    keep[last["_row_max"].to_numpy()] = True
    return table.filter(pa.array(keep))


def _write(table: pa.Table, path: Path) -> str:
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return str(path)


def ingest_labels(
    source: str | Path,
    labels_dir: str | Path,
    *,
    class_names: Sequence[str],
    log_dir: str | Path | None = None,
    volume: str | None = None,
    grid: str | Path | None = None,
    now: dt.datetime | None = None,
) -> IngestResult:
    """Validate the labels in ``source`` and append the good ones to ``labels_dir`` (module docstring).

    ``log_dir``: check online ids against this inference log (``None``: no check); ``volume``: the name of
    the scored cube survey labels belong to (a label volume or a table without a ``volume`` column);
    ``grid``: the scored SEG-Y, to check survey coordinates and to number the axes of a ``.npy`` volume.
    """
    path = Path(source)
    if not path.is_file():
        raise LabelError(f"{path}: no such label file")
    if not class_names:
        raise LabelError("class_names: the model's classes are needed to check the labels")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".sgy", ".segy"):
        if not volume:
            raise LabelError(f"{path}: a label volume needs volume=NAME, the scored cube it labels")
        table = _volume_source(path, grid, volume)
    elif suffix in (".csv", ".parquet", ".pq"):
        table = _table_source(path)
    else:
        raise LabelError(f"{path}: label files are .csv, .parquet, .npy or .sgy/.segy, got {suffix!r}")
    kind, table = _normalise(table, path, class_names, volume)
    table = _check_online(table, log_dir) if kind == "online" else _check_grid(table, grid)
    table, duplicates = _within_source(table, KEYS[kind])
    stored = read_labels(labels_dir, kind)
    result = IngestResult(
        kind=kind, source=str(path), rows=table.num_rows + duplicates, duplicates=duplicates
    )
    good = table.filter(pc.is_null(table["reason"]))
    if stored.num_rows and good.num_rows:
        same = _matched(good, stored, [*KEYS[kind], "label"])
        known = _matched(good, stored, KEYS[kind])
        result.duplicates += int(same.sum())
        result.relabelled = int((known & ~same).sum())
        good = good.filter(pa.array(~same))
    stamp = now or dt.datetime.now(dt.UTC)
    name = f"{stamp:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"
    extra = {
        "source": pa.array([str(path)] * good.num_rows, pa.string()),
        "ingested_at": pa.array([stamp] * good.num_rows, pa.timestamp("us", tz="UTC")),
    }
    if good.num_rows:
        rows = good.drop_columns(["reason", "given"])
        for column, values in extra.items():
            rows = rows.append_column(column, values)
        result.files.append(
            _write(rows.select(schema(kind).names).cast(schema(kind)), Path(labels_dir) / kind / name)
        )
    result.stored = good.num_rows
    bad = table.filter(pc.is_valid(table["reason"]))
    if bad.num_rows:
        reasons = bad["reason"].to_pylist()
        for why in sorted(set(reasons)):
            rows = bad.filter(pc.equal(bad["reason"], why))
            result.rejected[why] = rows.num_rows
            result.examples[why] = rows.drop_columns(["reason", "label"]).slice(0, _EXAMPLES).to_pylist()
        result.files.append(_write(bad, Path(labels_dir) / "rejected" / f"{kind}-{name}"))
    return result


def join_online(labels: pa.Table, request_id: np.ndarray, window_index: np.ndarray) -> np.ndarray:
    """The label of each served row (``-1`` where none came back), in the rows' order."""
    rows = pa.table(
        {
            "request_id": pa.array(request_id, pa.string()),
            "window_index": pa.array(window_index, pa.int32()),
            "_row": pa.array(np.arange(len(request_id))),
        }
    )
    joined = rows.join(
        labels.select([*KEYS["online"], "label"]), list(KEYS["online"]), join_type="left outer"
    )
    joined = joined.sort_by("_row")
    return np.asarray(joined["label"].fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def evaluate_volume(
    labels_dir: str | Path, volume: str, class_volume: str | Path, class_names: Sequence[str]
) -> dict[str, Any]:
    """Realised metrics of a batch-scored class volume (``scripts/predict.py``'s SEG-Y) at the survey labels
    of ``volume``; labels on coordinates the volume lacks or left unscored (edges) are counted, not used."""
    from seismic.monitoring.quality.performance import confusion, metrics

    labels = read_labels(labels_dir, "survey")
    labels = labels.filter(pc.equal(labels["volume"], volume))
    if not labels.num_rows:
        raise LabelError(f"{labels_dir}: no survey labels for volume {volume!r}")
    classes, _, inlines, crosslines = read_cube(class_volume)
    il_pos = {int(v): i for i, v in enumerate(inlines)}
    xl_pos = {int(v): i for i, v in enumerate(crosslines)}
    il = np.array([il_pos.get(int(v), -1) for v in labels["inline"].to_numpy()])
    xl = np.array([xl_pos.get(int(v), -1) for v in labels["crossline"].to_numpy()])
    t = labels["sample"].to_numpy().astype(np.int64)
    inside = (il >= 0) & (xl >= 0) & (t >= 0) & (t < classes.shape[2])
    predicted = np.full(len(t), -1, dtype=np.int64)
    predicted[inside] = classes[il[inside], xl[inside], t[inside]].astype(np.int64)
    scored = predicted >= 0
    truth = labels["label"].to_numpy().astype(np.int64)
    out = metrics(confusion(truth[scored], predicted[scored], len(class_names)), list(class_names))
    return out | {
        "volume": volume,
        "class_volume": str(class_volume),
        "labels": len(t),
        "outside_volume": int((~inside).sum()),
        "unscored": int((inside & ~scored).sum()),
    }
