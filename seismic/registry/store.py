"""The MLflow model registry: register a model folder as a new version, aliases, downloads, clear errors.

A registered version is an MLflow *logged model* in the ``onnx`` flavour (``model.onnx`` saved whole, no
external-data files; signature ``windows -> logits, probabilities, embedding``; an input example of real
windows), with the model folder's other files (``metadata.json``, ``profile.json``, ``profile.npz``,
``model.pt``) under ``extra_files/``. ``models:/<name>@champion`` therefore downloads everything serving and
monitoring need. Version tags: ``data_hash``, ``git_commit``, ``architecture``, ``graph_sha256``,
``parity_max_abs`` and the run's ``test/*`` metrics.

The version number is part of the model's own metadata (``model_version`` inside the ONNX and the JSON): the
version is created first, pointing at an empty logged model; the folder is stamped with its number, then
uploaded. If anything fails on the way, the version is removed again and the logged model marked FAILED, so
the registry never holds a version without its files; when the store itself has gone (a killed server), what
could not be undone is named in the one-line :class:`RegistryError`, the folder's metadata is restored, and
the next registration of that model deletes such an abandoned version (:func:`remove_abandoned`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from seismic.export.layout import METADATA_FILE, ONNX_FILE, PROFILE_FILES, WEIGHTS_FILE
from seismic.registry.tracking_store import TrackingError, check_tracking_uri

log = logging.getLogger(__name__)
CHAMPION = "champion"
CHALLENGER = "challenger"
# what a model folder may hold besides the ONNX file; shipped as extra files of the logged model
EXTRA_FILES = (METADATA_FILE, *PROFILE_FILES, WEIGHTS_FILE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,254}$")
# a registration takes seconds to minutes; a version whose files never arrived after this long was abandoned
ABANDONED_AFTER = dt.timedelta(hours=1)
_LOGGED_MODEL = re.compile(r"/models/(m-[0-9a-f]+)/artifacts/?$")  # a logged model's artifact location


class RegistryError(TrackingError):
    """The registry cannot do what was asked; the message names the store, the model and the reason."""


def connect(tracking_uri: str | None, *, must_exist: bool = False) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (also the registry), after checking the store is usable.

    ``must_exist``: a sqlite store that does not exist yet is an error (reading from it would silently
    create an empty one).
    """
    from mlflow import MlflowClient

    if not tracking_uri:
        raise RegistryError("no MLflow tracking URI configured (env.tracking_uri / MLFLOW_TRACKING_URI)")
    try:
        check_tracking_uri(tracking_uri)
    except TrackingError as err:
        raise RegistryError(str(err)) from err
    if must_exist and tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise RegistryError(f"MLflow store {tracking_uri} does not exist: no model was registered there")
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(
            f"registered model name {name!r} is missing or invalid (set registry.model_name: letters, "
            "digits, '_', '-', '.', spaces)"
        )
    return name


def _is_missing(err: Exception) -> bool:
    return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def registered_model(client: Any, name: str) -> Any:
    """The registered model; RegistryError naming the store and the models it does hold otherwise."""
    from mlflow.exceptions import MlflowException

    check_model_name(name)
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if not _is_missing(err):
            raise RegistryError(f"MLflow registry {client.tracking_uri}: {err.message}") from err
    known = sorted(m.name for m in client.search_registered_models(max_results=100))
    raise RegistryError(
        f"no registered model {name!r} in {client.tracking_uri}; registered models: {known or 'none'}"
    )


def version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    """The version holding ``alias``, or ``None`` when no version holds it."""
    from mlflow.exceptions import MlflowException

    registered_model(client, name)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if _is_missing(err) or "alias" in str(err).lower():
            return None
        raise RegistryError(f"MLflow registry {client.tracking_uri}: {err.message}") from err


def get_version(client: Any, name: str, version: str | int) -> Any:
    from mlflow.exceptions import MlflowException

    registered_model(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        raise RegistryError(f"{name!r} has no version {version} in {client.tracking_uri}") from err


def download(client: Any, name: str, version: str | int, dst: str | Path) -> Path:
    """Download a version's files into ``dst``; returns the folder holding ``model.onnx``, metadata, profile.

    The extra files are moved up beside ``model.onnx``, so the result is a model folder like the exported one.
    """
    import mlflow

    get_version(client, name, version)
    # resolved through this client: MLflow resolves ``models:/`` URIs with the process-wide tracking URI
    location = client.get_model_version_download_uri(name, str(version))
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst)))
    for extra in (root / "extra_files").glob("*"):
        extra.replace(root / extra.name)
    if not (root / ONNX_FILE).is_file():
        raise RegistryError(f"{name!r} version {version} in {client.tracking_uri} has no {ONNX_FILE}")
    return root


def _signature(metadata: Mapping[str, Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(name: str, shape: list[Any]) -> TensorSpec:
        return TensorSpec(np.dtype(np.float32), tuple(-1 if d is None else int(d) for d in shape), name)

    return ModelSignature(
        inputs=Schema([spec(metadata["input"]["name"], metadata["input"]["shape"])]),
        outputs=Schema([spec(name, shape) for name, shape in metadata["outputs"].items()]),
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("onnx", "onnxruntime", "numpy")]


def version_tags(metadata: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        "data_hash": str(metadata.get("data_hash")),
        "git_commit": str(metadata.get("git_commit")),
        "architecture": str(metadata["architecture"]),
        "graph_sha256": str(metadata.get("graph_sha256")),
        "parity_max_abs": f"{metadata['parity']['max_abs_error']:.3g}",
    }
    tags.update({key: f"{value:.6g}" for key, value in (metadata.get("test_metrics") or {}).items()})
    return tags


def register_folder(
    client: Any,
    folder: str | Path,
    *,
    name: str,
    run_id: str,
    input_example: np.ndarray | None = None,
    alias: str | None = CHALLENGER,
    description: str | None = None,
) -> Any:
    """Register the model folder as a new version of ``name`` from run ``run_id``; set ``alias`` on it.

    ``input_example``: a few normalised windows (default: zeros of the input shape). Returns the
    ``ModelVersion``; the folder's metadata now carries ``model_name`` and ``model_version``.
    """
    import mlflow.onnx
    import onnx
    from mlflow.exceptions import MlflowException

    from seismic.export.onnx import read_metadata, stamp

    folder = Path(folder)
    check_model_name(name)
    metadata = read_metadata(folder)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise RegistryError(f"run {run_id!r} not found in {client.tracking_uri}: {err.message}") from err
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if not _is_missing(err):
            raise RegistryError(f"MLflow registry {client.tracking_uri}: {err.message}") from err
        client.create_registered_model(name, description=description)
    for number in remove_abandoned(client, name):
        log.warning(
            "registry %s: removed version %s of %r, abandoned mid-registration",
            client.tracking_uri,
            number,
            name,
        )
    logged = client.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id, model_type="onnx"
    )
    version = None
    before = {key: metadata.get(key) for key in ("model_name", "model_version", "mlflow_run_id")}
    try:
        # the artifact location, not ``models:/<id>``: the registry would resolve that through a default
        # client (the process-wide tracking URI), not this store
        version = client.create_model_version(
            name,
            source=logged.artifact_location,
            run_id=run_id,
            tags=version_tags(metadata),
            model_id=logged.model_id,
        )
        metadata = stamp(folder, model_name=name, model_version=str(version.version), mlflow_run_id=run_id)
        if input_example is None:
            input_example = np.zeros([2, *metadata["input"]["shape"][1:]], dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.onnx.save_model(
                onnx.load(str(folder / ONNX_FILE)),
                Path(tmp) / "model",
                signature=_signature(metadata),
                input_example={metadata["input"]["name"]: np.asarray(input_example, dtype=np.float32)},
                extra_files=[str(folder / f) for f in EXTRA_FILES if (folder / f).is_file()],
                save_as_external_data=False,
                # what the pyfunc flavour needs; stated, because inferring it runs a subprocess (~4 s)
                pip_requirements=_requirements(),
                metadata={
                    "seismic_model_version": str(version.version),
                    "architecture": metadata["architecture"],
                },
            )
            client.log_model_artifacts(logged.model_id, str(Path(tmp) / "model"))
        client.finalize_logged_model(logged.model_id, "READY")
        if alias:
            client.set_registered_model_alias(name, alias, str(version.version))
    except BaseException as err:
        if version is not None:
            stamp(folder, **before)  # local, so always done: the folder must not claim the failed version
        left = _roll_back(client, name, None if version is None else str(version.version), logged.model_id)
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: rolled back, then let it through
            raise
        reason = err.message if isinstance(err, MlflowException) else f"{type(err).__name__}: {err}"
        text = f"registering {name!r} in {client.tracking_uri} failed: {reason}"
        if left:
            text += f"; could not undo, the store failing too: {'; '.join(left)}"
        if version is not None and any(what.startswith("version") for what in left):
            text += (
                f" (it has no files and no alias; the next registration of {name!r} removes it after an hour)"
            )
        raise RegistryError(" ".join(text.split())) from err  # one line: MLflow's messages hold newlines
    return client.get_model_version(name, str(version.version))


def remove_abandoned(client: Any, name: str, older_than: dt.timedelta = ABANDONED_AFTER) -> list[str]:
    """Delete versions of ``name`` whose registration never finished (their logged model is not READY: the
    store died mid-registration, so the rollback could not reach it) and that are older than ``older_than``
    (younger ones may be a registration still running); the version numbers removed."""
    from mlflow.entities import LoggedModelStatus

    cutoff_ms = (time.time() - older_than.total_seconds()) * 1000
    removed = []
    for version in client.search_model_versions(f"name='{name}'"):
        # the store may not fill in model_id (sqlite, mlflow 3.17): the source is the logged model's folder
        model_id = getattr(version, "model_id", None)
        if not model_id and (match := _LOGGED_MODEL.search(version.source or "")):
            model_id = match[1]
        if not model_id or version.creation_timestamp > cutoff_ms:
            continue  # registered from a run (MLflow 2 style), or possibly still being registered
        if client.get_logged_model(model_id).status == LoggedModelStatus.READY:
            continue
        client.delete_model_version(name, str(version.version))
        client.finalize_logged_model(model_id, "FAILED")
        removed.append(str(version.version))
    return removed


def _roll_back(client: Any, name: str, version: str | None, model_id: str) -> list[str]:
    """Remove a failed registration's version and mark its logged model FAILED, as far as the store lets
    us (a killed server does not); what is left, one entry each."""
    steps = [
        (f"logged model {model_id} (left PENDING)", lambda: client.finalize_logged_model(model_id, "FAILED"))
    ]
    if version is not None:
        steps.insert(
            0, (f"version {version} of {name!r}", lambda: client.delete_model_version(name, version))
        )
    left = []
    for what, undo in steps:
        try:
            undo()
        except Exception as err:  # the store is down or refuses: report it, keep undoing the rest
            left.append(f"{what}: {type(err).__name__}")
    return left


def aliases(client: Any, name: str) -> dict[str, Any]:
    """Which versions hold ``champion`` and ``challenger`` (with their tags and load URIs)."""
    out: dict[str, Any] = {"model": name}
    for alias in (CHAMPION, CHALLENGER):
        version = version_by_alias(client, name, alias)
        out[alias] = None
        if version is not None:
            out[alias] = {
                "version": str(version.version),
                "uri": f"models:/{name}@{alias}",
                "run_id": version.run_id,
                "tags": dict(version.tags),
            }
    return out
