"""Benchmark records: what a benchmark printed and the machine it ran on (``benchmarks/records/<name>.json``).

The documentation's benchmark pages are generated from these files (``docs/gen_benchmarks.py``), so every
figure there carries the CPU model, core count and the flags that decide the precision and kernel paths
(AMX, AVX512-BF16), the date and the command, instead of being pasted by hand. Each benchmark script ends
its ``__main__`` with ``record.run(main, NAME)``: the printed output is teed to the console and kept
verbatim, since the printed numbers are what the docs quote (the full JSON stays in ``benchmarks/results/``).

A run with ``--quick`` (or any of ``PARTIAL_FLAGS``) is recorded as ``<name>-quick`` so a smoke run never
replaces a full measurement. ``SEISMIC_RECORDS_DIR`` redirects the records (tests use a temporary folder).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "seismic.benchmark-record/1"
PARTIAL_FLAGS = ("--quick",)


def records_dir() -> Path:
    return Path(os.environ.get("SEISMIC_RECORDS_DIR") or ROOT / "benchmarks" / "records")


def machine() -> dict[str, Any]:
    """The CPU as /proc/cpuinfo names it (None where the file does not exist: macOS, Windows)."""
    model, flags = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model is None:
                model = value.strip()
            elif key == "flags" and flags is None:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu_model": model or platform.processor() or None,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "amx": None if flags is None else "amx_bf16" in flags,
        "avx512_bf16": None if flags is None else "avx512_bf16" in flags,
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_record(
    name: str,
    output: str,
    payload: Any = None,
    *,
    command: str | None = None,
    title: str | None = None,
    seconds: float | None = None,
) -> Path:
    """Write ``benchmarks/records/<name>.json`` (replacing the previous record of that name)."""
    record = {
        "schema": SCHEMA,
        "name": name,
        "title": title or name.replace("_", " "),
        "status": "measured",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or shlex.join(["python", *sys.argv]),
        "machine": machine(),
        "seconds": None if seconds is None else round(seconds, 1),
        "output": output,
        "payload": payload,
    }
    path = records_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


class _Tee(io.TextIOBase):
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer_ = io.StringIO()

    def write(self, text: str) -> int:
        self.buffer_.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _interpreter() -> list[str]:
    """How the command ran: the project's venv as ``.venv/bin/python``, another interpreter by its path (a
    benchmark that needs packages the project cannot hold runs in a venv of its own), with PYTHONPATH."""
    if Path(sys.executable).parent == ROOT / ".venv" / "bin":
        return [".venv/bin/python"]
    path = os.environ.get("PYTHONPATH")
    return [*([f"PYTHONPATH={path}"] if path else []), sys.executable]


def run(main: Callable[[], Any], name: str, *, title: str | None = None) -> None:
    """Run a benchmark's ``main`` and record what it printed; a failed run records nothing."""
    import time

    if any(flag in sys.argv[1:] for flag in PARTIAL_FLAGS):
        name = f"{name}-quick"
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        main()
    path = write_record(
        name,
        tee.buffer_.getvalue(),
        command=shlex.join([*_interpreter(), *sys.argv]),
        title=title,
        seconds=time.perf_counter() - started,
    )
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
