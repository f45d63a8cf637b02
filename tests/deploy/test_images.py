"""The images: Dockerfile (slim CPU serving, no torch) and Dockerfile.gpu (training and GPU serving).

There is no Docker engine here, so the Dockerfiles are parsed and checked (pinned bases, multi-stage, a
non-root user, the healthcheck on the app's liveness route and serve.yaml's port), requirements/ is checked
against pyproject.toml, and the slow tests replay the slim image's build into a venv from PyPI and run its
command and healthcheck, resolve the GPU image's requirements on PyPI, and run the GPU image's command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import (
    CONFIGS,
    ROOT,
    clean_pip_env,
    dockerignore_excludes,
    env_pairs,
    free_port,
    healthcheck_argv,
    http,
    load_yaml,
    metric_names,
    pypi_reachable,
    register_champion,
    replay_dockerfile,
    set_option,
)

SERVE = load_yaml(CONFIGS / "serve.yaml")
MONITOR = load_yaml(CONFIGS / "monitor.yaml")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
PINNED = re.compile(r"^[\w.\-/]+:v?\d+(\.\d+)+[\w.\-]*$")  # repository:version, never latest
NOT_IN_SLIM = ("torch", "lightning", "pytorch-lightning", "torchmetrics", "onnx", "mlflow", "onnxruntime-gpu")


def pyproject_specifiers() -> dict[str, SpecifierSet]:
    return {canonicalize_name(r.name): r.specifier for r in map(Requirement, PROJECT["dependencies"])}


def pins(name: str) -> dict[str, Version]:
    out = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{name}: {line} is not pinned with =="
            key = canonicalize_name(requirement.name)
            assert key not in out, f"{name}: {key} twice"
            out[key] = Version(spec.version)
    return out


# the distribution of pyproject.toml that each pinned stand-in replaces
STANDS_FOR = {"mlflow-skinny": "mlflow", "onnxruntime-gpu": "onnxruntime"}


@pytest.mark.parametrize("name", ["serving.txt", "gpu.txt"])
def test_requirements_are_pins_that_pyproject_allows(name):
    specifiers = pyproject_specifiers()
    for dist, version in pins(name).items():
        project_name = STANDS_FOR.get(dist, dist)
        assert project_name in specifiers, f"{name}: {dist} is not a dependency in pyproject.toml"
        assert version in specifiers[project_name], (
            f"{name}: {dist}=={version} outside {specifiers[project_name]}"
        )


def test_gpu_requirements_are_the_project_with_the_cuda_onnxruntime():
    gpu = pins("gpu.txt")
    expected = {STANDS_FOR.get(d, d) for d in gpu}
    assert expected == set(pyproject_specifiers()), "gpu.txt must pin exactly pyproject.toml's dependencies"
    # both wheels install the `onnxruntime` package folder: the CPU one must not be there at all
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu


def test_slim_requirements_leave_out_torch_and_agree_with_the_gpu_pins():
    slim, gpu = pins("serving.txt"), pins("gpu.txt")
    assert not set(NOT_IN_SLIM) & set(slim), f"the slim image must not install {set(NOT_IN_SLIM) & set(slim)}"
    shared = set(slim) & set(gpu)
    assert {d: slim[d] for d in shared} == {d: gpu[d] for d in shared}
    assert slim["mlflow-skinny"] == gpu["mlflow"], "the registry client and the GPU image's mlflow differ"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_is_multistage_pinned_and_non_root(name, dockerfiles):
    stages = dockerfiles[name]
    stage_names = {s.name for s in stages}
    assert len(stages) >= 2 and stages[-1].name == "runtime"
    for stage in stages:
        assert stage.base in stage_names or PINNED.match(stage.base), (
            f"{name}: FROM {stage.base} is not pinned"
        )
    final = stages[-1]
    uid, _, gid = final.last("USER").partition(":")
    # numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert any(f"--uid {uid}" in run for run in final.all("RUN")), "the USER is not created in the image"
    build = next(s for s in stages if s.name == "build")
    requirements = "serving.txt" if name == "Dockerfile" else "gpu.txt"
    runs = build.all("RUN")
    assert f"/opt/venv/bin/pip install -r /src/requirements/{requirements}" in runs
    # the package's own dependencies would bring torch (slim) or the CPU onnxruntime (GPU) back
    assert "/opt/venv/bin/pip install --no-deps /src" in runs
    assert not any("pip" in run for run in final.all("RUN")), "the runtime stage must not install anything"
    assert "--from=build /opt/venv /opt/venv" in final.all("COPY")


def test_gpu_image_is_cuda_with_cudnn_and_the_slim_images_python(dockerfiles):
    slim, gpu = dockerfiles["Dockerfile"], dockerfiles["Dockerfile.gpu"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", gpu[-1].base)
    # one CPython build for both images and the venv copied between stages
    python_stage = next(s for s in gpu if s.name == "python")
    assert python_stage.base == slim[-1].base == slim[0].base
    assert next(s for s in gpu if s.name == "build").base == "python"
    copied = {rest.split()[1] for rest in gpu[-1].all("COPY") if rest.startswith("--from=python ")}
    assert {"/usr/local/bin", "/usr/local/lib"} <= copied


@pytest.mark.parametrize("name", DOCKERFILES)
def test_healthcheck_probes_the_liveness_route_on_serve_port(name, dockerfiles, app_routes):
    final = dockerfiles[name][-1]
    flags, argv = healthcheck_argv(final.last("HEALTHCHECK"))
    assert argv[:2] == ["python", "-c"]
    url = urlsplit(re.search(r"http://[^'\"]+", argv[2]).group(0))
    assert url.hostname == "127.0.0.1" and url.port == SERVE["port"]
    assert url.path == "/health" and url.path in app_routes
    client_timeout = float(re.search(r"timeout=([\d.]+)\)", argv[2]).group(1))
    assert client_timeout < float(flags["timeout"].rstrip("s")), "the probe must give up before Docker does"
    exposed = {int(p) for p in final.last("EXPOSE").split()}
    assert exposed == {SERVE["port"], MONITOR["metrics"]["port"]}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_default_command_composes_into_server_settings(name, dockerfiles, compose_cli):
    final = dockerfiles[name][-1]
    argv = json.loads(final.last("ENTRYPOINT")) + json.loads(final.last("CMD"))
    assert argv[:2] == ["python", "scripts/serve.py"]
    image_env = {k: v for rest in final.all("ENV") for k, v in env_pairs(rest).items()}
    root = image_env["SEISMIC_ROOT"]
    settings, _ = compose_cli(
        argv[1:], {"SEISMIC_ROOT": root, "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    )
    assert settings.host == "0.0.0.0" and settings.port == SERVE["port"]
    assert settings.model.source.startswith("models:/")
    if name == "Dockerfile":  # no SQLAlchemy in the slim image: the registry must be a tracking server
        assert settings.model.tracking_uri == "http://mlflow.example:5000"
    else:  # the GPU workstation: the sqlite store that scripts/train.py in the same image writes
        assert settings.model.tracking_uri == f"sqlite:///{root}/mlflow.db"
    # the inference log lands on the data/ volume mount point the image creates
    assert settings.inference_log.directory.startswith(f"{root}/data/")
    assert any(f"mkdir -p {root}/data " in run for run in final.all("RUN"))


def test_dockerignore_sends_only_what_the_images_copy(dockerfiles, dockerignore):
    sources = {
        source
        for stages in dockerfiles.values()
        for stage in stages
        for rest in stage.all("COPY")
        if not rest.startswith("--from=")
        for source in rest.split()[:-1]
    }
    assert sources == {
        "pyproject.toml",
        "README.md",
        "requirements/serving.txt",
        "requirements/gpu.txt",
        "seismic",
        "serving",
        "configs",
        "scripts",
    }
    for source in sorted(sources):
        for path in [ROOT / source, *sorted((ROOT / source).rglob("*.py"))[:20]]:
            relative = str(path.relative_to(ROOT))
            if "__pycache__" not in relative:
                assert not dockerignore_excludes(dockerignore, relative), (
                    f"{relative} left out of the context"
                )
    left_out = [".venv/bin/python", "data/synthetic/survey.sgy", "outputs/x", "mlflow.db", "mlartifacts/1/a"]
    left_out += [".git/HEAD", "tests/conftest.py", "benchmarks/results/x.json", "seismic/__pycache__/a.pyc"]
    for path in left_out:
        assert dockerignore_excludes(dockerignore, path), f"{path} would be sent to the Docker daemon"


# ---------------------------------------------------------------- slow: replayed builds, real commands


def _serve(image, argv, env, processes, log: Path):
    port = free_port()
    argv = [*set_option(argv, "host", "127.0.0.1"), f"port={port}"]
    proc = processes(argv, env=env, cwd=image.workdir, log=log)
    return proc, f"http://127.0.0.1:{port}", port


@pytest.mark.slow  # ~1-2 min: installs requirements/serving.txt from PyPI into a fresh venv
def test_slim_image_serves_the_registry_champion_without_torch(
    slim_image, mlflow_server, processes, windows_json, serving_metric_names, tmp_path
):
    python = slim_image.argv[0]
    absent = ("torch", "lightning", "pytorch_lightning", "torchmetrics", "onnx", "sqlalchemy", "flask")
    probe = f"import importlib.util as u, json; print(json.dumps([m for m in {absent!r} if u.find_spec(m)]))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(found.stdout) == [], "the slim image holds a training or tracking-server package"
    # what the replay could not run: the service account (root only, and this machine's)
    assert {command.split()[0] for command in slim_image.skipped} == {"groupadd", "useradd", "chown"}

    env = {**slim_image.env, "MLFLOW_TRACKING_URI": mlflow_server.url}
    proc, url, port = _serve(slim_image, slim_image.argv, env, processes, tmp_path / "serve.log")
    ready = json.loads(proc.wait_http(url + "/ready", timeout=180))
    assert ready["status"] == "ready" and ready["version"] == mlflow_server.version
    status, body = http(url + "/predict", windows_json, {"Content-Type": "application/json"})
    assert status == 200 and len(json.loads(body)["classes"]) == 2

    check = [arg.replace(f":{SERVE['port']}/", f":{port}/") for arg in slim_image.healthcheck]
    assert subprocess.run(check, env=env, timeout=30).returncode == 0
    status, text = http(url + "/metrics")
    assert status == 200 and serving_metric_names <= metric_names(text)
    assert proc.stop() == 0  # a clean SIGTERM drain exits 0 (serving/server.py)
    down = subprocess.run(check, env=env, capture_output=True, timeout=30)
    assert down.returncode != 0, "the healthcheck passes with the server stopped"
    log_dir = Path(slim_image.env["SEISMIC_ROOT"]) / "data" / "inference_log"
    assert list(log_dir.rglob("*.parquet")), "the served windows were not written to the inference log"


@pytest.mark.slow  # ~30 s: resolves requirements/gpu.txt against PyPI (metadata only, nothing installed)
def test_gpu_requirements_resolve_to_the_cuda_of_the_base_image(dockerfiles, tmp_path):
    if not pypi_reachable():
        pytest.skip("PyPI (https://pypi.org/simple/) is unreachable: cannot resolve requirements/gpu.txt")
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--report", str(report), "-r", str(ROOT / "requirements" / "gpu.txt")]
    done = subprocess.run(command, env=clean_pip_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = {
        canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in json.loads(report.read_text())["install"]
    }
    pinned = pins("gpu.txt")
    assert resolved["torch"] == pinned["torch"], f"pip picked torch {resolved['torch']}, not the CUDA build"
    assert "onnxruntime" not in resolved and resolved["onnxruntime-gpu"] == pinned["onnxruntime-gpu"]
    runtime = [d for d in resolved if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", d)]
    assert runtime, "torch brought no CUDA runtime: not a CUDA build"
    cuda = resolved[runtime[0]]
    base = re.search(r"nvidia/cuda:(\d+)\.(\d+)\.", dockerfiles["Dockerfile.gpu"][-1].base)
    assert (cuda.major, cuda.minor) == (int(base.group(1)), int(base.group(2))), f"torch's CUDA is {cuda}"
    assert any(re.fullmatch(rf"nvidia-cudnn-cu{cuda.major}", d) for d in resolved), "no cuDNN for this CUDA"


@pytest.mark.slow  # ~20 s: a sqlite MLflow store, a registration and the server
def test_gpu_image_command_serves_the_champion_of_its_sqlite_store(
    dockerfiles, model_dir, processes, windows_json, tmp_path
):
    image = replay_dockerfile(
        dockerfiles["Dockerfile.gpu"], tmp_path / "image", build=False, python=sys.executable
    )
    root = Path(image.env["SEISMIC_ROOT"])
    # where scripts/train.py in this image registers (env=dev: configs/env/dev.yaml)
    version = register_champion(f"sqlite:///{root}/mlflow.db", model_dir, tmp_path, str(root / "mlartifacts"))
    proc, url, port = _serve(image, image.argv, image.env, processes, tmp_path / "serve.log")
    ready = json.loads(proc.wait_http(url + "/ready", timeout=120))
    assert ready["version"] == version
    status, _ = http(url + "/predict", windows_json, {"Content-Type": "application/json"})
    assert status == 200
    check = [arg.replace(f":{SERVE['port']}/", f":{port}/") for arg in image.healthcheck]
    assert subprocess.run(check, env=image.env, timeout=30).returncode == 0
    assert proc.stop() == 0  # a clean SIGTERM drain exits 0 (serving/server.py)
