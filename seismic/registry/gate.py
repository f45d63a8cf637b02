"""Champion/challenger gate and rollback on the MLflow registry.

:func:`promote` downloads the challenger (alias ``challenger``, or a given version) and the champion, runs
both *exported* models (onnxruntime, exactly what serving runs) on the same held-out windows of the configured
survey, each cut with its own window spec and scaled with its own normalisation, and moves ``champion`` to
the challenger only if

- its gate metric (``macro_f1`` by default) is at least ``champion's + margin``: ``margin`` 0 means "at least
  as good", a positive margin demands a real improvement, a negative one tolerates a small loss (e.g. for a
  cheaper model); with no champion yet, the metric must reach the absolute ``floor``;
- it passes parity: the error recorded at export and the error re-measured now between its ONNX graph and its
  PyTorch weights (``model.pt``) on the gate windows are both within ``parity_bound``.

Either way the decision is written to the challenger's version tags (``gate.*``). On promotion the old
champion's number goes into the new champion's tag ``promoted_from``, and the ``challenger`` alias is removed.
:func:`rollback` moves ``champion`` back along ``promoted_from`` (or to a given version).

Metrics, from the confusion of true and predicted classes over the windows: ``accuracy``;
``balanced_accuracy`` (mean recall over classes present in the labels); ``macro_f1`` (mean F1 over classes
present in the labels or the predictions, as scikit-learn's ``f1_score(average="macro")``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from seismic.export.heldout import HeldOut, held_out
from seismic.export.onnx import (
    ONNX_FILE,
    OnnxHead,
    centre_outputs,
    read_metadata,
    run_session,
    run_torch,
    session,
)
from seismic.export.weights import load_weights
from seismic.registry.policy import GateConfig, classification_metrics, decide
from seismic.registry.store import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    download,
    get_version,
    version_by_alias,
)


class GateError(RegistryError):
    """The gate could not be evaluated (as opposed to a challenger that it refused)."""


DENSE_PARITY_TILES = 32  # a tile is thousands of samples: dense parity compares every one of them


def evaluate(
    folder: Path, heldout_for: Callable[[Mapping[str, Any]], HeldOut], cfg: GateConfig, *, parity: bool
) -> dict[str, Any]:
    """Metrics of the exported model in ``folder`` on held-out windows; ``parity``: re-measure it too."""
    metadata = read_metadata(folder)
    held = heldout_for(metadata["window"])
    if list(held.class_names) != list(metadata["class_names"]):
        raise GateError(
            f"version {metadata.get('model_version')} predicts classes {metadata['class_names']}, the "
            f"evaluation survey has {list(held.class_names)}"
        )
    windows = held.model_input(metadata["normalisation"])
    # a segmentation model is scored on its tiles' centre samples, the samples the held-out labels name
    dense = metadata.get("task") == "segmentation"
    sess = session(folder / ONNX_FILE)
    outputs = centre_outputs(sess, windows) if dense else run_session(sess, windows)
    predicted = outputs["probabilities"].argmax(axis=1)
    result: dict[str, Any] = {
        "version": metadata.get("model_version"),
        "architecture": metadata["architecture"],
        "metrics": classification_metrics(held.labels, predicted, len(held.class_names)),
        "n_windows": len(windows),
        "trained_on_evaluation_survey": metadata.get("data_hash") == held.data_hash,
        "recorded_parity": metadata["parity"]["max_abs_error"],
        "labels": held.labels,
    }
    if parity:
        try:
            # the graph's probabilities carry the calibration temperature (absent before calibration: 1)
            temperature = float((metadata.get("calibration") or {}).get("temperature", 1.0))
            head = OnnxHead(load_weights(folder), temperature)
        except FileNotFoundError as err:
            raise GateError(
                f"version {metadata.get('model_version')}: {err}; parity cannot be checked"
            ) from err
        k = min(cfg.parity_windows, len(windows), DENSE_PARITY_TILES if dense else len(windows))
        want = run_torch(head, windows[:k], batch=8 if dense else 1024)
        got = run_session(sess, windows[:k], batch=8) if dense else outputs
        result["parity"] = max(float(np.max(np.abs(got[n][:k] - want[n]))) for n in want)
    return result


def _heldout_cache(data: Mapping[str, Any], max_windows: int) -> Callable[[Mapping[str, Any]], HeldOut]:
    cache: dict[str, HeldOut] = {}

    def get(window: Mapping[str, Any]) -> HeldOut:
        key = json.dumps(dict(window), sort_keys=True)
        if key not in cache:
            cache[key] = held_out(data, window, max_windows)
        return cache[key]

    return get


def promote(
    client: Any,
    name: str,
    data: Mapping[str, Any],
    cfg: GateConfig,
    *,
    version: str | int | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Gate the challenger (or ``version``) against the champion; move ``champion`` if it passes.

    Returns the decision (``promoted``, ``reasons``, both evaluations); a refusal is a result, not an error.
    """
    if version is not None:
        candidate = get_version(client, name, version)
    else:
        candidate = version_by_alias(client, name, CHALLENGER)
        if candidate is None:
            raise GateError(f"{name!r} in {client.tracking_uri} has no '{CHALLENGER}' alias: nothing to gate")
    champion = version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == candidate.version:
        raise GateError(f"version {candidate.version} of {name!r} already is the champion")
    heldout_for = _heldout_cache(data, cfg.max_windows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download(client, name, candidate.version, Path(tmp) / "challenger")
        challenger_eval = evaluate(folder, heldout_for, cfg, parity=True)
        champion_eval = None
        if champion is not None:
            folder = download(client, name, champion.version, Path(tmp) / "champion")
            champion_eval = evaluate(folder, heldout_for, cfg, parity=False)
    if champion_eval is not None and not np.array_equal(champion_eval["labels"], challenger_eval["labels"]):
        raise GateError(
            "challenger and champion window specs select different held-out windows (pad_mode 'valid'?); "
            "they cannot be compared on the same windows"
        )
    reasons = decide(challenger_eval, champion_eval, cfg)
    promoted = not reasons and not dry_run
    decision = {
        "model": name,
        "challenger": {k: v for k, v in challenger_eval.items() if k != "labels"},
        "champion": None
        if champion_eval is None
        else {k: v for k, v in champion_eval.items() if k != "labels"},
        "gate": asdict(cfg),
        "passed": not reasons,
        "promoted": promoted,
        "reasons": reasons,
        "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if dry_run:
        return decision
    v = str(candidate.version)
    tags = {
        "gate.decision": "promoted" if promoted else "refused",
        "gate.reasons": "; ".join(reasons)[:5000],
        f"gate.{cfg.metric}": f"{challenger_eval['metrics'][cfg.metric]:.6g}",
        "gate.parity": f"{challenger_eval['parity']:.3g}",
        "gate.decided_at": decision["decided_at"],
    }
    if champion_eval is not None:
        tags[f"gate.champion_{cfg.metric}"] = f"{champion_eval['metrics'][cfg.metric]:.6g}"
    for key, value in tags.items():
        client.set_model_version_tag(name, v, key, value)
    if promoted:
        client.set_model_version_tag(
            name, v, "promoted_from", "" if champion is None else str(champion.version)
        )
        client.set_registered_model_alias(name, CHAMPION, v)
        holder = version_by_alias(client, name, CHALLENGER)
        if holder is not None and holder.version == candidate.version:
            client.delete_registered_model_alias(name, CHALLENGER)
    return decision


def rollback(client: Any, name: str, *, to_version: str | int | None = None) -> dict[str, Any]:
    """Move ``champion`` back to the version it replaced (or to ``to_version``)."""
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise GateError(f"{name!r} in {client.tracking_uri} has no '{CHAMPION}': nothing to roll back")
    target = str(to_version) if to_version is not None else current.tags.get("promoted_from", "")
    if not target:
        raise GateError(
            f"version {current.version} of {name!r} was the first champion: there is no previous one to roll "
            "back to (give a version explicitly)"
        )
    if target == str(current.version):
        raise GateError(f"version {target} of {name!r} already is the champion")
    previous = get_version(client, name, target)
    client.set_registered_model_alias(name, CHAMPION, str(previous.version))
    client.set_model_version_tag(
        name, str(current.version), "rolled_back_at", time.strftime("%Y-%m-%dT%H:%M:%S%z")
    )
    return {"model": name, "champion": str(previous.version), "rolled_back_from": str(current.version)}
