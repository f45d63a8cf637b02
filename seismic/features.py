"""Hand-crafted features of seismic windows: drift-monitoring inputs and the classical baseline's features.

Numpy/scipy only (never torch): the serving process imports this module, so training and serving compute
the same numbers with the same code. A window is ``[1, T]`` (one trace) or ``[1, W, T]`` (a patch of ``W``
traces); batches are ``[N, 1, T]`` / ``[N, 1, W, T]``. :func:`window_features` returns ``[N, F]`` float64,
columns in the order of :data:`FEATURE_NAMES` (a contract: the monitoring schema). The schema is the same
for single traces and patches; for ``W = 1`` the lateral columns are 0 and ``centre_*`` equal the window
columns, so a 1D pipeline may drop them (:data:`LATERAL_FEATURE_NAMES`).

Notation: samples ``x[w, t]``, ``w < W``, ``t < T``, ``n = W*T``; ``dt`` the sample interval in seconds.
Input is cast to float32 (the values the model sees; float64 input is rounded to float32) and computed in
float64. Amplitude features pool all ``n`` samples of the window; ``centre_*`` repeat them on the centre
trace ``w = W // 2`` alone (the label sits on it; the pooled values blur over the whole patch).

====================  ==================================================================================
name                  definition
====================  ==================================================================================
mean                  ``m = sum(x) / n``
std                   ``sqrt(m2)``, population (ddof 0); ``mk = sum((x - m)**k) / n``
rms                   ``sqrt(sum(x**2) / n)``, computed as ``sqrt(m**2 + m2)``
max_abs               ``max |x|``
skewness              ``m3 / m2**1.5`` (biased Fisher-Pearson = ``scipy.stats.skew(bias=True)``); 0 if m2 == 0
kurtosis              excess: ``m4 / m2**2 - 3`` (``scipy.stats.kurtosis(fisher=True, bias=True)``, Gaussian
                      -> 0); 0 if m2 == 0
zero_crossing_rate    sign changes per sample pair: ``C / (W*(T-1))`` with ``C`` the number of ``t`` per trace
                      where consecutive *non-zero* samples change sign (zero samples are skipped, so a
                      crossing through an exact 0 counts once); 0 if T == 1. A sinusoid of f Hz -> ``2 f dt``
zero_fraction         fraction of samples exactly equal to 0 (padding, mutes, dead traces)
envelope_mean         ``mean |hilbert(x[w])|``: instantaneous amplitude of the analytic signal of each raw
                      trace (``scipy.signal.hilbert``, FFT-based, so circular at the window edges)
dominant_freq_hz      peak of the amplitude spectrum ``A`` (below), refined by a parabola through the peak
                      bin and its neighbours (mirrored at 0 and Nyquist): ``(k + d) / (T dt)``,
                      ``d = (A[k-1] - A[k+1]) / (2 (A[k-1] - 2 A[k] + A[k+1]))`` in [-0.5, 0.5]; 0 if A == 0
spectral_centroid_hz  ``sum(f A) / sum(A)``; 0 if A == 0
spectral_bandwidth_hz ``sqrt(sum((f - centroid)**2 A) / sum(A))``; 0 if A == 0
centre_<amplitude>    the ten features above, from ``mean`` to ``envelope_mean``, on the centre trace only
centre_<spectral>     the three spectral features on the centre trace's own spectrum
lateral_coherence     mean over neighbour pairs ``(w, w+1)`` of the Pearson correlation of the two traces
                      (zero lag); a pair with a constant trace counts 0; 0 if W == 1
semblance             ``sum_t (sum_w x)**2 / (W sum x**2)`` in [0, 1] (1: identical traces, ~1/W: noise);
                      0 if all zero or W == 1
lateral_rms_cv        coefficient of variation across traces of the trace RMS: ``std_w(r_w) / mean_w(r_w)``,
                      ``r_w = sqrt(mean_t x[w]**2)``; 0 if all zero or W == 1
lateral_gradient_frac ``gl / (gl + gt)`` in [0, 1], ``gl = mean((x[w+1,t] - x[w,t])**2)`` (lateral),
                      ``gt = mean((x[w,t+1] - x[w,t])**2)`` (vertical): 0 for flat layers, larger for dip,
                      faults and chaotic texture; 0 if both are 0 or W == 1 (gt = 0 if T == 1)
====================  ==================================================================================

Spectrum: ``A[k] = mean_w |rfft(hann * (x[w] - mean_t x[w]))[k]|`` for ``k = 0 .. T//2`` at ``f = k/(T dt)``
Hz: the amplitude spectrum of each trace, demeaned and tapered by the periodic Hann window
(``scipy.signal.windows.hann(T, sym=False)``, against leakage from non-periodic windows), averaged over
the traces of the patch; weights of centroid/bandwidth are amplitudes, not powers.

Degenerate input: every feature of a finite window is finite. A constant window has std 0, skewness 0,
kurtosis 0, zero crossings 0 and a zero spectrum (spectral features 0); an all-zero window also has
zero_fraction 1 and envelope 0. A window with any NaN or +-Inf sample (after the float32 cast) gets NaN in
every column, so data-quality checks on the features catch it; other rows are unaffected.

Determinism: rows are computed independently (no BLAS; reductions along contiguous axes; batched FFTs are
bit-identical to single ones, tested), so a batch gives bit-identical rows to one call per window on the
same machine and library build: the guarantee that training and serving compute the same numbers.
"""

from __future__ import annotations

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
TRACE_FEATURE_NAMES: tuple[str, ...] = _AMPLITUDE + _SPECTRAL
CENTRE_FEATURE_NAMES: tuple[str, ...] = tuple(f"centre_{name}" for name in TRACE_FEATURE_NAMES)
LATERAL_FEATURE_NAMES: tuple[str, ...] = (
    "lateral_coherence",
    "semblance",
    "lateral_rms_cv",
    "lateral_gradient_frac",
)
FEATURE_NAMES: tuple[str, ...] = TRACE_FEATURE_NAMES + CENTRE_FEATURE_NAMES + LATERAL_FEATURE_NAMES
N_FEATURES = len(FEATURE_NAMES)
_N_TRACE = len(TRACE_FEATURE_NAMES)
_CHUNK_SAMPLES = 1 << 17  # samples per chunk (1 MiB of float64): temporaries stay in cache; ~2x faster


def _as_batch(windows: np.ndarray) -> np.ndarray:
    """``[N, 1, T]`` / ``[N, 1, W, T]`` / ``[1, T]`` / ``[1, W, T]`` -> float32 ``[N, W, T]`` (a view if possible)."""
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
    return x.astype(np.float32, copy=False)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0 (the degenerate-input convention)."""
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=den > 0)


def _zero_crossings(x: np.ndarray) -> np.ndarray:
    """Sign changes between consecutive non-zero samples along the last axis, summed over the others."""
    sign = np.sign(x)
    if np.any(sign == 0):  # skip zeros: carry the last non-zero sign forward (rare, so the slower path)
        last = np.where(sign != 0, np.arange(x.shape[-1]), 0)
        np.maximum.accumulate(last, axis=-1, out=last)
        sign = np.take_along_axis(sign, last, axis=-1)
    return np.count_nonzero(sign[..., 1:] * sign[..., :-1] < 0, axis=(1, 2))


def _trace_features(x: np.ndarray, xc: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """The TRACE_FEATURE_NAMES columns of ``x [n, W, T]`` float64; ``xc``: its traces demeaned and tapered."""
    n, w, t = x.shape
    flat = x.reshape(n, w * t)
    mean = flat.mean(axis=1)
    # Moments by hand: one centred array shared by m2..m4 is ~5x faster than scipy.stats.skew + kurtosis at
    # a batch of 4096 (40x at one window) and gives 0, not NaN, for constant windows. For float32 data a
    # constant window centres to exactly 0 (n * c is exact in float64, then / n gives c back), so m2 == 0.
    c = flat - mean[:, None]
    c2 = c * c
    m2 = c2.mean(axis=1)
    m3 = (c2 * c).mean(axis=1)
    m4 = (c2 * c2).mean(axis=1)
    max_abs = np.abs(flat).max(axis=1)
    zcr = _zero_crossings(x) / (w * (t - 1)) if t > 1 else np.zeros(n)
    zero_fraction = np.count_nonzero(flat == 0, axis=1) / (w * t)
    # scipy.signal.hilbert: as fast as a hand-written rfft/ifft version at large batches (measured)
    envelope = np.abs(scipy.signal.hilbert(x, axis=-1)).reshape(n, w * t).mean(axis=1)
    # scipy.fft.rfft on the tapered traces; scipy.signal.periodogram does the same but 2-15x slower
    amp = np.abs(scipy.fft.rfft(xc, axis=-1))
    spectrum = amp[:, 0] if w == 1 else amp.mean(axis=1)
    total = spectrum.sum(axis=1)
    centroid = _ratio((spectrum * freqs).sum(axis=1), total)
    spread = (spectrum * (freqs[None, :] - centroid[:, None]) ** 2).sum(axis=1)
    bandwidth = np.sqrt(_ratio(spread, total))
    dominant = _dominant_frequency(spectrum, t, freqs)
    return np.stack(
        [
            mean,
            np.sqrt(m2),
            np.sqrt(mean * mean + m2),
            max_abs,
            _ratio(m3, m2**1.5),
            np.where(m2 > 0, _ratio(m4, m2 * m2) - 3.0, 0.0),
            zcr,
            zero_fraction,
            envelope,
            dominant,
            centroid,
            bandwidth,
        ],
        axis=1,
    )


def _dominant_frequency(spectrum: np.ndarray, t: int, freqs: np.ndarray) -> np.ndarray:
    """Peak frequency of ``spectrum [n, K]`` with parabolic interpolation; mirrors at 0 and Nyquist."""
    n, k = spectrum.shape
    # |X[-1]| = |X[1]| and |X[K]| = |X[T-K]| for real traces: the neighbours beyond both ends
    ext = np.concatenate([spectrum[:, min(1, k - 1), None], spectrum, spectrum[:, t - k, None]], axis=1)
    peak = np.argmax(spectrum, axis=1)
    rows = np.arange(n)
    left, centre, right = ext[rows, peak], ext[rows, peak + 1], ext[rows, peak + 2]
    offset = _ratio(0.5 * (right - left), 2.0 * centre - left - right)  # vertex; curvature >= 0 at a peak
    return (peak + offset) * freqs[1] if k > 1 else np.zeros(n)


def _lateral_features(x: np.ndarray, xd: np.ndarray) -> np.ndarray:
    """LATERAL_FEATURE_NAMES of ``x [n, W, T]`` (W > 1) float64; ``xd``: its traces demeaned."""
    n, w, t = x.shape
    var = (xd * xd).sum(axis=2)
    cov = (xd[:, 1:] * xd[:, :-1]).sum(axis=2)
    coherence = _ratio(cov, np.sqrt(var[:, 1:] * var[:, :-1])).mean(axis=1)
    power = (x * x).sum(axis=2)  # [n, W]
    stacked = x.sum(axis=1)
    semblance = _ratio((stacked * stacked).sum(axis=1), w * power.sum(axis=1))
    trace_rms = np.sqrt(power / t)
    rms_cv = _ratio(trace_rms.std(axis=1), trace_rms.mean(axis=1))
    lateral = np.diff(x, axis=1)
    gl = (lateral * lateral).reshape(n, -1).mean(axis=1)
    vertical = np.diff(x, axis=2)
    gt = (vertical * vertical).reshape(n, -1).mean(axis=1) if t > 1 else np.zeros(n)
    return np.stack([coherence, semblance, rms_cv, _ratio(gl, gl + gt)], axis=1)


def _chunk_features(x32: np.ndarray, dt_s: float) -> np.ndarray:
    n, w, t = x32.shape
    x = x32.astype(np.float64)
    finite = np.isfinite(x).all(axis=(1, 2))
    if not finite.all():
        x[~finite] = 0.0  # computed on zeros (no warnings), overwritten with NaN below
    freqs = np.arange(t // 2 + 1) / (t * dt_s)
    taper = scipy.signal.windows.hann(t, sym=False) if t > 1 else np.ones(1)
    xd = x - x.mean(axis=2, keepdims=True)
    out = np.zeros((n, N_FEATURES))
    out[:, :_N_TRACE] = _trace_features(x, xd * taper, freqs)
    if w == 1:
        out[:, _N_TRACE : 2 * _N_TRACE] = out[:, :_N_TRACE]
    else:
        c = w // 2
        sl = slice(c, c + 1)
        out[:, _N_TRACE : 2 * _N_TRACE] = _trace_features(x[:, sl], xd[:, sl] * taper, freqs)
        out[:, 2 * _N_TRACE :] = _lateral_features(x, xd)
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
    if f.shape[-1] != N_FEATURES or f.ndim not in (1, 2):
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
