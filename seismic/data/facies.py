"""Facies model of the synthetic survey (:mod:`seismic.data.synthetic`): stack, facies plan, reflectivity.

The model is built in flat "geological time" coordinates: a stack of thick units whose thickness varies
laterally (:func:`build_stack`), each with a primary facies and column-like bodies of a secondary one
(:class:`FaciesPlan`: near-vertical lateral contacts, so a body replaces the unit's facies over its whole
thickness instead of adding contacts inside a trace). A generator receives every voxel of its facies with the
voxel's place in its unit (:class:`FaciesVoxels`) and returns the reflectivity there; every run of a facies
but ``massive`` starts with a moderate boundary reflector (:func:`boundary`), as facies contacts do.

Each facies has a character that a single trace window of ~64 samples (30 Hz wavelet, 10 dB noise) shows;
interior RMS levels after the survey's scaling to unit RMS (noise RMS 0.32) are given in brackets. The loud
facies overlap in level, so a classifier has to read texture, not brightness:

- ``parallel`` (~1.0): isolated bright reflectors 14-19 samples apart, quiet between, laterally continuous.
- ``transparent`` (~0.6): weak, low-frequency, partly continuous reflectivity, about twice the noise level.
- ``chaotic`` (~1.4): dense reflector segments with random dips and strengths in small cells redrawn every
  6 samples: discontinuous laterally, bursty vertically.
- ``thin_bedded`` (~1.1): near-periodic alternating-polarity thin beds ~2 samples apart: the highest
  frequency, laterally continuous.
- ``massive`` (noise only inside): one bright reflector (1.6-2x) at the top of the body and an exactly quiet
  (zero) interior.
- ``clinoform`` (~1.0): a near-monochromatic oscillation (vertical period 6.5-9 samples) of sigmoidal layers
  prograding in several lobes with their own azimuths, i.e. dipping in most sections.

Layered facies read their per-unit sequence along a gently warped, laterally shifted depth axis with laterally
varying reflector strength (:func:`_layered`), and parameter ranges vary laterally inside each unit, so one
survey already holds the variety that a survey with other draws shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

FACIES: tuple[str, ...] = ("parallel", "transparent", "chaotic", "thin_bedded", "massive", "clinoform")
_GAP = 2  # a facies is never the primary facies of a unit within this many units of itself


def facies_sequence(rng: np.random.Generator, n: int, start: int) -> np.ndarray:
    """Primary facies of ``n`` units, top first: units ``start`` to ``start + len(FACIES) - 1`` hold one of
    each facies (seeded order); the others, filled outwards, are balanced and never repeat within ``_GAP``."""
    n_facies = len(FACIES)
    seq = np.full(n, -1)
    seq[start : start + n_facies] = rng.permutation(n_facies)
    counts = np.ones(n_facies, int)
    up, down = range(start - 1, -1, -1), range(start + n_facies, n)
    order = [p for pair in zip(up, down, strict=False) for p in pair]
    order += list(up[len(down) :]) + list(down[len(up) :])
    for p in order:
        near = set(seq[max(0, p - _GAP) : p + _GAP + 1].tolist())
        candidates = np.array([f for f in range(n_facies) if f not in near])
        seq[p] = rng.choice(candidates[counts[candidates] == counts[candidates].min()])
        counts[seq[p]] += 1
    return seq


@dataclass(frozen=True)
class FaciesPlan:
    """Facies of every flat voxel: each unit has a primary facies and holds bodies of a secondary facies
    where ``body + tilt * (eta - 0.5) > 0`` (lateral facies change with steep contacts: a body mostly spans
    the unit's whole thickness, so it adds few contacts inside a trace), so that a facies is not tied to a
    depth. Bodies cover less of the units of the one-of-each window."""

    primary: np.ndarray  # (n,)
    secondary: np.ndarray  # (n,), -1 for none
    body: np.ndarray  # (n, nx, ny): smooth field minus its threshold
    tilt: np.ndarray  # (n,)

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        n: int,
        start: int,
        x: np.ndarray,
        y: np.ndarray,
        cover: tuple[float, float] = (0.2, 0.5),
    ) -> FaciesPlan:
        """Plan for ``n`` units with the one-of-each window at ``start``; bodies take a share of each unit
        drawn from ``cover`` (two thirds of that in the window; ``(0, 0)``: no bodies)."""
        primary = facies_sequence(rng, n, start)
        secondary = (primary + rng.integers(1, len(FACIES), size=n)) % len(FACIES)
        field = smooth_fields(rng, n, 30.0, x, y)
        window = (np.arange(n) >= start) & (np.arange(n) < start + len(FACIES))
        share = rng.uniform(*cover, n) * np.where(window, 2.0 / 3.0, 1.0)
        threshold = np.array([np.quantile(f, 1.0 - c) for f, c in zip(field, share, strict=True)])
        tilt = rng.uniform(-0.2, 0.2, n)
        secondary = np.where(share > 0, secondary, -1)
        return cls(primary=primary, secondary=secondary, body=field - threshold[:, None, None], tilt=tilt)

    def without_bodies(self, units: np.ndarray) -> FaciesPlan:
        """The same plan with the listed units left to their primary facies."""
        return replace(
            self, secondary=np.where(np.isin(np.arange(self.primary.size), units), -1, self.secondary)
        )

    def labels(self, unit: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Facies of the flat grid, given its unit index and relative depth ``eta`` (both [nx, ny, nt])."""
        nx, ny, _ = unit.shape
        body = self.body.astype(np.float32)[unit, np.arange(nx)[:, None, None], np.arange(ny)[None, :, None]]
        body += self.tilt.astype(np.float32)[unit] * (eta - np.float32(0.5))
        secondary = self.secondary.astype(np.int8)[unit]
        return np.where((secondary >= 0) & (body > 0), secondary, self.primary.astype(np.int8)[unit]).astype(
            np.uint8
        )


def build_stack(
    rng: np.random.Generator,
    n_samples: int,
    n_units: int,
    variation: float,
    correlation: float,
    gx: np.ndarray,
    gy: np.ndarray,
    tau: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Unit boundaries ``[nx, ny, n + 1]`` (top first), unit index of the flat grid, and the index of the
    first main-stack unit. The main stack fills ``tau`` in ``[0, n_samples)``; extra units above and below."""
    mean_h, v = n_samples / n_units, variation
    n_above = math.ceil(max(0.0, -tau[0]) / (mean_h * (1 - v))) + 1
    n_below = math.ceil(max(0.0, tau[-1] - n_samples) / (mean_h * (1 - v))) + 1
    n = n_above + n_units + n_below
    h = mean_h * (1.0 + v * smooth_fields(rng, n, correlation, gx, gy))
    main = h[n_above : n_above + n_units]
    main *= n_samples / main.sum(axis=0)
    tops = np.concatenate(
        [
            -np.cumsum(h[:n_above][::-1], axis=0)[::-1],
            np.zeros_like(h[:1]),
            np.cumsum(main, axis=0),
            n_samples + np.cumsum(h[n_above + n_units :], axis=0),
        ]
    )
    tops = np.ascontiguousarray(np.moveaxis(tops, 0, -1))
    # unit index = number of inner boundaries at or above tau: +1 at each boundary's first sample, cumsum
    first = np.clip(np.ceil(tops[:, :, 1:n] - tau[0]).astype(np.intp), 0, tau.size)
    step = np.zeros((gx.size, gy.size, tau.size + 1), np.uint8)
    lat = np.indices((gx.size, gy.size))[..., None]
    np.add.at(step, (lat[0], lat[1], first), 1)
    return tops, np.cumsum(step[..., :-1], axis=-1, dtype=np.uint8), n_above


def window_start(visible: np.ndarray, centre: float) -> int:
    """Start of the ``len(FACIES)`` consecutive units that are visible in every inline and crossline (or the
    most of them) and lie nearest ``centre``: those units hold one of each facies."""
    width = len(FACIES)
    starts = np.arange(visible.size - width + 1)
    score = np.array([visible[s : s + width].sum() for s in starts]) * 1e6 - np.abs(
        starts + width / 2 - centre
    )
    return int(starts[np.argmax(score)])


def flat_model(
    rng: np.random.Generator, plan: FaciesPlan, tops: np.ndarray, unit: np.ndarray, gx, gy, tau
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8) and reflectivity (float32) of the flat grid."""
    n = tops.shape[-1] - 1
    top = np.take_along_axis(tops.astype(np.float32), unit, axis=-1)
    thick = np.take_along_axis(tops.astype(np.float32), unit + np.uint8(1), axis=-1) - top
    zeta = np.maximum(tau.astype(np.float32) - top, 0)
    del top
    labels = plan.labels(unit, zeta / thick)
    run_top = np.ones(labels.shape, bool)
    run_top[..., 1:] = labels[..., 1:] != labels[..., :-1]
    refl = np.zeros(unit.shape, np.float32)
    *streams, marker_stream = rng.spawn(len(FACIES) + 1)
    for f, (name, stream) in enumerate(zip(FACIES, streams, strict=True)):
        idx = np.flatnonzero(labels == f)
        if idx.size == 0:
            continue
        column, _ = np.divmod(idx, tau.size)
        gi, gj = np.divmod(column, gy.size)
        z, u = zeta.reshape(-1)[idx].astype(float), unit.reshape(-1)[idx].astype(np.intp)
        voxels = FaciesVoxels(
            gi=gi,
            gj=gj,
            zeta=z,
            eta=z / thick.reshape(-1)[idx],
            thickness=thick.reshape(-1)[idx].astype(float),
            unit=u,
            run_top=run_top.reshape(-1)[idx],
            n_units=n,
            grid_x=gx,
            grid_y=gy,
        )
        refl.reshape(-1)[idx] = GENERATORS[name](stream, voxels)
        if name != "massive":
            refl.reshape(-1)[idx] += boundary(marker_stream, voxels)
    return labels, refl


@dataclass(frozen=True)
class FaciesVoxels:
    """The voxels of one facies in the flat model, each with its position inside its unit."""

    gi: np.ndarray  # index into grid_x (inline axis of the lateral grid)
    gj: np.ndarray  # index into grid_y (crossline axis)
    zeta: np.ndarray  # samples below the unit top, >= 0
    eta: np.ndarray  # zeta / unit thickness, in [0, 1)
    thickness: np.ndarray  # thickness of the unit at the voxel's trace, samples
    unit: np.ndarray  # unit index, 0 = top of the stack
    run_top: np.ndarray  # first voxel of its facies in its column (the top of a body of this facies)
    n_units: int
    grid_x: np.ndarray  # inline coordinate (traces) of each lateral grid row; may extend past the survey
    grid_y: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return self.grid_x[self.gi]

    @property
    def y(self) -> np.ndarray:
        return self.grid_y[self.gj]


def smooth_fields(
    rng: np.random.Generator,
    n: int,
    corr: float,
    x: np.ndarray,
    y: np.ndarray,
    n_modes: int = 16,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` smooth random fields on the grid ``x`` by ``y``, values in (-1, 1), correlation length ``corr``.

    Each field is a sum of random plane waves (a Gaussian-covariance random field), squashed by ``tanh``;
    it is a function of the continuous coordinates, so it does not depend on the grid's extent. Only the
    fields listed in ``rows`` are evaluated (the others stay zero); the random draws do not depend on it.
    """
    k = rng.normal(scale=1.0 / corr, size=(2, n, n_modes))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n, n_modes))
    rows = np.arange(n) if rows is None else np.asarray(rows)
    ax = k[0, rows, :, None] * np.asarray(x, float) + phase[rows, :, None]
    ay = k[1, rows, :, None] * np.asarray(y, float)
    # cos(ax + ay) = cos ax cos ay - sin ax sin ay: one real batched product over the modes
    px = np.concatenate([np.cos(ax), -np.sin(ax)], axis=1).transpose(0, 2, 1)
    py = np.concatenate([np.cos(ay), np.sin(ay)], axis=1)
    out = np.zeros((n, np.size(x), np.size(y)))
    out[rows] = np.tanh(np.matmul(px, py) * np.sqrt(2.0 / n_modes))
    return out


def spike_table(
    rng: np.random.Generator,
    rows: int,
    length: int,
    spacing: tuple[float, float],
    amplitude: tuple[float, float],
    alternate: bool = False,
) -> np.ndarray:
    """``rows`` sparse reflectivity series of ``length`` samples: spikes ``spacing`` apart, random sizes."""
    n_max = int(length / spacing[0]) + 2
    pos = np.cumsum(rng.uniform(*spacing, size=(rows, n_max)), axis=1)
    pos = np.rint(pos - rng.uniform(0.0, spacing[1], size=(rows, 1))).astype(np.intp)
    size = rng.uniform(*amplitude, size=(rows, n_max))
    if alternate:
        sign = np.where(np.arange(n_max) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0], size=(rows, 1))
    else:
        sign = rng.choice([-1.0, 1.0], size=(rows, n_max))
    table = np.zeros((rows, length))
    ok = (pos >= 0) & (pos < length)
    row = np.broadcast_to(np.arange(rows)[:, None], pos.shape)
    np.add.at(table, (row[ok], pos[ok]), (size * sign)[ok])
    return table


def sample_table(table: np.ndarray, row: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``table[row]`` at fractional positions ``pos`` (clamped to the table)."""
    p = np.clip(pos, 0.0, table.shape[1] - 1.000001)
    p0 = p.astype(np.intp)
    frac = p - p0
    return table[row, p0] * (1.0 - frac) + table[row, p0 + 1] * frac


# Texture parameters (samples; reflectivity units before the survey's scaling to unit RMS).
PARALLEL_SPACING = (14.0, 19.0)
PARALLEL_GAIN = 1.1
TRANSPARENT_SMOOTH = 2.5
TRANSPARENT_GAIN = 0.2
CHAOTIC_SPACING = (2.0, 5.0)
CHAOTIC_GAIN = 1.25
THIN_GAIN = 1.5
THIN_SPACING = (1.8, 2.3)
MASSIVE_TOP = (1.6, 2.0)
CLINO_PERIOD = (6.5, 9.0)
CLINO_GAIN = 0.2
BOUNDARY_SIZE = (0.5, 0.8)


def _length(v: FaciesVoxels, extra: float = 0.0) -> int:
    return int(np.ceil(float(v.zeta.max(initial=0.0)) + extra)) + 3


def _lateral(rng: np.random.Generator, v: FaciesVoxels, corr: float) -> np.ndarray:
    """One smooth lateral field per unit, gathered at the voxels."""
    fields = smooth_fields(rng, v.n_units, corr, v.grid_x, v.grid_y, rows=np.unique(v.unit))
    return fields[v.unit, v.gi, v.gj]


def _knot_fields(rng: np.random.Generator, v: FaciesVoxels, spacing: float, corr: float) -> np.ndarray:
    """A smooth lateral field per unit and depth knot (knots ``spacing`` samples apart), linearly
    interpolated between the knots at every voxel: a field that varies laterally and with depth."""
    n_knots = int(float(v.zeta.max(initial=0.0)) // spacing) + 2
    units = np.unique(v.unit)
    rows = (units[:, None] * n_knots + np.arange(n_knots)).ravel()
    fields = smooth_fields(rng, v.n_units * n_knots, corr, v.grid_x, v.grid_y, rows=rows)
    k = v.zeta / spacing
    k0 = np.minimum(k.astype(np.intp), n_knots - 2)
    frac = k - k0
    row = v.unit * n_knots + k0
    return fields[row, v.gi, v.gj] * (1.0 - frac) + fields[row + 1, v.gi, v.gj] * frac


def _layered(
    rng: np.random.Generator, v: FaciesVoxels, table: np.ndarray, shift: float, wobble: float, dimming: float
) -> np.ndarray:
    """``table[unit]`` read along a laterally varying, gently warped depth axis, with reflector strength
    varying laterally: layers stay continuous from trace to trace, yet no two distant traces read the same
    sequence (a per-unit table alone would repeat one sequence across the whole unit)."""
    pos = v.zeta * (1.0 + 0.1 * _lateral(rng, v, 40.0)) + shift * (1.0 + _lateral(rng, v, 50.0))
    pos += wobble * _knot_fields(rng, v, 12.0, 30.0)
    gain = 1.0 + dimming * _knot_fields(rng, v, 10.0, 20.0)
    return sample_table(table, v.unit, pos) * gain


def parallel(rng: np.random.Generator, v: FaciesVoxels) -> np.ndarray:
    """Isolated bright reflectors, regularly spaced, laterally continuous, quiet in between."""
    table = spike_table(rng, v.n_units, _length(v, 0.2 * _length(v) + 40.0), PARALLEL_SPACING, (0.85, 1.15))
    return PARALLEL_GAIN * _layered(rng, v, table, 20.0, 4.0, 0.4)


def transparent(rng: np.random.Generator, v: FaciesVoxels) -> np.ndarray:
    """Weak, low-frequency, partly continuous reflectivity: clearly above the noise, far below the rest."""
    n = _length(v, 0.2 * _length(v) + 40.0)
    tables = ndimage.gaussian_filter1d(rng.normal(size=(2, v.n_units, n)), TRANSPARENT_SMOOTH, axis=-1)
    tables /= tables.std()
    mix = 0.5 + 0.5 * _lateral(rng, v, 6.0)
    return TRANSPARENT_GAIN * (
        _layered(rng, v, tables[0], 20.0, 4.0, 0.3) * mix
        + _layered(rng, v, tables[1], 20.0, 4.0, 0.3) * (1 - mix)
    )


def chaotic(rng: np.random.Generator, v: FaciesVoxels, cell: float = 5.0, tier: float = 6.0) -> np.ndarray:
    """Cells (jittered-lattice Voronoi, redrawn every ``tier`` samples) each holding reflector segments of one
    random dip, offset and strength: short, discontinuous reflections."""
    n_tiers = int(float(v.zeta.max(initial=0.0)) // tier) + 3
    na, nb = int(np.ptp(v.grid_x) / cell) + 2, int(np.ptp(v.grid_y) / cell) + 2
    shape = (v.n_units, n_tiers, na, nb)
    seed_xy = rng.uniform(0.0, cell, size=(2, *shape)).reshape(2, -1)
    dip = rng.uniform(-1.2, 1.2, size=(2, *shape)).reshape(2, -1)
    offset = rng.uniform(20.0, 40.0, shape).reshape(-1)
    size = CHAOTIC_GAIN * rng.uniform(0.1, 1.6, shape).reshape(-1)
    table = spike_table(rng, v.n_units, _length(v, 60.0), CHAOTIC_SPACING, (0.3, 1.0))
    wobble = smooth_fields(rng, 1, 20.0, v.grid_x, v.grid_y)[0][v.gi, v.gj]
    level = np.clip(((v.zeta + 3.0 * (1.0 + wobble)) / tier).astype(np.intp), 0, n_tiers - 1)
    # cell of every lateral grid point, per unit present and tier: nearest seed among the 3 x 3 lattice
    # cells around the point (seed = lattice corner + jitter)
    units = np.unique(v.unit)
    fx = ((v.grid_x - v.grid_x[0]) / cell)[:, None]
    fy = ((v.grid_y - v.grid_y[0]) / cell)[None, :]
    base = (units[:, None, None, None] * n_tiers + np.arange(n_tiers)[None, :, None, None]) * na
    best = np.zeros((units.size, n_tiers, fx.size, fy.size), np.intp)
    best_d = np.full(best.shape, np.inf)
    for da in (-1, 0, 1):
        a = np.clip(fx.astype(np.intp) + da, 0, na - 1)
        for db in (-1, 0, 1):
            b = np.clip(fy.astype(np.intp) + db, 0, nb - 1)
            c = (base + a) * nb + b
            d = (fx - a - seed_xy[0, c] / cell) ** 2 + (fy - b - seed_xy[1, c] / cell) ** 2
            best = np.where(d < best_d, c, best)
            best_d = np.minimum(d, best_d)
    c = best[np.searchsorted(units, v.unit), level, v.gi, v.gj]
    sx = v.grid_x[0] + ((c // nb) % na) * cell + seed_xy[0, c]
    sy = v.grid_y[0] + (c % nb) * cell + seed_xy[1, c]
    pos = v.zeta + offset[c] + dip[0, c] * (v.x - sx) + dip[1, c] * (v.y - sy)
    return size[c] * sample_table(table, v.unit, pos)


def thin_bedded(rng: np.random.Generator, v: FaciesVoxels) -> np.ndarray:
    """Dense alternating-polarity thin beds (high frequency), laterally continuous."""
    n = _length(v, 0.2 * _length(v) + 40.0)
    table = spike_table(rng, v.n_units, n, THIN_SPACING, (0.4, 0.6), alternate=True)
    return THIN_GAIN * _layered(rng, v, table, 20.0, 2.0, 0.4)


def massive(rng: np.random.Generator, v: FaciesVoxels) -> np.ndarray:
    top = rng.choice([-1.0, 1.0], size=v.n_units) * rng.uniform(*MASSIVE_TOP, v.n_units)
    return np.where(v.run_top, top[v.unit] * (1.0 + 0.1 * _lateral(rng, v, 30.0)), 0.0)


def clinoform(rng: np.random.Generator, v: FaciesVoxels, n_lobes: int = 3) -> np.ndarray:
    """Prograding lobes: each holds layers of constant ``q = along - W logit(eta')`` (sigmoids that flatten
    towards the top and base, about ``CLINO_PERIOD`` samples apart vertically in the middle of the unit) along
    its own azimuth, the lobes meeting at steep lateral contacts (where the largest of ``n_lobes`` smooth
    fields changes), so a unit shows several progradation directions (and apparent dips) and a survey
    covers them."""
    n = v.n_units
    eta = 0.2 + 0.6 * np.clip(v.eta, 0.0, 1.0)
    logit = np.log(eta / (1.0 - eta))
    period = CLINO_PERIOD[0] + (CLINO_PERIOD[1] - CLINO_PERIOD[0]) * (0.5 + 0.5 * _lateral(rng, v, 30.0))
    x, y = v.x - v.grid_x.mean(), v.y - v.grid_y.mean()
    lobe_of = np.argmax(np.stack([_lateral(rng, v, 25.0) for _ in range(n_lobes)]), axis=0)
    out = np.zeros(v.zeta.shape)
    for lobe in range(n_lobes):
        azimuth = rng.uniform(0.0, 2.0 * np.pi, n)[v.unit]
        wavelength = rng.uniform(8.0, 14.0, n)[v.unit]
        bend = rng.uniform(-0.01, 0.01, n)[v.unit]
        phase = rng.uniform(0.0, 2.0 * np.pi, n)[v.unit]
        along = x * np.cos(azimuth) + y * np.sin(azimuth)
        across = -x * np.sin(azimuth) + y * np.cos(azimuth)
        q = along + bend * across**2 - wavelength * v.thickness / (2.4 * period) * logit
        out = np.where(lobe_of == lobe, np.cos(2.0 * np.pi * q / wavelength + phase), out)
    taper = 0.6 + 0.4 * np.sin(np.pi * np.clip(v.eta, 0.0, 1.0))
    return CLINO_GAIN * taper * out


def boundary(rng: np.random.Generator, v: FaciesVoxels) -> np.ndarray:
    """The reflector at the top of every run of a facies but ``massive`` (which has its own, brighter)."""
    size = rng.choice([-1.0, 1.0], size=v.n_units) * rng.uniform(*BOUNDARY_SIZE, v.n_units)
    return np.where(v.run_top, size[v.unit] * (1.0 + 0.1 * _lateral(rng, v, 30.0)), 0.0)


GENERATORS: dict[str, Callable[[np.random.Generator, FaciesVoxels], np.ndarray]] = {
    "parallel": parallel,
    "transparent": transparent,
    "chaotic": chaotic,
    "thin_bedded": thin_bedded,
    "massive": massive,
    "clinoform": clinoform,
}
assert tuple(GENERATORS) == FACIES
