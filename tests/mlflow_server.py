"""A real ``mlflow server`` process on 127.0.0.1 for fault tests: started in its own process group (it runs
uvicorn and a job runner as children), so a kill reaches exactly the processes this helper started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on a sqlite store and artifact folder under ``root``; ``start`` again after ``kill``
    serves the same store on the same port (startup ~15 s on a busy 2-core machine)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = Path(root), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        args = [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root}/mlflow.db",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        with (self.root / "server.log").open("ab") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mlflow server on {self.url} did not start in {timeout:.0f} s")
            time.sleep(0.3)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server's process group (the processes this helper started) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone, the whole group with it
            os.killpg(self.process.pid, sig)
        self.process.wait(30)
        self.process = None
