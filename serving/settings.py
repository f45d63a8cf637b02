"""Server settings: ``configs/serve.yaml`` (composed by ``scripts/serve.py``) checked by pydantic.

Every section forbids unknown keys, so a misspelt key fails at start-up with its path. The API key is read
from the environment variable named by ``auth.api_key_env`` and never from a file; ``auth.required`` (set
from the environment's ``auth_required`` by serve.yaml) refuses to start without one.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Section):
    source: str = Field(description="model folder, or models:/<name>@<alias> / models:/<name>/<version>")
    tracking_uri: str | None = None
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    intra_op_threads: int | None = Field(default=None, ge=1)
    inter_op_threads: int | None = Field(default=None, ge=1)
    spin_wait: bool = Field(default=False, description="idle onnxruntime threads busy-wait for work")


class LimitSettings(_Section):
    max_windows_per_request: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)


class BatchingSettings(_Section):
    """Dynamic batching as Triton configures it: a batch runs when it holds ``max_batch_size`` windows or
    when its first request has waited ``max_queue_delay_us`` microseconds.

    The delay defaults to 0, as in Triton: batches still form from whatever queued while the previous batch
    ran, and no request waits for company that may not come (measured at batch 1, concurrency 8: a 500 us
    delay cost ~15 % more server CPU per request and 8-30 % of the request rate, and raised p99)."""

    max_batch_size: int = Field(default=256, ge=1)
    max_queue_delay_us: int = Field(default=0, ge=0)
    max_queue_windows: int = Field(default=8192, ge=1)
    retry_after_s: int = Field(default=1, ge=1)


class ReloadSettings(_Section):
    poll_interval_s: float = Field(default=0.0, ge=0.0, description="0: no polling (POST /reload only)")


class InferenceLogSettings(_Section):
    enabled: bool = True
    directory: str = "data/inference_log"
    flush_rows: int = Field(default=4096, ge=1)
    flush_seconds: float = Field(default=5.0, gt=0)
    max_buffer_rows: int = Field(default=65536, ge=1)
    sample_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    feature_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    feature_rate: float | None = Field(default=500.0, gt=0, description="feature rows/s; null: no cap")


class AuthSettings(_Section):
    """A key in the environment is always enforced; ``required`` (the environment's ``auth_required``) also
    refuses to start without one. ``metrics``: /metrics needs the key too (off: Prometheus scrapes freely)."""

    required: bool = False
    api_key_env: str = "SEISMIC_API_KEY"
    header: str = "X-API-Key"
    metrics: bool = False


class ShutdownSettings(_Section):
    """SIGTERM: readiness answers 503 at once and new requests get 503 + ``Connection: close`` for ``drain_s``
    (time for the load balancer to see it), then in-flight and queued requests get up to ``graceful_s`` to
    finish; exit status 0."""

    drain_s: float = Field(default=5.0, ge=0.0)
    graceful_s: float = Field(default=30.0, gt=0.0)


# the keys of configs/serve.yaml that become Settings (the rest, e.g. paths and env, only feed them)
CONFIG_SECTIONS = (
    "host",
    "port",
    "reuse_port",
    "log_level",
    "model",
    "limits",
    "batching",
    "reload",
    "inference_log",
    "auth",
    "shutdown",
)


class Settings(_Section):
    env: str = "dev"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    reuse_port: bool = Field(default=False, description="SO_REUSEPORT: several server processes on one port")
    log_level: str = "info"
    model: ModelSettings
    limits: LimitSettings = LimitSettings()
    batching: BatchingSettings = BatchingSettings()
    reload: ReloadSettings = ReloadSettings()
    inference_log: InferenceLogSettings = InferenceLogSettings()
    auth: AuthSettings = AuthSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    # filled from the environment by the validator below, never from the YAML
    api_key: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if value.lower() not in levels:
            raise ValueError(f"log_level must be one of {levels}, got {value!r}")
        return value.lower()

    @model_validator(mode="before")
    @classmethod
    def _key_from_env(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "api_key" in data:
                raise ValueError("api_key is read from the environment only (auth.api_key_env)")
            env_name = (data.get("auth") or {}).get("api_key_env", AuthSettings().api_key_env)
            key = os.environ.get(env_name)
            data = {**data, "api_key": key or None}
        return data

    @model_validator(mode="after")
    def _required_key(self) -> Settings:
        if self.auth.required and self.api_key is None:
            raise ValueError(
                f"auth.required (env {self.env}): set the API key in the environment variable "
                f"{self.auth.api_key_env}"
            )
        return self


def load_settings(config: dict[str, Any]) -> Settings:
    """Settings from a plain mapping (``OmegaConf.to_container(cfg, resolve=True)`` of serve.yaml)."""
    return Settings.model_validate(config)
