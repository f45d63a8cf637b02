"""The online server (see configs/serve.yaml and serving/app.py).

``python scripts/serve.py model.source=outputs/export/<model> [port=8080] [env=prod]``; by default it serves
``models:/<registry.model_name>@champion`` and follows the alias. SIGTERM (or Ctrl-C) is a graceful
shutdown: queued requests finish and the inference log writes every row it accepted. Exit status 2 when the
settings are invalid or the model cannot be loaded (one line on stderr).
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault(
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
)  # a models:/ download draws a bar per file

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pydantic import ValidationError

import seismic.config  # noqa: F401  (registers the ${seismic.root:} resolver the paths group uses)
from serving.app import app_from_settings
from serving.runtime import ModelLoadError, parse_registry_uri
from serving.server import bind, make_server
from serving.settings import CONFIG_SECTIONS as SECTIONS
from serving.settings import Settings, load_settings


def settings_from(cfg: DictConfig) -> Settings:
    """The serve keys of the composed config; the tracking URI is resolved only for a registry source (in
    staging/prod it comes from $MLFLOW_TRACKING_URI, which a folder-serving host need not set)."""
    source = str(cfg.model.source)
    if parse_registry_uri(source) is None:
        cfg.model.tracking_uri = None
    else:
        try:
            cfg.model.tracking_uri = str(cfg.model.tracking_uri)
        except InterpolationResolutionError as err:
            raise ValueError(f"{source} needs a tracking URI: {err}") from None
    values = {"env": cfg.env.name}
    for key in SECTIONS:
        value = cfg[key]
        values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return load_settings(values)


@hydra.main(version_base="1.3", config_path="../configs", config_name="serve")
def main(cfg: DictConfig) -> None:
    try:
        settings = settings_from(cfg)
        logging.getLogger().setLevel(settings.log_level.upper())
        app = app_from_settings(settings)
    except (ValidationError, ValueError, ModelLoadError) as err:
        print(f"serve: {err}", file=sys.stderr)
        sys.exit(2)
    server = make_server(app, settings.log_level)
    sock = bind(settings.host, settings.port, settings.reuse_port)
    logging.getLogger("serving").info("listening on http://%s:%d", *sock.getsockname()[:2])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
