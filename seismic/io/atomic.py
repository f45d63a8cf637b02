"""Write-then-rename helpers, so a failed or interrupted write never leaves a partial output behind.

The temporary file or folder is created with ``os.open(..., 0o666)`` / ``os.mkdir(..., 0o777)`` rather than
``tempfile.mkstemp``/``mkdtemp``: those create it private (0600/0700) and the rename would carry that mode to
the output, so other users and containers running under another uid could not read it. Created this way the
kernel applies the process umask, exactly as for a plain ``open(path, "w")``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def _fresh(target: Path, create: Callable[[Path], None]) -> Path:
    """A new, unused name beside ``target`` (hidden, ``.partial``), created by ``create``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
        try:
            create(tmp)
            return tmp
        except FileExistsError:  # 48 random bits: only a left-over from a killed run can collide
            continue


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    tmp = _fresh(target, _create_file)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path`` (replacing an old one)."""
    target = Path(path)
    tmp = _fresh(target, lambda p: os.mkdir(p, 0o777))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
