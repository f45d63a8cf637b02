"""The closed loop on one machine: ``python scripts/loop.py [--env dev] [--size tiny] [--root DIR]``.

1. trains a champion on a synthetic survey (``scripts/train.py``) and gates it (``scripts/promote.py``);
2. serves ``models:/seismic-facies@champion`` (``scripts/serve.py``, polling the alias every second);
3. sends traffic from that survey, then *shifted* traffic: the same survey with 3.2x its noise RMS
   (``snr_db`` 10 -> 0 dB). Twice the noise (4 dB), which the drift benchmark's multi-survey reference catches
   in every window, stayed inside the thresholds of the tiny loop's one-survey reference (widened 4x) on
   generator v4, whose impedance levels vary laterally within a survey;
4. runs the scheduled monitor once over the first window of shifted traffic
   (:mod:`seismic.monitoring.job.schedule`): drift, an alert to the receiver (``--alert-url``, default a
   capturing HTTP receiver started here on 127.0.0.1), the retrain trigger;
5. the trigger trains on the shifted survey and gates the new model through the registry gate;
6. waits until the server answers with the new champion (hot reload), traffic still flowing.

It prints a JSON summary and exits 0 when all of this happened and no request failed, 1 otherwise, 2 when a
step could not run. Everything lives under ``--root`` (default ``outputs/loop/<time>``: its own MLflow store,
inference log, monitor state and reports), so the project's own champion is not touched. ``--size tiny`` (a
40 x 16 x 96 survey, 256 training windows: ~2-3 min here) is what the test runs; the default ``small``
trains on 4,000 windows so that the gate's default floor and margin are met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = "seismic-facies"
SHIFTED_SNR_DB = 0.0  # the default survey has 10 dB; 10 dB less is 3.2x the noise RMS
SIZES = {
    "tiny": {
        "survey": {"n_inlines": 40, "n_crosslines": 16, "n_samples": 96},
        "data": [
            "data.split.gap=2",
            "data.sampling.train=256",
            "data.sampling.val=128",
            "data.sampling.test=1024",  # the test split is also the reference profile: keep it > a window
            "data.batch_size=64",
        ],
        "trainer": ["trainer.max_epochs=2"],
        "window_s": 10,
    },
    "small": {
        "survey": {},
        "data": ["data.sampling.train=4000", "data.sampling.val=1000", "data.sampling.test=2000"],
        "trainer": ["trainer.max_epochs=3"],
        "window_s": 20,
    },
}


def data_overrides(size: str, snr_db: float | None = None) -> list[str]:
    """The data section, as both train.py and promote.py take it (the gate needs the same test split)."""
    survey = {**SIZES[size]["survey"], **({} if snr_db is None else {"snr_db": snr_db})}
    return [f"data.survey.{k}={v}" for k, v in survey.items()] + SIZES[size]["data"]


def train_options(size: str) -> list[str]:
    return [
        *SIZES[size]["trainer"],
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "section_plot=false",
    ]


def fail(message: str) -> None:
    print(f"loop: {message}", file=sys.stderr)
    sys.exit(2)


def run(argv: list[str], env: dict[str, str]) -> None:
    print("$", " ".join(argv[1:]), file=sys.stderr, flush=True)
    rc = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, check=False).returncode
    if rc != 0:
        fail(f"{' '.join(argv[1:3])} exited {rc}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Capture(BaseHTTPRequestHandler):
    """A receiver that keeps every JSON body it is sent (stands in for Alertmanager or Slack)."""

    bodies: ClassVar[list] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.bodies.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet: the summary reports what arrived
        pass


class Traffic(threading.Thread):
    """Binary /predict requests of 16 raw windows, in a loop, from the clean or the shifted survey."""

    def __init__(self, url: str, clean: np.ndarray, shifted: np.ndarray, key: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.sets, self.key = url, {"clean": clean, "shifted": shifted}, key
        self.phase, self.ok, self.failed, self.versions = "clean", 0, [], {}
        self.done = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(0)
        while not self.done.is_set():
            windows = self.sets[self.phase]
            batch = windows[rng.integers(0, len(windows), 16)].astype("<f4")
            headers = {"Content-Type": "application/octet-stream", "X-Shape": ",".join(map(str, batch.shape))}
            if self.key:
                headers["X-API-Key"] = self.key
            request = urllib.request.Request(self.url, data=batch.tobytes(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    version = json.loads(response.read())["model"]["version"]
                self.ok += 1
                self.versions[version] = self.versions.get(version, 0) + 1
            except OSError as err:  # HTTPError included: a 4xx/5xx is a failed request
                self.failed.append(str(err))
            time.sleep(0.05)


def traffic_windows(size: str, snr_db: float | None) -> np.ndarray:
    from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
    from seismic.data.windows import WindowSpec, extract_windows, sample_centres

    extra = {} if snr_db is None else {"snr_db": snr_db}
    survey = generate_survey(SyntheticSurveyConfig(**SIZES[size]["survey"], **extra))
    spec = WindowSpec(length=64)
    centres = sample_centres(survey.labels, 4000, spec, balance=False, seed=1)
    return extract_windows(survey.amplitudes, *centres, spec)


def build_monitor(args, root: Path, alert_url: str, env: dict[str, str]):
    """The scheduled monitor for one cycle over the last complete window, the retrain waited for (built
    before the traffic, so its imports and config cost no time when the window has to be picked)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from seismic.monitoring.job.schedule import Monitor, settings_from_config

    window_s = SIZES[args.size]["window_s"]
    overrides = [
        f"env={args.env}",
        f"model_dir=models:/{MODEL}@champion",
        f"log_dir={root}/data/inference_log",
        f"workdir={root}/monitor",
        f"schedule.every={window_s}s",
        "schedule.delay=2s",
        "schedule.backfill=1",
        "metrics.port=0",
        "retrain.enabled=true",
        "retrain.consecutive_windows=1",  # the loop shows one trigger; production waits for 3 windows
        "retrain.wait=true",
        f"retrain.workdir={REPO}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="monitor", overrides=overrides)
    with open_dict(cfg):
        cfg.alerts.channels = [
            *cfg.alerts.channels,
            {"type": "webhook", "name": "receiver", "url": alert_url},
        ]
        cfg.retrain.data = data_overrides(args.size, SHIFTED_SNR_DB)
        gate = [f"gate.margin={args.gate_margin}", f"gate.floor={args.floor}"]
        cfg.retrain.commands = [
            ["{python}", "scripts/train.py", "env={env}", "{data}", *train_options(args.size)],
            ["{python}", "scripts/promote.py", "env={env}", "{data}", *gate],
        ]
    os.environ.update(env)  # the commands inherit SEISMIC_ROOT: the same store as the server's
    return Monitor(settings_from_config(cfg))


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="dev", help="configs/env/<env>.yaml for every step")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--root", help="where the store, log and reports go (default outputs/loop/<time>)")
    parser.add_argument("--alert-url", help="webhook receiver (default: one started here, captured)")
    parser.add_argument("--gate-margin", type=float, default=0.0, help="gate.margin of the retrained model")
    parser.add_argument("--floor", type=float, default=0.5, help="gate.floor of the first champion")
    args = parser.parse_args()
    # the summary is the only thing on stdout: every step (and every child process, which inherits fd 1)
    # writes its own output to stderr
    summary_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    from omegaconf import OmegaConf

    import seismic.config  # noqa: F401  (the ${seismic.root:} resolver of the paths group)

    if OmegaConf.load(REPO / "configs/env" / f"{args.env}.yaml").get("auth_required") and not os.environ.get(
        "SEISMIC_API_KEY"
    ):
        fail(f"env {args.env} requires auth: set SEISMIC_API_KEY")
    root = Path(args.root or REPO / "outputs/loop" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SEISMIC_ROOT": str(root),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
    }
    py, envarg = sys.executable, f"env={args.env}"

    receiver = None
    alert_url = args.alert_url
    if alert_url is None:
        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        alert_url = f"http://127.0.0.1:{receiver.server_port}/alerts"

    clean = data_overrides(args.size)
    run([py, "scripts/train.py", envarg, *clean, *train_options(args.size)], env)
    run([py, "scripts/promote.py", envarg, *clean, f"gate.floor={args.floor}"], env)

    port = free_port()
    server = subprocess.Popen(
        [
            py,
            "scripts/serve.py",
            envarg,
            f"port={port}",
            "reload.poll_interval_s=1",
            "inference_log.flush_seconds=1",
            f"hydra.run.dir={root}/outputs/serve",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def info() -> dict:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if server.poll() is not None:
                fail(f"the server exited with {server.returncode}")
            return {}

    summary: dict = {"root": str(root)}
    traffic = None
    try:
        wait_for(lambda: info().get("status") == "ready", 120, "the server")
        summary["champion_before"] = info()["version"]
        monitor = build_monitor(args, root, alert_url, env)
        monitor.load_model()  # the champion's reference profile, fetched before the clock matters
        windows = [traffic_windows(args.size, snr) for snr in (None, SHIFTED_SNR_DB)]
        traffic = Traffic(base + "/predict", *windows, os.environ.get("SEISMIC_API_KEY"))
        traffic.start()
        window_s = SIZES[args.size]["window_s"]
        time.sleep(window_s / 2)
        traffic.phase = "shifted"
        # the first window that holds only shifted traffic, plus the monitor's delay (log flushing)
        first_end = (math.floor(time.time() / window_s) + 2) * window_s
        time.sleep(max(0.0, first_end + 2.5 - time.time()))
        summary["monitor"] = monitor.run_once()
        wait_for(lambda: info().get("version") != summary["champion_before"], 60, "the hot reload")
        summary["champion_after"] = info()["version"]
        time.sleep(2)  # traffic keeps flowing on the new model
    finally:
        if traffic is not None:
            traffic.done.set()
            traffic.join(30)
            summary |= {"requests_ok": traffic.ok, "requests_failed": len(traffic.failed)}
            summary |= {"versions_served": traffic.versions, "failures": traffic.failed[:5]}
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    if receiver is not None:
        receiver.shutdown()
        summary["alerts_received"] = [b["body"]["status"] for b in Capture.bodies]
    audit = root / "monitor" / "retrain_audit.jsonl"
    lines = audit.read_text().splitlines() if audit.is_file() else []
    summary["retrain_audit"] = [json.loads(line) for line in lines]
    print(json.dumps(summary, indent=2), file=summary_out, flush=True)
    drifted = any(r.get("verdict") == "drift" for r in summary["monitor"])
    finished = [a for a in summary["retrain_audit"] if a["decision"] == "finished"]
    promoted = bool(finished) and finished[-1].get("promoted")
    ok = drifted and promoted and summary["champion_after"] != summary["champion_before"]
    sys.exit(0 if ok and summary["requests_failed"] == 0 and traffic.ok > 0 else 1)


if __name__ == "__main__":
    main()
