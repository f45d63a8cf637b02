"""Late labels: ingest ground truth into the label table, or score a batch-scored volume against it.

    python scripts/labels.py ingest labels.csv --model-dir outputs/.../model            # online: request ids
    python scripts/labels.py ingest truth.npy --model-dir M --volume f3 --grid f3.sgy   # a label volume
    python scripts/labels.py evaluate --model-dir M --volume f3 --classes f3.classes.sgy

``ingest`` validates the rows against the model's classes and the inference log (online ids) or the grid
(survey coordinates) and appends the good ones to ``--labels-dir`` (``data/labels``, where the monitor reads
them: ``quality.labels_dir``); rejected rows are kept under ``rejected/`` with the reason. ``evaluate`` gives
realised accuracy, macro-F1 and per-class recall of a class volume written by ``scripts/predict.py``.
Prints JSON. Exit status: 0 done, 1 some rows were rejected (listed in the JSON), 2 error (one line).
Library: :mod:`seismic.monitoring.quality.labels`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seismic.io.errors import SeismicIOError
from seismic.monitoring.quality.labels import LabelError, evaluate_volume, ingest_labels


def class_names(model_dir: str) -> list[str]:
    path = Path(model_dir) / "metadata.json"
    try:
        return list(json.loads(path.read_text())["class_names"])
    except (OSError, ValueError, KeyError) as err:
        raise LabelError(
            f"--model-dir {model_dir}: cannot read the model's class names from {path}: {err}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="append validated labels to the label table")
    ingest.add_argument("source", help=".csv, .parquet, .npy or .sgy/.segy")
    ingest.add_argument("--log-dir", default="data/inference_log", help="online ids are checked against it")
    ingest.add_argument("--no-log-check", action="store_true", help="store online ids without checking them")
    ingest.add_argument("--volume", help="name of the scored cube that survey labels belong to")
    ingest.add_argument("--grid", help="the scored SEG-Y: checks coordinates, numbers a .npy volume's axes")
    evaluate = sub.add_parser("evaluate", help="realised metrics of a batch-scored class volume")
    evaluate.add_argument("--volume", required=True)
    evaluate.add_argument("--classes", required=True, help="the class volume scripts/predict.py wrote")
    for p in (ingest, evaluate):
        p.add_argument("--model-dir", required=True, help="the model folder (its class names)")
        p.add_argument("--labels-dir", default="data/labels")
    args = parser.parse_args(argv)
    try:
        names = class_names(args.model_dir)
        if args.command == "evaluate":
            print(json.dumps(evaluate_volume(args.labels_dir, args.volume, args.classes, names), indent=2))
            return 0
        result = ingest_labels(
            args.source,
            args.labels_dir,
            class_names=names,
            log_dir=None if args.no_log_check else args.log_dir,
            volume=args.volume,
            grid=args.grid,
        )
    except (LabelError, SeismicIOError, OSError) as err:
        print(f"labels failed: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2, default=str))
    return 1 if result.rejected else 0


if __name__ == "__main__":
    sys.exit(main())
