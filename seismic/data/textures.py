"""Reflectivity textures of the synthetic facies: one generator per facies (see :mod:`seismic.data.facies`).

A generator receives every voxel of its facies with the voxel's place in its unit (:class:`FaciesVoxels`) and
returns the reflectivity there; :data:`GENERATORS` maps facies names to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


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
    positive: float = 0.5,
) -> np.ndarray:
    """``rows`` sparse reflectivity series of ``length`` samples: spikes ``spacing`` apart, random sizes,
    each positive with probability ``positive`` (or alternating in sign from a random first one)."""
    n_max = int(length / spacing[0]) + 2
    pos = np.cumsum(rng.uniform(*spacing, size=(rows, n_max)), axis=1)
    pos = np.rint(pos - rng.uniform(0.0, spacing[1], size=(rows, 1))).astype(np.intp)
    size = rng.uniform(*amplitude, size=(rows, n_max))
    if alternate:
        sign = np.where(np.arange(n_max) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0], size=(rows, 1))
    else:
        sign = np.where(rng.random((rows, n_max)) < positive, 1.0, -1.0)
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
CLINO_PERIOD = (6.5, 9.0)
CLINO_GAIN = 0.2
# Share of the ``parallel`` reflectors that are positive: hard stringers in a softer matrix. With the contacts
# (generator version 4: signs from the facies' impedance levels, :data:`seismic.data.facies.IMPEDANCE_LEVEL`)
# this is why a real survey is not symmetric under a sign flip, so a polarity reversal is a visible error.
PARALLEL_POSITIVE = 0.8


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
    table = spike_table(
        rng,
        v.n_units,
        _length(v, 0.2 * _length(v) + 40.0),
        PARALLEL_SPACING,
        (0.85, 1.15),
        positive=PARALLEL_POSITIVE,
    )
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
    """No texture: a massive body is one rock, so its interior reflects nothing; its top and base reflect
    by the contrast of its (high) impedance level with its neighbours' (:mod:`seismic.data.facies`)."""
    del rng
    return np.zeros(v.zeta.shape)


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


GENERATORS: dict[str, Callable[[np.random.Generator, FaciesVoxels], np.ndarray]] = {
    "parallel": parallel,
    "transparent": transparent,
    "chaotic": chaotic,
    "thin_bedded": thin_bedded,
    "massive": massive,
    "clinoform": clinoform,
}
