"""The README's tour, run as written on a copy of the checkout, each step timed; optionally `make run` first.

    python benchmarks/tour.py [--make-run] [--make-test] [--skip-tour] [--keep DIR] [--port 0]

The commands are the ``bash`` block between ``<!-- tour -->`` and ``<!-- /tour -->`` in README.md, run by one
``bash -e`` in a copy of the tracked files (the copy shares this checkout's ``.venv``, as a fresh clone would
have it after ``make .venv/.installed``), so what is timed is exactly what a reader types. The server's port
is moved to a free one (``--port 0``) so a server already on 8080 does not answer in its place. It then reads
the monitor's report and checks what the README promises: a verdict of ``drift``, the first window (traffic
as it is) without drift and the second (gain doubled) with it. Prints a table of steps and seconds and
records it (``benchmarks/record.py``): as ``tour`` with ``--make-run``, as ``make_test`` for
``--make-test --skip-tour`` (the fast suite alone, in the same copy), else ``tour-steps``. Exit status 1 when
a command fails or the verdict is not the promised one. ``tests/test_readme_tour.py`` (slow) runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- tour -->", "<!-- /tour -->"
REPORT = "outputs/tour/monitor/drift_report.json"


class TourError(RuntimeError):
    pass


def tour_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The tour's commands in order, continuation lines joined, comments and blank lines dropped."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise TourError(f"{readme}: no {BEGIN} ... {END} section")
    section = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    if not blocks:
        raise TourError(f"{readme}: the tour section holds no ```bash block")
    commands: list[str] = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            code = re.sub(r"\s+#\s.*$", "", line).rstrip()  # a trailing "  # comment"
            if code.endswith("\\"):
                pending += code[:-1].rstrip() + " "
                continue
            commands.append((pending + code.strip()).strip())
            pending = ""
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_port(command: str, port: int) -> str:
    command = command.replace("scripts/serve.py", f"scripts/serve.py port={port}")
    return command.replace(
        "scripts/send_traffic.py", f"scripts/send_traffic.py --url http://127.0.0.1:{port}"
    )


def copy_checkout(dest: Path) -> None:
    """Tracked and untracked-not-ignored files, with their times (make compares them), and the venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def timed_script(commands: list[str]) -> str:
    lines = ["set -e"]
    for i, command in enumerate(commands):
        lines.append(f'echo "@@step {i} start $(date +%s.%N)" >&2')
        lines.append(command)
        lines.append(f'echo "@@step {i} end $(date +%s.%N)" >&2')
    return "\n".join(lines) + "\n"


def run_steps(workdir: Path, commands: list[str], log: Path) -> list[float | None]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("SEISMIC_ROOT", None)  # the copy is the project root, as in a fresh clone
    with log.open("w") as out:
        done = subprocess.run(
            ["bash", "-c", timed_script(commands)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    marks: dict[tuple[int, str], float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"@@step (\d+) (start|end) ([\d.]+)", line)
        if m:
            marks[(int(m.group(1)), m.group(2))] = float(m.group(3))
    seconds = [
        marks[(i, "end")] - marks[(i, "start")] if (i, "end") in marks else None for i in range(len(commands))
    ]
    if done.returncode != 0:
        failed = next((i for i, s in enumerate(seconds) if s is None), len(commands) - 1)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise TourError(f"step {failed + 1} failed (exit {done.returncode}): {commands[failed]}\n{tail}")
    return seconds


def check_report(workdir: Path) -> dict:
    path = workdir / REPORT
    if not path.is_file():
        raise TourError(f"the tour wrote no monitor report at {REPORT}")
    report = json.loads(path.read_text())
    windows = [w for w in report["windows"] if w["n_current"]]
    verdict = report["summary"]["verdict"]
    found = {
        "verdict": verdict,
        "windows": [
            {"rows": w["n_current"], "status": w["status"], "drifted": w["drifted"]} for w in windows
        ],
    }
    if verdict != "drift" or len(windows) != 2 or windows[0]["drifted"] or not windows[1]["drifted"]:
        raise TourError(
            "the README promises verdict drift, window 1 (traffic as it is) without drift and window 2 "
            f"(gain x2) with it; the monitor found {json.dumps(found)}"
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-run", action="store_true", help="time `make run` in the copy first")
    parser.add_argument("--make-test", action="store_true", help="time `make test` in the copy")
    parser.add_argument("--skip-tour", action="store_true", help="only the make targets asked for")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    parser.add_argument("--port", type=int, default=0, help="the server's port (0: a free one)")
    args = parser.parse_args()
    commands = tour_commands()
    port = args.port or free_port()
    with tempfile.TemporaryDirectory(prefix="seismic-tour-") as tmp:
        workdir = args.keep or Path(tmp) / "seismic"
        workdir.mkdir(parents=True, exist_ok=True)
        copy_checkout(workdir)
        rows = []
        if args.make_run:
            started = time.perf_counter()
            run_steps(workdir, ["make run"], workdir / "make_run.log")
            rows.append(("make run", time.perf_counter() - started))
        # the copy shares this checkout's venv: installing into it from the copy would point the editable
        # install at a folder about to be deleted
        run = [c for c in commands if not c.startswith("make .venv")]
        if args.make_test:
            started = time.perf_counter()
            run_steps(workdir, ["make test"], workdir / "make_test.log")
            rows.append(("make test", time.perf_counter() - started))
            outcome = [ln for ln in (workdir / "make_test.log").read_text().splitlines() if " passed" in ln]
            print(f"make test: {outcome[-1].strip('= ') if outcome else 'no pytest summary line'}")
        found = None
        if not args.skip_tour:
            seconds = run_steps(workdir, [with_port(c, port) for c in run], workdir / "tour.log")
            rows += list(zip(run, seconds, strict=True))
            found = check_report(workdir)
    width = min(100, max(len(c) for c, _ in rows))
    print(f"{'step':<{width}}  seconds")
    for command, s in rows:
        shown = command if len(command) <= width else command[: width - 3] + "..."
        print(f"{shown:<{width}}  {s:7.1f}")
    if found is not None:
        tour_total = sum(s for c, s in rows if not c.startswith("make "))
        print(f"{'tour total':<{width}}  {tour_total:7.1f}")
        print(f"monitor: verdict {found['verdict']}; windows {json.dumps(found['windows'])}")


if __name__ == "__main__":
    import record

    try:
        # the page quotes `make run` too: a run without it is kept apart instead of replacing that record
        if "--skip-tour" in sys.argv:
            name = (
                "make_test" if "--make-test" in sys.argv and "--make-run" not in sys.argv else "make-targets"
            )
        else:
            name = "tour" if "--make-run" in sys.argv else "tour-steps"
        record.run(main, name, title="The README's commands" if name == "tour" else name.replace("_", " "))
    except TourError as err:
        print(f"tour failed: {err}", file=sys.stderr)
        sys.exit(1)
