"""Reaching the MLflow tracking store, which holds the runs and the model registry alike.

It sits in the registry layer so that both the registry and the training pipeline above it can check a
store before they use it, without the registry reaching up into the pipeline.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written: one clear line instead of a retry storm."""


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any training, when the tracking store is unusable."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                response.read(1)
        except urllib.error.HTTPError as err:
            if err.code >= 500:
                raise TrackingError(f"MLflow tracking server {uri} answered HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); check env.tracking_uri / "
                "MLFLOW_TRACKING_URI, or use env=dev for the local sqlite store"
            ) from err
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"cannot create the folder of the MLflow store {uri}: {err}") from err
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"the folder of the MLflow store {uri} is not writable")
