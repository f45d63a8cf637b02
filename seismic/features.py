"""Hand-crafted features of seismic windows: drift-monitoring inputs and the classical baseline's features.

Numpy/scipy only (never torch): the serving process imports this module, so training and serving compute
the same numbers with the same code. A window is ``[1, T]`` (one trace) or ``[1, W, T]`` (a patch of ``W``
traces); batches are ``[N, 1, T]`` / ``[N, 1, W, T]``. :func:`window_features` returns ``[N, F]`` float64
(float64 so that moments and ratios carry no float32 round-off into the reference profile), columns in
the order of :data:`FEATURE_NAMES`: a contract (the monitoring schema), the same for traces and patches.

The 17 block features below are computed twice: on the whole window, and on its *core* (``core_*``): the
``T // 4`` samples around the centre sample ``T // 2`` (:func:`core_slice`), all traces. The label sits at
the centre, and a 64-sample window spans several layers. On the synthetic survey as it was when this was
written (HistGradientBoosting, 6 facies, 6000 balanced windows, held-out inlines), the core columns raised
test accuracy from 0.45 to 0.62 for 32x64 patches and from 0.34 to 0.44 for 64-sample traces (the lateral
columns add 0.04 of that); the centre trace's own statistics added nothing (0.45), so they are not here.
For ``W = 1`` the lateral columns (:data:`LATERAL_FEATURE_NAMES`) are 0; a 1D pipeline may drop them.
Column order: the first 16 block features, their 16 ``core_`` twins, then the features added later
(``peak_cos_phase``, ``core_peak_cos_phase``): appending keeps every earlier column where stored reference
profiles and logs have it.

Notation: samples ``x[w, t]``, ``w < W``, ``t < T``, ``n = W*T`` (of the block); ``dt`` the sample
interval in seconds; ``mk = sum((x - mean)**k) / n``. Input is cast to float32 (the values a model sees:
float64 input is rounded) and computed in float64.

=====================  =================================================================================
name                   definition
=====================  =================================================================================
mean                   ``sum(x) / n``
std                    ``sqrt(m2)`` (population, ddof 0)
rms                    ``sqrt(sum(x**2) / n)``, computed as ``sqrt(mean**2 + m2)``
max_abs                ``max |x|``
skewness               ``m3 / m2**1.5``, = ``scipy.stats.skew(bias=True)``; 0 if ``m2 == 0``
kurtosis               excess kurtosis ``m4 / m2**2 - 3`` (Gaussian: 0), = ``scipy.stats.kurtosis(fisher=True,
                       bias=True)``; 0 if ``m2 == 0``
zero_crossing_rate     sign changes per sample pair, ``C / (W (T - 1))``: ``C`` counts consecutive *non-zero*
                       samples of a trace with opposite signs (zeros are skipped, so a crossing through an
                       exact 0 counts once and zero padding adds none); a sinusoid of f Hz gives ``2 f dt``;
                       0 if ``T == 1``
zero_fraction          fraction of samples exactly 0 (padding, mutes, dead traces)
envelope_mean          mean of ``|scipy.signal.hilbert(x[w])|`` over all samples: instantaneous amplitude of
                       each raw trace's analytic signal (FFT-based, so circular at the block edges)
dominant_freq_hz       peak of the amplitude spectrum ``A`` (below) refined by the vertex of the parabola
                       through the peak bin ``k`` and its neighbours (mirrored at 0 Hz and Nyquist):
                       ``(k + d) / (T dt)``, ``d = (A[k+1] - A[k-1]) / (2 (2 A[k] - A[k-1] - A[k+1]))`` in
                       [-0.5, 0.5] (error < 0.06 bin for a sinusoid); 0 if A == 0
spectral_centroid_hz   mean frequency of the power spectrum ``P = A**2``: ``sum(f P) / sum(P)``; 0 if P == 0
spectral_bandwidth_hz  its standard deviation ``sqrt(sum((f - centroid)**2 P) / sum(P))``; 0 if P == 0
lateral_coherence      mean over neighbour pairs ``(w, w+1)`` of the zero-lag Pearson correlation of the two
                       traces; a pair with a constant trace counts 0; 0 if ``W == 1``
semblance              ``sum_t (sum_w x)**2 / (W sum x**2)`` in [0, 1] (identical traces 1, noise ~1/W);
                       0 if all zero or ``W == 1``
lateral_rms_cv         ``std_w(r) / mean_w(r)`` with ``r[w] = sqrt(mean_t x[w]**2)``: lateral variation of the
                       trace energy; 0 if all zero or ``W == 1``
lateral_gradient_frac  ``gl / (gl + gt)`` in [0, 1]: ``gl = mean((x[w+1, t] - x[w, t])**2)`` (lateral),
                       ``gt = mean((x[w, t+1] - x[w, t])**2)`` (vertical); ~0 for flat continuous layers,
                       larger for dip, faults, chaotic texture; 0 if ``gl == gt == 0`` or ``W == 1``
peak_cos_phase         mean over traces of ``|x[w, k]| / e[w, k]`` at ``k = argmax_t e[w, t]``, ``e`` the
                       envelope above: ``|cos|`` of the instantaneous phase at the strongest event, in [0, 1];
                       ~1 for zero-phase wavelets, ~0 after a 90-degree phase rotation, 2/pi for noise, blind
                       to polarity and gain (added for drift monitoring: the other columns barely see a phase
                       rotation); 0 for an all-zero trace
=====================  =================================================================================

Spectrum: ``P[k] = mean_w |rfft(hann * (x[w] - mean_t x[w]))[k]|**2``, ``A = sqrt(P)``, at
``f = k / (T dt)`` Hz, ``k = 0 .. T // 2``: the power spectrum of each trace, demeaned and tapered by the
periodic Hann window (``scipy.signal.windows.hann(T, sym=False)``: a window is rarely a whole number of
periods, and leakage would smear the spectrum), averaged over the traces (``A`` is the RMS amplitude
spectrum). Power, not amplitude, weighs centroid and bandwidth: with amplitude weights the slowly
decaying leakage tails would give a pure 130 Hz sinusoid (T = 256, 2 ms) a bandwidth of ~6 bins and a
centroid 0.5 bin low; with power, < 1 bin and < 0.03 bin. Resolution is one bin, ``1 / (T dt)``; the
core's bins are 4x wider.

Degenerate input: every feature of a finite window is finite. A constant block has std, skewness,
kurtosis, zero crossings and the spectral features 0 (for float32 data a constant centres to exactly 0:
``n * c`` is exact in float64 and ``/ n`` gives ``c`` back); an all-zero block also has zero_fraction 1
and envelope 0. A window with any NaN or +-Inf sample (after the float32 cast, so also float64 values
beyond float32's range) gets NaN in *every* column, core included, so data-quality checks on the features
catch it; other rows are unaffected.

Determinism: rows are computed independently (no BLAS, no threads; reductions along C-contiguous axes;
batched scipy.fft transforms are bit-identical to single ones, tested), so a batch gives the same bits as
one call per window on the same machine and library build: what makes training and serving agree.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import scipy.fft
import scipy.signal

_AMPLITUDE = (
    "mean",
    "std",
    "rms",
    "max_abs",
    "skewness",
    "kurtosis",
    "zero_crossing_rate",
    "zero_fraction",
    "envelope_mean",
)
_SPECTRAL = ("dominant_freq_hz", "spectral_centroid_hz", "spectral_bandwidth_hz")
_LATERAL = ("lateral_coherence", "semblance", "lateral_rms_cv", "lateral_gradient_frac")
_BLOCK = _AMPLITUDE + _SPECTRAL + _LATERAL  # the features of one block of samples (window or core)
_ADDED = ("peak_cos_phase",)  # block features added later: appended, so earlier columns keep their index
FEATURE_NAMES: tuple[str, ...] = (
    _BLOCK + tuple(f"core_{name}" for name in _BLOCK) + _ADDED + tuple(f"core_{name}" for name in _ADDED)
)
# the columns that change sign when a window's polarity is reversed (x -> -x); every other column is unchanged
ODD_FEATURE_NAMES: tuple[str, ...] = ("mean", "skewness", "core_mean", "core_skewness")
LATERAL_FEATURE_NAMES: tuple[str, ...] = _LATERAL + tuple(f"core_{name}" for name in _LATERAL)
N_FEATURES = len(FEATURE_NAMES)
_N_BLOCK = len(_BLOCK)
_N_TRACE = len(_AMPLITUDE + _SPECTRAL)
_CHUNK_SAMPLES = 1 << 15  # per chunk (256 KiB of float64): temporaries stay in cache; measured fastest


def core_slice(t: int) -> slice:
    """The core of a window of ``t`` samples: ``max(1, t // 4)`` samples around the centre ``t // 2``."""
    length = max(1, t // 4)
    start = t // 2 - length // 2
    return slice(start, start + length)


def _as_batch(windows: np.ndarray) -> np.ndarray:
    """``[N, 1, T]`` / ``[N, 1, W, T]`` / ``[1, T]`` / ``[1, W, T]`` -> float32 ``[N, W, T]``."""
    x = np.asarray(windows)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"windows must be real numbers, got dtype {x.dtype}")
    shape = x.shape
    if x.ndim == 2 and shape[0] == 1:  # one window [1, T]
        x = x[None]
    elif x.ndim == 3 and shape[0] == 1 and shape[1] != 1:  # one patch [1, W, T]
        x = x[:, None]
    if x.ndim not in (3, 4) or x.shape[1] != 1 or x.shape[-1] < 1 or (x.ndim == 4 and x.shape[2] < 1):
        raise ValueError(f"windows must be [N, 1, T], [N, 1, W, T], [1, T] or [1, W, T], got shape {shape}")
    x = x.reshape(x.shape[0], 1 if x.ndim == 3 else x.shape[2], x.shape[-1])
    with np.errstate(over="ignore"):  # float64 beyond float32's range -> inf -> a NaN row (documented)
        return x.astype(np.float32, copy=False)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0 (the degenerate-input convention); same shapes."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


@functools.lru_cache(maxsize=64)
def _hann(t: int) -> np.ndarray:
    taper = scipy.signal.windows.hann(t, sym=False) if t > 1 else np.ones(1)
    taper.flags.writeable = False
    return taper


def _zero_crossings(x: np.ndarray, any_zero: bool) -> np.ndarray:
    """Sign changes between consecutive non-zero samples along the last axis, summed over the others."""
    if not any_zero:  # the common case: compare sign bits (1-byte temporaries)
        neg = np.signbit(x)
        return np.count_nonzero(neg[..., 1:] != neg[..., :-1], axis=(1, 2))
    sign = np.sign(x)  # skip zeros: carry the last non-zero sign forward over them
    last = np.where(sign != 0, np.arange(x.shape[-1]), 0)
    np.maximum.accumulate(last, axis=-1, out=last)
    sign = np.take_along_axis(sign, last, axis=-1)
    return np.count_nonzero(sign[..., 1:] * sign[..., :-1] < 0, axis=(1, 2))


def _dominant_frequency(spectrum: np.ndarray, t: int, df: float) -> np.ndarray:
    """Peak frequency of ``spectrum [n, K]`` with parabolic interpolation; mirrors at 0 and Nyquist."""
    n, k = spectrum.shape
    if k == 1:
        return np.zeros(n)
    rows = np.arange(n)
    peak = np.argmax(spectrum, axis=1)  # first maximum: 0 Hz for a zero spectrum
    # neighbours beyond the ends, for real traces: |X[-1]| = |X[1]| and |X[K]| = |X[T - K]|
    left = spectrum[rows, np.abs(peak - 1)]
    right = spectrum[rows, np.where(peak + 1 < k, peak + 1, t - k)]
    centre = spectrum[rows, peak]
    offset = _ratio(0.5 * (right - left), 2.0 * centre - left - right)  # parabola vertex, in [-0.5, 0.5]
    return (peak + offset) * df


def _envelope(x: np.ndarray) -> np.ndarray:
    """``|scipy.signal.hilbert(x)|`` along the last axis (equal within 2e-15), from two real transforms:
    the Hilbert transform of a real trace is ``-i X`` at the positive frequencies and 0 at 0 Hz and Nyquist.
    1.5x faster than scipy.signal.hilbert's complex pair on the 16-patch chunks used here."""
    t = x.shape[-1]
    spec = scipy.fft.rfft(x, axis=-1)
    quadrature = np.empty_like(spec)
    quadrature.real = spec.imag
    quadrature.imag = -spec.real
    quadrature[..., 0] = 0.0
    if t % 2 == 0:
        quadrature[..., -1] = 0.0
    h = scipy.fft.irfft(quadrature, n=t, axis=-1)
    return np.sqrt(x * x + h * h)


def _peak_cos_phase(x: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """Mean over traces of ``|x| / envelope`` at each trace's envelope peak (0 for an all-zero trace)."""
    peak = np.argmax(envelope, axis=-1)[..., None]
    at_peak = np.take_along_axis(envelope, peak, axis=-1)[..., 0]
    return _ratio(np.abs(np.take_along_axis(x, peak, axis=-1)[..., 0]), at_peak).mean(axis=1)


def _block_features(x: np.ndarray, dt_s: float) -> np.ndarray:
    """The ``_BLOCK`` then ``_ADDED`` columns of ``x [n, W, T]``, float64, finite, C-contiguous."""
    n, w, t = x.shape
    size = w * t
    out = np.zeros((n, _N_BLOCK + len(_ADDED)))
    flat = x.reshape(n, size)
    # Moments by hand: one centred array shared by m2..m4 is ~5x faster than scipy.stats.skew + kurtosis at
    # a batch of 4096 (40x at one window) and gives 0, not NaN, for constant windows. For float32 data a
    # constant window centres to exactly 0 (n * c is exact in float64, then / n gives c back), so m2 == 0.
    mean = flat.sum(axis=1) / size
    c = flat - mean[:, None]
    c2 = c * c
    m2 = c2.sum(axis=1) / size
    m3 = (c2 * c).sum(axis=1) / size
    m4 = (c2 * c2).sum(axis=1) / size
    zeros = np.count_nonzero(flat == 0, axis=1)
    out[:, 0] = mean
    out[:, 1] = np.sqrt(m2)
    out[:, 2] = np.sqrt(mean * mean + m2)
    out[:, 3] = np.abs(flat).max(axis=1)
    out[:, 4] = _ratio(m3, m2**1.5)
    out[:, 5] = np.where(m2 > 0, _ratio(m4, m2 * m2) - 3.0, 0.0)
    if t > 1:
        out[:, 6] = _zero_crossings(x, bool(zeros.any())) / (w * (t - 1))
    out[:, 7] = zeros / size
    envelope = _envelope(x)
    out[:, 8] = envelope.reshape(n, size).sum(axis=1) / size
    out[:, _N_BLOCK] = _peak_cos_phase(x, envelope)

    # Spectrum: scipy.fft.rfft of the demeaned, tapered traces (scipy.signal.periodogram: same, 2-15x slower)
    xd = x - (x.sum(axis=2, keepdims=True) / t)
    spec = scipy.fft.rfft(xd * _hann(t), axis=-1)
    power = spec.real * spec.real + spec.imag * spec.imag
    power = power[:, 0] if w == 1 else power.sum(axis=1) / w  # [n, K], mean over traces
    df = 1.0 / (t * dt_s)
    freqs = np.arange(t // 2 + 1) * df
    total = power.sum(axis=1)
    centroid = _ratio((power * freqs).sum(axis=1), total)
    spread = (power * (freqs - centroid[:, None]) ** 2).sum(axis=1)
    out[:, 9] = _dominant_frequency(np.sqrt(power), t, df)
    out[:, 10] = centroid
    out[:, 11] = np.sqrt(_ratio(spread, total))
    if w > 1:
        _lateral_features(x, xd, out[:, _N_TRACE:])
    return out


def _lateral_features(x: np.ndarray, xd: np.ndarray, out: np.ndarray) -> None:
    """Write the ``_LATERAL`` columns of ``x [n, W, T]`` (W > 1) into ``out``; ``xd``: its traces demeaned."""
    n, w, t = x.shape
    var = (xd * xd).sum(axis=2)  # [n, W]
    cov = (xd[:, 1:] * xd[:, :-1]).sum(axis=2)  # [n, W - 1]
    out[:, 0] = _ratio(cov, np.sqrt(var[:, 1:] * var[:, :-1])).sum(axis=1) / (w - 1)
    power = (x * x).sum(axis=2)  # [n, W]
    stacked = x.sum(axis=1)  # [n, T]
    out[:, 1] = _ratio((stacked * stacked).sum(axis=1), w * power.sum(axis=1))
    trace_rms = np.sqrt(power / t)
    out[:, 2] = _ratio(trace_rms.std(axis=1), trace_rms.mean(axis=1))
    lateral = x[:, 1:] - x[:, :-1]
    gl = (lateral * lateral).reshape(n, -1).sum(axis=1) / ((w - 1) * t)
    gt = np.zeros(n)
    if t > 1:
        vertical = x[:, :, 1:] - x[:, :, :-1]
        gt = (vertical * vertical).reshape(n, -1).sum(axis=1) / (w * (t - 1))
    out[:, 3] = _ratio(gl, gl + gt)


def _chunk_features(x32: np.ndarray, dt_s: float) -> np.ndarray:
    x = x32.astype(np.float64)
    finite = np.isfinite(x).all(axis=(1, 2))
    if not finite.all():
        x[~finite] = 0.0  # computed on zeros (no warnings), overwritten with NaN below
    core = np.ascontiguousarray(x[:, :, core_slice(x.shape[2])])
    whole, inner = _block_features(x, dt_s), _block_features(core, dt_s)
    out = np.concatenate(
        [whole[:, :_N_BLOCK], inner[:, :_N_BLOCK], whole[:, _N_BLOCK:], inner[:, _N_BLOCK:]], axis=1
    )
    out[~finite] = np.nan
    return out


def window_features(windows: np.ndarray, dt_ms: float) -> np.ndarray:
    """Features of a batch of windows: ``[N, len(FEATURE_NAMES)]`` float64 (see the module docstring).

    ``windows``: ``[N, 1, T]`` or ``[N, 1, W, T]``, or one window ``[1, T]`` / ``[1, W, T]`` (-> one row);
    any real dtype, cast to float32. ``dt_ms``: sample interval in milliseconds (sets the frequency axis).
    Large batches are processed in chunks of whole windows (bounded memory, same numbers).
    """
    if not (np.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f"dt_ms must be a positive finite number, got {dt_ms}")
    x = _as_batch(windows)
    n, w, t = x.shape
    out = np.empty((n, N_FEATURES))
    step = max(1, _CHUNK_SAMPLES // (w * t))
    for start in range(0, n, step):
        out[start : start + step] = _chunk_features(x[start : start + step], dt_ms / 1000.0)
    return out


def features_as_dict(features: np.ndarray) -> dict[str, float] | list[dict[str, float]]:
    """One row ``[F]`` -> ``{name: value}``; a batch ``[N, F]`` -> a list of such dicts (e.g. for JSON)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim not in (1, 2) or f.shape[-1] != N_FEATURES:
        raise ValueError(f"features must be [{N_FEATURES}] or [N, {N_FEATURES}], got shape {f.shape}")
    if f.ndim == 1:
        return dict(zip(FEATURE_NAMES, f.tolist(), strict=True))
    return [dict(zip(FEATURE_NAMES, row, strict=True)) for row in f.tolist()]


def features_from_dict(values: Mapping[str, float]) -> np.ndarray:
    """``{name: value}`` (all of FEATURE_NAMES, no others) -> a ``[F]`` row in the schema's column order."""
    missing = [k for k in FEATURE_NAMES if k not in values]
    unknown = sorted(set(values) - set(FEATURE_NAMES))
    if missing or unknown:
        raise ValueError(f"feature dict: missing {missing}, unknown {unknown}")
    return np.array([float(values[k]) for k in FEATURE_NAMES])
