"""Window features: definitions against independent computations, degenerate input, schema, determinism."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from seismic.features import (
    FEATURE_NAMES,
    LATERAL_FEATURE_NAMES,
    N_FEATURES,
    core_slice,
    features_as_dict,
    features_from_dict,
    window_features,
)

pytestmark = pytest.mark.filterwarnings("error")  # no RuntimeWarning (0/0, inf - inf) on any input

DT_MS = 2.0
N_BLOCK = 16  # the first block features; the ones added later follow both blocks (ADDED)
BLOCK = FEATURE_NAMES[:N_BLOCK]
ADDED = ("peak_cos_phase",)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _col(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, COL[name]]


def _reference_block(x: np.ndarray, dt_ms: float) -> dict[str, float]:
    """The block features of one ``[W, T]`` block, written plainly from the documented definitions."""
    w, t = x.shape
    v = x.astype(np.float64).ravel()
    out = {"mean": v.mean(), "std": v.std(), "rms": np.sqrt(np.mean(v**2)), "max_abs": np.abs(v).max()}
    out["skewness"] = scipy.stats.skew(v) if v.std() > 0 else 0.0
    out["kurtosis"] = scipy.stats.kurtosis(v) if v.std() > 0 else 0.0
    crossings = 0
    for trace in x.astype(np.float64):
        signs = np.sign(trace[trace != 0])
        crossings += int(np.sum(signs[1:] != signs[:-1]))
    out["zero_crossing_rate"] = crossings / (w * (t - 1)) if t > 1 else 0.0
    out["zero_fraction"] = np.mean(v == 0)
    h = np.zeros(t)  # analytic signal: keep DC (and Nyquist), double positive, drop negative frequencies
    h[0] = 1.0
    h[1 : (t + 1) // 2] = 2.0
    if t % 2 == 0:
        h[t // 2] = 1.0
    envelope = np.abs(np.fft.ifft(np.fft.fft(x.astype(np.float64), axis=1) * h, axis=1))
    out["envelope_mean"] = np.mean(envelope)
    cos = []
    for trace, env in zip(x.astype(np.float64), envelope, strict=True):
        k = int(np.argmax(env))
        cos.append(abs(trace[k]) / env[k] if env[k] > 0 else 0.0)
    out["peak_cos_phase"] = float(np.mean(cos))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(t) / t) if t > 1 else np.ones(1)
    demeaned = x.astype(np.float64) - x.astype(np.float64).mean(axis=1, keepdims=True)
    power = np.mean(np.abs(np.fft.fft(demeaned * hann, axis=1)) ** 2, axis=0)  # two-sided, [T]
    k = t // 2 + 1
    full = np.sqrt(power)
    pw, freqs = power[:k], np.arange(k) * 1000.0 / (t * dt_ms)
    if pw.sum() > 0:
        centroid = np.sum(freqs * pw) / pw.sum()
        peak = int(np.argmax(pw))
        lo, mid, hi = full[(peak - 1) % t], full[peak], full[(peak + 1) % t]  # wrap-around = mirror
        curve = 2 * mid - lo - hi
        offset = 0.5 * (hi - lo) / curve if curve > 0 else 0.0
        out["dominant_freq_hz"] = (peak + offset) * 1000.0 / (t * dt_ms) if t > 1 else 0.0
        out["spectral_centroid_hz"] = centroid
        out["spectral_bandwidth_hz"] = np.sqrt(np.sum((freqs - centroid) ** 2 * pw) / pw.sum())
    else:
        out |= {"dominant_freq_hz": 0.0, "spectral_centroid_hz": 0.0, "spectral_bandwidth_hz": 0.0}
    lateral = dict.fromkeys(
        ("lateral_coherence", "semblance", "lateral_rms_cv", "lateral_gradient_frac"), 0.0
    )
    if w > 1:
        xd = x.astype(np.float64)
        pairs = itertools.pairwise(xd)
        r = [np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else 0.0 for a, b in pairs]
        lateral["lateral_coherence"] = float(np.mean(r))
        if np.any(xd != 0):
            lateral["semblance"] = np.sum(xd.sum(axis=0) ** 2) / (w * np.sum(xd**2))
            rms = np.sqrt(np.mean(xd**2, axis=1))
            lateral["lateral_rms_cv"] = rms.std() / rms.mean()
        gl = np.mean(np.diff(xd, axis=0) ** 2)
        gt = np.mean(np.diff(xd, axis=1) ** 2) if t > 1 else 0.0
        lateral["lateral_gradient_frac"] = gl / (gl + gt) if gl + gt > 0 else 0.0
    out |= lateral
    return {name: float(out[name]) for name in BLOCK + ADDED}


def _reference(window: np.ndarray, dt_ms: float) -> np.ndarray:
    """All columns of one window ``[1, T]`` / ``[1, W, T]`` (float32) from the reference."""
    block = window.reshape(-1, window.shape[-1])
    core = block[:, core_slice(block.shape[1])]
    whole, inner = _reference_block(block, dt_ms), _reference_block(core, dt_ms)
    names = [(whole, BLOCK), (inner, BLOCK), (whole, ADDED), (inner, ADDED)]
    return np.array([part[n] for part, block in names for n in block])


def _random_windows(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """Correlated noise with varied offsets, scales, exact zeros and an all-zero and a constant window."""
    x = rng.standard_normal((n, 1, *shape)).cumsum(axis=-1) * rng.uniform(
        0.1, 10, (n,) + (1,) * (len(shape) + 1)
    )
    x += rng.normal(0, 3, (n,) + (1,) * (len(shape) + 1))
    holes = rng.random(x.shape) < 0.05
    holes[::2] = False  # half the windows without zeros: both zero-crossing code paths in one batch
    x[holes] = 0.0
    x[1] = 0.0
    x[2] = 1.5
    return x.astype(np.float32)


# --- schema and shapes ------------------------------------------------------------------------------------


def test_schema_is_pinned() -> None:
    """The monitoring schema: renaming or reordering breaks stored reference profiles, so it is deliberate."""
    block = [
        "mean",
        "std",
        "rms",
        "max_abs",
        "skewness",
        "kurtosis",
        "zero_crossing_rate",
        "zero_fraction",
        "envelope_mean",
        "dominant_freq_hz",
        "spectral_centroid_hz",
        "spectral_bandwidth_hz",
        "lateral_coherence",
        "semblance",
        "lateral_rms_cv",
        "lateral_gradient_frac",
    ]
    added = ["peak_cos_phase"]  # appended later: the first 32 columns keep their index
    assert (*block, *(f"core_{n}" for n in block), *added, *(f"core_{n}" for n in added)) == FEATURE_NAMES


def test_schema_names_are_unique_and_match_columns() -> None:
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == N_FEATURES
    assert FEATURE_NAMES[N_BLOCK : 2 * N_BLOCK] == tuple(f"core_{n}" for n in BLOCK)
    assert FEATURE_NAMES[2 * N_BLOCK :] == (*ADDED, *(f"core_{n}" for n in ADDED))
    assert set(LATERAL_FEATURE_NAMES) <= set(FEATURE_NAMES)
    for minimum in ("mean", "std", "rms", "max_abs", "skewness", "kurtosis", "zero_crossing_rate"):
        assert minimum in FEATURE_NAMES
    for minimum in ("dominant_freq_hz", "spectral_centroid_hz", "spectral_bandwidth_hz", "envelope_mean"):
        assert minimum in FEATURE_NAMES
    assert "zero_fraction" in FEATURE_NAMES and "lateral_coherence" in FEATURE_NAMES


@pytest.mark.parametrize(
    ("shape", "rows"),
    [((5, 1, 64), 5), ((5, 1, 8, 64), 5), ((1, 64), 1), ((1, 8, 64), 1), ((1, 1, 64), 1), ((0, 1, 64), 0)],
)
def test_shapes_and_dtype(shape: tuple[int, ...], rows: int) -> None:
    out = window_features(np.ones(shape, np.float32), DT_MS)
    assert out.shape == (rows, N_FEATURES) and out.dtype == np.float64


@pytest.mark.parametrize("shape", [(64,), (2, 64), (3, 2, 64), (2, 1, 2, 3, 64), (2, 1, 0), (2, 1, 0, 8)])
def test_bad_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="windows must be"):
        window_features(np.zeros(shape, np.float32), DT_MS)


def test_bad_dtype_and_dt_raise() -> None:
    with pytest.raises(TypeError):
        window_features(np.zeros((2, 1, 8), np.complex64), DT_MS)
    for dt in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dt_ms"):
            window_features(np.zeros((2, 1, 8), np.float32), dt)


def test_dict_round_trip() -> None:
    out = window_features(_random_windows(np.random.default_rng(0), 4, (4, 32)), DT_MS)
    one = features_as_dict(out[0])
    assert list(one) == list(FEATURE_NAMES)
    np.testing.assert_array_equal(features_from_dict(one), out[0])
    assert [features_as_dict(r) for r in out] == features_as_dict(out)
    with pytest.raises(ValueError, match="missing"):
        features_from_dict({"mean": 0.0})


def test_module_needs_neither_torch_nor_sklearn() -> None:
    code = "import sys, seismic.features; sys.exit(any(m in sys.modules for m in ('torch', 'sklearn')))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- definitions against independent computations ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(64,), (8, 64), (3, 5), (2, 1), (1,), (2, 2), (4, 33)])
def test_every_feature_matches_reference(shape: tuple[int, ...]) -> None:
    x = _random_windows(np.random.default_rng(len(shape) * 100 + shape[-1]), 12, shape)
    got = window_features(x, DT_MS)
    want = np.stack([_reference(w, DT_MS) for w in x])
    for j, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=1e-9, atol=1e-9, err_msg=name)


def test_moments_agree_with_scipy_stats() -> None:
    x = np.random.default_rng(1).gamma(2.0, size=(20, 1, 16, 64)).astype(np.float32)
    flat = x.reshape(20, -1).astype(np.float64)
    out = window_features(x, DT_MS)
    np.testing.assert_allclose(_col(out, "skewness"), scipy.stats.skew(flat, axis=1), rtol=1e-10)
    np.testing.assert_allclose(_col(out, "kurtosis"), scipy.stats.kurtosis(flat, axis=1), rtol=1e-10)
    np.testing.assert_allclose(_col(out, "std"), flat.std(axis=1), rtol=1e-12)
    np.testing.assert_allclose(_col(out, "mean"), flat.mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("f_hz", [25.0, 40.3, 61.7, 130.0])
def test_sinusoid(f_hz: float) -> None:
    t = 256
    bin_hz = 1000.0 / (t * DT_MS)
    x = (3.0 * np.sin(2 * np.pi * f_hz * np.arange(t) * DT_MS / 1000 + 0.4)).astype(np.float32)
    out = window_features(x[None], DT_MS)
    assert abs(_col(out, "dominant_freq_hz")[0] - f_hz) < 0.1 * bin_hz
    assert abs(_col(out, "spectral_centroid_hz")[0] - f_hz) < 0.1 * bin_hz
    assert _col(out, "spectral_bandwidth_hz")[0] < bin_hz
    assert abs(_col(out, "zero_crossing_rate")[0] - 2 * f_hz * DT_MS / 1000) <= 1.0 / (t - 1)
    np.testing.assert_allclose(_col(out, "rms")[0], 3.0 / np.sqrt(2), rtol=0.02)
    np.testing.assert_allclose(_col(out, "envelope_mean")[0], 3.0, rtol=0.02)
    np.testing.assert_allclose(_col(out, "core_dominant_freq_hz")[0], f_hz, atol=0.25 * 4 * bin_hz)


def test_sinusoid_with_whole_periods_has_exact_envelope_and_peak() -> None:
    t, k = 64, 5  # exactly k periods: the circular Hilbert transform has no edge error
    x = (2.0 * np.cos(2 * np.pi * k * np.arange(t) / t)).astype(np.float32)
    out = window_features(x[None], DT_MS)
    np.testing.assert_allclose(_col(out, "envelope_mean")[0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(_col(out, "dominant_freq_hz")[0], k * 1000.0 / (t * DT_MS), rtol=1e-9)
    np.testing.assert_allclose(_col(out, "spectral_centroid_hz")[0], k * 1000.0 / (t * DT_MS), rtol=1e-5)


def test_peak_cos_phase_sees_phase_rotation_not_polarity_or_gain() -> None:
    """A zero-phase (Ricker) event peaks where its envelope does; rotated 90 degrees it crosses zero there."""
    t = np.arange(64) - 32.0
    arg = (np.pi * 30.0 * t * DT_MS / 1000.0) ** 2
    ricker = (1.0 - 2.0 * arg) * np.exp(-arg)
    rotated = -np.imag(scipy.signal.hilbert(ricker))
    x = np.stack([ricker, -3.0 * ricker, rotated])[:, None].astype(np.float32)
    out = window_features(x, DT_MS)
    np.testing.assert_allclose(_col(out, "peak_cos_phase"), [1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(_col(out, "core_peak_cos_phase"), [1.0, 1.0, 0.0], atol=1e-6)


def test_gaussian_noise_has_zero_skewness_and_excess_kurtosis() -> None:
    x = np.random.default_rng(2).standard_normal((8, 1, 64, 256)).astype(np.float32)
    out = window_features(x, DT_MS)
    assert np.all(np.abs(_col(out, "skewness")) < 0.1)  # standard error sqrt(6 / 16384) = 0.02
    assert np.all(np.abs(_col(out, "kurtosis")) < 0.2)  # standard error sqrt(24 / 16384) = 0.04
    assert np.all(np.abs(_col(out, "lateral_coherence")) < 0.05)
    np.testing.assert_allclose(_col(out, "semblance"), 1 / 64, rtol=0.2)


def test_lateral_features_of_simple_patches() -> None:
    rng = np.random.default_rng(3)
    trace = rng.standard_normal(64).astype(np.float32)
    same = np.broadcast_to(trace, (1, 1, 8, 64))
    flipped = same * np.array([1, -1] * 4, np.float32)[:, None]
    dipping = np.stack([np.roll(trace, 3 * i) for i in range(8)])[None, None]
    out = window_features(np.concatenate([same, flipped, dipping]), DT_MS)
    np.testing.assert_allclose(_col(out, "lateral_coherence"), [1.0, -1.0, out[2, COL["lateral_coherence"]]])
    np.testing.assert_allclose(_col(out, "semblance")[:2], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(_col(out, "lateral_rms_cv")[:2], 0.0, atol=1e-12)
    assert _col(out, "lateral_gradient_frac")[0] == 0.0 and _col(out, "lateral_gradient_frac")[2] > 0.3
    assert _col(out, "lateral_coherence")[2] < 0.5  # dip breaks zero-lag coherence


def test_single_traces_have_zero_lateral_columns() -> None:
    out = window_features(_random_windows(np.random.default_rng(4), 6, (64,)), DT_MS)
    assert np.all(out[:, [COL[n] for n in LATERAL_FEATURE_NAMES]] == 0.0)


def test_core_columns_are_the_block_features_of_the_core() -> None:
    x = _random_windows(np.random.default_rng(5), 6, (8, 64))
    assert core_slice(64) == slice(24, 40) and core_slice(3) == slice(1, 2)
    whole = window_features(x, DT_MS)
    inner = window_features(np.ascontiguousarray(x[..., core_slice(64)]), DT_MS)
    np.testing.assert_array_equal(whole[:, N_BLOCK : 2 * N_BLOCK], inner[:, :N_BLOCK])
    np.testing.assert_array_equal(whole[:, -len(ADDED) :], inner[:, -2 * len(ADDED) : -len(ADDED)])


# --- degenerate input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 64), (1, 8, 64)])
def test_constant_and_all_zero_windows(shape: tuple[int, ...]) -> None:
    const = np.full(shape, 0.1, np.float64)  # 0.1 is not a float32: the cast must still give exact zeros
    out = window_features(np.stack([const, np.zeros(shape)]), DT_MS)
    assert np.all(np.isfinite(out))
    for name in ("std", "skewness", "kurtosis", "zero_crossing_rate", "dominant_freq_hz"):
        assert np.all(_col(out, name) == 0.0) and np.all(_col(out, f"core_{name}") == 0.0), name
    assert np.all(_col(out, "spectral_centroid_hz") == 0) and np.all(_col(out, "spectral_bandwidth_hz") == 0)
    np.testing.assert_allclose(_col(out, "mean"), [np.float32(0.1), 0.0], rtol=0)
    np.testing.assert_allclose(_col(out, "envelope_mean"), [np.float32(0.1), 0.0], rtol=1e-12)
    np.testing.assert_array_equal(_col(out, "zero_fraction"), [0.0, 1.0])
    np.testing.assert_array_equal(
        out[1], np.where(np.isin(FEATURE_NAMES, ["zero_fraction", "core_zero_fraction"]), 1.0, 0.0)
    )


@pytest.mark.parametrize("value", [3e38, 1e-45, -1e-40, 1e20])
def test_extreme_finite_values_give_finite_features(value: float) -> None:
    x = np.random.default_rng(6).choice([0.0, value, -value / 2], size=(4, 1, 4, 32)).astype(np.float32)
    assert np.all(np.isfinite(window_features(x, DT_MS)))


def test_non_finite_windows_give_nan_rows_and_leave_others_alone() -> None:
    x = _random_windows(np.random.default_rng(7), 6, (4, 32)).astype(np.float64)
    clean = window_features(x, DT_MS)
    x[1, 0, 2, 5] = np.nan
    x[3, 0, 0, 0] = np.inf
    x[4, 0, 3, 31] = -np.inf
    x[5, 0, 1, 1] = 1e300  # beyond float32: infinite after the cast
    out = window_features(x, DT_MS)
    bad = [1, 3, 4, 5]
    assert np.all(np.isnan(out[bad]))
    np.testing.assert_array_equal(out[[0, 2]], clean[[0, 2]])


# --- determinism: the same numbers in training (batches) and serving (single windows) ---------------------


@pytest.mark.parametrize(("n", "shape"), [(700, (64,)), (40, (16, 64)), (9, (5, 7))])
def test_batch_rows_equal_single_calls_bit_for_bit(n: int, shape: tuple[int, ...]) -> None:
    x = _random_windows(np.random.default_rng(8), n, shape)  # n spans several chunks
    batch = window_features(x, DT_MS)
    np.testing.assert_array_equal(batch, window_features(x.copy(), DT_MS))
    singles = np.concatenate([window_features(x[i], DT_MS) for i in range(n)])
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch[3:8], window_features(x[3:8], DT_MS))


def test_layout_and_dtype_do_not_change_the_numbers() -> None:
    x = _random_windows(np.random.default_rng(9), 10, (6, 32))
    want = window_features(x, DT_MS)
    strided = np.zeros((20, 1, 6, 64), np.float32)
    strided[::2, :, :, ::2] = x
    np.testing.assert_array_equal(window_features(strided[::2, :, :, ::2], DT_MS), want)
    np.testing.assert_array_equal(window_features(x.astype(np.float64), DT_MS), want)
