from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seismic.pipeline.publish import build_model_folder
from seismic.registry.store import connect

from ..export.support import NET_KWARGS, PUBLISH, constant, datamodule, fit, hparams_for, tiny_data


@pytest.fixture(scope="session")
def data_options(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def folders(data_options, tmp_path_factory):
    """Exported model folders: ``good`` (trained a little), ``bad`` (always class 0)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dm = datamodule(data_options)
    hparams = hparams_for(dm, "cnn1d", NET_KWARGS)
    root = tmp_path_factory.mktemp("folders")
    out = {}
    for label, net in (("good", fit(dm, steps=150)), ("bad", constant(dm))):
        build_model_folder(
            net, hparams, data_options, root / label, PUBLISH, test_metrics={"test/macro_f1": 0.5}
        )
        out[label] = root / label
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A sqlite tracking store (created once: its migrations take seconds) and a run to register from."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = connect(uri)
    experiment = client.create_experiment("tests", artifact_location=str(root / "artifacts"))
    run = client.create_run(experiment)
    return client, run.info.run_id


@pytest.fixture()
def copy_of(tmp_path, folders):
    """A fresh copy of a model folder (registering stamps the folder with its version)."""

    def _copy(label: str) -> Path:
        target = tmp_path / f"{label}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folders[label], target)
        return target

    return _copy
