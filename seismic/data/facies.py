"""Facies model of the synthetic survey (:mod:`seismic.data.synthetic`): stack, facies plan, reflectivity.

The model is built in flat "geological time" coordinates: a stack of thick units whose thickness varies
laterally (:func:`build_stack`), each with a primary facies and column-like bodies of a secondary one
(:class:`FaciesPlan`: near-vertical lateral contacts, so a body replaces the unit's facies over its whole
thickness instead of adding contacts inside a trace). Since generator v4 the model is an acoustic impedance
model (:func:`flat_model` returns log-impedance): each facies has a mean impedance level (``IMPEDANCE_LEVEL``,
drawn again per survey within ``LEVEL_JITTER`` and varying laterally per unit), a grading from top to base
(``GRADING``: massive bodies and thin beds fine upward, so their hard tops are sharper contrasts than their
bases), a compaction trend with depth, and the texture of its facies integrated into impedance. The survey
derives reflectivity from the impedance contrasts (:func:`seismic.data.synthetic.reflection_coefficients`), so
a contact's sign comes from the rocks on either side: a hard top reflects positive in every survey, and a
survey recorded with reversed polarity is not just another survey of the same geology.

Each facies has a character that a single trace window of ~64 samples (30 Hz wavelet, 10 dB noise) shows;
interior RMS levels (8 samples or more from a contact) of the default survey after its scaling to unit RMS
(noise RMS 0.32) are given in brackets. The loud facies overlap in level, so a classifier has to read texture,
not brightness:

- ``parallel`` (~0.86): isolated bright reflectors 14-19 samples apart, quiet between, laterally continuous.
- ``transparent`` (~0.61): weak, low-frequency, partly continuous reflectivity, about twice the noise level.
- ``chaotic`` (~1.42): dense reflector segments with random dips and strengths in small cells redrawn every
  6 samples: discontinuous laterally, bursty vertically.
- ``thin_bedded`` (~1.02): near-periodic alternating-polarity thin beds ~2 samples apart: the highest
  frequency, laterally continuous.
- ``massive`` (~0.33: the noise): the hardest rock, no texture inside; a bright
  positive reflector at its top and a weaker one at its graded base.
- ``clinoform`` (~0.85): a near-monochromatic oscillation (vertical period 6.5-9 samples) of sigmoidal layers
  prograding in several lobes with their own azimuths, i.e. dipping in most sections.

Layered facies read their per-unit sequence along a gently warped, laterally shifted depth axis with laterally
varying reflector strength (``textures._layered``), and parameter ranges vary laterally inside each unit, so
one survey already holds the variety that a survey with other draws shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from seismic.data.textures import GENERATORS, FaciesVoxels, smooth_fields

FACIES: tuple[str, ...] = ("parallel", "transparent", "chaotic", "thin_bedded", "massive", "clinoform")
_GAP = 2  # a facies is never the primary facies of a unit within this many units of itself
# Log-impedance level of each facies, in reflectivity units (a contact between two facies reflects by the
# difference of their levels; one unit is :data:`seismic.data.synthetic.REFLECTION_PER_UNIT` of reflection
# coefficient). Soft shale (transparent) lowest, hard massive bodies (salt, carbonate) highest: a massive
# top is a strong positive reflection and a transparent top a negative one, whatever survey they are in.
IMPEDANCE_LEVEL = np.array([1.6, 0.0, 1.2, 0.9, 2.4, 0.55])  # in FACIES order
# Grading: log-impedance change from a unit's top to its base. Most units coarsen upward (regressive
# parasequences: harder at the top), massive bodies most (a cemented cap), the shale least stiff at its
# base; parallel and chaotic units are not graded. The ramp lies below the wavelet's band: what it changes is
# the contacts, so the top and the base of a body differ in strength, a facies' windows have a skewness of a
# consistent sign in every survey, and a reversed survey is not another survey of the same geology (it was
# with signs drawn per contact). Chosen by measurement: across five survey seeds, the class means of window
# skewness separate from their reversal with a summed Fisher ratio of 63 (27 for version 3's signs).
GRADING = np.array([0.0, -1.2, 0.0, -0.6, -2.2, -0.6])
LEVEL_JITTER = 0.15  # each survey draws its levels within +-this of IMPEDANCE_LEVEL (keeps their order)
LEVEL_LATERAL = 0.1  # lateral variation of a unit's levels (smooth field in (-1, 1) times this)
COMPACTION_PER_SAMPLE = 1e-3  # log-impedance increase per sample of burial


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
    """Labels (uint8) and log-impedance (float32, in reflectivity units: see :data:`IMPEDANCE_LEVEL`) of
    the flat grid.

    The log-impedance of a voxel is its facies' level (drawn once per survey around
    :data:`IMPEDANCE_LEVEL`, varying laterally per unit), a compaction trend, and the facies' texture: its
    reflectivity series (:mod:`seismic.data.textures`) integrated down each run of the facies, with the run's
    mean reflectivity removed so that the texture returns to the level at the run's base. A contact then
    reflects by the difference of the two levels only, with the sign the rocks give, in every survey.
    """
    n = tops.shape[-1] - 1
    top = np.take_along_axis(tops.astype(np.float32), unit, axis=-1)
    thick = np.take_along_axis(tops.astype(np.float32), unit + np.uint8(1), axis=-1) - top
    zeta = np.maximum(tau.astype(np.float32) - top, 0)
    del top
    eta = zeta / thick
    labels = plan.labels(unit, eta)
    run_top = np.ones(labels.shape, bool)
    run_top[..., 1:] = labels[..., 1:] != labels[..., :-1]
    refl = np.zeros(unit.shape, np.float32)
    *streams, level_stream = rng.spawn(len(FACIES) + 1)
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
            eta=eta.reshape(-1)[idx].astype(float),
            thickness=thick.reshape(-1)[idx].astype(float),
            unit=u,
            run_top=run_top.reshape(-1)[idx],
            n_units=n,
            grid_x=gx,
            grid_y=gy,
        )
        refl.reshape(-1)[idx] = GENERATORS[name](stream, voxels)
    run = np.cumsum(run_top.reshape(-1)) - 1  # every column starts a run: ids never span two columns
    run_mean = np.bincount(run, weights=refl.reshape(-1)) / np.bincount(run)
    refl -= run_mean[run].reshape(refl.shape).astype(np.float32)
    texture = np.cumsum(refl, axis=-1)
    del refl, run
    level = IMPEDANCE_LEVEL + level_stream.uniform(-LEVEL_JITTER, LEVEL_JITTER, len(FACIES))
    lateral = LEVEL_LATERAL * smooth_fields(level_stream, n, 30.0, gx, gy).astype(np.float32)
    log_impedance = texture + level.astype(np.float32)[labels]
    log_impedance += GRADING.astype(np.float32)[labels] * (eta - np.float32(0.5))
    log_impedance += lateral[unit, np.arange(gx.size)[:, None, None], np.arange(gy.size)[None, :, None]]
    log_impedance += np.float32(COMPACTION_PER_SAMPLE) * tau.astype(np.float32)
    return labels, log_impedance


assert tuple(GENERATORS) == FACIES
