"""The README: short, its links resolve, and its tour runs as written (slow) with the verdict it promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_CHARS = 10_000

sys.path.insert(0, str(ROOT / "benchmarks"))
import tour  # noqa: E402  (benchmarks/ is not a package)


def test_readme_is_short() -> None:
    size = len(README.read_text())
    assert size <= MAX_CHARS, f"README.md is {size} characters; move detail into docs/ (limit {MAX_CHARS})"


def test_readme_links_resolve() -> None:
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets, "README.md links to nothing"
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_tour_commands_name_existing_scripts() -> None:
    commands = tour.tour_commands()
    assert any("scripts/monitor.py" in c for c in commands), commands
    scripts = {m for c in commands for m in re.findall(r"scripts/\w+\.py", c)}
    assert {"scripts/serve.py", "scripts/send_traffic.py", "scripts/predict.py"} <= scripts
    assert all((ROOT / s).is_file() for s in scripts), scripts
    # continuation lines are joined: no command is cut in the middle of its overrides
    assert not any(c.endswith("\\") for c in commands)


def test_tour_extraction_rejects_a_readme_without_the_section(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# nothing here\n")
    with pytest.raises(tour.TourError, match="no <!-- tour -->"):
        tour.tour_commands(tmp_path / "README.md")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "SEISMIC_RECORDS_DIR": str(tmp_path / "records"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tour.py"), "--keep", str(tmp_path / "clone")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "monitor: verdict drift" in done.stdout
    record = json.loads((tmp_path / "records" / "tour-steps.json").read_text())
    assert record["machine"]["cores"] >= 1 and "verdict drift" in record["output"]
    report = json.loads((tmp_path / "clone" / tour.REPORT).read_text())
    assert report["summary"]["verdict"] == "drift"
