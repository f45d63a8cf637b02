"""scripts/section_figure.py: the README's picture, for a window classifier and a segmentation net alike."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from seismic.io.segy import open_segy, write_cube
from serving.batch import score_segy
from serving.runtime import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from models import export_tiny

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("section_figure", ROOT / "scripts/section_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figure_survey")
    amplitudes = (np.random.default_rng(3).normal(size=(20, 16, 48)) * 250).astype(np.float32)
    path = folder / "survey.sgy"
    write_cube(path, amplitudes, 4.0)
    np.save(folder / "survey.labels.npy", np.random.default_rng(4).integers(0, 6, amplitudes.shape))
    return path


@pytest.mark.parametrize(
    ("arch", "window"), [("cnn1d", {"length": 16}), ("unet2d", {"length": 16, "traces": 8})]
)
def test_the_figure_shows_what_batch_scoring_gives_that_inline(arch, window, survey, tmp_path, capsys):
    model_dir = export_tiny(tmp_path / arch, arch, **window)
    png = tmp_path / "section.png"
    assert _script().main([str(model_dir), str(survey), "--output", str(png), "--inline", "7"]) == 0
    assert png.stat().st_size > 10_000
    # the accuracy it prints is that of the classes batch scoring writes for the inline
    model = load_model(model_dir, providers=["CPUExecutionProvider"])
    score_segy(model, survey, tmp_path / "classes.sgy", progress=False, chunk_inlines=20)
    with open_segy(tmp_path / "classes.sgy") as f:
        classes = f.read_all()[7]
    labels = np.load(survey.with_suffix(".labels.npy"))[7]
    printed = capsys.readouterr().out
    assert f"pixel accuracy {np.mean(classes == labels):.3f}" in printed


def test_a_missing_label_volume_is_named(survey, tmp_path, capsys):
    model_dir = export_tiny(tmp_path / "m", "cnn1d", length=16)
    lonely = tmp_path / "lonely.sgy"
    lonely.write_bytes(survey.read_bytes())
    assert _script().main([str(model_dir), str(lonely), "--output", str(tmp_path / "x.png")]) == 2
    assert "lonely.labels.npy" in capsys.readouterr().err
