"""Batch-scoring settings: ``configs/predict.yaml`` (composed by ``scripts/predict.py``) checked by pydantic.

Every section forbids unknown keys, so a misspelt key fails before any work with its path, as the server's
settings do (:mod:`serving.settings`); ``scripts/validate.py`` runs the same check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# the SEG-Y trace header is 240 bytes; a 4-byte field must start at or before byte 237
_HEADER_BYTE = {"ge": 1, "le": 237}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictModel(_Section):
    source: str = Field(description="model folder, or models:/<name>@<alias> / models:/<name>/<version>")
    tracking_uri: str | None = None


class SegyBytes(_Section):
    iline: int = Field(default=189, **_HEADER_BYTE)
    xline: int = Field(default=193, **_HEADER_BYTE)


class Outputs(_Section):
    classes: str | None = None
    max_probability: str | None = None
    summary: str | None = None
    class_format: Literal["int16", "int8"] = "int16"
    maps_dir: str | None = None  # uncertainty / drift / time-slice maps (serving/quality_maps.py)
    maps_windows_per_trace: int = 4
    maps_block: int = 4
    maps_time_slice: int | None = None


class Chunking(_Section):
    max_memory_mb: float = Field(default=256.0, gt=0)
    chunk_inlines: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    # segmentation models: the share of a tile its neighbours overlap (null: the model's default_overlap)
    overlap: float | None = Field(default=None, ge=0.0, lt=1.0)
    # segmentation models: section directions tiled (null: the model's window axis; both: averaged)
    passes: Literal["inline", "crossline", "both"] | None = None


class Runtime(_Section):
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"), min_length=1
    )
    intra_op_threads: int | None = Field(default=None, ge=1)
    inter_op_threads: int | None = Field(default=None, ge=1)
    # the scoring thread cuts, blends and writes while onnxruntime computes: threads that busy-wait between
    # operators take those cores from it (docs/segmentation.md, batch scoring)
    spin_wait: bool = False


class LogSettings(_Section):
    enabled: bool = False
    directory: str = "data/inference_log"
    sample_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    feature_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    feature_rate: float | None = Field(default=500.0, gt=0, description="feature rows/s; null: no cap")
    max_buffer_rows: int = Field(default=65536, ge=1)


class RaySettings(_Section):
    address: str | None = Field(default=None, description="null: a local instance; auto; ray://head:10001")
    actors: int = Field(default=2, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)


class PredictSettings(_Section):
    model: PredictModel
    input: str
    segy: SegyBytes = SegyBytes()
    output: Outputs = Outputs()
    chunk: Chunking = Chunking()
    runtime: Runtime = Runtime()
    log: LogSettings = LogSettings()
    progress: bool = True
    engine: Literal["local", "ray"] = "local"
    ray: RaySettings = RaySettings()
    normalisation: Literal["model", "per_volume", "per_trace"] = "model"
    max_scale_ratio: float = Field(default=4.0, gt=1.0)
    resample: bool = False

    @model_validator(mode="after")
    def _engine_fits(self) -> PredictSettings:
        if self.engine == "ray" and self.log.enabled:
            raise ValueError(
                "log.enabled=true needs engine=local: the inference log is written by one process, the "
                "Ray engine scores in many"
            )
        if self.engine == "ray" and (self.normalisation != "model" or self.resample):
            raise ValueError(
                f"normalisation={self.normalisation} and resample={str(self.resample).lower()} need "
                "engine=local: Ray actors score the amplitudes as the file holds them"
            )
        if (
            self.engine == "ray"
            and self.ray.num_gpus > 0
            and not _GPU_PROVIDERS & set(self.runtime.providers)
        ):
            raise ValueError(
                f"ray.num_gpus={self.ray.num_gpus} reserves GPUs, but runtime.providers "
                f"{list(self.runtime.providers)} has no GPU provider (e.g. CUDAExecutionProvider)"
            )
        return self


def load_predict_settings(config: dict[str, Any]) -> PredictSettings:
    """Settings from the composed predict config as a plain mapping; ``paths`` (Hydra's) is not ours."""
    return PredictSettings.model_validate({k: v for k, v in config.items() if k not in ("paths", "hydra")})
