"""models:/ sources (download, alias polling) and scripts/serve.py end to end (SIGTERM flushes the log)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import requests
from conftest import amplitudes, start

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry(model_dirs, tmp_path_factory):
    """A sqlite MLflow store with versions 1 (champion) and 2 of ``tiny``."""
    from seismic.registry.store import connect, register_folder

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = connect(uri)
    experiment = client.create_experiment("serving-tests", artifact_location=str(root / "artifacts"))
    run = client.create_run(experiment).info.run_id
    for name in ("cnn1d", "cnn1d_other"):
        folder = root / name
        shutil.copytree(model_dirs[name], folder)
        register_folder(client, folder, name="tiny", run_id=run, alias=None)
    client.set_registered_model_alias("tiny", "champion", "1")
    return client, uri


@pytest.mark.slow  # ~20 s: a fresh sqlite MLflow store and two registrations
def test_registry_alias_is_loaded_and_followed(registry, tmp_path):
    client, uri = registry
    running = start(
        "models:/tiny@champion",
        tmp_path,
        model={"source": "models:/tiny@champion", "tracking_uri": uri, "providers": ["CPUExecutionProvider"]},
        reload={"poll_interval_s": 0.2},
        loaded_with={"tracking_uri": uri},
    )
    try:
        assert requests.get(running.url + "/v2/models/tiny/versions/1/ready", timeout=10).ok
        client.set_registered_model_alias("tiny", "champion", "2")
        deadline = time.monotonic() + 30
        while running.service.model.version != "2":
            assert time.monotonic() < deadline, "the poller did not follow the alias"
            time.sleep(0.1)
        info = requests.get(running.url + "/model_info", timeout=10).json()
        assert info["version"] == "2" and info["name"] == "tiny"
    finally:
        client.set_registered_model_alias("tiny", "champion", "1")
        running.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_script_sigterm_writes_every_logged_row(model_dirs, tmp_path):
    port = _free_port()
    log_dir = tmp_path / "log"
    env = {**os.environ, "SEISMIC_ROOT": str(tmp_path)}
    env.pop("SEISMIC_API_KEY", None)
    command = [
        sys.executable,
        str(ROOT / "scripts/serve.py"),
        f"model.source={model_dirs['cnn2d']}",
        f"port={port}",
        f"inference_log.directory={log_dir}",
        "inference_log.flush_seconds=60",
        "shutdown.drain_s=0",
        "hydra.run.dir=" + str(tmp_path),
    ]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sent = 0
        for n in (3, 5, 7):
            response = requests.post(
                f"http://127.0.0.1:{port}/predict",
                data=amplitudes(n, (1, 8, 64)).tobytes(),
                headers={"Content-Type": "application/octet-stream", "X-Shape": f"{n},1,8,64"},
                timeout=10,
            )
            assert response.ok, response.text
            sent += n
        process.send_signal(signal.SIGTERM)  # the rows are still buffered: flush_seconds is 60
        assert process.wait(30) == 0  # a clean drain is a success (test_shutdown.py)
    finally:
        if process.poll() is None:
            process.kill()
    assert ds.dataset(log_dir, format="parquet", partitioning="hive").count_rows() == sent


@pytest.mark.slow
def test_serve_script_reports_a_bad_source(tmp_path):
    env = {**os.environ, "SEISMIC_ROOT": str(tmp_path)}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/serve.py"),
            "model.source=/nonexistent",
            "hydra.run.dir=" + str(tmp_path),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no such model folder" in out.stderr
