"""Data-quality report of a SEG-Y file or a saved survey folder.

Usage: check_quality.py PATH [--iline 189 --xline 193] [--json OUT] [--fatal CHECK ...] [--warn CHECK ...]
[--max-fraction F]. Exit status: 0 when no fatal problem, 1 when there is one, 2 when the input is
unreadable (the message names the file and the reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seismic.data.quality import CHECKS, QualityPolicy, check_path
from seismic.io.errors import SeismicIOError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="SEG-Y file or saved survey folder")
    parser.add_argument("--iline", type=int, default=189, help="inline header byte (SEG-Y)")
    parser.add_argument("--xline", type=int, default=193, help="crossline header byte (SEG-Y)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")
    checks = {"nargs": "+", "action": "extend", "default": [], "choices": CHECKS, "metavar": "CHECK"}
    parser.add_argument("--fatal", **checks, help=f"checks that are always fatal ({', '.join(CHECKS)})")
    parser.add_argument("--warn", **checks, help="checks that are never fatal")
    parser.add_argument(
        "--max-fraction", type=float, metavar="F", help="fraction of traces past which a check is fatal (0.1)"
    )
    args = parser.parse_args(argv)
    try:
        policy = QualityPolicy().with_overrides(
            fatal=args.fatal, warn=args.warn, max_fraction=args.max_fraction
        )
    except ValueError as err:
        parser.error(str(err))
    try:
        report = check_path(args.path, iline=args.iline, xline=args.xline, policy=policy)
    except SeismicIOError as err:
        print(f"error: cannot read {err.path}: {err.reason}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot read {args.path}: {err.strerror or err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a bad argument, e.g. an --iline byte that starts no header field
        parser.error(str(err))
    print(report.format_text())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
