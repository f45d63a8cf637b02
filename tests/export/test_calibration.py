"""Temperature scaling: the fit recovers a known temperature, ECE is the textbook number, the exported graph
divides only its ``probabilities`` by the temperature (parity still holds) and records ECE before/after."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from seismic.export.calibration import calibration_report, expected_calibration_error, fit_temperature
from seismic.export.onnx import METADATA_FILE, ONNX_FILE, run_session, session
from seismic.pipeline.publish import build_model_folder

from .support import NET_KWARGS, PUBLISH, fit, hparams_for

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def sampled(temperature: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): the true temperature is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 5))
    p = softmax(logits / temperature, axis=1)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(true_t):
    logits, labels = sampled(true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_ece_is_the_binned_gap_between_confidence_and_accuracy():
    # two bins used: 0.9-confident rows right 2 of 4 times (gap 0.4), 0.6-confident rows right 1 of 2 (0.1)
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 1, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(4 / 6 * 0.4 + 2 / 6 * 0.1)
    assert expected_calibration_error(np.array([[1.0, 0.0]] * 3), np.zeros(3, int)) == 0.0


def test_report_shows_an_overconfident_model_improved_on_other_data():
    fit_logits, fit_labels = sampled(3.0, seed=1)  # logits 3x too sharp
    eval_logits, eval_labels = sampled(3.0, seed=2)
    report = calibration_report(fit_logits, fit_labels, eval_logits, eval_labels)
    assert report["temperature"] == pytest.approx(3.0, rel=0.05)
    assert report["ece_before"] > 0.1 and report["ece_after"] < 0.02
    assert report["nll_after"] < report["nll_before"]


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((3, 2)), np.array([0, 1]), "expected logits"),
        (np.full((2, 2), np.nan), np.array([0, 1]), "NaN"),
        (np.zeros((2, 2)), np.array([0, 2]), r"labels must lie in \[0, 2\)"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


def test_exported_graph_applies_the_temperature_to_probabilities_only(dm, data_options, tmp_path):
    net = fit(dm, steps=150)
    hparams = hparams_for(dm, "cnn1d", NET_KWARGS)
    written = build_model_folder(net, hparams, data_options, tmp_path / "model", PUBLISH)
    cal = json.loads((tmp_path / "model" / METADATA_FILE).read_text())["calibration"]
    assert cal == written["calibration"]
    assert cal["method"] == "temperature_scaling" and cal["fitted_on"] == "val" and cal["n_fit"] == 64
    assert cal["temperature"] != pytest.approx(1.0, abs=1e-3)
    assert cal["nll_after"] <= cal["nll_before"] + 0.05  # a fit on 64 windows need not improve every test set
    assert written["parity"]["passed"]
    out = run_session(session(tmp_path / "model" / ONNX_FILE), written["input_example"])
    np.testing.assert_allclose(
        out["probabilities"], softmax(out["logits"] / cal["temperature"], axis=1), atol=1e-6
    )
    assert not np.allclose(out["probabilities"], softmax(out["logits"], axis=1), atol=1e-3)


def test_disabled_calibration_keeps_plain_softmax(dm, data_options, tmp_path):
    options = {**PUBLISH, "calibration": {"enabled": False, "max_windows": 64}}
    written = build_model_folder(fit(dm, steps=0), hparams_for(dm, "cnn1d", NET_KWARGS), data_options,
                                 tmp_path / "m", options)  # fmt: skip
    assert written["calibration"] == {"method": "none", "temperature": 1.0}
    out = run_session(session(tmp_path / "m" / ONNX_FILE), written["input_example"])
    np.testing.assert_allclose(out["probabilities"], softmax(out["logits"], axis=1), atol=1e-6)
