"""benchmarks/record.py and the records the docs' benchmark pages are generated from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
NOTES = ROOT / "benchmarks" / "notes"

sys.path.insert(0, str(ROOT / "benchmarks"))
import record  # noqa: E402  (benchmarks/ is not a package)


@pytest.mark.parametrize("path", sorted(RECORDS.glob("*.json")), ids=lambda p: p.stem)
def test_record_carries_its_machine(path: Path) -> None:
    rec = json.loads(path.read_text())
    assert rec["schema"] == record.SCHEMA and rec["name"] == path.stem
    assert rec["output"].strip(), f"{path.name}: no printed output"
    machine = rec["machine"]
    for key in ("cpu_model", "cores", "amx", "avx512_bf16"):
        assert key in machine, f"{path.name}: machine.{key} missing (null where unknown, never left out)"
    # the project's venv, or (a benchmark that needs packages the project cannot hold) the interpreter it ran
    assert re.match(
        r"^(PYTHONPATH=\S+ )?(\.venv/bin/python|/\S+/python[\d.]*) benchmarks/\w+\.py", rec["command"]
    ), rec["command"]


def test_notes_name_existing_records() -> None:
    for note in NOTES.glob("*.md"):
        assert (RECORDS / f"{note.stem}.json").is_file(), f"{note.name}: no record {note.stem}.json"
        for other in re.findall(r"<!-- output:([\w.-]+) -->", note.read_text()):
            assert (RECORDS / f"{other}.json").is_file(), f"{note.name} embeds a missing record {other}"


def test_run_records_printed_output_and_machine(tmp_path: Path) -> None:
    script = tmp_path / "bench.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import record\n"
        "def main():\n    print('rate 123.4 windows/s')\n"
        "record.run(main, 'toy')\n"
    )
    env = {"SEISMIC_RECORDS_DIR": str(tmp_path / "records"), "PATH": "/usr/bin:/bin"}
    for args in ([], ["--quick"]):
        done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "rate 123.4 windows/s" in done.stdout
    full = json.loads((tmp_path / "records" / "toy.json").read_text())
    assert full["output"] == "rate 123.4 windows/s\n"
    assert full["machine"]["cores"] >= 1 and full["status"] == "measured"
    # a smoke run is kept apart: it never replaces the full measurement
    assert (tmp_path / "records" / "toy-quick.json").is_file()


def test_a_failed_benchmark_records_nothing(tmp_path: Path) -> None:
    script = tmp_path / "bench.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\nimport record\n"
        "def main():\n    raise SystemExit(3)\nrecord.run(main, 'toy')\n"
    )
    env = {"SEISMIC_RECORDS_DIR": str(tmp_path / "records"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 3
    assert not (tmp_path / "records").exists()
