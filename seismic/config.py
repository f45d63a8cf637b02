"""Structured schemas of the CLI configs, registered in Hydra's ConfigStore.

Each top-level YAML names its schema first in ``defaults``, so Hydra composes in struct mode: a misspelt key
in a YAML file or on the command line fails at composition with the full key path, instead of becoming a
silent new key that nothing reads. The schemas of data sections mirror the library's own dataclasses
(field names and defaults are taken from them, so the two cannot drift apart); values are typed ``Any`` here
and checked by those dataclasses, which name the field and the reason. Import this module before composing
(``scripts/*.py`` do); it needs no torch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from seismic.data.acquisition import AcquisitionRanges, Augmentation
from seismic.data.synthetic import SyntheticSurveyConfig
from seismic.data.windows import NORMALISATION_DEFAULTS, SAMPLING_DEFAULTS, SplitSpec, WindowSpec
from seismic.registry.policy import GateConfig


def _field_default(value: Any) -> Any:
    if isinstance(value, tuple | list | dict):
        plain = list(value) if not isinstance(value, dict) else dict(value)
        return field(default_factory=lambda plain=plain: plain.copy())
    return field(default=value)


def _mirror(name: str, defaults: dict[str, Any]) -> type:
    cls = make_dataclass(name, [(key, Any, _field_default(value)) for key, value in defaults.items()])
    # pickled by reference (seismic.config.<name>), not by value: launchers that run trials in other processes
    # (hydra-submitit-launcher) pickle the ConfigStore, and a by-value copy loses the default factories
    cls.__module__ = __name__
    return cls


def _defaults_of(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


SurveySchema = _mirror("SurveySchema", _defaults_of(SyntheticSurveyConfig))
WindowSchema = _mirror("WindowSchema", _defaults_of(WindowSpec))
SplitSchema = _mirror("SplitSchema", _defaults_of(SplitSpec))
SamplingSchema = _mirror("SamplingSchema", SAMPLING_DEFAULTS)
NormalisationSchema = _mirror("NormalisationSchema", NORMALISATION_DEFAULTS)
AcquisitionSchema = _mirror("AcquisitionSchema", _defaults_of(AcquisitionRanges))
AugmentSchema = _mirror("AugmentSchema", _defaults_of(Augmentation))


@dataclass
class SegySchema:
    path: Any = None
    labels_path: Any = None
    iline: int = 189
    xline: int = 193
    class_names: Any = None


@dataclass
class DataSchema:
    source: str = "synthetic"
    cache_dir: str = "data/cache"
    survey: SurveySchema | None = None  # type: ignore[valid-type]
    segy: SegySchema | None = None
    window: WindowSchema = field(default_factory=WindowSchema)  # type: ignore[valid-type]
    split: SplitSchema = field(default_factory=SplitSchema)  # type: ignore[valid-type]
    sampling: SamplingSchema = field(default_factory=SamplingSchema)  # type: ignore[valid-type]
    normalisation: NormalisationSchema = field(default_factory=NormalisationSchema)  # type: ignore[valid-type]
    acquisition: AcquisitionSchema = field(default_factory=AcquisitionSchema)  # type: ignore[valid-type]
    augment: AugmentSchema = field(default_factory=AugmentSchema)  # type: ignore[valid-type]
    batch_size: int = 256
    num_workers: int = 0
    pin_memory: bool = False


@dataclass
class PathsSchema:
    root_dir: str = "."
    data_dir: str = "data"
    cache_dir: str = "data/cache"
    log_dir: str = "outputs"
    output_dir: str = "outputs"


@dataclass
class EnvSchema:
    name: str = "dev"
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str | None = None
    log_level: str = "INFO"
    # ---- monitoring and serving policy per environment (configs/env/*.yaml; read by scripts/monitor.py and
    # scripts/loop.py). Channel secrets are named by environment variable (`url_env`, `password_env`), never
    # written here; channel keys are checked by seismic.monitoring.alerting.channels.build_channels.
    auth_required: bool = False
    alert_channels: list[Any] = field(default_factory=list)
    thresholds: dict[str, Any] = field(
        default_factory=lambda: {"alpha": 0.05, "calibration_z": 3.0, "adaptive": False}
    )
    # ---- end of the monitoring keys


# ---- export / registry / promotion (configs/registry, configs/publish, export.yaml, promote.yaml)
@dataclass
class RegistrySchema:
    model_name: str = "seismic-facies"
    tracking_uri: str = "sqlite:///mlflow.db"


@dataclass
class ExportOptionsSchema:
    opset: int = 17
    parity_bound: float = 1e-4
    large_batch: int = 512


@dataclass
class ProfileOptionsSchema:
    max_windows: int = 4096
    max_embeddings: int = 2000
    seed: int = 0


@dataclass
class CalibrationOptionsSchema:
    enabled: bool = True
    max_windows: int = 4096


@dataclass
class PublishSchema:
    enabled: bool = True
    register: bool = True
    output_dir: str = "outputs/model"
    export: ExportOptionsSchema = field(default_factory=ExportOptionsSchema)
    profile: ProfileOptionsSchema = field(default_factory=ProfileOptionsSchema)
    calibration: CalibrationOptionsSchema = field(default_factory=CalibrationOptionsSchema)


GateSchema = _mirror("GateSchema", _defaults_of(GateConfig))


@dataclass
class TrainSchema:
    task_name: str = "train"
    run_name: str | None = None
    seed: int = 42
    train: bool = True
    test: bool = True
    ckpt_path: str | None = None
    optimized_metric: str = "val/macro_f1"
    tags: dict[str, Any] = field(default_factory=dict)
    section_plot: bool = True
    paths: PathsSchema = field(default_factory=PathsSchema)
    data: DataSchema = field(default_factory=DataSchema)
    # keys differ per model and per Lightning version: the model builder and lightning.Trainer reject
    # unknown ones, and the pipeline checks trainer keys against Trainer's signature before any work
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    logger: dict[str, Any] = field(default_factory=dict)
    env: EnvSchema = field(default_factory=EnvSchema)
    registry: RegistrySchema = field(default_factory=RegistrySchema)
    publish: PublishSchema = field(default_factory=PublishSchema)


@dataclass
class ExportSchema:
    ckpt_path: Any = None
    run_id: str | None = None
    paths: PathsSchema = field(default_factory=PathsSchema)
    data: DataSchema = field(default_factory=DataSchema)
    env: EnvSchema = field(default_factory=EnvSchema)
    registry: RegistrySchema = field(default_factory=RegistrySchema)
    publish: PublishSchema = field(default_factory=PublishSchema)


@dataclass
class PromoteSchema:
    action: str = "promote"
    version: Any = None
    dry_run: bool = False
    paths: PathsSchema = field(default_factory=PathsSchema)
    data: DataSchema = field(default_factory=DataSchema)
    env: EnvSchema = field(default_factory=EnvSchema)
    registry: RegistrySchema = field(default_factory=RegistrySchema)
    gate: GateSchema = field(default_factory=GateSchema)  # type: ignore[valid-type]


@dataclass
class QualitySchema:
    fail_on_fatal: bool = True


@dataclass
class MakeSurveySchema:
    output: str = "data/synthetic/survey.sgy"
    sample_format: str = "ieee"
    endian: str = "big"
    quality: QualitySchema = field(default_factory=QualitySchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    data: DataSchema = field(default_factory=DataSchema)


def project_root() -> str:
    """``$SEISMIC_ROOT``, else the directory the command started in, as an absolute path.

    A resolver rather than ``${hydra:runtime.cwd}``: sweepers read paths before Hydra's runtime config
    exists, and jobs never chdir (``hydra.job.chdir=false``), so the start directory is the working one.
    """
    return str(Path(os.environ.get("SEISMIC_ROOT") or os.getcwd()).expanduser().resolve())


def register_schemas() -> None:
    if not OmegaConf.has_resolver("seismic.root"):
        OmegaConf.register_new_resolver("seismic.root", project_root)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainSchema)
    store.store(name="make_survey_schema", node=MakeSurveySchema)
    store.store(name="export_schema", node=ExportSchema)
    store.store(name="promote_schema", node=PromoteSchema)


register_schemas()
