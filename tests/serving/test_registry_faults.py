"""The registry failing under a real ``mlflow server`` process, SIGKILLed: while the server polls its alias
(it keeps serving, says so in one line per poll, and follows the alias once the registry is back), and in the
middle of a registration (one line naming what could not be undone; the next registration cleans up)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time

import pytest
import requests
from conftest import start

from seismic.registry.store import RegistryError, connect, register_folder, remove_abandoned

from ..mlflow_server import MlflowServer

pytestmark = pytest.mark.slow  # each test starts a real MLflow server (~15 s) twice


@pytest.fixture()
def fail_fast(monkeypatch):
    """MLflow's client retries a refused connection for minutes by default: tests want the failure now."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture()
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow")
    server.root.mkdir()
    server.start()
    yield server
    server.kill()


def _run(client) -> str:
    return client.create_run(client.create_experiment("faults")).info.run_id


def _copy(model_dirs, name, tmp_path):
    return shutil.copytree(model_dirs[name], tmp_path / f"{name}-{time.monotonic_ns()}")


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_registry_killed_while_polling_keeps_serving_then_follows(
    mlflow_server, model_dirs, tmp_path, fail_fast, caplog
):
    client = connect(mlflow_server.url)
    run = _run(client)
    for name in ("cnn1d", "cnn1d_other"):
        register_folder(client, _copy(model_dirs, name, tmp_path), name="tiny", run_id=run, alias=None)
    client.set_registered_model_alias("tiny", "champion", "1")
    source = "models:/tiny@champion"
    running = start(
        source,
        tmp_path / "log",
        model={"source": source, "tracking_uri": mlflow_server.url, "providers": ["CPUExecutionProvider"]},
        reload={"poll_interval_s": 0.3},
        loaded_with={"tracking_uri": mlflow_server.url},
    )
    try:
        mlflow_server.kill()
        with caplog.at_level(logging.ERROR, logger="serving.reload"):

            def failed_polls() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "serving.reload"]

            _wait(lambda: len(failed_polls()) >= 2, "the poller stopped or never noticed the dead registry")
        line = failed_polls()[0]
        assert "\n" not in line
        assert line.startswith(f"registry poll: keeping version 1: {source} in {mlflow_server.url}: ")
        assert requests.get(running.url + "/v2/models/tiny/versions/1/ready", timeout=10).ok  # still serving

        mlflow_server.start()  # back, and the alias moved while it was down
        connect(mlflow_server.url).set_registered_model_alias("tiny", "champion", "2")
        _wait(lambda: running.service.model.version == "2", "the poller did not recover")
    finally:
        running.stop()


def test_server_killed_during_registration_fails_in_one_line_and_is_cleaned_up(
    mlflow_server, model_dirs, tmp_path, fail_fast, monkeypatch, caplog
):
    client = connect(mlflow_server.url)
    run = _run(client)
    folder = _copy(model_dirs, "cnn1d", tmp_path)
    before = json.loads((folder / "metadata.json").read_text())
    upload = client.log_model_artifacts

    def killed_mid_upload(*args, **kwargs):  # the version exists, its files are on the way
        mlflow_server.kill()
        return upload(*args, **kwargs)

    monkeypatch.setattr(client, "log_model_artifacts", killed_mid_upload)
    with pytest.raises(RegistryError) as failure:
        register_folder(client, folder, name="tiny", run_id=run, alias="champion")
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(f"registering 'tiny' in {mlflow_server.url} failed: ")
    assert "could not undo, the store failing too: version 1 of 'tiny'" in message
    assert json.loads((folder / "metadata.json").read_text()) == before  # claims no version

    monkeypatch.undo()
    mlflow_server.start()
    client = connect(mlflow_server.url)
    (orphan,) = client.search_model_versions("name='tiny'")  # a version without files: what must go
    assert remove_abandoned(client, "tiny", older_than=dt.timedelta(hours=1)) == []  # too young to judge
    assert remove_abandoned(client, "tiny", older_than=dt.timedelta(0)) == [str(orphan.version)]
    assert client.search_model_versions("name='tiny'") == []
    version = register_folder(client, folder, name="tiny", run_id=run, alias="champion")
    assert version.version == "2" and version.aliases == ["champion"]
