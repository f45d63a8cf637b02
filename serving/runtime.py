"""The model a server (or a batch job) runs: an exported model folder on onnxruntime, with its metadata.

``load_model(source)`` takes a model folder (``model.onnx`` + ``metadata.json``, as
:mod:`seismic.export.onnx` writes it) or a registry URI, ``models:/<name>@<alias>`` or
``models:/<name>/<version>``. Registry models are downloaded with MLflow's own artifact API, not through
:mod:`seismic.registry` (whose store module imports the exporter, hence torch): a serving process never
imports torch or Lightning, so its image stays small and it starts fast.

The graph takes *normalised* windows; :meth:`LoadedModel.predict` takes raw amplitudes by default and
applies the metadata's normalisation with the training code's own :class:`Normalisation` (numpy only), so
clients send what a SEG-Y file holds. ``normalised=True`` skips that for clients that already scaled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from seismic.data.windows import Normalisation

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
INPUT_NAME = "windows"
OUTPUT_NAMES = ("logits", "probabilities", "embedding")
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the source and the reason."""


class InputError(ValueError):
    """Windows that do not fit the model; ``field`` and ``expected`` say what was wrong and what is wanted."""

    def __init__(self, message: str, *, field: str = "windows", expected: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.expected = expected


def parse_registry_uri(source: str) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of a ``models:/`` URI; ``None`` for anything else (a folder)."""
    if not str(source).startswith("models:/"):
        return None
    match = _REGISTRY_URI.match(str(source))
    if match is None:
        raise ModelLoadError(f"{source!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return match["name"], match["alias"], match["version"]


def _where(tracking_uri: str | None) -> str:
    return (
        tracking_uri or "MLflow's default store (neither model.tracking_uri nor MLFLOW_TRACKING_URI is set)"
    )


def resolve_version(source: str, tracking_uri: str | None = None) -> str | None:
    """The registry version a ``models:/`` URI points at now (one registry call); ``None`` for a folder."""
    parsed = parse_registry_uri(source)
    if parsed is None:
        return None
    name, alias, version = parsed
    if version is not None:
        return version
    from mlflow import MlflowClient

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return str(
            MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, alias).version
        )
    except Exception as err:  # MlflowException, connection errors: one message for the caller
        raise ModelLoadError(f"{source} in {_where(uri)}: cannot resolve the alias: {err}") from err


def _download(source: str, tracking_uri: str | None) -> tuple[Path, tempfile.TemporaryDirectory, str]:
    """Download a registry version into a temporary folder laid out as an exported model folder.

    The version's files are fetched from its logged model's artifact location, looked up with a client on
    ``tracking_uri``: resolving ``models:/<name>/<version>`` inside MLflow goes through the process-wide
    tracking URI for logged models (measured with mlflow 3.17), which may be another store than ours.
    """
    import mlflow.artifacts
    from mlflow import MlflowClient

    name, _, _ = parse_registry_uri(source)  # type: ignore[misc]
    version = resolve_version(source, tracking_uri)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    tmp = tempfile.TemporaryDirectory(prefix="seismic-model-")
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        entry = client.get_model_version(name, str(version))
        if getattr(entry, "model_id", None):
            location = client.get_logged_model(entry.model_id).artifact_location
        else:  # a version registered from a run's artifact path (MLflow 2 style)
            location = client.get_model_version_download_uri(name, str(version))
        root = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp.name, tracking_uri=uri)
        )
    except Exception as err:
        tmp.cleanup()
        raise ModelLoadError(
            f"{source} (version {version}) in {_where(uri)}: download failed: {err}"
        ) from err
    # the registry stores the model folder's other files as the logged model's extra_files
    for extra in (root / "extra_files").glob("*"):
        extra.replace(root / extra.name)
    return root, tmp, str(version)


class LoadedModel:
    """One onnxruntime session plus the metadata that says how to feed it. Thread-safe: ``predict`` may be
    called from several threads (onnxruntime's ``run`` is)."""

    def __init__(self, folder: Path, session: ort.InferenceSession, metadata: dict[str, Any], source: str):
        self.folder = folder
        self.session = session
        self.metadata = metadata
        self.source = source
        self.name = str(metadata.get("model_name") or metadata.get("architecture") or folder.name)
        # an exported but unregistered folder has no registry version; "0" keeps the v2 URLs numeric
        self.version = str(metadata.get("model_version") or "0")
        self.provider = session.get_providers()[0]
        self.class_names = [str(c) for c in metadata["class_names"]]
        self.window_shape = tuple(int(d) for d in metadata["input"]["shape"][1:])
        self.dt_ms = float(metadata.get("dt_ms") or 0.0)
        self._normalisation = Normalisation.from_mapping(dict(metadata["normalisation"]))
        # segmentation models (metadata "task", seismic/export/onnx.py) label every sample of a tile and take
        # any tile whose spatial sizes are multiples of tile.size_multiple; classifiers one window shape
        self.task = str(metadata.get("task") or "classification")
        tile = dict(metadata.get("tile") or {})
        self.size_multiple = int(tile.get("size_multiple") or 1)
        self.default_overlap = float(metadata.get("default_overlap") or 0.25)
        self._tmp: tempfile.TemporaryDirectory | None = None  # keeps a downloaded folder alive

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r} v{self.version}, {self.provider}, windows {self.window_shape})"

    @property
    def dense(self) -> bool:
        """Whether the model labels every sample (segmentation) rather than the window centre."""
        return self.task == "segmentation"

    @property
    def embedding_dim(self) -> int:
        return int(self.metadata["outputs"]["embedding"][-1])

    def check(self, windows: np.ndarray) -> np.ndarray:
        """``windows`` as float32 ``[N, *window_shape]`` (the channel axis may be omitted), or InputError."""
        arr = np.asarray(windows)
        if arr.dtype.kind not in "fiu":
            raise InputError(f"dtype {arr.dtype}", expected="real numbers (float32)")
        expected = f"[batch, {', '.join(map(str, self.window_shape))}] float32"
        if self.dense:
            spatial = ", ".join(["W", "T"][-(len(self.window_shape) - 1) :])
            expected = (
                f"[batch, 1, {spatial}] float32, each of {spatial} a multiple of {self.size_multiple} "
                f"(trained on {list(self.window_shape[1:])})"
            )
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise InputError("empty batch (no windows)", expected=expected)
        if arr.ndim == len(self.window_shape):  # channel axis omitted: [N, T] or [N, W, T]
            arr = arr[:, None]
        if self.dense:
            sizes = arr.shape[2:]
            if (
                arr.ndim != len(self.window_shape) + 1
                or arr.shape[1] != self.window_shape[0]
                or any(n < 1 or n % self.size_multiple for n in sizes)
            ):
                raise InputError(f"shape {list(arr.shape)}", expected=expected)
        elif arr.ndim != len(self.window_shape) + 1 or tuple(arr.shape[1:]) != self.window_shape:
            raise InputError(f"shape {list(arr.shape)}", expected=expected)
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf, refused below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))[0])
            raise InputError(f"window {bad} holds NaN or Inf", expected="finite amplitudes")
        return arr

    def normalise(self, windows: np.ndarray) -> np.ndarray:
        """Raw amplitudes -> what the graph takes, exactly as in training (mean/std, clip)."""
        return self._normalisation.apply(windows)

    def denormalise(self, windows: np.ndarray) -> np.ndarray:
        """Normalised windows -> amplitudes (exact unless training's clip cut them)."""
        norm = self._normalisation
        return (np.asarray(windows, dtype=np.float32) * np.float32(norm.std) + np.float32(norm.mean)).astype(
            np.float32, copy=False
        )

    def run(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on checked, normalised float32 windows: logits, probabilities, embedding, class."""
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: windows})
        result = dict(zip(OUTPUT_NAMES, outputs, strict=True))
        result["class"] = result["probabilities"].argmax(axis=1).astype(np.int64)
        return result

    def outputs(self, windows: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """Only the graph outputs ``names`` on checked, normalised float32 windows (no derived ``class``:
        blended scoring takes probabilities, whose per-sample argmax would cost as much as a third of the
        graph's time for a segmentation net)."""
        return self.session.run(list(names), {INPUT_NAME: windows})

    def predict(self, windows: np.ndarray, normalised: bool = False) -> dict[str, np.ndarray]:
        """Check, normalise (unless ``normalised``) and run: keys logits, probabilities, embedding, class."""
        arr = self.check(windows)
        return self.run(arr if normalised else self.normalise(arr))


def _session(
    path: Path, providers: Sequence[str], intra: int | None, inter: int | None, spin_wait: bool | None
) -> ort.InferenceSession:
    available = set(ort.get_available_providers())
    usable = [p for p in providers if p in available]
    if not usable:
        log.warning("none of the providers %s is available (have %s); using CPU", list(providers), available)
        usable = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    if intra is not None:
        options.intra_op_num_threads = int(intra)
    if inter is not None:
        options.inter_op_num_threads = int(inter)
    if spin_wait is not None:
        # idle pool threads busy-wait for work by default: cheap on dedicated cores, but on a shared CPU
        # they burn the time the event loop needs to parse the next requests
        flag = "1" if spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return ort.InferenceSession(str(path), sess_options=options, providers=usable)


def load_model(
    source: str | Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    *,
    tracking_uri: str | None = None,
    spin_wait: bool | None = None,
) -> LoadedModel:
    """Load a model folder or a ``models:/`` URI (on ``tracking_uri``, else $MLFLOW_TRACKING_URI); warm up.

    The session uses the first available provider of ``providers``; ``LoadedModel.provider`` says which.
    ``spin_wait``: whether idle onnxruntime threads busy-wait (``None``: onnxruntime's default, they do).
    """
    text = str(source)
    tmp = None
    if parse_registry_uri(text) is not None:
        folder, tmp, _ = _download(text, tracking_uri)
    else:
        folder = Path(text).expanduser()
        try:
            found = folder.is_dir()
        except OSError as err:  # a name too long for the file system, say: the client's mistake, not ours
            raise ModelLoadError(f"{text[:200]!r}: not a usable path ({err.strerror})") from None
        if not found:
            raise ModelLoadError(f"{folder}: no such model folder (expected {ONNX_FILE} + {METADATA_FILE})")
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
        if not (folder / ONNX_FILE).is_file():
            raise FileNotFoundError(folder / ONNX_FILE)
        session = _session(folder / ONNX_FILE, providers, intra_op_threads, inter_op_threads, spin_wait)
        model = LoadedModel(folder, session, metadata, text)
        # the first run allocates; doing it here keeps it off the first request and off a hot swap
        model.run(np.zeros((1, *model.window_shape), dtype=np.float32))
    except Exception as err:
        if tmp is not None:  # a downloaded version that cannot be used: nothing of it stays on disk
            tmp.cleanup()
        if isinstance(err, FileNotFoundError):
            raise ModelLoadError(f"{text}: missing {Path(err.filename or str(err)).name}") from err
        if isinstance(err, KeyError | ValueError | TypeError):
            raise ModelLoadError(f"{text}: invalid metadata ({type(err).__name__}: {err})") from err
        # onnxruntime raises its own types for broken graphs (a corrupted or truncated file), over lines
        raise ModelLoadError(
            f"{text}: onnxruntime cannot load the model: {' '.join(str(err).split())}"
        ) from err
    model._tmp = tmp
    log.info("loaded %r from %s", model, text)
    return model
