from __future__ import annotations

import json

import numpy as np
import pytest

from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.io.segy import labels_path_for, open_segy, provenance_path_for

from .conftest import run_script

SMALL = {"n_inlines": 30, "n_crosslines": 12, "n_samples": 80, "seed": 5}


@pytest.mark.parametrize(("sample_format", "endian"), [("ieee", "big"), ("ibm", "little")])
def test_make_survey_writes_a_checked_segy_with_labels_and_provenance(tmp_path, sample_format, endian):
    out = tmp_path / "s.sgy"
    args = ["scripts/make_survey.py", f"output={out}", f"sample_format={sample_format}", f"endian={endian}"]
    args += [f"data.survey.{k}={v}" for k, v in SMALL.items()]
    result = run_script(args, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["quality_ok"] and summary["shape"] == [30, 12, 80]
    assert set(summary["class_fractions"]) == {"train", "val", "test"}
    expected = generate_survey(SyntheticSurveyConfig(**SMALL))
    with open_segy(out) as f:
        assert f.endian == endian and f.format_name == sample_format
        np.testing.assert_allclose(f.read_all(), expected.amplitudes, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.load(labels_path_for(out)), expected.labels)
    provenance = json.loads(provenance_path_for(out).read_text())
    assert provenance["sample_format"] == sample_format and provenance["endian"] == endian
    assert provenance["provenance"]["params"]["seed"] == 5
    assert provenance["provenance"]["content_hash"] == expected.content_hash()
    assert provenance["provenance"]["class_names"] == list(expected.class_names)


def test_check_quality_cli_passes_the_written_survey(tmp_path):
    out = tmp_path / "s.sgy"
    args = ["scripts/make_survey.py", f"output={out}", *[f"data.survey.{k}={v}" for k, v in SMALL.items()]]
    assert run_script(args, tmp_path, timeout=300).returncode == 0
    result = run_script(["scripts/check_quality.py", str(out), "--json", str(tmp_path / "q.json")], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "q.json").read_text())["ok"] is True


def test_sizes_the_split_cannot_use_fail_in_one_line_before_anything_is_written(tmp_path):
    out = tmp_path / "small.sgy"
    args = [
        "scripts/make_survey.py",
        f"output={out}",
        "data.survey.n_inlines=8",
        "data.survey.n_crosslines=24",
    ]
    result = run_script(args, tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("make_survey failed:")]
    assert "8 inlines cannot hold three blocks" in line
    assert not list(tmp_path.glob("small*")), "nothing may be written for sizes that cannot be used"
