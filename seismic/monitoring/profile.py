"""The reference profile of a model: what its held-out input and output looked like, for drift monitoring.

Written at the end of training from the test split (windows the model never trained on), saved beside the
ONNX model and logged with it to MLflow, so every registered version carries the baseline it is monitored
against. Two files in the model folder:

``profile.npz`` (numpy, ``np.load(path, allow_pickle=False)``), one row per held-out window unless noted:

==================  ===========  =============================================================================
array               dtype/shape  meaning
==================  ===========  =============================================================================
``features``        f8 [N, F]    :func:`seismic.features.window_features` of the *raw* window (the amplitudes
                                 a client sends, before the model's normalisation), columns in
                                 ``feature_names``
``labels``          i8 [N]       true facies at the window centre
``predicted``       i8 [N]       the model's class (argmax of ``probabilities``)
``probabilities``   f4 [N, C]    the model's softmax output, columns in ``class_names``
``embedding``       f4 [M, D]    the model's embedding of a seeded random sample of ``M <= N`` windows
``embedding_rows``  i8 [M]       which rows of the arrays above those ``M`` windows are
``survey``          i8 [N]       which training survey the window comes from (position in ``data.survey.seed``
                                 or 0); with ``inline``, the groups that drift calibration compares
``inline``          i8 [N]       inline position of the window centre in its survey
==================  ===========  =============================================================================

``profile.json``: ``schema_version``, ``feature_names``, ``class_names``, ``n_windows``, ``n_embeddings``,
``dt_ms``, ``window``, ``features_on`` (``"raw"``), ``class_distribution`` and ``predicted_distribution``
(fraction per class name), ``mean_max_probability``, ``accuracy`` (of ``predicted`` against ``labels``),
``feature_summary`` (per feature: mean, std, quantiles 1/5/25/50/75/95/99 %, for people and quick checks),
``source`` (data hash, split, model identity: whatever the writer passes) and ``created_at``.

Rows are in the order of the test split's seeded uniform sample, not in survey order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seismic.features import FEATURE_NAMES, window_features
from seismic.io.atomic import atomic_file

PROFILE_ARRAYS = "profile.npz"
PROFILE_INFO = "profile.json"
PROFILE_SCHEMA = 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_ARRAY_NAMES = (
    "features",
    "labels",
    "predicted",
    "probabilities",
    "embedding",
    "embedding_rows",
    "survey",
    "inline",
)


@dataclass
class ReferenceProfile:
    features: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    embedding: np.ndarray
    embedding_rows: np.ndarray
    survey: np.ndarray
    inline: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return list(self.info["feature_names"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``profile.npz`` and ``profile.json`` into ``folder`` (each replaced atomically)."""
        folder = Path(folder)
        arrays, info = folder / PROFILE_ARRAYS, folder / PROFILE_INFO
        with atomic_file(info) as info_tmp, atomic_file(arrays) as arrays_tmp:
            with arrays_tmp.open("wb") as fh:  # a file object: np.savez would append .npz to a path
                np.savez_compressed(fh, **{name: getattr(self, name) for name in _ARRAY_NAMES})
            info_tmp.write_text(json.dumps(self.info, indent=2) + "\n")
        return arrays, info

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceProfile:
        folder = Path(folder)
        try:
            info = json.loads((folder / PROFILE_INFO).read_text())
            with np.load(folder / PROFILE_ARRAYS, allow_pickle=False) as data:
                arrays = {name: data[name] for name in _ARRAY_NAMES}
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{folder}: no reference profile ({err.filename} is missing)") from None
        if info.get("schema_version") != PROFILE_SCHEMA:
            raise ValueError(
                f"{folder}: profile schema {info.get('schema_version')!r}, this code reads {PROFILE_SCHEMA}"
            )
        return cls(**arrays, info=info)


def _distribution(classes: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    counts = np.bincount(classes, minlength=len(class_names))[: len(class_names)]
    return {name: float(c) / max(1, len(classes)) for name, c in zip(class_names, counts, strict=True)}


def _summary(features: np.ndarray) -> dict[str, dict[str, float]]:
    finite = np.where(np.isfinite(features), features, np.nan)
    quantiles = np.nanquantile(finite, QUANTILES, axis=0)
    mean, std = np.nanmean(finite, axis=0), np.nanstd(finite, axis=0)
    return {
        name: {
            "mean": float(mean[j]),
            "std": float(std[j]),
            **{f"q{round(q * 100):02d}": float(quantiles[i, j]) for i, q in enumerate(QUANTILES)},
        }
        for j, name in enumerate(FEATURE_NAMES)
    }


def build_profile(
    raw_windows: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    embedding: np.ndarray,
    *,
    survey: np.ndarray | None = None,
    inline: np.ndarray | None = None,
    dt_ms: float,
    class_names: Sequence[str],
    window: Mapping[str, Any] | None = None,
    max_embeddings: int = 2000,
    seed: int = 0,
    source: Mapping[str, Any] | None = None,
) -> ReferenceProfile:
    """A profile from held-out ``raw_windows [N, 1, (W,) T]`` and the model's outputs on them.

    ``probabilities [N, C]`` and ``embedding [N, D]`` are what the *exported* model returned (the numbers
    serving will log); ``labels [N]`` the true classes; ``survey``/``inline [N]`` where each window lies
    (default 0, unknown: -1).
    """
    n = len(raw_windows)
    if n == 0:
        raise ValueError("reference profile: no held-out windows")
    if not len(labels) == len(probabilities) == len(embedding) == n:
        raise ValueError(
            f"reference profile: {n} windows but {len(labels)} labels, {len(probabilities)} probability rows "
            f"and {len(embedding)} embeddings"
        )
    if probabilities.shape[1] != len(class_names):
        raise ValueError(
            f"probabilities have {probabilities.shape[1]} columns for {len(class_names)} classes"
        )
    if max_embeddings < 1:
        raise ValueError(f"max_embeddings must be >= 1, got {max_embeddings}")
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    predicted = probabilities.argmax(axis=1).astype(np.int64)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_embeddings), replace=False))
    features = window_features(raw_windows, dt_ms)
    info = {
        "schema_version": PROFILE_SCHEMA,
        "feature_names": list(FEATURE_NAMES),
        "class_names": [str(c) for c in class_names],
        "n_windows": n,
        "n_embeddings": len(rows),
        "embedding_dim": int(embedding.shape[1]),
        "dt_ms": float(dt_ms),
        "window": dict(window or {}),
        "features_on": "raw",
        "class_distribution": _distribution(labels, class_names),
        "predicted_distribution": _distribution(predicted, class_names),
        "mean_max_probability": float(probabilities.max(axis=1).mean()),
        "accuracy": float((predicted == labels).mean()),
        "feature_summary": _summary(features),
        "source": json.loads(json.dumps(dict(source or {}))),
        "seed": seed,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    survey = np.zeros(n, np.int64) if survey is None else np.asarray(survey, dtype=np.int64)
    inline = np.full(n, -1, np.int64) if inline is None else np.asarray(inline, dtype=np.int64)
    if not len(survey) == len(inline) == n:
        raise ValueError(
            f"reference profile: {n} windows but {len(survey)} survey and {len(inline)} inline ids"
        )
    return ReferenceProfile(
        survey=survey,
        inline=inline,
        features=features,
        labels=labels,
        predicted=predicted,
        probabilities=probabilities,
        embedding=np.asarray(embedding, dtype=np.float32)[rows],
        embedding_rows=rows.astype(np.int64),
        info=info,
    )
