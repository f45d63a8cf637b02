""".github/workflows: CI runs what .ci/run runs (same commands, same order, same environment), on a CPU
build of torch; the end-to-end loop has a job; images are built from both Dockerfiles and pushed on tags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return data


def ci_run_commands() -> list[str]:
    """The commands .ci/run executes, in order (its shell plumbing left out)."""
    plumbing = re.compile(r"^(#|set |cd |export |rc=|if |fi\b|then\b|else\b)")
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()[1:]]
    return [ln for ln in lines if ln and not plumbing.match(ln)]


def ci_run_environment() -> dict[str, str]:
    text = (REPO / ".ci" / "run").read_text()
    return dict(re.findall(r"^export (\w+)=(\S+)$", text, flags=re.MULTILINE))


def scripts(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job: dict, action: str) -> list[dict]:
    return [step for step in job["steps"] if str(step.get("uses", "")).startswith(f"{action}@")]


def test_ci_run_commands_are_read():
    assert ci_run_commands() == [
        "make .venv/.installed",
        '.venv/bin/python -m pip install --quiet -e ".[cluster,ray,docs,notebook]"',
        "make test",
        "make lint",
        ".venv/bin/python -m pytest -m slow",
        ".venv/bin/python scripts/validate.py full=true",
        ".venv/bin/mkdocs build --strict --quiet --site-dir .site",
    ]


def test_ci_runs_the_commands_of_ci_run_in_order_on_push_and_pull_request():
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    steps = scripts(ci["jobs"]["test"])
    positions = []
    for command in ci_run_commands():
        found = [i for i, script in enumerate(steps) if command in script.splitlines()]
        assert found, f"{command!r} from .ci/run is not a command of the CI test job"
        positions.append(found[0])
    assert positions == sorted(positions), "the CI test job runs .ci/run's commands in another order"
    slow = next(s for s in steps if "pytest -m slow" in s)
    assert '[ "$rc" -ne 5 ]' in slow  # as .ci/run: no slow test selected is not a failure
    for key, value in ci_run_environment().items():
        assert str(ci["env"].get(key)) == value, f"{key} differs from .ci/run"


@pytest.mark.parametrize("name", ["ci.yml", "images.yml"])
def test_every_job_gets_python_311_with_a_pip_cache_and_cpu_torch(name):
    workflow = load(name)
    assert CPU_INDEX in str(workflow["env"].get("PIP_EXTRA_INDEX_URL", "")) + str(
        workflow["env"].get("PIP_INDEX_URL", "")
    ), "without PyTorch's CPU index pip installs the CUDA build of torch on the runner"
    for job_name, job in workflow["jobs"].items():
        if not any("make" in s or "pip" in s for s in scripts(job)):
            continue  # installs nothing (the image builds)
        (setup,) = uses(job, "actions/setup-python")
        assert str(setup["with"]["python-version"]) == "3.11", job_name
        assert setup["with"]["cache"] == "pip", job_name


def test_the_loop_has_a_job_of_its_own():
    loop = load("ci.yml")["jobs"]["loop"]
    assert any(s.split("<")[0].strip() == "make loop" for s in scripts(loop))
    assert loop["timeout-minutes"] <= 60


def test_images_are_built_from_both_dockerfiles_and_pushed_to_ghcr_on_tags():
    images = load("images.yml")
    assert images["on"]["push"]["tags"] == ["v*"]
    job = images["jobs"]["image"]
    assert job["permissions"]["packages"] == "write" and job["needs"] == "check"
    files = {entry["dockerfile"]: entry["image"] for entry in job["strategy"]["matrix"]["include"]}
    assert set(files) == {"Dockerfile", "Dockerfile.gpu"}
    for dockerfile in files:
        assert (REPO / dockerfile).is_file(), f"{dockerfile} is missing"
    (login,) = uses(job, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    (build,) = uses(job, "docker/build-push-action")
    assert build["with"]["push"] is True and build["with"]["file"] == "${{ matrix.dockerfile }}"
    naming = next(s for s in scripts(job) if "ghcr.io/" in s)
    assert "${GITHUB_REPOSITORY_OWNER,,}" in naming  # registry paths must be lower case


def test_actions_are_pinned_to_a_major_version():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in load(path.name)["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{path.name}: {step['uses']}"
