"""Write-then-rename helpers, so a failed or interrupted write never leaves a partial output behind.

The temporary file or folder is created with ``os.open(..., 0o666)`` / ``os.mkdir(..., 0o777)`` rather than
``tempfile.mkstemp``/``mkdtemp``: those create it private (0600/0700) and the rename would carry that mode to
the output, so other users and containers running under another uid could not read it. Created this way the
kernel applies the process umask, exactly as for a plain ``open(path, "w")``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import time
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


def partial_files(path: str | Path) -> list[Path]:
    """The temporary files or folders that :func:`atomic_file` / :func:`atomic_dir` made for ``path`` and
    that are still there: a write in progress, or one that a SIGKILL (no cleanup runs) left behind."""
    target = Path(path)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.partial"))


def remove_partials(paths: list[str | Path]) -> list[Path]:
    """Remove every partial file of ``paths`` (see :func:`partial_files`); the ones removed.

    Only for a caller that knows no other writer of the same outputs is running (one job owns them), else it
    would pull a live write from under that writer."""
    removed = []
    for path in paths:
        for tmp in partial_files(path):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def remove_stale_partials(folder: str | Path, older_than_s: float) -> list[Path]:
    """Remove partial files anywhere under ``folder`` that nothing has written to for ``older_than_s``: for a
    folder that several processes write (an inference log), where only age tells an abandoned write (its
    process was SIGKILLed) from a live one; the ones removed."""
    cutoff = time.time() - older_than_s
    removed = []
    for tmp in Path(folder).rglob(".*.partial"):
        with contextlib.suppress(FileNotFoundError):  # its writer finished or removed it meanwhile
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
    return removed
