"""The in-memory / memory-mapped survey model shared by every stage.

A :class:`Survey` is an amplitude cube ``[n_il, n_xl, n_t]`` (float32), an optional integer facies label
cube of the same shape, the sample interval, the inline/crossline numbers and a provenance record. Saved
surveys are a folder of ``.npy`` arrays plus ``survey.json``; loading memory-maps the arrays so that data
loader workers share the page cache instead of copying the cube.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seismic.io.atomic import atomic_dir
from seismic.io.errors import SurveyFileError

SURVEY_JSON = "survey.json"
AMPLITUDES_NPY = "amplitudes.npy"
LABELS_NPY = "labels.npy"
FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 24  # bytes per update: bounded memory when hashing a memory-mapped cube


@dataclass
class Survey:
    amplitudes: np.ndarray
    dt_ms: float
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    inlines: np.ndarray | None = None
    crosslines: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.amplitudes.ndim != 3:
            raise ValueError(f"amplitudes must be [n_il, n_xl, n_t], got shape {self.amplitudes.shape}")
        if self.amplitudes.dtype != np.float32:
            raise ValueError(f"amplitudes must be float32, got {self.amplitudes.dtype}")
        if not self.dt_ms > 0:
            raise ValueError(f"dt_ms must be positive, got {self.dt_ms}")
        n_il, n_xl, _ = self.amplitudes.shape
        if self.labels is not None:
            if self.labels.shape != self.amplitudes.shape:
                raise ValueError(
                    f"labels shape {self.labels.shape} differs from amplitudes shape {self.amplitudes.shape}"
                )
            if not np.issubdtype(self.labels.dtype, np.integer):
                raise ValueError(f"labels must be integers, got {self.labels.dtype}")
        self.inlines = np.arange(1, n_il + 1) if self.inlines is None else np.asarray(self.inlines)
        self.crosslines = np.arange(1, n_xl + 1) if self.crosslines is None else np.asarray(self.crosslines)
        if self.inlines.shape != (n_il,) or self.crosslines.shape != (n_xl,):
            raise ValueError("inlines/crosslines must list one number per inline/crossline of the cube")
        self.class_names = tuple(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.amplitudes.shape)  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def content_hash(self) -> str:
        """SHA-256 over dt, shape, amplitudes and labels: the identity of the data a model was trained on."""
        h = hashlib.sha256()
        h.update(json.dumps({"dt_ms": float(self.dt_ms), "shape": list(self.shape)}).encode())
        for array in (self.amplitudes, self.labels):
            if array is None:
                continue
            flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            for start in range(0, flat.size, _HASH_CHUNK):
                h.update(flat[start : start + _HASH_CHUNK])
        return h.hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write the survey folder atomically (a failed write leaves no partial folder)."""
        directory = Path(directory)
        meta = {
            "format_version": FORMAT_VERSION,
            "dt_ms": float(self.dt_ms),
            "shape": list(self.shape),
            "class_names": list(self.class_names),
            "inlines": self.inlines.tolist(),
            "crosslines": self.crosslines.tolist(),
            "provenance": self.provenance,
            "content_hash": self.content_hash(),
            "has_labels": self.labels is not None,
        }
        with atomic_dir(directory) as tmp:
            np.save(tmp / AMPLITUDES_NPY, self.amplitudes)
            if self.labels is not None:
                np.save(tmp / LABELS_NPY, self.labels)
            (tmp / SURVEY_JSON).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> Survey:
        """Open a saved survey folder; with ``mmap`` the arrays stay on disk and are paged in on use."""
        directory = Path(directory)
        meta = read_survey_meta(directory)
        mode = "r" if mmap else None
        try:
            amplitudes = np.load(directory / AMPLITUDES_NPY, mmap_mode=mode)
            labels = np.load(directory / LABELS_NPY, mmap_mode=mode) if meta.get("has_labels") else None
        except (OSError, ValueError) as err:
            raise SurveyFileError(directory, f"cannot read the survey arrays ({err})") from err
        if list(amplitudes.shape) != meta["shape"]:
            raise SurveyFileError(
                directory,
                f"{AMPLITUDES_NPY} has shape {amplitudes.shape}, {SURVEY_JSON} says {meta['shape']}",
            )
        try:
            return cls(
                amplitudes=amplitudes,
                dt_ms=meta["dt_ms"],
                labels=labels,
                class_names=tuple(meta.get("class_names", ())),
                inlines=np.asarray(meta["inlines"]),
                crosslines=np.asarray(meta["crosslines"]),
                provenance=meta.get("provenance", {}),
            )
        except ValueError as err:
            raise SurveyFileError(directory, str(err)) from err


def read_survey_meta(directory: str | Path) -> dict[str, Any]:
    """The ``survey.json`` of a saved survey, checked for the fields every reader needs."""
    path = Path(directory) / SURVEY_JSON
    if not path.is_file():
        raise SurveyFileError(directory, f"not a saved survey: {SURVEY_JSON} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SurveyFileError(path, f"unreadable survey metadata ({err})") from err
    missing = [k for k in ("format_version", "dt_ms", "shape", "inlines", "crosslines") if k not in meta]
    if missing:
        raise SurveyFileError(path, f"missing fields {missing}")
    if meta["format_version"] > FORMAT_VERSION:
        raise SurveyFileError(
            path,
            f"format_version {meta['format_version']} is newer than this package reads ({FORMAT_VERSION})",
        )
    return meta
