"""Fixtures of the deployment tests (no Docker engine here, so the files are parsed and their commands run).

Shared: the Dockerfiles, compose files and .dockerignore parsed as Docker reads them; the configs composed as
the scripts compose them; a tiny exported model with a reference profile and an inference log for it;
processes started and stopped by PID; the MLflow server of docker-compose.yml; and (slow, needs PyPI) the
slim image's build steps replayed into a venv.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.staging.yml", "docker-compose.prod.yml")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- Dockerfiles


@dataclass
class Stage:
    name: str | None
    base: str  # an image reference, or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name}: no {keyword}"
        return found[-1]


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments dropped, global ARG defaults
    substituted into FROM (what `docker build` does without --build-arg)."""
    logical, buffer = [], ""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") or (not text and not buffer):
            continue
        if text.endswith("\\"):
            buffer += text[:-1] + " "
            continue
        logical.append(buffer + text)
        buffer = ""
    assert not buffer, f"{path.name}: the last instruction ends with a continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(name, image))
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def env_pairs(rest: str) -> dict[str, str]:
    """``ENV A=1 B=2`` (the key=value form; values without spaces)."""
    return dict(pair.split("=", 1) for pair in rest.split())


def healthcheck_argv(rest: str) -> tuple[dict[str, str], list[str]]:
    """``HEALTHCHECK --opt=v ... CMD [json]`` -> (options, argv)."""
    options, _, command = rest.partition(" CMD ")
    flags = dict(opt.lstrip("-").split("=", 1) for opt in options.split())
    return flags, json.loads(command)


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, list[Stage]]:
    return {name: parse_dockerfile(ROOT / name) for name in ("Dockerfile", "Dockerfile.gpu")}


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves ``path`` (relative, /-separated) out: Docker's rule, the last
    pattern matching the path or one of its parent folders decides, ``!`` re-includes."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        compiled = regex(pattern.strip("/"))
        if any(compiled.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def read_dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="session")
def dockerignore() -> list[str]:
    return read_dockerignore()


# ---------------------------------------------------------------- compose files

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` whose variable is unset or empty: `docker compose` refuses the file."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation of every string: ``$$`` is a literal ``$``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``$VAR``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current or ""

    return _VAR.sub(one, value)


def merge_compose(base: Any, override: Any, key: str = "") -> Any:
    """`docker compose -f base -f override`: mappings merge key by key; command, entrypoint and healthcheck
    tests are replaced; other sequences (ports, volumes, ...) are appended."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge_compose(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in ("command", "entrypoint", "test"):
        return base + [v for v in override if v not in base]
    return override


@pytest.fixture(scope="session")
def compose_config() -> Callable[..., dict[str, Any]]:
    """``(files, env)`` -> the merged, interpolated compose model, as `docker compose config` prints it
    (environment lists are turned into mappings)."""

    def load(files: tuple[str, ...] = COMPOSE_FILES[:1], env: Mapping[str, str] | None = None) -> dict:
        merged: dict[str, Any] = {}
        for name in files:
            merged = merge_compose(merged, load_yaml(ROOT / name))
        merged = interpolate(merged, env or {})
        for service in merged["services"].values():
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(
                    item.split("=", 1) if "=" in item else (item, None) for item in environment
                )
            service["environment"] = environment
        return merged

    return load


def service_env(service: Mapping[str, Any], shell: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment: a null value passes the shell's variable through, or leaves the
    variable unset when the shell has none."""
    out = {}
    for key, value in (service.get("environment") or {}).items():
        if value is None:
            if key in shell:
                out[key] = shell[key]
        else:
            out[key] = str(value)
    return out


# ---------------------------------------------------------------- configs as the scripts compose them


def _serve_script() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_tests_serve_script", ROOT / "scripts/serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def compose_cli(tmp_path, monkeypatch) -> Callable[..., Any]:
    """``(script args, environment)`` -> what ``scripts/serve.py`` (serving ``Settings``) or
    ``scripts/monitor.py`` (``ScheduleSettings``) would run with, composed by Hydra from the same
    ``key=value`` arguments; raises as the script would refuse to start."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import seismic.config  # noqa: F401  (the seismic.root resolver)

    def run(args: list[str], env: Mapping[str, str]) -> Any:
        script, overrides = Path(args[0]).name, list(args[1:])
        for name in ("SEISMIC_API_KEY", "MLFLOW_TRACKING_URI", "SEISMIC_ROOT"):
            monkeypatch.delenv(name, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = {"serve.py": "serve", "monitor.py": "monitor"}[script]
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            # compose() is not a run: Hydra has no run folder for paths.output_dir
            cfg = compose(config, [f"paths.output_dir={tmp_path}/run", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.pop("hydra")
        if config == "serve":
            return _serve_script().settings_from(cfg), cfg
        from seismic.monitoring.job.schedule import settings_from_config

        assert cfg.schedule.every, "the monitor runs scheduled in every deployment"
        return settings_from_config(cfg), cfg

    return run


@pytest.fixture(scope="session")
def app_routes() -> set[str]:
    """The paths the real app serves, from its OpenAPI schema (the model is loaded only at start-up)."""
    from serving.app import create_app
    from serving.settings import Settings

    app = create_app(Settings.model_validate({"model": {"source": "/nonexistent"}}))
    return set(app.openapi()["paths"])


# ---------------------------------------------------------------- metric names


def metric_names(text: str) -> set[str]:
    """Every series name a PromQL expression may use for the families of an exposition: a counter ``x``
    is ``x_total``, a histogram ``x_bucket``/``x_count``/``x_sum``, ..."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "unknown": ("",),
    }
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes[family.type]
    }


@pytest.fixture(scope="session")
def serving_metric_names() -> set[str]:
    """The API's metrics, from the registry every app builds (each family is exposed, samples or not)."""
    from prometheus_client import generate_latest

    from serving.metrics import Metrics

    return metric_names(generate_latest(Metrics().registry).decode())


# ---------------------------------------------------------------- a model, its profile, an inference log

WINDOW = 64
SURVEY = {"n_inlines": 32, "n_crosslines": 24, "n_samples": 320, "seed": 11}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model folder as training writes it: a tiny untrained cnn1d in ONNX, its metadata, and a reference
    profile of a synthetic survey computed with the exported model (torch here, never in serving)."""
    sys.path.insert(0, str(ROOT / "tests" / "serving"))  # export_tiny, shared with the serving tests
    from models import CLASS_NAMES, export_tiny

    from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
    from seismic.data.windows import WindowSpec, extract_windows, sample_centres
    from seismic.monitoring.profile import build_profile
    from serving.runtime import load_model

    folder = export_tiny(tmp_path_factory.mktemp("model") / "model", "cnn1d", length=WINDOW)
    survey = generate_survey(SyntheticSurveyConfig(**SURVEY))
    spec = WindowSpec(length=WINDOW)
    il, xl, t = sample_centres(survey.labels, 4000, spec, balance=False, seed=0)
    raw = extract_windows(survey.amplitudes, il, xl, t, spec)
    out = load_model(folder, ["CPUExecutionProvider"]).predict(raw)
    build_profile(
        raw,
        survey.labels[il, xl, t] % len(CLASS_NAMES),
        out["probabilities"],
        out["embedding"],
        dt_ms=survey.dt_ms,
        class_names=CLASS_NAMES,
        max_embeddings=1500,
        survey=np.zeros(len(il), np.int64),
        inline=il,
    ).save(folder)
    return folder


@pytest.fixture(scope="session")
def write_inference_log(model_dir) -> Callable[[Path, list[dt.datetime]], None]:
    """``(log_dir, times)``: 600 windows of the survey at gain x3 (drift: amplitudes outside the reference)
    logged at each time, through the server's own writer with its clock moved back."""
    import serving.inference_log
    from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
    from seismic.data.windows import WindowSpec, extract_windows, sample_centres
    from serving.inference_log import InferenceLogWriter
    from serving.runtime import load_model

    survey = generate_survey(SyntheticSurveyConfig(**SURVEY))
    model = load_model(model_dir, ["CPUExecutionProvider"])
    spec = WindowSpec(length=WINDOW)

    class Clock:  # stands in for the writer's `time` module, which stamps rows with time_ns()
        ns = 0

        def time_ns(self) -> int:
            self.ns += 1000
            return self.ns

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

    def write(log_dir: Path, times: list[dt.datetime]) -> None:
        clock = Clock()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(serving.inference_log, "time", clock)
            with InferenceLogWriter(log_dir, dt_ms=survey.dt_ms, flush_rows=10_000) as writer:
                for k, when in enumerate(times):
                    clock.ns = int(when.timestamp() * 1e9)
                    centres = sample_centres(survey.labels, 600, spec, balance=False, seed=100 + k)
                    x = extract_windows(survey.amplitudes, *centres, spec) * 3.0
                    out = model.predict(x)
                    writer.log(f"r{k}", "1", x, out["class"], out["probabilities"], out["embedding"], 0.01)

    return write


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Proc:
    """A command started in its own process group; stop() sends SIGTERM to it, then SIGKILL to the group
    after ``grace`` seconds (MLflow's server has worker processes)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self.argv, self.log = argv, log
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text()

    def wait_http(self, url: str, until: Callable[[str], bool] = lambda _: True, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            assert code is None, f"{' '.join(self.argv)} exited with {code}:\n{self.output()[-3000:]}"
            try:
                status, body = http(url)
                if status == 200 and until(body):
                    return body
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{url} not ready in {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(0.25)

    def stop(self, grace: float = 40) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._out.close()
        return self.popen.returncode


@pytest.fixture(scope="session")
def processes() -> Iterator[Callable[..., Proc]]:
    """``start(argv, env=, cwd=, log=)`` -> a running Proc, stopped at the session's end at the latest."""
    started: list[Proc] = []

    def start(argv: list[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> Proc:
        proc = Proc(argv, env, cwd, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(grace=20)


def set_option(argv: list[str], key: str, value: str) -> list[str]:
    """``argv`` with the value of its ``key=...`` or ``--key=...`` argument replaced (it must have one)."""
    out, found = [], False
    for arg in argv:
        name, sep, _ = arg.partition("=")
        if sep and name == key:
            arg, found = f"{name}={value}", True
        out.append(arg)
    assert found, f"{key} is not set in {argv}"
    return out


def register_champion(
    tracking_uri: str, model_dir: Path, scratch: Path, artifact_location: str | None = None
) -> str:
    """Register a copy of ``model_dir`` as a version of seismic-facies (registry.model_name) with alias
    champion; returns the version."""
    from seismic.registry.store import connect, register_folder

    client = connect(tracking_uri)
    experiment = client.create_experiment(
        f"deploy-tests-{time.time_ns()}", artifact_location=artifact_location
    )
    run = client.create_run(experiment).info.run_id
    folder = scratch / "registered"
    shutil.copytree(model_dir, folder)
    name = load_yaml(CONFIGS / "registry" / "default.yaml")["model_name"]
    version = register_folder(client, folder, name=name, run_id=run, alias="champion")
    client.set_terminated(run)
    return str(version.version)


@dataclass
class MlflowServer:
    url: str
    argv: list[str]
    proc: Proc
    version: str  # the champion registered on it


@pytest.fixture(scope="session")
def mlflow_server(compose_config, processes, model_dir, tmp_path_factory) -> MlflowServer:
    """The `mlflow` service of docker-compose.yml: its command, on 127.0.0.1 and a free port, with its
    volume's folder under a temporary directory; a tiny model registered on it as the champion."""
    scratch = tmp_path_factory.mktemp("mlflow")
    service = compose_config()["services"]["mlflow"]
    port = free_port()
    argv = set_option(set_option(service["command"], "--host", "127.0.0.1"), "--port", str(port))
    volume_dir = service["volumes"][0].split(":")[1]
    argv = [arg.replace(volume_dir, str(scratch / volume_dir.strip("/"))) for arg in argv]
    assert argv[0] == "mlflow"
    argv[0] = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, **service_env(service, os.environ)}
    proc = processes(argv, env=env, cwd=scratch, log=scratch / "mlflow.log")
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(url + "/health", timeout=180)
    version = register_champion(url, model_dir, scratch)
    return MlflowServer(url, argv, proc, version)


# ---------------------------------------------------------------- the slim image, replayed

# the container paths this repository's Dockerfiles create or use; everything else is the base image's
IMAGE_PATHS = ("/opt/venv", "/src", "/app", "/var/lib/seismic", "/tmp")


def to_host(text: str, root: Path) -> str:
    pattern = "|".join(re.escape(p) for p in IMAGE_PATHS)
    return re.sub(rf"(?<![\w/.])({pattern})(?=[/\s:'\"]|$)", lambda m: f"{root}{m.group(1)}", text)


@dataclass
class Image:
    root: Path  # the container's / for the paths in IMAGE_PATHS
    env: dict[str, str]
    workdir: Path
    argv: list[str]  # ENTRYPOINT + CMD, `python` resolved on the image's PATH
    healthcheck: list[str]
    skipped: list[str]  # RUN commands not replayed (user accounts: root only, and this machine's)


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def clean_pip_env() -> dict[str, str]:
    """This machine's environment without its pip configuration (local wheel folders, constraints), so pip
    resolves from PyPI alone, as in a `docker build`; the CA bundle is kept for TLS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def replay_dockerfile(stages: list[Stage], root: Path, *, build: bool, python: str | None = None) -> Image:
    """Run a Dockerfile's steps into ``root``: COPY from the context (through .dockerignore), RUN with the
    container paths moved under ``root``, ENV, WORKDIR; returns what the final stage would run.

    ``build=False`` replays only the final stage and lets ``python`` (this test's interpreter) stand in for
    the venv the build stage would have made (the GPU image: its CUDA wheels are not installed here).
    """
    ignore = read_dockerignore()

    def copy_context(sources: list[str], dest: str) -> None:
        target = Path(to_host(dest, root))
        for source in sources:
            assert not dockerignore_excludes(ignore, source), f"COPY {source}: excluded by .dockerignore"
            src = ROOT / source
            out = target / src.name if dest.endswith("/") else target
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(
                    src,
                    out,
                    ignore=lambda d, names: [
                        n
                        for n in names
                        if dockerignore_excludes(ignore, str((Path(d) / n).relative_to(ROOT)))
                    ],
                )
            else:
                shutil.copy2(src, out)

    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    shims = root / ".shims"
    shims.mkdir(parents=True, exist_ok=True)
    (shims / "python").symlink_to(base_python)
    skipped: list[str] = []
    replayed = stages if build else stages[-1:]
    for stage in replayed:
        env = clean_pip_env()
        env["PATH"] = f"{shims}:{env['PATH']}"  # the base image's `python`
        workdir = root
        for keyword, rest in stage.instructions:
            if keyword == "ENV":
                for key, value in env_pairs(rest).items():
                    before = dict(env)
                    env[key] = re.sub(
                        r"\$(\w+)", lambda m, e=before: e.get(m.group(1), ""), to_host(value, root)
                    )
            elif keyword == "WORKDIR":
                workdir = Path(to_host(rest, root))
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY" and rest.startswith("--from="):
                _, src, dest = rest.split()
                assert src == dest, f"COPY {rest}: this replay keeps one tree for all stages"
                if not build and dest == "/opt/venv":
                    venv = Path(to_host(dest, root)) / "bin"
                    venv.mkdir(parents=True, exist_ok=True)
                    (venv / "python").write_text(f'#!/bin/sh\nexec {python} "$@"\n')
                    (venv / "python").chmod(0o755)
            elif keyword == "COPY":
                *sources, dest = rest.split()
                copy_context(sources, dest)
            elif keyword == "RUN":
                for command in (c.strip() for c in rest.split("&&")):
                    program = command.split()[0]
                    if program in ("groupadd", "useradd", "chown", "apt-get", "rm", "ldconfig"):
                        skipped.append(command)
                        continue
                    done = subprocess.run(
                        ["sh", "-c", to_host(command, root)],
                        env=env,
                        cwd=workdir,
                        capture_output=True,
                        text=True,
                        timeout=900,
                    )
                    assert done.returncode == 0, f"RUN {command}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    final = replayed[-1]
    entrypoint = json.loads(final.last("ENTRYPOINT"))
    cmd = json.loads(final.last("CMD"))
    argv = [to_host(a, root) for a in entrypoint + cmd]
    argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    _, check = healthcheck_argv(final.last("HEALTHCHECK"))
    check[0] = shutil.which(check[0], path=env["PATH"]) or check[0]
    for key in ("SEISMIC_ROOT", "HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return Image(root, env, workdir, argv, check, skipped)


@pytest.fixture(scope="session")
def slim_image(dockerfiles, tmp_path_factory) -> Iterator[Image]:
    """The slim image (Dockerfile) built by replaying its steps: a venv from requirements/serving.txt
    installed from PyPI, the package with --no-deps, configs/ and scripts/ under /app (~1 min)."""
    if not pypi_reachable():
        pytest.skip("PyPI (https://pypi.org/simple/) is unreachable: the slim image's venv cannot be built")
    root = tmp_path_factory.mktemp("slim-image")
    yield replay_dockerfile(dockerfiles["Dockerfile"], root, build=True)
    shutil.rmtree(root / "opt", ignore_errors=True)  # ~0.5 GB of venv; pytest keeps three sessions' folders


@pytest.fixture(scope="session")
def windows_json() -> bytes:
    """Two raw traces for /predict, in the model's window shape."""
    rng = np.random.default_rng(0)
    return json.dumps({"windows": rng.normal(0, 1e3, (2, 1, WINDOW)).round(1).tolist()}).encode()


def in_windows(every: dt.timedelta, now: dt.datetime | None = None) -> list[dt.datetime]:
    """A time one minute into the window now running and into the one before (windows aligned to the epoch,
    as the monitor aligns them): whichever the monitor sees as its last complete window has rows."""
    now = now or dt.datetime.now(dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    current = epoch + ((now - epoch) // every) * every
    return [current - every + dt.timedelta(minutes=1), current + dt.timedelta(minutes=1)]


def parse_duration(text: str) -> dt.timedelta:
    from seismic.monitoring.job.schedule import duration

    return duration(text)
