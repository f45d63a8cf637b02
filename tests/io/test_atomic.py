"""Atomic writes: outputs honour the umask like a plain open() (they were 0600 from mkstemp before)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from seismic.io.atomic import atomic_dir, atomic_file
from seismic.io.segy import open_segy, write_cube
from seismic.io.segy_like import SegyLikeWriter


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_outputs_honour_the_umask(tmp_path, umask):
    with atomic_file(tmp_path / "out.json") as tmp:
        tmp.write_text("{}")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "a.npy").write_bytes(b"x")
    plain = tmp_path / "plain.txt"
    plain.write_text("")  # what a normal open() gives under this umask
    assert _mode(tmp_path / "out.json") == _mode(plain) == 0o666 & ~umask
    assert _mode(tmp_path / "folder") == 0o777 & ~umask
    assert not list(tmp_path.glob(".*partial"))


def test_segy_outputs_are_readable_by_others_under_umask_022(tmp_path):
    """What make_survey (write_cube) and predict (SegyLikeWriter on the input's grid) write."""
    old = os.umask(0o022)
    try:
        path = write_cube(tmp_path / "c.sgy", np.zeros((2, 2, 4), np.float32), 4.0)
        with open_segy(path) as template, SegyLikeWriter(template, tmp_path / "classes.sgy") as w:
            w.write_inlines(0, np.ones((2, 2, 4)))
    finally:
        os.umask(old)
    modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
