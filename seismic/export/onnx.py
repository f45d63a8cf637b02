"""ONNX export of a facies network, checked for parity against PyTorch, with the metadata serving needs.

A *model folder* holds ``model.onnx`` and ``metadata.json`` (and, once published, the reference profile and
``model.pt``, see :mod:`seismic.pipeline.publish`). The graph has one input, ``windows`` float32
``[batch, 1, T]`` (1D) or ``[batch, 1, W, T]`` (2D), already normalised, and three outputs: ``logits`` and
``probabilities`` ``[batch, C]``, ``embedding`` ``[batch, D]``; the batch axis is dynamic.

The metadata (see :func:`metadata_from_hparams`, plus ``opset``, ``exporter``, ``onnxruntime``, ``parity`` and
``graph_sha256`` added at export) is written to ``metadata.json`` and into the graph's ``metadata_props``, one
prop per top-level key with a JSON-encoded value, so an ONNX file on its own still describes itself
(onnxruntime: ``session.get_modelmeta().custom_metadata_map``; :func:`onnx_metadata` decodes it).

Parity: the exported graph runs in onnxruntime on random windows and on real held-out windows, each at batch 1
and at a large batch, against the PyTorch module; if the largest absolute difference over all outputs exceeds
the bound, :class:`ParityError` is raised and nothing is written.

A 1D network is exported as the same network of ``1 x k`` 2D convolutions (:mod:`seismic.export.conv2d`,
metadata ``graph_layout``): onnxruntime runs those about 4x faster on CPU; parity is checked against the
original module.

Segmentation models (``task = "segmentation"``, :mod:`seismic.models.unet`): the graph's input axes after the
channel are dynamic too (``traces``/``time``), ``logits``/``probabilities`` are ``[batch, C, (W,) T]``
(softmax over the class axis), and parity is also checked at a second tile size (twice the trained one).
Their metadata add ``task``, ``tile`` (the trained tile and the ``size_multiple`` every spatial size must
divide by), ``default_overlap`` (of whole-volume inference, :mod:`seismic.inference.tiling`) and
``outputs_meaning``.
Classification models say ``task: classification``.

Exporter: ``torch.onnx.export(dynamo=False)`` (the TorchScript tracer). Measured here on cnn1d/cnn2d
with torch 2.13: 0.1 s per export against 1.7-4 s for the dynamo exporter, identical parity (~2e-7),
and no onnxscript dependency. The nets are plain conv stacks without data-dependent control flow
(``torch.export`` of each registered model is tested in ``tests/models``), the case the tracer handles
exactly; what it could get wrong is caught by the parity check. torch deprecated this path in 2.9 and the
project pins torch < 2.14; moving to ``dynamo=True`` (add ``onnxscript``) changes :func:`_export_bytes` only.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from seismic.export.conv2d import as_conv2d
from seismic.export.layout import METADATA_FILE, ONNX_FILE
from seismic.features import FEATURE_NAMES
from seismic.inference.tiling import DEFAULT_OVERLAP, summarise_tiles
from seismic.io.atomic import atomic_file
from seismic.models.registry import model_task

__all__ = ["METADATA_FILE", "ONNX_FILE", "ExportError", "ParityError", "export_onnx", "metadata_from_hparams"]

INPUT_NAME = "windows"
OUTPUT_NAMES = ("logits", "probabilities", "embedding")
DEFAULT_OPSET = 17
DEFAULT_BOUND = 1e-4
METADATA_SCHEMA = 1
# segmentation parity batches: a large batch of tiles is ~10^6 samples already, so fewer tiles than windows
SEGMENTATION_LARGE_BATCH = 32


class ExportError(RuntimeError):
    """The model could not be exported; nothing was written."""


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree by more than the bound; ``report`` has every comparison."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class OnnxHead(nn.Module):
    """The exported graph: the net's raw ``(logits, embedding)`` plus ``softmax(logits / temperature)`` in
    float32 (the temperature of :mod:`seismic.export.calibration`; 1 = uncalibrated)."""

    def __init__(self, net: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        if not (np.isfinite(temperature) and temperature > 0):
            raise ExportError(f"calibration temperature must be a finite number > 0, got {temperature}")
        self.net = net
        self.temperature = float(temperature)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, embedding = self.net(windows)
        logits = logits.float()
        return logits, torch.softmax(logits / self.temperature, dim=1), embedding.float()


def metadata_from_hparams(
    hparams: Mapping[str, Any],
    *,
    embedding_dim: int,
    model_name: str | None = None,
    model_version: str | None = None,
    run_id: str | None = None,
    git_commit: str | None = None,
    test_metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The metadata of a model trained by :class:`~seismic.tasks.classification.FaciesClassificationTask`.

    ``model_name``/``model_version`` are the registry's (``None`` until registered, see :func:`stamp`).
    """
    extra = dict(hparams.get("metadata") or {})
    window = dict(hparams["window"])
    num_classes = int(hparams["num_classes"])
    shape = [None, 1, int(window["length"])]
    if int(window.get("width", 1)) > 1:
        shape.insert(2, int(window["width"]))
    task = model_task(str(hparams["model"]))
    dense = task == "segmentation"
    return {
        "task": task,
        **(segmentation_metadata(hparams, shape, int(embedding_dim)) if dense else {}),
        "schema_version": METADATA_SCHEMA,
        "model_name": model_name,
        "model_version": model_version,
        "architecture": str(hparams["model"]),
        "model_kwargs": dict(hparams.get("model_kwargs") or {}),
        "class_names": [str(c) for c in hparams["class_names"]],
        "num_classes": num_classes,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": shape, "normalised": True},
        "outputs": {
            "logits": [None, num_classes, *([None] * (len(shape) - 2) if dense else [])],
            "probabilities": [None, num_classes, *([None] * (len(shape) - 2) if dense else [])],
            "embedding": [None, int(embedding_dim)],
        },
        "window": window,
        "dt_ms": float(extra["dt_ms"]),
        "normalisation": dict(hparams["normalisation"]),
        "feature_names": list(FEATURE_NAMES),
        "data_hash": hparams.get("data_hash"),
        "provenance": extra.get("provenance", {}),
        "split": extra.get("split"),
        "mlflow_run_id": run_id,
        "git_commit": git_commit,
        "test_metrics": dict(test_metrics or {}),
    }


def segmentation_metadata(hparams: Mapping[str, Any], shape: list, embedding_dim: int) -> dict[str, Any]:
    """What a dense model's user needs beyond a classifier's: the tile it learnt on, what sizes it takes,
    the overlap whole-volume inference blends with, and what the outputs mean."""
    from seismic.models.registry import model_defaults

    kwargs = dict(hparams.get("model_kwargs") or {})
    depth = int(kwargs.get("depth") or model_defaults(str(hparams["model"]))["depth"])
    axes = ["traces", "time"] if len(shape) == 4 else ["time"]
    return {
        "tile": {
            "trained": [int(n) for n in shape[2:]],
            "axes": axes,
            "size_multiple": 2**depth,
            "dynamic": True,
        },
        "default_overlap": DEFAULT_OVERLAP,
        "outputs_meaning": {
            "logits": f"[batch, classes, {', '.join(axes)}]: raw class scores of every input sample",
            "probabilities": "softmax of logits / calibration temperature over the class axis, per sample",
            "embedding": f"[batch, {embedding_dim}]: the bottleneck feature map averaged over the tile",
        },
    }


def export_onnx(
    net: nn.Module,
    folder: str | Path,
    metadata: Mapping[str, Any],
    *,
    real_windows: np.ndarray | None = None,
    bound: float = DEFAULT_BOUND,
    large_batch: int = 512,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    calibration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``net`` to ``folder/model.onnx`` + ``folder/metadata.json`` after a parity check.

    ``real_windows``: normalised model inputs (held-out survey windows); ``None`` checks random windows only.
    ``calibration``: :func:`seismic.export.calibration.calibration_report`; its ``temperature`` divides the
    logits of the ``probabilities`` output and the report is stored as ``metadata["calibration"]``.
    Returns the metadata as written. Raises :class:`ParityError` (nothing written) when the check fails.
    """
    if not (np.isfinite(bound) and bound >= 0):
        raise ValueError(f"parity bound must be a finite number >= 0, got {bound}")
    if large_batch < 2:
        raise ValueError(f"large_batch must be >= 2, got {large_batch}")
    started = time.perf_counter()
    temperature = float((calibration or {}).get("temperature", 1.0))
    head = OnnxHead(copy.deepcopy(net).cpu().float(), temperature).eval()
    shape = [int(d) for d in metadata["input"]["shape"][1:]]
    clip = (metadata.get("normalisation") or {}).get("clip_sigma")
    dense = model_task(net) == "segmentation"
    if dense:  # ~10^6 samples a batch already; see SEGMENTATION_LARGE_BATCH
        large_batch = min(large_batch, SEGMENTATION_LARGE_BATCH)
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(large_batch, *shape, generator=generator).numpy()
    if clip is not None:
        np.clip(random, -clip, clip, out=random)
    example = torch.from_numpy(random[:2])
    twin = as_conv2d(head.net, example)  # the same network on onnxruntime's faster 2D kernels
    graph = _export_bytes(
        head if twin is None else OnnxHead(twin, temperature).eval(), example, opset, spatial=dense
    )
    inputs = {"random": random}
    if dense:  # the dynamic spatial axes: another tile size than the one traced
        other = [shape[0], *(2 * n for n in shape[1:])]
        bigger = torch.randn(min(large_batch, 4), *other, generator=generator).numpy()
        inputs["random_2x_tile"] = np.clip(bigger, -clip, clip) if clip is not None else bigger
    if real_windows is not None:
        real = np.ascontiguousarray(real_windows[:large_batch], dtype=np.float32)
        if real.shape[1:] != tuple(shape):
            raise ExportError(f"real windows have shape {real.shape[1:]}, the model takes {tuple(shape)}")
        inputs["real"] = real
    report = parity_report(head, graph, inputs, bound)
    if not report["passed"]:
        worst = max(report["checks"], key=lambda c: c["max_abs"])
        raise ParityError(
            f"ONNX parity failed: max |onnxruntime - torch| = {report['max_abs_error']:.3g} > "
            f"bound {bound:g} "
            f"({worst['inputs']} windows, batch {worst['batch']}, output {worst['worst_output']}); "
            f"nothing was written to {folder}",
            report,
        )
    report["export_seconds"] = round(time.perf_counter() - started, 3)
    full = {
        **metadata,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=False) torch {torch.__version__}",
        "graph_layout": "as-exported" if twin is None else "conv1d-as-conv2d",
        "onnxruntime": ort.__version__,
        "parity": report,
        "calibration": dict(calibration) if calibration else {"method": "none", "temperature": 1.0},
        "graph_sha256": hashlib.sha256(graph).hexdigest(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_model_folder(folder, onnx.load_from_string(graph), full)
    return full


def _export_bytes(head: OnnxHead, example: torch.Tensor, opset: int, spatial: bool = False) -> bytes:
    """``spatial``: the axes after the channel (input, logits, probabilities) are dynamic as well."""
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    if spatial:
        names = ["traces", "time"] if example.dim() == 4 else ["time"]
        for name in (INPUT_NAME, "logits", "probabilities"):
            axes[name].update({2 + i: axis for i, axis in enumerate(names)})
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the deprecation of this exporter path is known (module docstring); tracer warnings are about
            # sizes turned into constants: only the batch axis is dynamic by contract, and parity at batch 1
            # and at a large batch shows whether the graph depends on it
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=DeprecationWarning, message="You are using the legacy")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                head,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    except Exception as err:  # the exporter raises many types; the caller needs one
        raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from err
    return buffer.getvalue()


def session(model: bytes | str | Path) -> ort.InferenceSession:
    """A CPU onnxruntime session (the reference runtime of the parity check and the gate)."""
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, windows: np.ndarray, batch: int = 1024) -> dict[str, np.ndarray]:
    """All outputs for ``windows``, in chunks of ``batch``."""
    parts = [
        sess.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(windows[s : s + batch], np.float32)})
        for s in range(0, len(windows), batch)
    ]
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(OUTPUT_NAMES)}


def tile_summaries(sess: ort.InferenceSession, tiles: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """A segmentation graph's outputs reduced to one row per tile, in chunks (the dense outputs of thousands
    of tiles would not fit in memory): ``probabilities`` [N, C] averaged over the tile's samples,
    ``class_shares`` [N, C] (the share of its samples given each class), ``mean_max_probability`` [N],
    ``embedding`` [N, D]. These rows are what the reference profile and the inference log hold for dense
    models."""
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("probabilities", "class_shares", "mean_max_probability", "embedding")
    }
    for s in range(0, len(tiles), batch):
        _, probabilities, embedding = sess.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(tiles[s : s + batch], np.float32)}
        )
        summary = summarise_tiles(probabilities)
        for key, value in {**summary, "embedding": embedding}.items():
            if key in parts:
                parts[key].append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def centre_outputs(sess: ort.InferenceSession, tiles: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """A segmentation graph's ``logits``/``probabilities`` at each tile's centre sample ([N, C], the sample
    whose label a held-out split carries) and ``embedding`` [N, D], in chunks: what the promotion gate
    scores a dense model on, alike with a window classifier's centre predictions."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for s in range(0, len(tiles), batch):
        outputs = sess.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(tiles[s : s + batch], np.float32)}
        )
        for i, value in enumerate(outputs):
            if value.ndim > 2:  # dense: the centre sample of every spatial axis
                value = value[(slice(None), slice(None), *(n // 2 for n in value.shape[2:]))]
            parts[i].append(value)
    return {name: np.concatenate(parts[i]) for i, name in enumerate(OUTPUT_NAMES)}


@torch.no_grad()
def run_torch(head: OnnxHead, windows: np.ndarray, batch: int = 1024) -> dict[str, np.ndarray]:
    parts = [
        head(torch.from_numpy(np.ascontiguousarray(windows[s : s + batch])))
        for s in range(0, len(windows), batch)
    ]
    return {name: torch.cat([p[i] for p in parts]).numpy() for i, name in enumerate(OUTPUT_NAMES)}


def parity_report(
    head: OnnxHead, graph: bytes | str | Path, inputs: Mapping[str, np.ndarray], bound: float
) -> dict[str, Any]:
    """Max absolute difference per output, for each named input set at batch 1 and at its full size."""
    sess = session(graph)
    checks = []
    for label, windows in inputs.items():
        for batch in sorted({1, len(windows)}):
            x = windows[:batch]
            got, want = run_session(sess, x, batch), run_torch(head.eval(), x, batch)
            errors = {name: float(np.max(np.abs(got[name] - want[name]))) for name in OUTPUT_NAMES}
            worst = max(errors, key=errors.__getitem__)
            checks.append(
                {"inputs": label, "batch": batch, "max_abs": errors[worst], "worst_output": worst, **errors}
            )
    max_error = max(c["max_abs"] for c in checks)
    return {
        "bound": bound,
        "max_abs_error": max_error,
        "passed": bool(max_error <= bound),
        "checks": checks,
    }


def write_model_folder(folder: str | Path, model: onnx.ModelProto, metadata: Mapping[str, Any]) -> None:
    """``model.onnx`` with ``metadata`` in its props and ``metadata.json``, each replaced atomically."""
    folder = Path(folder)
    plain = json.loads(json.dumps(metadata))  # fails here, before any write, on values JSON cannot hold
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in plain.items()})
    onnx.checker.check_model(model)
    with atomic_file(folder / METADATA_FILE) as meta_tmp, atomic_file(folder / ONNX_FILE) as onnx_tmp:
        onnx_tmp.write_bytes(model.SerializeToString())
        meta_tmp.write_text(json.dumps(plain, indent=2) + "\n")


def read_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no model metadata (is {folder} an exported model folder?)") from None


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an ONNX file's ``metadata_props``."""
    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in model.metadata_props}


def stamp(folder: str | Path, **fields: Any) -> dict[str, Any]:
    """Set top-level metadata fields (e.g. the registry's ``model_name``/``model_version``) in both places.

    Only the props change, never the graph, so the parity measured at export still holds.
    """
    folder = Path(folder)
    metadata = {**read_metadata(folder), **fields}
    write_model_folder(folder, onnx.load(str(folder / ONNX_FILE)), metadata)
    return metadata
