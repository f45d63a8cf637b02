"""Synthetic labelled surveys: the project's embedded default data set.

The generator follows the usual recipe of synthetic fault/facies training data (folding by Gaussian bumps
plus planar faults, then convolution with a wavelet), built so that labels and amplitudes stay aligned:

1. A stack of units in flat "geological time" coordinates ``(inline, crossline, tau)``. The main stack of
   ``n_units`` units fills ``tau`` in ``[0, n_samples)`` at every trace; unit thickness varies laterally
   (smooth random fields), and a unit thins but never vanishes. Units are thick (~90 samples by default)
   against the ~64-sample windows a model reads, so most windows lie inside one unit and the label at the
   centre rarely hinges on the exact position of a contact. Extra units above and below fill the margin that
   deformation pulls into view. Each unit has a primary facies in a seeded order and column-like bodies of a
   secondary facies (lateral facies change), so a facies occurs at many depths. Six consecutive units that
   the deformation leaves visible in every inline and crossline hold one of each facies, so every facies is
   present in any inline or crossline block; the others are balanced and never repeat within two units.
   Each facies fills its voxels with an acoustic impedance model (:mod:`seismic.data.facies`): a level per
   facies, a grading and a compaction trend, and its own texture, with parameters varying laterally so one
   survey shows the range that a survey from another seed draws.
2. One deformation maps each output sample to a source point of the flat model: planar normal faults are
   undone youngest first (the hanging wall slid down-dip, vertical throw ``throw``), then folding, a vertical
   shift ``s = linear dip + (0.5 + t / n_samples) * sum of Gaussian bumps``. The log-impedance is sampled
   there by linear interpolation and the labels by nearest neighbour: the same mapping for both. Reflection
   coefficients are derived after the deformation, from the contrasts between vertically adjacent samples
   (:func:`reflection_coefficients`), so a fault that juxtaposes two rocks reflects what they give.
3. Convolution with a Ricker wavelet (peak frequency and phase from the config), scaling to unit signal RMS,
   and additive noise band-limited by the same wavelet at ``snr_db`` (20 log10 of signal RMS / noise RMS).

Everything derives from ``seed`` through independent streams: same config, bit-identical survey.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import ndimage, signal

from seismic.data.facies import FACIES, FaciesPlan, build_stack, flat_model, window_start
from seismic.data.survey import Survey

__all__ = ["FACIES", "GENERATOR_VERSION", "SyntheticSurveyConfig", "generate_survey", "ricker"]

GENERATOR = "seismic.data.synthetic"
GENERATOR_VERSION = 4  # bump whenever the output for a given config changes
GEOLOGY_MARGIN_MS = 200.0  # >= half a Ricker wavelet down to 12.5 Hz: the geology does not depend on it
# Reflection coefficient of one unit of log-impedance contrast (the facies model's units): contacts of
# 0.3-2.9 units reflect 0.006-0.058, the range of sedimentary contrasts. The survey is scaled to unit RMS, so
# this sets only the (slight) non-linearity of tanh.
REFLECTION_PER_UNIT = 0.02
_SLAB_VOXELS = 1 << 19  # output voxels deformed per pass: bounds the memory of the coordinate arrays

_INT_MIN = {"n_inlines": 1, "n_crosslines": 1, "n_samples": 1, "seed": 0, "n_units": len(FACIES)}
_INT_MIN |= {"fold_bumps": 0, "n_faults": 0}
_RANGES = ("fold_width", "facies_bodies", "fault_dip_deg", "fault_throw")


@dataclass(frozen=True)
class SyntheticSurveyConfig:
    """Every knob of the generator; the defaults are the project's embedded default survey.

    Lengths are in samples (vertical) or traces (lateral); ranges are ``(low, high)`` drawn uniformly.
    """

    n_inlines: int = 128
    n_crosslines: int = 96
    n_samples: int = 640
    dt_ms: float = 4.0
    seed: int = 0
    n_units: int = 7  # units of the main stack (>= number of facies; facies repeat); ~91 samples each
    thickness_variation: float = 0.3  # unit thickness varies laterally by up to +-this fraction
    thickness_correlation: float = 24.0  # lateral correlation length of the thickness fields, traces
    fold_bumps: int = 6  # Gaussian bumps of the fold shift field
    fold_amplitude: float = 18.0  # largest bump height, samples (each bump is +-uniform up to this)
    fold_width: tuple[float, float] = (12.0, 36.0)  # bump standard deviation, traces
    fold_dip: float = 0.05  # largest linear dip along each axis, samples per trace
    facies_bodies: tuple[float, float] = (0.25, 0.45)  # share of a unit taken by secondary-facies bodies
    n_faults: int = 3
    fault_dip_deg: tuple[float, float] = (55.0, 75.0)
    fault_throw: tuple[float, float] = (4.0, 12.0)  # vertical throw, samples; normal faults
    wavelet_peak_hz: float = 30.0
    wavelet_phase_deg: float = 0.0
    snr_db: float | None = 10.0  # signal RMS / band-limited noise RMS in dB; None: no noise

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), f.default))
        for name, low in _INT_MIN.items():
            if getattr(self, name) < low:
                _bad(name, f"must be >= {low}, got {getattr(self, name)}")
        for name in ("dt_ms", "thickness_correlation", "wavelet_peak_hz"):
            if not getattr(self, name) > 0:
                _bad(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("fold_amplitude", "fold_dip"):
            if getattr(self, name) < 0:
                _bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.thickness_variation <= 0.9:
            _bad(
                "thickness_variation",
                f"must be in [0, 0.9] so that no unit vanishes, got {self.thickness_variation}",
            )
        if self.n_samples < 4 * self.n_units:
            _bad("n_units", f"is {self.n_units}: units must average >= 4 samples, so at most n_samples // 4")
        for name, (lo, hi) in ((n, getattr(self, n)) for n in _RANGES):
            if lo > hi:
                _bad(name, f"must be (low, high) with low <= high, got {(lo, hi)}")
        if self.fold_width[0] <= 0:
            _bad("fold_width", f"must be > 0, got {self.fold_width}")
        if not (self.fault_dip_deg[0] >= 15.0 and self.fault_dip_deg[1] <= 90.0):
            _bad("fault_dip_deg", f"must lie in [15, 90] degrees, got {self.fault_dip_deg}")
        if not (self.facies_bodies[0] >= 0 and self.facies_bodies[1] <= 0.9):
            _bad("facies_bodies", f"must lie in [0, 0.9], got {self.facies_bodies}")
        if self.fault_throw[0] < 0:
            _bad("fault_throw", f"must be >= 0 samples, got {self.fault_throw}")
        nyquist = 500.0 / self.dt_ms
        if self.wavelet_peak_hz >= nyquist / 2:
            _bad(
                "wavelet_peak_hz", f"{self.wavelet_peak_hz} Hz must be below half the Nyquist ({nyquist} Hz)"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SyntheticSurveyConfig:
        """Config from a plain dict or OmegaConf container; unknown keys and bad values raise ValueError."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"synthetic survey config must be a mapping, got {type(mapping).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in mapping if k not in names)
        if unknown:
            raise ValueError(f"unknown synthetic survey config key(s) {unknown}; known keys: {names}")
        return cls(**{str(k): v for k, v in mapping.items()})


def _bad(name: str, why: str) -> None:
    raise ValueError(f"SyntheticSurveyConfig.{name} {why}")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
            _bad(name, f"must be a (low, high) pair of numbers, got {value!r}")
        return tuple(_coerce(name, v, 0.0) for v in value)
    if value is None and name == "snr_db":
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        _bad(name, f"must be a number, got {value!r}")
    if isinstance(default, int):
        if not isinstance(value, Integral) and not float(value).is_integer():
            _bad(name, f"must be an integer, got {value!r}")
        return int(value)
    if not math.isfinite(value):
        _bad(name, f"must be finite, got {value!r}")
    return float(value)


def ricker(
    peak_hz: float, dt_ms: float, phase_deg: float = 0.0, half_length: int | None = None
) -> np.ndarray:
    """Ricker wavelet sampled every ``dt_ms``, centred in an odd-length array, rotated by ``phase_deg``.

    The rotation is ``w cos(phi) - H[w] sin(phi)`` with ``H`` the Hilbert transform (computed on a longer
    support, then cut), so 90 degrees gives an odd-symmetric wavelet and the amplitude spectrum is unchanged.
    """
    if not (peak_hz > 0 and dt_ms > 0):
        raise ValueError(f"ricker needs peak_hz > 0 and dt_ms > 0, got {peak_hz}, {dt_ms}")
    dt = dt_ms / 1000.0
    if half_length is None:
        half_length = math.ceil(2.5 / (peak_hz * dt))
    long = 4 * half_length
    t = np.arange(-long, long + 1) * dt
    arg = (np.pi * peak_hz * t) ** 2
    w = (1.0 - 2.0 * arg) * np.exp(-arg)
    phi = math.radians(phase_deg)
    if phi % (2 * math.pi):
        w = w * math.cos(phi) - np.imag(signal.hilbert(w)) * math.sin(phi)
    return w[long - half_length : long + half_length + 1]


@dataclass(frozen=True)
class _Fault:
    origin: np.ndarray  # a point of the plane (inline, crossline, sample), index units
    normal: np.ndarray  # unit normal with a downward (positive sample) component
    slip: np.ndarray  # displacement of the hanging wall: down-dip, vertical component = throw

    def hanging_wall(self, i: np.ndarray, j: np.ndarray, k: np.ndarray) -> np.ndarray:
        o, n = self.origin, self.normal
        return (i - o[0]) * n[0] + (j - o[1]) * n[1] + (k - o[2]) * n[2] < 0


@dataclass(frozen=True)
class _Fold:
    centres: np.ndarray  # (n, 2)
    heights: np.ndarray
    widths: np.ndarray
    gradient: np.ndarray  # (2,) samples per trace
    middle: np.ndarray  # (2,) survey centre
    mean: float  # mean of the bumps over the survey, removed so the survey centre stays put
    n_samples: int

    def bumps(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(np.shape(i), np.shape(j)))
        for (ci, cj), h, w in zip(self.centres, self.heights, self.widths, strict=True):
            total += h * np.exp(-((i - ci) ** 2 + (j - cj) ** 2) / (2.0 * w * w))
        return total - self.mean

    def linear(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (i - self.middle[0]) * self.gradient[0] + (j - self.middle[1]) * self.gradient[1]

    def shift(self, i: np.ndarray, j: np.ndarray, k: np.ndarray) -> np.ndarray:
        return self.linear(i, j) + (0.5 + k / self.n_samples) * self.bumps(i, j)


def _draw_fold(c: SyntheticSurveyConfig, rng: np.random.Generator) -> _Fold:
    size = np.array([c.n_inlines, c.n_crosslines], float)
    fold = _Fold(
        centres=rng.uniform(-0.1, 1.1, size=(c.fold_bumps, 2)) * size,
        heights=rng.uniform(-1.0, 1.0, c.fold_bumps) * c.fold_amplitude,
        widths=rng.uniform(*c.fold_width, c.fold_bumps),
        gradient=rng.uniform(-1.0, 1.0, 2) * c.fold_dip,
        middle=(size - 1) / 2,
        mean=0.0,
        n_samples=c.n_samples,
    )
    i, j = np.meshgrid(np.arange(c.n_inlines), np.arange(c.n_crosslines), indexing="ij", sparse=True)
    return replace(fold, mean=float(fold.bumps(i, j).mean()))


def _draw_faults(c: SyntheticSurveyConfig, rng: np.random.Generator) -> list[_Fault]:
    faults = []
    for _ in range(c.n_faults):
        dip = math.radians(rng.uniform(*c.fault_dip_deg))
        throw = rng.uniform(*c.fault_throw)
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        origin = np.array(
            [
                rng.uniform(0.2, 0.8) * c.n_inlines,
                rng.uniform(0.2, 0.8) * c.n_crosslines,
                rng.uniform(0.3, 0.7) * c.n_samples,
            ]
        )
        down_dip = np.array(
            [math.cos(dip) * math.cos(azimuth), math.cos(dip) * math.sin(azimuth), math.sin(dip)]
        )
        normal = np.array(
            [-math.sin(dip) * math.cos(azimuth), -math.sin(dip) * math.sin(azimuth), math.cos(dip)]
        )
        faults.append(_Fault(origin=origin, normal=normal, slip=down_dip * throw / math.sin(dip)))
    return faults


def _source(i, j, k, faults: Sequence[_Fault], fold: _Fold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat-model coordinates ``(inline, crossline, tau)`` of output samples ``(i, j, k)``."""
    for fault in reversed(faults):
        hw = fault.hanging_wall(i, j, k)
        i, j, k = i - hw * fault.slip[0], j - hw * fault.slip[1], k - hw * fault.slip[2]
    return i, j, k - fold.shift(i, j, k)


def _everywhere(volume: np.ndarray, n: int) -> np.ndarray:
    """Which of the values ``0..n-1`` occur in every inline and in every crossline of ``volume``."""
    by_il = np.zeros((volume.shape[0], n), bool)
    by_il[np.arange(volume.shape[0])[:, None], volume.reshape(volume.shape[0], -1)] = True
    by_xl = np.zeros((volume.shape[1], n), bool)
    by_xl[np.arange(volume.shape[1])[:, None], volume.transpose(1, 0, 2).reshape(volume.shape[1], -1)] = True
    return by_il.all(axis=0) & by_xl.all(axis=0)


def _coordinates(c: SyntheticSurveyConfig, fold: _Fold, faults, half: int) -> list[np.ndarray]:
    """Flat-model coordinates ``[3, ...]`` of every output sample (time axis padded by ``half``), one slab
    of inlines at a time; float32 to keep the memory modest."""
    slabs = []
    step = max(1, _SLAB_VOXELS // (c.n_crosslines * (c.n_samples + 2 * half)))
    for start in range(0, c.n_inlines, step):
        i, j, k = np.meshgrid(
            np.arange(start, min(start + step, c.n_inlines), dtype=float),
            np.arange(c.n_crosslines, dtype=float),
            np.arange(-half, c.n_samples + half, dtype=float),
            indexing="ij",
        )
        slabs.append(np.stack(_source(i, j, k, faults, fold)).astype(np.float32))
    return slabs


def _sample(volume: np.ndarray, order: int, slabs: list[np.ndarray]) -> np.ndarray:
    """The flat ``volume`` at the output coordinates: linear (order 1) or nearest (order 0) interpolation."""
    out = [
        ndimage.map_coordinates(volume, xyz, output=volume.dtype, order=order, mode="nearest")
        for xyz in slabs
    ]
    return np.concatenate(out, axis=0)


def reflection_coefficients(log_impedance: np.ndarray) -> np.ndarray:
    """Normal-incidence reflection coefficients down the last axis, ``(Z[t] - Z[t-1]) / (Z[t] + Z[t-1])``
    (0 at the first sample), of a log-impedance in reflectivity units: ``Z = exp(2 REFLECTION_PER_UNIT P)``,
    so the coefficient is ``tanh(REFLECTION_PER_UNIT dP)``. It sits on the first sample of the lower layer,
    the sample whose label the contact's lower facies carries."""
    contrast = np.zeros_like(log_impedance)
    np.subtract(log_impedance[..., 1:], log_impedance[..., :-1], out=contrast[..., 1:])
    return np.tanh(contrast * np.float32(REFLECTION_PER_UNIT), out=contrast)


@dataclass(frozen=True)
class _Parts:
    units: np.ndarray  # unit index of the stack at each sample (deformed like the labels)
    log_impedance: np.ndarray  # deformed, in reflectivity units (seismic.data.facies.IMPEDANCE_LEVEL)
    reflectivity: np.ndarray  # reflection coefficients of the deformed impedance, before the wavelet
    labels: np.ndarray
    clean: np.ndarray  # convolved, scaled to unit RMS, no noise
    amplitudes: np.ndarray  # clean + noise, float32
    faults: list[_Fault]
    fold: _Fold


def _synthesize(c: SyntheticSurveyConfig, *, fault_labels: bool = True) -> _Parts:
    """All stages of :func:`generate_survey`; ``fault_labels=False`` (tests only) leaves labels unfaulted."""
    fold_rng, fault_rng, model_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(c.seed).spawn(4)
    )
    wavelet = ricker(c.wavelet_peak_hz, c.dt_ms, c.wavelet_phase_deg)
    # The model is built over the output plus a margin in time; a margin that followed the wavelet's length
    # would resize the flat grid and so redraw the geology: another wavelet would image another geology.
    half = max(wavelet.size // 2, math.ceil(GEOLOGY_MARGIN_MS / c.dt_ms))
    fold, faults = _draw_fold(c, fold_rng), _draw_faults(c, fault_rng)
    # Source point of every output sample, then the flat grid that just covers them all (plus a margin).
    coords = _coordinates(c, fold, faults, half)
    lo = np.min([xyz.reshape(3, -1).min(axis=1) for xyz in coords], axis=0)
    hi = np.max([xyz.reshape(3, -1).max(axis=1) for xyz in coords], axis=0)
    gx, gy, tau = (
        np.arange(math.floor(a) - 2, math.ceil(b) + 3, dtype=float) for a, b in zip(lo, hi, strict=True)
    )
    origin = np.array([gx[0], gy[0], tau[0]], np.float32)[:, None, None, None]
    for xyz in coords:
        xyz -= origin
    stack_rng, plan_rng, facies_rng = model_rng.spawn(3)
    tops, unit, n_above = build_stack(
        stack_rng, c.n_samples, c.n_units, c.thickness_variation, c.thickness_correlation, gx, gy, tau
    )
    keep = slice(half, half + c.n_samples)
    unit_out = _sample(unit, 0, coords)
    start = window_start(_everywhere(unit_out[..., keep], tops.shape[-1] - 1), n_above + c.n_units / 2)
    plan = FaciesPlan.draw(plan_rng, tops.shape[-1] - 1, start, gx, gy, c.facies_bodies)
    for attempt in range(2):  # rare: bodies hid a facies from some inline/crossline; then drop the window's
        flat_labels, flat_impedance = flat_model(facies_rng.spawn(1)[0], plan, tops, unit, gx, gy, tau)
        labels = _sample(flat_labels, 0, coords)
        if attempt or _everywhere(labels[..., keep], len(FACIES)).all():
            break
        plan = plan.without_bodies(np.arange(start, start + len(FACIES)))
    log_impedance = _sample(flat_impedance, 1, coords)
    del flat_impedance
    refl = reflection_coefficients(log_impedance)
    if not fault_labels:
        labels = _sample(flat_labels, 0, [xyz - origin for xyz in _coordinates(c, fold, (), half)])

    clean = ndimage.convolve1d(refl, wavelet, axis=-1, mode="constant")[..., keep]
    scale = float(np.sqrt(np.mean(np.square(clean, dtype=np.float64))))
    clean /= scale if scale > 0 else 1.0
    amplitudes = clean.copy()
    if c.snr_db is not None:
        noise = noise_rng.standard_normal(refl.shape, dtype=np.float32)
        noise = ndimage.convolve1d(noise, wavelet, axis=-1, mode="constant")[..., keep]
        noise_rms = float(np.sqrt(np.mean(np.square(noise, dtype=np.float64))))
        signal_rms = float(np.sqrt(np.mean(np.square(clean, dtype=np.float64))))
        amplitudes += noise * np.float32(signal_rms * 10.0 ** (-c.snr_db / 20.0) / noise_rms)
    return _Parts(
        units=unit_out[..., keep],
        log_impedance=log_impedance[..., keep],
        reflectivity=refl[..., keep],
        labels=labels[..., keep],
        clean=clean,
        amplitudes=amplitudes,
        faults=faults,
        fold=fold,
    )


def generate_survey(config: SyntheticSurveyConfig | None = None) -> Survey:
    """The labelled synthetic survey of ``config`` (default: the project's embedded default survey)."""
    config = SyntheticSurveyConfig() if config is None else config
    parts = _synthesize(config)
    return Survey(
        amplitudes=np.ascontiguousarray(parts.amplitudes, dtype=np.float32),
        dt_ms=config.dt_ms,
        labels=np.ascontiguousarray(parts.labels),
        class_names=FACIES,
        provenance={"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "params": asdict(config)},
    )
