"""scripts/validate.py: the repository validates; broken configs, deployment files and model folders give a
numbered list of problems, each naming the file, the key and the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seismic.validation as validation
from seismic.validation import Problem, main, validate
from seismic.validation.uris import tracking_uri_problem

REPO = Path(__file__).resolve().parents[1]
CLIS = ("train", "serve", "monitor", "predict", "export", "promote", "make_survey")


def run_validate(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEISMIC_API_KEY")}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "validate.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "true"},
        cwd=REPO,
    )


def broken_configs(tmp_path: Path, edits: list[tuple[str, str, str]]) -> Path:
    """A copy of configs/ with ``(file, old, new)`` text replacements (each must apply)."""
    configs = Path(shutil.copytree(REPO / "configs", tmp_path / "configs"))
    for name, old, new in edits:
        path = configs / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))
    return configs


def test_the_repository_validates():
    out = run_validate()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert out.stdout.rstrip().endswith("OK: no problems")
    summary = out.stdout.splitlines()[0]
    assert all(cli in summary for cli in CLIS) and "3 environments (dev, prod, staging)" in summary
    composed = int(re.search(r"(\d+) configurations composed", summary)[1])
    assert composed > 3 * len(CLIS)  # every environment, and every group option
    # the environment variables staging and prod read, and ??? values, are reported, not failed
    assert "$MLFLOW_TRACKING_URI is not set here" in out.stdout
    assert "model_dir is mandatory (???)" in out.stdout


BREAKAGES = [
    pytest.param(
        [("data/synthetic.yaml", "  pad_mode:", "  pad_mod:")],
        ["make_survey"],
        Problem("configs/data/synthetic.yaml", "data.window.pad_mod", "Key 'pad_mod' not in 'WindowSchema'"),
        id="misspelt-key-in-a-group-file",
    ),
    pytest.param(
        [("data/synthetic.yaml", "  length: 64", "  length: '64'")],
        ["make_survey"],
        Problem(
            "configs/data/synthetic.yaml", "data.window.length", "Input should be a valid integer, got '64'"
        ),
        id="wrong-type",
    ),
    pytest.param(
        [("make_survey.yaml", "  - data: synthetic", "  - data: synthetc")],
        ["make_survey"],
        Problem(
            "configs/make_survey.yaml",
            "data",
            "no config 'synthetc' in group 'data'; available: segy, synthetic",
        ),
        id="unknown-group-option",
    ),
    pytest.param(
        [("serve.yaml", "port: 8080", "port: : 8080")],
        ["serve"],
        Problem(
            "configs/serve.yaml", "", "invalid YAML: line 14, column 7: mapping values are not allowed here"
        ),
        id="invalid-yaml",
    ),
    pytest.param(
        [("serve.yaml", "  max_windows_per_request: 1024", "  max_windows_per_request: 0")],
        ["serve"],
        Problem(
            "configs/serve.yaml",
            "limits.max_windows_per_request",
            "Input should be greater than or equal to 1",
        ),
        id="pydantic-value",
    ),
    pytest.param(
        [("serve.yaml", "port: 8080", "prot: 8080")],
        ["serve"],
        Problem("configs/serve.yaml", "prot", "unknown key (scripts/serve.py reads"),
        id="top-level-key-no-schema-catches",
    ),
    pytest.param(
        [("env/dev.yaml", "sqlite:///${paths.root_dir}", "sqlite:/${paths.root_dir}")],
        ["serve"],
        Problem("configs/env/dev.yaml", "env.tracking_uri", "a sqlite store is sqlite:///relative/path.db"),
        id="malformed-tracking-uri",
    ),
    pytest.param(
        [("drift/default.yaml", "  gate: psi", "  gate: psx")],
        ["monitor"],
        Problem("configs/drift/default.yaml", "drift.raw.gate", "raw.gate must be one of"),
        id="library-validator",
    ),
    pytest.param(
        [("monitor.yaml", "  external_url:", "  external_ur:")],
        ["monitor"],
        Problem("configs/monitor.yaml", "alerts.external_ur", "unknown key (nothing reads it)"),
        id="monitor-key-nothing-reads",
    ),
    pytest.param(
        [("predict.yaml", "engine: local", "engine: spark")],
        ["predict"],
        Problem("configs/predict.yaml", "engine", "Input should be 'local' or 'ray', got 'spark'"),
        id="predict-engine",
    ),
    pytest.param(
        [("trainer/default.yaml", "max_epochs: 10", "max_epochz: 10")],
        ["train"],
        Problem("configs/trainer/default.yaml", "trainer.max_epochz", "unknown key(s) ['max_epochz']"),
        id="trainer-key-reported-once-where-it-is-written",
    ),
]


@pytest.mark.parametrize(("edits", "clis", "expected"), BREAKAGES)
def test_a_broken_config_is_one_numbered_problem(tmp_path, edits, clis, expected):
    report = validate(broken_configs(tmp_path, edits), REPO, clis_wanted=clis, envs=["dev"])
    assert not report.ok
    found = [p for p in report.problems if (p.file, p.key) == (expected.file, expected.key)]
    assert found and expected.reason in found[0].reason, report.format()
    assert len(report.problems) == 1, report.format()  # one cause, one line (not one per composition)
    assert re.search(rf"^1\. {re.escape(expected.file)}: ", report.format(), flags=re.MULTILINE)


def test_the_script_exits_1_with_a_numbered_list(tmp_path):
    configs = broken_configs(
        tmp_path,
        [
            ("serve.yaml", "  max_batch_size: 256", "  max_batch_size: 0"),
            ("monitor.yaml", "lookback: 24h", "lookback: 24"),
        ],
    )
    out = run_validate(f"config_dir={configs}", "cli=serve,monitor", "env=dev")
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "2 problem(s):" in lines
    assert any(
        ln.startswith("1. configs/monitor.yaml: lookback: lookback must be a duration like 24h, got 24")
        for ln in lines
    ), lines
    assert any(
        ln.startswith("2. configs/serve.yaml: batching.max_batch_size: Input should be") for ln in lines
    )


def test_a_missing_launcher_plugin_is_a_note_and_a_misspelt_one_a_problem(tmp_path, monkeypatch):
    configs = broken_configs(
        tmp_path, [("hydra/launcher/slurm.yaml", "  - submitit_slurm", "  - submitit_slurmx")]
    )
    report = validate(configs, REPO, clis_wanted=["train"], envs=["dev"])
    (problem,) = report.problems
    assert problem.file == "configs/hydra/launcher/slurm.yaml" and problem.key == "hydra/launcher"
    assert "no config 'submitit_slurmx'" in problem.reason
    # where the config is a plugin's and the plugin is not installed: reported, not failed
    plugins = {"hydra/launcher/submitit_slurmx": ("hydra_plugins.not_installed_here", "pip install x")}
    monkeypatch.setattr(validation, "PLUGIN_CONFIGS", plugins)
    report = validate(configs, REPO, clis_wanted=["train"], envs=["dev"])
    assert report.ok, report.format()
    assert any(
        "not checked: it comes with hydra_plugins.not_installed_here, not installed" in n
        for n in report.notes
    )


def test_deployment_files_must_parse(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(REPO / "scripts", root / "scripts")
    (root / "deploy" / "k8s").mkdir(parents=True)
    (root / "deploy" / "k8s" / "api.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\n---\napiVersion: v1\nkind: Service\n"
    )
    (root / "deploy" / "k8s" / "broken.yml").write_text("kind: ConfigMap\n  data: [\n")
    (root / "deploy" / "dashboard.json").write_text("{'not': json}")
    (root / "docker-compose.prod.yml").write_text("version: '3'\n")
    report = validate(REPO / "configs", root, clis_wanted=["predict"])
    assert report.yaml_files == 4
    assert {(p.file, p.key) for p in report.problems} == {
        ("deploy/k8s/api.yaml", "document 2 (Service)"),
        ("deploy/k8s/broken.yml", ""),
        ("deploy/dashboard.json", ""),
        ("docker-compose.prod.yml", "services"),
    }, report.format()
    reasons = {p.file: p.reason for p in report.problems}
    assert reasons["deploy/k8s/api.yaml"] == "a Kubernetes object needs metadata.name"
    assert reasons["deploy/k8s/broken.yml"].startswith("invalid YAML: line 2, column 7")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny exported cnn1d with a reference profile of its own predictions (what monitoring needs)."""
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    from models import CLASS_NAMES, export_tiny

    from seismic.monitoring.profile import build_profile
    from serving.runtime import load_model

    folder = export_tiny(tmp_path_factory.mktemp("model") / "cnn1d", "cnn1d")
    model = load_model(folder, ["CPUExecutionProvider"], 1)
    raw = np.random.default_rng(0).normal(3.0, 250.0, (300, 1, 64)).astype(np.float32)
    out = model.predict(raw)
    build_profile(
        raw, out["class"], out["probabilities"], out["embedding"], dt_ms=4.0, class_names=CLASS_NAMES
    ).save(folder)
    return folder


MODEL_CLIS = ["serve", "predict", "monitor"]


def test_a_model_folder_that_fits_the_serving_configs_passes(model_folder):
    report = validate(REPO / "configs", REPO, clis_wanted=MODEL_CLIS, model=model_folder)
    assert report.ok, report.format()
    assert f"model {model_folder} checked against serve, predict and monitor" in report.format()


def test_mismatched_model_metadata_is_listed(model_folder, tmp_path):
    bad = Path(shutil.copytree(model_folder, tmp_path / "bad"))
    meta = json.loads((bad / "metadata.json").read_text())
    meta["window"]["length"] = 32  # the graph still takes 64 samples
    (bad / "metadata.json").write_text(json.dumps(meta))
    (bad / "profile.npz").unlink()
    # 1024 windows of 64 float32 samples are 256 KiB: more than this body limit lets through
    configs = broken_configs(tmp_path, [("serve.yaml", "max_body_bytes: 67108864", "max_body_bytes: 65536")])
    report = validate(configs, REPO, clis_wanted=MODEL_CLIS, envs=["dev"], model=bad)
    by_key = {(p.file, p.key): p.reason for p in report.problems}
    assert "disagrees with window" in by_key[(f"{bad}/metadata.json", "input.shape")], report.format()
    assert "differs from the copy in model.onnx" in by_key[(f"{bad}/metadata.json", "window")]
    assert (
        "cannot carry limits.max_windows_per_request=1024 windows of [1, 64]"
        in by_key[("configs/serve.yaml", "limits.max_body_bytes")]
    )
    assert "has no reference profile" in by_key[("configs/monitor.yaml", "model_dir")]
    out = run_validate(f"model={bad}", "cli=serve", "env=dev")
    assert out.returncode == 1 and re.search(
        r"^1\. .*metadata\.json: input\.shape: ", out.stdout, re.MULTILINE
    )


def test_bad_arguments_exit_2(capsys):
    assert main(["cli=nope"], root=REPO) == 2
    assert "cli: unknown ['nope']; the CLIs are" in capsys.readouterr().err
    assert main(["verbose=true"], root=REPO) == 2
    assert "unknown argument 'verbose=true'" in capsys.readouterr().err
    assert main(["env=prdo", "cli=serve"], root=REPO) == 2
    assert "env: unknown ['prdo']; the environments are ['dev', 'prod', 'staging']" in capsys.readouterr().err
    assert main(["full=maybe"], root=REPO) == 2
    assert "full must be true or false, got 'maybe'" in capsys.readouterr().err
    assert main([f"config_dir={REPO / 'nowhere'}"], root=REPO) == 2


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("sqlite:///mlflow.db", True),
        ("sqlite:////abs/mlflow.db", True),
        ("http://mlflow:5000", True),
        ("https://mlflow.example.com/prefix", True),
        ("postgresql+psycopg2://user@db:5432/mlflow", True),
        ("databricks", True),
        ("/abs/mlruns", True),
        ("sqlite://mlflow.db", False),
        ("sqlite:/mlflow.db", False),
        ("http//mlflow:5000", False),
        ("http://:5000", False),
        ("http://mlflow:99999", False),
        ("mlflow://x", False),
        ("", False),
    ],
)
def test_tracking_uris(uri, ok):
    assert (tracking_uri_problem(uri) is None) is ok, tracking_uri_problem(uri)
