"""Generate the synthetic survey as SEG-Y + labels + provenance, read it back, and check it.

Until training lands this is the project's main job; afterwards it is how users get a SEG-Y copy of the
embedded default survey to try other tools on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from seismic.data.quality import check_segy
from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import SplitSpec
from seismic.io.segy import read_cube, write_cube

log = logging.getLogger(__name__)

# IBM floats keep 24 bits of mantissa in base 16: up to 3 bits are lost to normalisation.
IBM_RELATIVE_TOLERANCE = 2.0**-20


def class_fractions_by_split(labels: np.ndarray, split: SplitSpec, class_names: tuple[str, ...]) -> dict:
    out = {}
    for name, (lo, hi) in split.blocks(labels.shape[0]).items():
        counts = np.bincount(np.asarray(labels[lo:hi]).ravel(), minlength=len(class_names))
        out[name] = {
            cls: round(float(c) / counts.sum(), 4) for cls, c in zip(class_names, counts, strict=True)
        }
    return out


def make_survey(cfg: DictConfig) -> dict[str, Any]:
    """Write, verify and check the survey described by ``cfg``; returns a summary (also logged)."""
    if cfg.data.source != "synthetic":
        raise ValueError(f"make_survey generates synthetic surveys; data.source is {cfg.data.source!r}")
    started = time.perf_counter()
    params = SyntheticSurveyConfig.from_mapping(OmegaConf.to_container(cfg.data.survey, resolve=True))
    split = SplitSpec.from_mapping(OmegaConf.to_container(cfg.data.split))
    # the split is what training will ask of the file: a survey too small for it fails here, before any
    # file is written, instead of after the SEG-Y, labels and provenance are on disk
    split.blocks(params.n_inlines)
    survey = generate_survey(params)
    generated = time.perf_counter()
    output = Path(cfg.output)
    provenance = {
        **survey.provenance,
        "class_names": list(survey.class_names),
        "content_hash": survey.content_hash(),
    }
    write_cube(
        output,
        survey.amplitudes,
        survey.dt_ms,
        labels=survey.labels,
        provenance=provenance,
        sample_format=cfg.sample_format,
        endian=cfg.endian,
    )
    written = time.perf_counter()

    amplitudes, dt_ms, _, _ = read_cube(output)
    error = float(np.max(np.abs(amplitudes - survey.amplitudes)))
    bound = (
        0.0
        if cfg.sample_format == "ieee"
        else IBM_RELATIVE_TOLERANCE * float(np.abs(survey.amplitudes).max())
    )
    if error > bound or dt_ms != survey.dt_ms:
        raise RuntimeError(
            f"{output}: read-back differs from what was written (max |diff| {error:g} > {bound:g})"
        )
    report = check_segy(output)
    summary = {
        "output": str(output),
        "shape": list(survey.shape),
        "dt_ms": survey.dt_ms,
        "format": f"{cfg.sample_format}, {cfg.endian}-endian",
        "file_mb": round(output.stat().st_size / 1e6, 2),
        "content_hash": provenance["content_hash"],
        "read_back_max_abs_error": error,
        "class_fractions": class_fractions_by_split(survey.labels, split, survey.class_names),
        "quality_ok": report.ok,
        "seconds": {
            "generate": round(generated - started, 2),
            "write": round(written - generated, 2),
            "verify": round(time.perf_counter() - written, 2),
        },
    }
    log.info("survey quality report\n%s", report.format_text())
    if cfg.quality.fail_on_fatal and not report.ok:
        raise RuntimeError(f"{output}: the quality report has fatal problems:\n{report.format_text()}")
    return summary
