"""Registry and gate on a temporary sqlite store: register, aliases, load by alias, gate, rollback, errors."""

from __future__ import annotations

import socket
import time

import mlflow
import numpy as np
import pytest
import torch

from seismic.export.onnx import onnx_metadata, read_metadata
from seismic.export.weights import WEIGHTS_FILE
from seismic.registry.gate import GateError, promote, rollback
from seismic.registry.policy import GateConfig, classification_metrics
from seismic.registry.store import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    check_model_name,
    connect,
    download,
    register_folder,
    version_by_alias,
)

GATE = GateConfig(floor=0.0, max_windows=256, parity_windows=64)


def unique(request) -> str:
    return f"facies-{request.node.name}"[:60]


def test_register_sets_challenger_tags_and_stamps_the_version(store, copy_of, request, tmp_path):
    client, run_id = store
    name = unique(request)
    folder = copy_of("good")
    version = register_folder(client, folder, name=name, run_id=run_id)
    assert version.version == 1 and version.run_id == run_id
    assert version_by_alias(client, name, CHALLENGER).version == 1
    assert version_by_alias(client, name, CHAMPION) is None
    meta = read_metadata(folder)
    assert version.tags["data_hash"] == meta["data_hash"] and len(meta["data_hash"]) == 64
    assert version.tags["git_commit"] == meta["git_commit"] and version.tags["architecture"] == "cnn1d"
    assert version.tags["test/macro_f1"] == "0.5" and float(version.tags["parity_max_abs"]) <= 1e-4
    assert (meta["model_name"], meta["model_version"], meta["mlflow_run_id"]) == (name, "1", run_id)
    second = register_folder(client, copy_of("bad"), name=name, run_id=run_id)
    assert second.version == 2 and version_by_alias(client, name, CHALLENGER).version == 2
    got = download(client, name, 2, tmp_path / "dl")
    assert {"model.onnx", "metadata.json", "profile.json", "profile.npz", WEIGHTS_FILE} <= {
        p.name for p in got.iterdir()
    }
    assert onnx_metadata(got / "model.onnx")["model_version"] == "2" == read_metadata(got)["model_version"]


def test_first_model_promoted_above_floor_and_served_by_champion_uri(store, copy_of, request):
    client, run_id = store
    name = unique(request)
    register_folder(client, copy_of("good"), name=name, run_id=run_id)
    decision = promote(client, name, request.getfixturevalue("data_options"), GATE)
    assert decision["promoted"] and decision["champion"] is None and decision["reasons"] == []
    assert version_by_alias(client, name, CHAMPION).version == 1
    assert version_by_alias(client, name, CHALLENGER) is None  # the challenger became the champion
    tags = client.get_model_version(name, "1").tags
    assert tags["gate.decision"] == "promoted" and tags["promoted_from"] == ""
    # what serving and users do: load by alias through MLflow's own API, which reads the process-wide URI
    # (set explicitly: an MLFlowLogger in an earlier test of this process sets it, and beats the env var)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        model = mlflow.onnx.load_model(f"models:/{name}@{CHAMPION}")
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    finally:
        mlflow.set_tracking_uri(previous)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["model_version"] == '"1"' and props["model_name"] == f'"{name}"'
    x = np.zeros((3, 1, 64), dtype=np.float32)
    out = pyfunc.predict({"windows": x})
    assert out["logits"].shape == (3, 6) and out["embedding"].shape[0] == 3
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert pyfunc.metadata.signature.inputs.input_names() == ["windows"]


def test_first_model_below_floor_refused(store, copy_of, request):
    client, run_id = store
    name = unique(request)
    register_folder(client, copy_of("good"), name=name, run_id=run_id)
    decision = promote(client, name, request.getfixturevalue("data_options"), GateConfig(floor=0.99))
    assert not decision["promoted"] and "below the floor 0.9900 (no champion yet)" in decision["reasons"][0]
    assert version_by_alias(client, name, CHAMPION) is None
    assert version_by_alias(client, name, CHALLENGER).version == 1
    assert client.get_model_version(name, "1").tags["gate.decision"] == "refused"


def test_gate_accepts_better_refuses_worse_and_rollback_walks_back(store, copy_of, request):
    client, run_id = store
    name = unique(request)
    data = request.getfixturevalue("data_options")
    register_folder(client, copy_of("bad"), name=name, run_id=run_id)
    assert promote(client, name, data, GATE)["promoted"]  # v1: floor 0
    register_folder(client, copy_of("good"), name=name, run_id=run_id)
    better = promote(client, name, data, GATE)  # v2 beats v1
    good_f1, bad_f1 = better["challenger"]["metrics"]["macro_f1"], better["champion"]["metrics"]["macro_f1"]
    assert better["promoted"] and good_f1 > bad_f1 + 0.05, (good_f1, bad_f1)
    assert better["challenger"]["n_windows"] == better["champion"]["n_windows"] == 256
    assert version_by_alias(client, name, CHAMPION).version == 2
    assert client.get_model_version(name, "2").tags["promoted_from"] == "1"

    register_folder(client, copy_of("bad"), name=name, run_id=run_id)
    worse = promote(client, name, data, GATE)  # v3 is v1 again: worse than v2
    assert not worse["promoted"] and worse["reasons"][0].startswith(f"macro_f1 {bad_f1:.4f} < champion v2's")
    assert version_by_alias(client, name, CHAMPION).version == 2
    assert version_by_alias(client, name, CHALLENGER).version == 3
    assert client.get_model_version(name, "3").tags["gate.decision"] == "refused"

    # equal metric: "at least as good" passes with margin 0, fails with a positive margin
    assert promote(client, name, data, GATE, version=1, dry_run=True)["passed"] is False
    same = register_folder(client, copy_of("good"), name=name, run_id=run_id)
    strict = GateConfig(floor=0.0, margin=0.01, max_windows=256, parity_windows=64)
    assert not promote(client, name, data, strict, version=same.version, dry_run=True)["passed"]
    assert promote(client, name, data, GATE, version=same.version, dry_run=True)["passed"]
    assert version_by_alias(client, name, CHAMPION).version == 2  # dry runs change nothing

    assert rollback(client, name) == {"model": name, "champion": "1", "rolled_back_from": "2"}
    assert version_by_alias(client, name, CHAMPION).version == 1
    assert "rolled_back_at" in client.get_model_version(name, "2").tags
    with pytest.raises(GateError, match="was the first champion"):
        rollback(client, name)
    assert rollback(client, name, to_version=2)["champion"] == "2"
    with pytest.raises(RegistryError, match="has no version 99"):
        rollback(client, name, to_version=99)


def test_challenger_failing_parity_is_refused(store, copy_of, request):
    """The ONNX graph no longer matches the weights shipped with it: the re-measured parity catches it."""
    client, run_id = store
    name = unique(request)
    folder = copy_of("good")
    payload = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.dtype.is_floating_point and v.dim() > 1)
    payload["state_dict"][key] += 0.05
    torch.save(payload, folder / WEIGHTS_FILE)
    register_folder(client, folder, name=name, run_id=run_id)
    decision = promote(client, name, request.getfixturevalue("data_options"), GATE)
    assert not decision["promoted"]
    assert any(r.startswith("parity error re-measured") for r in decision["reasons"]), decision["reasons"]
    assert decision["challenger"]["recorded_parity"] <= 1e-4 < decision["challenger"]["parity"]


def test_gate_errors_are_one_clear_line(store, copy_of, request):
    client, run_id = store
    name = unique(request)
    data = request.getfixturevalue("data_options")
    with pytest.raises(RegistryError, match=rf"no registered model 'nope' in {client.tracking_uri}"):
        promote(client, "nope", data, GATE)
    register_folder(client, copy_of("good"), name=name, run_id=run_id, alias=None)
    with pytest.raises(GateError, match="has no 'challenger' alias: nothing to gate"):
        promote(client, name, data, GATE)
    with pytest.raises(GateError, match="has no 'champion': nothing to roll back"):
        rollback(client, name)
    promote(client, name, data, GATE, version=1)
    with pytest.raises(GateError, match="already is the champion"):
        promote(client, name, data, GATE, version=1)


@pytest.mark.parametrize("bad", ["", None, "a/b", " lead"])
def test_missing_or_invalid_model_name(bad):
    with pytest.raises(RegistryError, match="missing or invalid"):
        check_model_name(bad)


def test_missing_store_and_unreachable_server(tmp_path):
    missing = f"sqlite:///{tmp_path}/none.db"
    with pytest.raises(RegistryError, match=rf"MLflow store {missing} does not exist"):
        connect(missing, must_exist=True)
    assert not (tmp_path / "none.db").exists()  # checking did not create it
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RegistryError, match=rf"127\.0\.0\.1:{port} is unreachable"):
        connect(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    with pytest.raises(RegistryError, match="no MLflow tracking URI"):
        connect("")


def test_metrics_match_scikit_learn_definitions():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0, 3])  # class 3 predicted but absent from the labels
    got = classification_metrics(labels, predicted, 4)
    f1 = [2 / 4, 4 / 5, 2 / 4, 0.0]  # 2 tp / (support + predicted) per class
    assert got["accuracy"] == pytest.approx(4 / 7)
    assert got["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert got["macro_f1"] == pytest.approx(np.mean(f1))
    with pytest.raises(ValueError, match=r"gate\.metric"):
        GateConfig(metric="auc")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['margn'\]"):
        GateConfig.from_mapping({"margn": 0.1})
