"""The inference log on a real filesystem that fills up or turns read-only mid-run: a tiny tmpfs of our own
(needs root, or the right to mount: skipped with the reason otherwise)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time

import pytest

from serving.inference_log import InferenceLogWriter, read_inference_log

from .test_inference_log import DT_MS, log, request


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture()
def tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted at tmp_path/mnt; unmounted afterwards."""
    where = tmp_path / "mnt"
    where.mkdir()
    try:
        done = _mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(where))
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small filesystem to fill")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield where
    if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def _fill(folder) -> None:
    """Write zeros until the filesystem says ENOSPC (a real full disk, not a mock)."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "serving.inference_log" and r.levelno >= 40]


def test_disk_full_mid_run_keeps_rows_and_leaves_no_partial_file(tmpfs, caplog):
    logdir = tmpfs / "log"
    writer = InferenceLogWriter(logdir, dt_ms=DT_MS, flush_seconds=60)
    log(writer, "before", request(5, seed=1))
    assert writer.flush(30) and writer.stats.rows_written == 5
    _fill(tmpfs)
    with caplog.at_level(logging.ERROR, logger="serving.inference_log"):
        log(writer, "full", request(200, seed=2))
        assert writer.flush(30)
    stats = writer.stats
    assert stats.write_errors == 1 and stats.rows_pending == 200 and stats.rows_lost == 0
    (line,) = _errors(caplog)  # one line: what, where, why, and what happens next
    assert line.startswith(f"inference log: cannot write 200 row(s) to {logdir}/date=")
    assert "No space left on device" in line and "kept for a retry" in line
    assert not list(tmpfs.rglob("*.partial"))  # the half-written file is gone
    (tmpfs / "filler").unlink()  # space again: the retry writes everything
    assert writer.flush(30)
    writer.close()
    assert writer.stats.rows_written == 205 and writer.stats.rows_lost == 0
    assert read_inference_log(logdir).num_rows == 205


def test_read_only_mid_run_keeps_rows_until_writable_again(tmpfs, caplog):
    logdir = tmpfs / "log"
    writer = InferenceLogWriter(logdir, dt_ms=DT_MS, flush_seconds=60)
    log(writer, "before", request(5, seed=1))
    assert writer.flush(30)
    done = _mount("-o", "remount,ro", str(tmpfs))
    assert done.returncode == 0, done.stderr
    try:
        with caplog.at_level(logging.ERROR, logger="serving.inference_log"):
            log(writer, "ro", request(7, seed=2))
            assert writer.flush(30)
        (line,) = _errors(caplog)
        assert f"cannot write 7 row(s) to {logdir}/date=" in line and "Read-only file system" in line
        assert writer.stats.rows_pending == 7
    finally:
        assert _mount("-o", "remount,rw", str(tmpfs)).returncode == 0
    assert writer.flush(30)
    writer.close()
    assert writer.stats.rows_written == 12 and writer.stats.rows_lost == 0
    assert not list(tmpfs.rglob("*.partial"))
    assert read_inference_log(logdir).num_rows == 12


def test_still_full_at_close_counts_rows_lost_in_one_line(tmpfs, caplog):
    logdir = tmpfs / "log"
    _fill(tmpfs)
    writer = InferenceLogWriter(logdir, dt_ms=DT_MS, flush_seconds=60)
    with caplog.at_level(logging.ERROR, logger="serving.inference_log"):
        log(writer, "full", request(50, seed=3))
        writer.close()
    assert writer.stats.rows_lost == 50 and writer.stats.rows_pending == 0
    assert not list(tmpfs.rglob("*.partial"))
    (line,) = _errors(caplog)  # says the rows are lost, not that they wait for a retry that never comes
    assert "cannot write 50 row(s)" in line and "No space left on device" in line
    assert "lost: the writer is closing" in line


def test_partial_files_of_killed_writers_are_removed_when_an_hour_old(tmp_path, caplog):
    hour = tmp_path / "date=2025-01-01" / "hour=00"
    hour.mkdir(parents=True)
    stale, live = hour / ".part-a.parquet.x1.partial", hour / ".part-b.parquet.x2.partial"
    for path in (stale, live):
        path.write_bytes(b"PAR1 half a file")  # what a SIGKILL mid-write leaves
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with caplog.at_level(logging.WARNING, logger="serving.inference_log"):
        InferenceLogWriter(tmp_path, dt_ms=DT_MS).close()
    assert not stale.exists() and live.exists()  # a young one may be another process's write in progress
    assert f"inference log: removed {stale}, a write abandoned by a killed process" in caplog.text
