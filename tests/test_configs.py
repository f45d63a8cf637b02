"""Every option of every config group composes under the schema; a misspelt key is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

import seismic.config  # noqa: F401
from seismic.data.sources import survey_configs
from seismic.data.windows import SplitSpec, WindowSpec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_cfg(name: str, overrides: list[str], tmp_path: Path, monkeypatch) -> DictConfig:
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        # compose() is not a run, so Hydra has no run folder to give paths.output_dir
        overrides = [f"paths.output_dir={tmp_path}/run", *overrides]
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
    OmegaConf.resolve(cfg)
    return cfg


GROUP_OPTIONS = [
    (group, option)
    for group in (
        "data",
        "model",
        "trainer",
        "callbacks",
        "logger",
        "env",
        "experiment",
        "hparams_search",
        "debug",
        "registry",
        "publish",
    )
    for option in options(group)
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes(group, option, tmp_path, monkeypatch):
    extra = ["data.segy.path=/x.sgy"] if option == "segy" else []
    cfg = compose_cfg("train", [f"{group}={option}", *extra], tmp_path, monkeypatch)
    assert cfg.paths.root_dir == str(tmp_path)
    WindowSpec.from_mapping(cfg.data.window)
    SplitSpec.from_mapping(cfg.data.split)
    if cfg.data.survey is not None:
        assert survey_configs(OmegaConf.to_container(cfg.data.survey))


def test_model_choice_sets_the_window_it_needs(tmp_path, monkeypatch):
    assert compose_cfg("train", ["model=cnn1d"], tmp_path, monkeypatch).data.window.width == 1
    assert compose_cfg("train", ["model=cnn2d"], tmp_path, monkeypatch).data.window.width > 1
    cfg = compose_cfg("train", ["model=cnn2d", "data.window.width=8"], tmp_path, monkeypatch)
    assert cfg.data.window.width == 8  # the command line wins


def test_paths_are_absolute_and_independent_of_hydra_run_dirs(tmp_path, monkeypatch):
    cfg = compose_cfg("train", [], tmp_path, monkeypatch)
    assert cfg.env.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.data.cache_dir == f"{tmp_path}/data/cache"
    assert Path(cfg.paths.output_dir).is_absolute()


@pytest.mark.parametrize(
    "override",
    ["data.window.lenght=3", "data.survey.n_inline=3", "model.widht=3", "seeed=1", "trainer.max_epoch=2"],
)
def test_misspelt_key_on_the_command_line_fails(override, tmp_path, monkeypatch):
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0].split(".")[-1]):
        compose_cfg("train", [override], tmp_path, monkeypatch)


def test_misspelt_key_in_a_yaml_file_fails(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    import shutil

    shutil.copytree(CONFIGS, configs)
    text = (configs / "data" / "synthetic.yaml").read_text().replace("  pad_mode:", "  pad_mod:")
    (configs / "data" / "synthetic.yaml").write_text(text)
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    with (
        initialize_config_dir(config_dir=str(configs), version_base="1.3"),
        pytest.raises(ConfigCompositionException, match="pad_mod"),
    ):
        compose(config_name="train", return_hydra_config=True)


def test_make_survey_config_composes(tmp_path, monkeypatch):
    cfg = compose_cfg("make_survey", ["data.survey.seed=7", "sample_format=ibm"], tmp_path, monkeypatch)
    assert cfg.output == f"{tmp_path}/data/synthetic/survey.sgy" and cfg.data.survey.seed == 7
