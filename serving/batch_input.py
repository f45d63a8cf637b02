"""What batch scoring checks, and adapts, in a SEG-Y file before it writes anything.

A model carries its window, sample interval and amplitude normalisation (``metadata.json``); a volume from
another survey need not match them, and scoring it anyway gives confident nonsense: a cube at 2,000x the
training scale is clipped to +-5 sigma in every sample. So, per case, before any output exists:

* **Amplitude scale.** The RMS of a sample of traces about the model's mean, in units of the model's std
  (``scale_ratio``; 1 is the training scale). ``normalisation="model"`` (the default) scores the amplitudes
  as they are and refuses a volume whose ratio is beyond ``max_scale_ratio`` either way, naming the ratio
  and the options; ``per_volume`` maps the volume's own mean/std onto the model's, ``per_trace`` every
  trace's (gain differing along the section). The windows the model sees, and the inference log, are then
  on the model's scale.
* **Sample interval.** Another interval than the model's makes every window span another time: refused,
  unless ``resample=True``, which resamples the traces to the model's interval (polyphase, anti-aliased)
  and maps the classes back to the input's samples (nearest resampled sample).
* **Size.** A trace (or a section, for patch models) shorter than the window is refused: padding would make
  up most of every window.
* **Layout.** A 3D post-stack cube is scored as it is; a 2D line (an unstructured file of post-stack
  traces) as a single section (:class:`Section`). Pre-stack gathers, and a 3D cube whose grid sits at
  other header bytes, are refused with what to do.

Every adaptation is logged and listed in :attr:`InputPlan.notes`, which the batch result reports.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.signal

from seismic.data.windows import Normalisation, WindowSpec
from seismic.io.segy import SegyFile, open_segy
from seismic.io.segy_headers import COMMON_GEOMETRY_BYTES
from serving.runtime import LoadedModel

log = logging.getLogger(__name__)

NormalisationMode = Literal["model", "per_volume", "per_trace"]
SAMPLE_TRACES = 2048  # traces read to measure the amplitude scale, spread evenly over the file


class BatchInputError(ValueError):
    """The input cannot be scored with this model as asked; nothing was written."""


@dataclass(frozen=True)
class InputOptions:
    normalisation: NormalisationMode = "model"
    max_scale_ratio: float = 4.0
    resample: bool = False


DEFAULT_INPUT = InputOptions()


@dataclass(frozen=True)
class InputPlan:
    """What scoring does with the input, for the result and the log."""

    layout: Literal["3d-cube", "2d-section"]
    normalisation: NormalisationMode
    scale_ratio: float  # RMS about the model's mean in the model's std (1: the training scale)
    volume_mean: float
    volume_std: float
    dt_ms: float
    model_dt_ms: float
    resampled: bool
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Section:
    """A 2D line seen as a cube of one inline (``[1, n_traces, n_t]``) or, for crossline-axis patch models,
    of one crossline (``[n_traces, 1, n_t]``), so that a patch always spans neighbouring traces of the line.

    Has what :class:`~seismic.io.segy_like.SegyLikeWriter` and the scorer use of a :class:`SegyFile` cube;
    with ``sorting="inline"`` the grid position ``(il, xl)`` is trace ``il * n_xl + xl``, i.e. file order.
    """

    kind = "cube"
    sorting = "inline"

    def __init__(self, segy: SegyFile, along_crosslines: bool, line_number: int) -> None:
        self.segy, self.path, self.endian, self.layout = segy, segy.path, segy.endian, segy.layout
        self.n_traces, self.n_samples, self.dt_ms = segy.n_traces, segy.n_samples, segy.dt_ms
        traces, line = np.arange(segy.n_traces), np.asarray([line_number])
        self.inlines, self.crosslines = (traces, line) if along_crosslines else (line, traces)
        self.shape = (len(self.inlines), len(self.crosslines), self.n_samples)

    def read_inlines(self, start: int, stop: int) -> np.ndarray:
        n_xl = self.shape[1]
        return self.segy.read_traces(slice(start * n_xl, stop * n_xl)).reshape(stop - start, n_xl, -1)


class PreparedVolume:
    """The input as the model should see it: ``volume[lo:hi]`` reads inlines, rescales and resamples them.

    ``shape`` is on the model's sample interval; :meth:`restore` maps scored values back to the input's.
    """

    def __init__(self, source: SegyFile | Section, model: Normalisation, plan: InputPlan) -> None:
        self.source, self.model, self.plan = source, model, plan
        n_il, n_xl, n_t = source.shape  # type: ignore[misc]
        self.ratio = _resampling(plan.dt_ms, plan.model_dt_ms) if plan.resampled else None
        n_model = model_samples(n_t, plan.dt_ms, plan.model_dt_ms)
        self.shape = (n_il, n_xl, n_model)
        # input sample j lies at time j * dt: the nearest model sample
        self._nearest = np.minimum(np.rint(np.arange(n_t) * plan.dt_ms / plan.model_dt_ms), n_model - 1)

    def __getitem__(self, rows: slice) -> np.ndarray:
        data = self.source.read_inlines(rows.start, rows.stop)
        if self.plan.normalisation == "model" and self.ratio is None:
            return data
        # float32 in place: a float64 copy would double the chunk's share of max_memory_mb
        mean, std = np.float32(self.model.mean), np.float32(self.model.std)
        if self.plan.normalisation == "per_volume":
            data -= np.float32(self.plan.volume_mean)
            data *= np.float32(self.model.std / self.plan.volume_std)
            data += mean
        elif self.plan.normalisation == "per_trace":
            t_mean = data.mean(axis=-1, dtype=np.float64, keepdims=True)
            t_std = data.std(axis=-1, dtype=np.float64, keepdims=True)
            # a dead (constant) trace becomes the model's mean rather than a division by zero
            scale = np.divide(std, t_std, out=np.zeros_like(t_std), where=t_std > 0).astype(np.float32)
            data -= t_mean.astype(np.float32)
            data *= scale
            data += mean
        if self.ratio:
            data = scipy.signal.resample_poly(data, self.ratio.numerator, self.ratio.denominator, axis=-1)
        return np.asarray(data[..., : self.shape[2]], dtype=np.float32)

    def restore(self, values: np.ndarray) -> np.ndarray:
        """Values scored on the model's samples ``[k, n_xl, n_model]`` -> on the input's samples."""
        return values if self.ratio is None else values[..., self._nearest.astype(np.int64)]


def _resampling(dt_ms: float, model_dt_ms: float) -> Fraction:
    return Fraction(dt_ms / model_dt_ms).limit_denominator(1000)


def model_samples(n_t: int, dt_ms: float, model_dt_ms: float) -> int:
    """Samples of an ``n_t``-sample trace resampled to the model's interval (scipy's resample_poly length)."""
    return int(np.ceil(n_t * _resampling(dt_ms, model_dt_ms)))


def measure_scale(segy: SegyFile, norm: Normalisation) -> tuple[float, float, float]:
    """``(scale_ratio, mean, std)`` of up to :data:`SAMPLE_TRACES` traces spread over the file."""
    idx = np.unique(np.linspace(0, segy.n_traces - 1, min(segy.n_traces, SAMPLE_TRACES)).astype(np.int64))
    x = segy.read_traces(idx).astype(np.float64)
    x = x[np.isfinite(x)]  # a NaN is refused where it is read, naming its inline
    if x.size == 0:
        raise BatchInputError(f"{segy.path}: no finite amplitude in {len(idx)} sampled traces")
    rms = float(np.sqrt(np.mean(((x - norm.mean) / norm.std) ** 2)))
    return rms, float(x.mean()), float(x.std())


def _section_or_refuse(segy: SegyFile, spec: WindowSpec) -> Section:
    """A 2D line of post-stack traces as a :class:`Section`; gathers and misread 3D cubes are refused."""
    where = f"{segy.path}: no inline/crossline grid at bytes {segy.iline_byte}/{segy.xline_byte}"
    h = segy.trace_headers(fields=("offset", "cdp", "iline"))
    if len(np.unique(h["offset"])) > 1:
        raise BatchInputError(
            f"{where} and offsets vary ({h['offset'].min()} to {h['offset'].max()}): pre-stack gathers, "
            "batch scoring needs post-stack data"
        )
    for a, b in COMMON_GEOMETRY_BYTES:
        pairs = segy.trace_headers(fields=(a, b))
        n_a, n_b = len(np.unique(pairs[str(a)])), len(np.unique(pairs[str(b)]))
        if n_a > 1 and n_b > 1 and n_a * n_b == segy.n_traces:
            raise BatchInputError(
                f"{where}, but bytes {a}/{b} hold a {n_a} x {n_b} grid: a 3D cube, pass segy.iline={a} "
                f"segy.xline={b}" + (f" ({segy.geometry_error})" if (a, b) == (189, 193) else "")
            )
    if h["cdp"].any() and len(np.unique(h["cdp"])) < segy.n_traces:
        raise BatchInputError(f"{where} and CDP numbers (bytes 21) repeat: CDP gathers, not a stacked line")
    lines = np.unique(h["iline"])
    along_crosslines = spec.axis == "crossline" and spec.width > 1
    return Section(segy, along_crosslines, int(lines[0]) if len(lines) == 1 else 0)


def _check_size(
    path: Path, shape: tuple[int, ...], spec: WindowSpec, dt_ms: float, dense: bool = False
) -> None:
    if dense:
        # a segmentation tile reaching past a short axis is filled by reflection (seismic.inference.tiling)
        # and the fill is cut off again; past half a tile the net would see more mirror than data
        spec = WindowSpec((spec.length + 1) // 2, (spec.width + 1) // 2, spec.axis, spec.pad_mode)
    if shape[2] < spec.length:
        raise BatchInputError(
            f"{path}: traces of {shape[2]} samples ({shape[2] * dt_ms:g} ms at the model's interval) are "
            f"shorter than the model's window of {spec.length} samples: padding would make up most of it"
        )
    lateral = shape[1] if spec.axis == "inline" else shape[0]
    if spec.width > 1 and lateral < spec.width:
        raise BatchInputError(
            f"{path}: {lateral} traces along the {spec.axis} axis, fewer than the model's patch of "
            f"{spec.width} traces"
        )


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.3g}"


def _refuse_scale(path: Path, ratio: float, norm: Normalisation, options: InputOptions) -> None:
    limit = options.max_scale_ratio
    if options.normalisation == "model" and not 1 / limit <= ratio <= limit:
        raise BatchInputError(
            f"{path}: amplitudes are {_times(ratio)}x the model's normalisation (RMS about its mean "
            f"{norm.mean:.4g}, in its std {norm.std:.4g}; allowed 1/{limit:g} to {limit:g}x): pass "
            "normalisation=per_volume to rescale the volume to the model's scale (or per_trace, trace by "
            "trace), or a larger max_scale_ratio to score the amplitudes as they are"
        )


@contextlib.contextmanager
def open_input(
    model: LoadedModel, spec: WindowSpec, path: str | Path, *, iline: int, xline: int, options: InputOptions
) -> Iterator[tuple[SegyFile | Section, PreparedVolume]]:
    """Open and check ``path`` against ``model``: ``(template for the outputs, the volume to score)``.

    Raises :class:`BatchInputError` (one line: file, field, reason and the option that would help) or a
    :class:`~seismic.io.errors.SeismicIOError` before anything is written.
    """
    norm = Normalisation.from_mapping(dict(model.metadata["normalisation"]))
    with open_segy(path, iline=iline, xline=xline, mmap=False) as segy:
        notes: list[str] = []
        if segy.kind == "prestack":
            raise BatchInputError(f"{segy.path}: a pre-stack file ({segy.shape}) cannot be scored, it needs "
                                  "post-stack data (a 3D cube or a 2D line)")  # fmt: skip
        source: SegyFile | Section = segy
        if segy.kind == "unstructured":
            source = _section_or_refuse(segy, spec)
            notes.append(f"2D line of {segy.n_traces} traces (no inline/crossline grid): one section")
        model_dt = model.dt_ms or segy.dt_ms
        if not model.dt_ms:
            notes.append("the model's metadata have no dt_ms: the sample interval was not checked")
        resampled = abs(model_dt - segy.dt_ms) > 1e-6 * model_dt
        if resampled and not options.resample:
            raise BatchInputError(
                f"{segy.path}: sample interval {segy.dt_ms:g} ms, the model was trained on {model_dt:g} ms "
                f"(its {spec.length}-sample windows would span {spec.length * segy.dt_ms:g} ms instead of "
                f"{spec.length * model_dt:g} ms): pass resample=true to resample the traces to the model's"
            )
        if resampled:
            notes.append(f"traces resampled from {segy.dt_ms:g} ms to the model's {model_dt:g} ms")
        n_il, n_xl, n_t = source.shape  # type: ignore[misc]
        _check_size(
            segy.path, (n_il, n_xl, model_samples(n_t, segy.dt_ms, model_dt)), spec, model_dt, model.dense
        )
        ratio, mean, std = measure_scale(segy, norm)
        if std == 0 and options.normalisation == "per_volume":
            raise BatchInputError(f"{segy.path}: every sampled amplitude is {mean:g}: nothing to rescale")
        _refuse_scale(segy.path, ratio, norm, options)
        if options.normalisation != "model":
            notes.append(f"amplitudes ({_times(ratio)}x the model's scale) rescaled {options.normalisation}")
        plan = InputPlan(
            "2d-section" if isinstance(source, Section) else "3d-cube", options.normalisation, ratio, mean,
            std, segy.dt_ms, model_dt, resampled, tuple(notes),
        )  # fmt: skip
        volume = PreparedVolume(source, norm, plan)
        for note in notes:
            log.warning("%s: %s", segy.path, note)
        yield source, volume
