from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seismic.data.quality import CHECKS, QualityPolicy, check_survey, check_traces
from seismic.data.survey import Survey

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_quality.py"


def bandlimited(
    n_traces: int, n_t: int, seed: int = 0, band: tuple[float, float] = (0.02, 0.25)
) -> np.ndarray:
    """Random traces with a band-limited spectrum (fraction of Nyquist... in cycles/sample), float32."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((n_traces, n_t)), axis=1)
    f = np.fft.rfftfreq(n_t)
    spec[:, (f < band[0]) | (f > band[1])] = 0
    return np.fft.irfft(spec, n=n_t, axis=1).astype(np.float32)


def to_int16(x: np.ndarray, peak: float = 32767) -> np.ndarray:
    """Quantise to int16 with the largest |sample| at ``peak``, returned as float32 (as a reader gives it)."""
    return np.round(x / np.abs(x).max() * peak).astype(np.int16).astype(np.float32)


def injected() -> tuple[np.ndarray, dict[str, list[int]]]:
    x = bandlimited(60, 200, seed=1)
    peak = float(np.abs(x).max())
    x[[3, 50]] = 0.0
    x[7, 10] = np.nan
    x[[9, 10], [0, 199]] = [np.inf, -np.inf]
    x[11] = 0.25
    x[13, 40:44] = peak  # flat top at the global max
    x[20, 100:103] = -peak  # flat bottom, exactly the minimum run length
    return x, {
        "dead": [3, 50],
        "nan": [7],
        "inf": [9, 10],
        "constant": [11],
        "clipped": [13, 20],
    }


@pytest.mark.parametrize("chunk_traces", [None, 1, 7, 64])
def test_injected_problems_are_found_exactly(chunk_traces: int | None) -> None:
    x, expected = injected()
    report = check_traces(x, dt_ms=4.0, chunk_traces=chunk_traces)
    for check, indices in expected.items():
        assert getattr(report, f"{check}_traces").tolist() == indices, check
    issues = {i.check: i for i in report.issues}
    assert set(issues) == set(expected)
    assert issues["nan"].severity == "fatal" and issues["inf"].severity == "fatal"
    assert {issues[c].severity for c in ("dead", "constant", "clipped")} == {"warning"}
    assert issues["dead"].examples == [3, 50] and issues["dead"].count == 2
    assert not report.ok
    # statistics ignore the non-finite samples
    finite = x[np.isfinite(x)]
    assert report.max == pytest.approx(finite.max()) and report.finite_samples == finite.size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_data_has_no_false_positives(seed: int) -> None:
    x = bandlimited(400, 300, seed=seed)
    for data in (x, to_int16(x), to_int16(x, peak=1000), x.astype(np.float64) * 1e6):
        report = check_traces(data)
        assert report.issues == [] and report.ok and report.notes == []
        assert all(
            getattr(report, f"{c}_traces").size == 0 for c in ("dead", "nan", "inf", "clipped", "constant")
        )


def test_clip_guards() -> None:
    x = to_int16(bandlimited(50, 200, seed=3))
    top = float(x.max())
    x[5, 60:62] = top  # two equal neighbouring maxima: ordinary in integer data
    x[6, 10:16] = 0.5 * top  # a flat top below the global level: a quiet trace, not clipping
    assert check_traces(x).clipped_traces.size == 0
    x[7] = top  # constant at the clip level: reported as constant, not clipped
    r = check_traces(x)
    assert r.clipped_traces.size == 0 and r.constant_traces.tolist() == [7]
    x[8, 30:35] = top  # saturated ...
    x[9, 100] = 3 * top  # ... but a noise burst sets the global max: only a given clip level finds it
    assert check_traces(x).clipped_traces.size == 0
    assert check_traces(x, policy=QualityPolicy(clip_level=top)).clipped_traces.tolist() == [8]


def test_asymmetric_int16_clipping_is_found() -> None:
    x = bandlimited(300, 200, seed=4)
    q = np.clip(np.round(x / np.abs(x).max() * 70000), -32768, 32767).astype(np.float32)
    expected = np.flatnonzero(
        np.maximum(_run(q == 32767), _run(q == -32768)) >= 3  # saturated at either int16 limit
    )
    assert expected.size > 0
    assert check_traces(q).clipped_traces.tolist() == expected.tolist()


def _run(mask: np.ndarray) -> np.ndarray:
    best = np.zeros(mask.shape[0], int)
    cur = np.zeros(mask.shape[0], int)
    for col in mask.T:
        cur = np.where(col, cur + 1, 0)
        best = np.maximum(best, cur)
    return best


def test_coarse_integer_data_skips_the_clip_check_with_a_note() -> None:
    x = np.round(bandlimited(100, 200, seed=5) / 0.05)  # max |x| ~ tens of steps: flat peaks are common
    report = check_traces(x)
    assert report.clipped_traces.size == 0 and "clip check skipped" in report.notes[0]
    forced = check_traces(x, policy=QualityPolicy(clip_level=float(np.abs(x).max())))
    assert forced.notes == []


def test_policy_fraction_and_overrides() -> None:
    x = bandlimited(100, 64, seed=6)
    x[:10] = 0.0  # 10% dead: not past the default 10%
    assert check_traces(x).issues[0].severity == "warning"
    x[10] = 0.0  # 11%
    assert check_traces(x).issues[0].severity == "fatal"
    lenient = QualityPolicy().with_overrides(max_fraction=0.5)
    assert check_traces(x, policy=lenient).ok
    assert check_traces(x, policy=QualityPolicy().with_overrides(warn=["dead"])).ok
    x[:11] = bandlimited(11, 64, seed=7)
    x[0] = 0.0
    strict = QualityPolicy().with_overrides(fatal=["dead"])
    assert not check_traces(x, policy=strict).ok
    x[1, 5] = np.nan
    assert check_traces(x, policy=QualityPolicy().with_overrides(warn=["nan"], max_fraction=0.5)).ok
    with pytest.raises(ValueError, match="unknown checks"):
        QualityPolicy(fatal=frozenset({"bogus"}))
    with pytest.raises(ValueError, match="both"):
        QualityPolicy().with_overrides(fatal=["dead"], warn=["dead"])


def test_streaming_stats_match_numpy() -> None:
    x = bandlimited(500, 256, seed=8) * 3 + 1.5
    whole = x.astype(np.float64)
    for chunk in (1, 37, 500):
        r = check_traces(x, chunk_traces=chunk)
        assert r.min == whole.min() and r.max == whole.max()
        assert r.mean == pytest.approx(whole.mean(), rel=1e-9)
        assert r.std == pytest.approx(whole.std(), rel=1e-9)
        assert r.rms == pytest.approx(np.sqrt(np.mean(whole**2)), rel=1e-9)
        assert r.p01 == pytest.approx(np.percentile(whole, 1), rel=1e-9)  # sample holds all: exact
        assert r.p99 == pytest.approx(np.percentile(whole, 99), rel=1e-9)
    sampled = check_traces(x, chunk_traces=23, policy=QualityPolicy(percentile_sample=20_000))
    for value, q in ((sampled.p01, 0.01), (sampled.p99, 0.99)):
        assert abs(np.mean(whole <= value) - q) < 0.003  # rank error of a 20k-sample estimate


def test_report_serialises_and_prints() -> None:
    x, _ = injected()
    r = check_traces(x.reshape(6, 10, 200), dt_ms=2.0, source="cube")
    assert r.nan_traces.tolist() == [7]
    assert {i.check: i.examples for i in r.issues}["nan"] == [[0, 7]]  # multi-index for N-D input
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ok"] is False and d["dead_traces"] == [3, 50] and d["stats"]["p99"] is not None
    text = r.format_text()
    for check in ("nan", "inf", "dead", "clipped", "constant", "FAIL", "cube"):
        assert check in text
    strided = np.ascontiguousarray(x.reshape(6, 10, 200).transpose(1, 0, 2)).transpose(1, 0, 2)
    assert check_traces(strided, chunk_traces=7).nan_traces.tolist() == [7]  # no full copy needed
    assert check_traces(np.empty((0, 5))).issues == []
    with pytest.raises(ValueError, match="sample"):
        check_traces(np.empty((4, 0)))
    empty = check_traces(np.full((3, 5), np.nan))
    assert empty.min is None and empty.to_dict()["stats"]["mean"] is None and "FAIL" in empty.format_text()
    assert set(CHECKS) >= {i.check for i in r.issues}


def make_survey(bad: bool) -> Survey:
    x, _ = injected()
    amp = x if bad else bandlimited(60, 200, seed=2)
    return Survey(
        amplitudes=amp.reshape(6, 10, 200),
        dt_ms=4.0,
        inlines=np.arange(100, 106),
        crosslines=np.arange(10, 20),
    )


def test_check_survey_reports_inline_crossline(tmp_path: Path) -> None:
    path = make_survey(bad=True).save(tmp_path / "bad")
    r = check_survey(Survey.load(path), source=str(path))
    issues = {i.check: i for i in r.issues}
    assert issues["nan"].examples == [[100, 17]] and issues["dead"].examples == [[100, 13], [105, 10]]
    assert r.dt_ms == 4.0 and r.n_traces == 60 and r.details["shape"] == [6, 10, 200]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_cli_on_survey_folders(tmp_path: Path) -> None:
    good = make_survey(bad=False).save(tmp_path / "good")
    bad = make_survey(bad=True).save(tmp_path / "bad")
    out = run_cli(good, "--json", tmp_path / "good.json")
    assert out.returncode == 0, out.stderr
    assert "result: OK" in out.stdout and json.loads((tmp_path / "good.json").read_text())["ok"] is True
    out = run_cli(bad)
    assert out.returncode == 1 and "nan" in out.stdout and "Traceback" not in out.stderr
    assert run_cli(bad, "--warn", "nan", "inf").returncode == 0
    assert run_cli(good, "--max-fraction", "0").returncode == 0
    assert run_cli(bad, "--warn", "nan", "inf", "--max-fraction", "0").returncode == 1  # 2 dead > 0%
    (bad / "survey.json").write_text("{not json")
    out = run_cli(bad)
    assert out.returncode == 2 and "survey.json" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(tmp_path / "missing")
    assert out.returncode == 2 and "missing" in out.stderr and "no such file" in out.stderr


# -- SEG-Y ------------------------------------------------------------------------------------------
def write_segy(path: Path, amplitudes: np.ndarray, **kwargs: object) -> Path:
    from seismic.io.segy import write_cube

    return write_cube(path, amplitudes, 4.0, **kwargs)


def patch_trace_header(
    path: Path, n_t: int, trace: int, byte: int, value: int, bytes_per_sample: int = 4
) -> None:
    """Overwrite a 2-byte big-endian trace header word in place (``byte`` is 1-based, as in the standard)."""
    with path.open("r+b") as fh:
        fh.seek(3600 + trace * (240 + n_t * bytes_per_sample) + byte - 1)
        fh.write(value.to_bytes(2, "big"))


@pytest.mark.parametrize("endian", ["big", "little"])
def test_segy_with_injected_problems(tmp_path: Path, endian: str) -> None:
    from seismic.data.quality import check_segy

    x, expected = injected()
    path = write_segy(tmp_path / "bad.sgy", x.reshape(6, 10, 200), endian=endian)
    report = check_segy(path, chunk_traces=7)
    for check, indices in expected.items():
        assert getattr(report, f"{check}_traces").tolist() == indices, check
    assert {i.check for i in report.issues} == set(expected) and not report.ok
    assert report.dt_ms == 4.0 and report.n_traces == 60 and report.n_samples == 200
    assert report.details["kind"] == "cube" and report.details["endian"] == endian
    whole = check_traces(x)  # same numbers as the in-memory check
    assert (report.mean, report.std, report.p01) == pytest.approx((whole.mean, whole.std, whole.p01))


def test_clean_segy_has_no_issues(tmp_path: Path) -> None:
    from seismic.data.quality import check_segy

    q = to_int16(bandlimited(120, 150, seed=9))
    path = write_segy(tmp_path / "clean.sgy", q.reshape(12, 10, 150), sample_format="ibm")
    report = check_segy(path, chunk_traces=16)
    assert report.ok and report.issues == [] and report.notes == []
    assert report.max == q.max() and report.min == q.min()


def test_segy_header_disagreement_is_reported(tmp_path: Path) -> None:
    from seismic.data.quality import check_segy

    path = write_segy(tmp_path / "hdr.sgy", bandlimited(60, 50, seed=10).reshape(6, 10, 50))
    patch_trace_header(path, 50, 5, 117, 2000)  # dt 2 ms where the binary header says 4 ms
    for trace in (8, 9):
        patch_trace_header(path, 50, trace, 115, 100)  # 100 samples where there are 50
    patch_trace_header(path, 50, 12, 117, 0)  # 0 = unset: passes
    report = check_segy(path, chunk_traces=4)
    issues = {i.check: i for i in report.issues}
    assert set(issues) == {"dt_mismatch", "ns_mismatch"} and not report.ok
    assert issues["dt_mismatch"].examples == [5] and issues["dt_mismatch"].count == 1
    assert issues["ns_mismatch"].examples == [8, 9] and issues["ns_mismatch"].severity == "warning"
    assert issues["dt_mismatch"].severity == "fatal"
    assert "4000" in issues["dt_mismatch"].message and "2000 (1 traces)" in issues["dt_mismatch"].message
    text = report.format_text()
    assert "bytes 3221-3222 say 50" in text and "bytes 115-116 say 100 (2 traces)" in text
    lenient = QualityPolicy().with_overrides(warn=["dt_mismatch", "ns_mismatch"])
    assert check_segy(path, policy=lenient).ok


def test_cli_exit_codes_on_segy(tmp_path: Path) -> None:
    good = write_segy(tmp_path / "good.sgy", bandlimited(30, 40, seed=11).reshape(5, 6, 40))
    x, _ = injected()
    bad = write_segy(tmp_path / "bad.sgy", x.reshape(6, 10, 200))
    out = run_cli(good, "--iline", "189", "--xline", "193", "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["details"]["kind"] == "cube"
    out = run_cli(bad, "--json", tmp_path / "bad.json")
    assert out.returncode == 1 and "nan" in out.stdout and "result: FAIL" in out.stdout
    assert json.loads((tmp_path / "bad.json").read_text())["nan_traces"] == [7]
    assert run_cli(bad, "--warn", "nan", "inf").returncode == 0
    assert run_cli(good, "--fatal", "dead").returncode == 0
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(good.read_bytes()[:-100])
    out = run_cli(cut)
    assert out.returncode == 2 and "cut.sgy" in out.stderr and "truncated" in out.stderr
    assert "Traceback" not in out.stderr
    text_only = tmp_path / "text.sgy"
    text_only.write_bytes(good.read_bytes()[:3600])
    out = run_cli(text_only)
    assert out.returncode == 2 and "text.sgy" in out.stderr and "no traces" in out.stderr
    out = run_cli(good, "--iline", "2")
    assert out.returncode == 2 and "iline=2" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(good, "--fatal", "bogus")
    assert out.returncode == 2 and "invalid choice" in out.stderr  # argparse usage error


@pytest.mark.shared_data
def test_real_files(shared_segy_dir: Path) -> None:
    from seismic.data.quality import check_segy

    f3 = check_segy(shared_segy_dir / "f3.sgy")  # real int16 data: no clipping, stale trace-header ns
    assert f3.clipped_traces.size == 0 and f3.dead_traces.size == 0
    assert [i.check for i in f3.issues] == ["ns_mismatch"] and f3.issues[0].count == 414
    assert f3.issues[0].severity == "warning" and f3.ok  # the binary header fits the file size
    # smooth synthetic float ramps whose neighbouring samples are one float32 ULP apart: not clipped
    for name in ("small.sgy", "small-ps.sgy", "shot-gather.sgy"):
        assert check_segy(shared_segy_dir / name).issues == [], name
