"""A held-out inline, true facies against what an exported model predicts: the picture in the README.

    python scripts/section_figure.py MODEL SURVEY.sgy [--output docs/images/heldout_section.png] [--inline N]

MODEL is a model folder or a ``models:/NAME@ALIAS`` URI (``make run`` leaves
``models:/seismic-facies@champion`` in ./mlflow.db); SURVEY.sgy needs its ``.labels.npy`` beside it
(``scripts/make_survey.py`` writes one). The inline is the middle of the test block of the model's own split
(its metadata), which training never read, unless ``--inline`` names a position. Every sample of it is
classified through onnxruntime exactly as batch scoring would (:func:`serving.batch.score_chunk`: the model's
window and normalisation, blended tiles for a segmentation net), so the figure shows the exported model, not
the checkpoint. Prints the pixel accuracy and where the PNG went; exit
status 2 with one line on stderr when the model, the survey or its labels cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or models:/NAME@ALIAS")
    parser.add_argument("survey", type=Path, help="a SEG-Y cube with <name>.labels.npy beside it")
    parser.add_argument("--output", type=Path, default=Path("docs/images/heldout_section.png"))
    parser.add_argument("--inline", type=int, default=None, help="inline position (default: held-out middle)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        help="for models:/ URIs (default: $MLFLOW_TRACKING_URI, else ./mlflow.db as make run writes it)",
    )
    args = parser.parse_args(argv)

    from seismic.data.windows import SplitSpec
    from seismic.io.errors import SeismicIOError
    from seismic.io.segy import read_cube
    from seismic.pipeline.plots import section_figure
    from serving.batch import score_chunk
    from serving.runtime import ModelLoadError, load_model

    try:
        model = load_model(args.model, providers=["CPUExecutionProvider"], tracking_uri=args.tracking_uri)
        volume, dt_ms, inlines, _ = read_cube(args.survey)
        labels_path = args.survey.with_suffix(".labels.npy")
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path}: no label volume beside {args.survey}")
        labels = np.load(labels_path, mmap_mode="r")
        if labels.shape != volume.shape:
            raise ValueError(f"{labels_path}: shape {labels.shape} is not the survey's {volume.shape}")
    except (ModelLoadError, SeismicIOError, OSError, ValueError) as err:
        print(f"section_figure failed: {err}", file=sys.stderr)
        return 2
    meta = model.metadata
    split = SplitSpec.from_mapping(meta["split"]) if meta.get("split") else SplitSpec()
    lo, hi = split.blocks(volume.shape[0])["test"]
    position = (lo + hi) // 2 if args.inline is None else args.inline
    if not 0 <= position < volume.shape[0]:
        print(
            f"section_figure failed: --inline {position} is outside 0..{volume.shape[0] - 1}", file=sys.stderr
        )
        return 2
    if args.inline is None:  # windows read only the test block, as in training's own section figure
        block, local = volume[lo:hi], position - lo
    else:
        block, local = volume, position
    # as batch scoring labels a cube: a window per sample for a window classifier, blended tiles for a
    # segmentation net (whose tiles along crosslines span inlines: the block's, never the training blocks')
    classes, _ = score_chunk(
        model, np.asarray(block, dtype=np.float32), local, local + 1, batch_size=args.batch
    )
    predicted = classes[0].astype(np.int64)
    true = np.asarray(labels[position])
    title = (
        f"{model.name} v{model.version} ({meta.get('architecture', '?')}): inline {int(inlines[position])}"
        f" of {args.survey.name}, {'held out' if args.inline is None else 'chosen'}"
    )
    fig = section_figure(volume[position], true, predicted, model.class_names, dt_ms, title)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=80)
    accuracy = float(np.mean(true == predicted))
    print(f"inline {int(inlines[position])}: pixel accuracy {accuracy:.3f}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
