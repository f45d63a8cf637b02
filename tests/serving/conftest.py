"""Tiny exported models; a real uvicorn server on a free 127.0.0.1 port, in a thread of the test process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # models.py, shared with benchmarks/latency.py

from models import export_tiny

from serving.app import create_app
from serving.runtime import load_model
from serving.server import bind, make_server
from serving.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class Running:
    """A started server: ``url``, the app (``app.state.service``), stop() waits for a graceful shutdown."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.server = make_server(app, "warning")
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    @property
    def service(self):  # type: ignore[no-untyped-def]
        return self.app.state.service

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def settings_for(source: Path, log_dir: Path, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    return Settings.model_validate(
        {
            "model": {"source": str(source), "providers": ["CPUExecutionProvider"]},
            "inference_log": {"directory": str(log_dir), "flush_seconds": 0.5},
            **overrides,
        }
    )


def start(source: Path | str, log_dir: Path, loaded_with=None, **overrides) -> Running:  # type: ignore[no-untyped-def]
    """A server on ``source``, loaded here first (``loaded_with``: extra load_model arguments)."""
    settings = settings_for(source, log_dir, **overrides)
    return Running(create_app(settings, load_model(source, ["CPUExecutionProvider"], **(loaded_with or {}))))


def serve_script(tmp_path: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    """scripts/serve.py in its own process on a free port (``port=0``: no race for one) and its URL, read
    from its "listening on" line; the caller stops it. ``overrides``: Hydra overrides."""
    env = {**os.environ, "SEISMIC_ROOT": str(tmp_path)}
    env.pop("SEISMIC_API_KEY", None)
    command = [
        sys.executable,
        str(ROOT / "scripts/serve.py"),
        "port=0",
        f"hydra.run.dir={tmp_path}",
        *overrides,
    ]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "listening on " in line:
            return process, line.split("listening on ", 1)[1].strip()
    process.kill()
    process.wait(10)
    raise RuntimeError("serve.py did not start:\n" + "".join(lines))


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "cnn1d": export_tiny(root / "cnn1d", "cnn1d"),
        "cnn2d": export_tiny(root / "cnn2d", "cnn2d", traces=8),
        "cnn1d_other": export_tiny(root / "cnn1d_other", "cnn1d", seed=1),
    }


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory):
    running = start(model_dirs["cnn1d"], tmp_path_factory.mktemp("inference_log"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server_2d(model_dirs, tmp_path_factory):
    running = start(model_dirs["cnn2d"], tmp_path_factory.mktemp("inference_log"))
    yield running
    running.stop()


def amplitudes(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Raw amplitudes on the tiny models' scale (mean 3, std 250)."""
    return np.random.default_rng(seed).normal(3.0, 250.0, (n, *shape)).astype(np.float32)
