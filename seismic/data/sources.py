"""Turn a data source (synthetic parameters, or a SEG-Y file with a label volume) into a cached survey folder.

Training reads memory-mapped ``.npy`` cubes, not SEG-Y: IBM floats and trace headers would otherwise be
decoded again for every window. The cache key changes whenever the inputs do, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from seismic.data.acquisition import AcquisitionRanges
from seismic.data.survey import SURVEY_JSON, Survey
from seismic.data.synthetic import GENERATOR_VERSION, SyntheticSurveyConfig, generate_survey
from seismic.io.errors import SurveyFileError
from seismic.io.segy import labels_path_for, provenance_path_for, read_cube

SOURCES = ("synthetic", "segy")


def _key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def survey_configs(
    survey: Mapping[str, Any] | None, acquisition: Mapping[str, Any] | None = None
) -> list[SyntheticSurveyConfig]:
    """The synthetic survey config of each seed: one, or one per seed when ``survey.seed`` is a list.

    Training on several synthetic surveys shows the model several draws of the geology (unit order, texture
    parameters, bodies, folds, faults) instead of one; a survey from an unseen seed differs in all of them.
    With ``acquisition`` ranges (:class:`~seismic.data.acquisition.AcquisitionRanges`) each seed also draws
    its wavelet and noise level, which then replace the survey's own values.
    """
    options = dict(survey or {})
    ranges = AcquisitionRanges.from_mapping(acquisition)
    seeds = options.get("seed", 0)
    if not isinstance(seeds, list | tuple):
        seeds = [seeds]
    elif not seeds:
        raise ValueError("data.survey.seed: the list of survey seeds is empty")
    elif len(set(seeds)) != len(seeds):
        raise ValueError(f"data.survey.seed: the list of survey seeds {list(seeds)} repeats a seed")
    return [
        SyntheticSurveyConfig.from_mapping({**options, "seed": seed, **ranges.draw(seed)}) for seed in seeds
    ]


def materialise_surveys(
    source: str,
    cache_dir: str | Path,
    *,
    survey: Mapping[str, Any] | None = None,
    segy: Mapping[str, Any] | None = None,
    acquisition: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Folders of the cached surveys of a source: one per seed when ``survey.seed`` is a list."""
    if source != "synthetic":
        if AcquisitionRanges.from_mapping(acquisition).active:
            raise ValueError(
                "data.acquisition: acquisition ranges apply to synthetic surveys only (data.source is"
                f" {source!r}); use data.augment for recorded data"
            )
        return [materialise_survey(source, cache_dir, survey=survey, segy=segy)]
    configs = survey_configs(survey, acquisition)
    return [materialise_survey(source, cache_dir, survey=asdict(config)) for config in configs]


def materialise_survey(
    source: str,
    cache_dir: str | Path,
    *,
    survey: Mapping[str, Any] | None = None,
    segy: Mapping[str, Any] | None = None,
) -> Path:
    """Folder of the cached survey for this source, building it on first use."""
    if source == "synthetic":
        config = SyntheticSurveyConfig.from_mapping(dict(survey or {}))
        target = Path(cache_dir) / f"synthetic-{_key({'params': asdict(config), 'v': GENERATOR_VERSION})}"
        if not (target / SURVEY_JSON).is_file():
            generate_survey(config).save(target)
        return target
    if source == "segy":
        return _materialise_segy(dict(segy or {}), Path(cache_dir))
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")


SEGY_SUFFIXES = (".sgy", ".segy")


def _segy_labels(
    labels_path: Path, iline: int, xline: int, inlines: np.ndarray, crosslines: np.ndarray
) -> np.ndarray:
    """A label cube stored as SEG-Y (how interpreters export facies volumes): read on the same header bytes,
    checked to sit on the amplitude cube's grid and to hold non-negative whole numbers (any sample format)."""
    values, _, label_inlines, label_crosslines = read_cube(labels_path, iline=iline, xline=xline)
    if not (np.array_equal(label_inlines, inlines) and np.array_equal(label_crosslines, crosslines)):
        raise SurveyFileError(
            labels_path,
            f"label cube grid (inlines {label_inlines[0]}..{label_inlines[-1]}, crosslines "
            f"{label_crosslines[0]}..{label_crosslines[-1]}) differs from the SEG-Y cube's "
            f"({inlines[0]}..{inlines[-1]}, {crosslines[0]}..{crosslines[-1]})",
        )
    values = np.asarray(values)
    whole = np.isfinite(values) & (values == np.round(values)) & (values >= 0)
    if not whole.all():
        bad = tuple(int(i) for i in np.argwhere(~whole)[0])
        raise SurveyFileError(
            labels_path,
            f"label cube sample at position {bad} is {values[bad]!r}: labels must be non-negative integers",
        )
    return values.astype(np.int32)


def _materialise_segy(options: dict[str, Any], cache_dir: Path) -> Path:
    allowed = {"path", "labels_path", "iline", "xline", "class_names"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"data.segy: unknown key(s) {unknown}; expected a subset of {sorted(allowed)}")
    if not options.get("path"):
        raise ValueError("data.segy.path is required when data.source is 'segy'")
    path = Path(options["path"]).expanduser().resolve()
    if not path.is_file():
        raise SurveyFileError(path, "SEG-Y file not found (data.segy.path)")
    labels_path = Path(options.get("labels_path") or labels_path_for(path)).expanduser().resolve()
    if not labels_path.is_file():
        raise SurveyFileError(
            labels_path, "label volume not found (data.segy.labels_path); training needs labels"
        )
    iline, xline = int(options.get("iline", 189)), int(options.get("xline", 193))
    stamp = {
        "segy": [str(path), path.stat().st_size, path.stat().st_mtime_ns],
        "labels": [str(labels_path), labels_path.stat().st_size, labels_path.stat().st_mtime_ns],
        "bytes": [iline, xline],
        "class_names": list(options.get("class_names") or []),
    }
    target = cache_dir / f"segy-{path.stem}-{_key(stamp)}"
    if (target / SURVEY_JSON).is_file():
        return target
    amplitudes, dt_ms, inlines, crosslines = read_cube(path, iline=iline, xline=xline)
    if labels_path.suffix.lower() in SEGY_SUFFIXES:
        labels = _segy_labels(labels_path, iline, xline, inlines, crosslines)
    else:
        try:
            labels = np.load(labels_path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise SurveyFileError(labels_path, f"cannot read the label volume ({err})") from err
    if labels.shape != amplitudes.shape:
        raise SurveyFileError(
            labels_path, f"label volume shape {labels.shape} differs from the SEG-Y cube {amplitudes.shape}"
        )
    class_names = list(options.get("class_names") or []) or _class_names_beside(path)
    n_classes = int(labels.max()) + 1
    if class_names and len(class_names) < n_classes:
        raise SurveyFileError(
            labels_path, f"labels go up to {n_classes - 1} but only {len(class_names)} class names"
        )
    provenance = {
        "source": "segy",
        "path": str(path),
        "sha256": file_sha256(path),
        "labels_path": str(labels_path),
        "labels_sha256": file_sha256(labels_path),
        "iline_byte": iline,
        "xline_byte": xline,
    }
    Survey(
        amplitudes=amplitudes,
        dt_ms=dt_ms,
        labels=np.asarray(labels),
        class_names=tuple(class_names) or tuple(f"class_{i}" for i in range(n_classes)),
        inlines=inlines,
        crosslines=crosslines,
        provenance=provenance,
    ).save(target)
    return target


def _class_names_beside(path: Path) -> list[str]:
    side = provenance_path_for(path)
    if not side.is_file():
        return []
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    names = meta.get("class_names") or meta.get("provenance", {}).get("class_names") or []
    return [str(n) for n in names]
