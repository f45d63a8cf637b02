"""Held-out accuracy of the default experiments against a classical baseline.

    python benchmarks/accuracy.py [--experiments cnn1d_default cnn2d_default] [--holdout-seed 12345]
                                  [--holdout-inlines 128] [--windows 20000] [--baseline-windows 30000]
                                  [--skip-baselines] [--grid] [--json PATH] [extra Hydra overrides ...]

Each experiment is trained exactly as ``python scripts/train.py experiment=<name>`` would (same configs, same
pipeline; the MLflow logger is off so the benchmark leaves no runs behind). The best checkpoint is then
evaluated on a survey generated from ``--holdout-seed`` (a seed no training run uses: every geology draw —
unit order and thickness, bodies, folds, faults, noise — differs) with the training survey's normalisation,
which travels in the checkpoint. Evaluation windows are drawn uniformly over the whole held-out survey, so
the score reflects its real class mix. The baseline is a logistic regression (and a gradient-boosting
classifier) on the handcrafted features of ``seismic.features`` of the same training windows (a uniform subset
of ``--baseline-windows``), evaluated on the same held-out windows. The publish step (export, registry) is
off. Prints a table and writes JSON.

Every model, window classifiers and segmentation nets alike (``--experiments unet2d_default``), is also scored
densely on the same samples: every sample of the held-out survey's test inline block (the configured
split's ``test`` block, contacts included), with the F3 facies benchmark's PA, MCA, mIoU and FWIU
(``seismic.tasks.dense_scores``). A classifier labels each sample by its own window; a segmentation net each
inline section by blended tiles (``seismic.pipeline.train.predict_section_dense``, as batch scoring does).
Segmentation nets' window scores read their dense labels at the window centres.

``--grid`` also scores each CNN on the held-out survey imaged with other acquisitions, one parameter at a time
(wavelet peak frequency, phase, signal-to-noise ratio, amplitude gain; :data:`GRID`): the same geology and the
same window centres (the generator's geology does not depend on the acquisition), so only the acquisition
differs. Each point says whether it lies inside the ranges the experiment trained over (``data.acquisition``,
``data.augment``; the nominal value alone when there are none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from latency_targets import cpu_model
from omegaconf import OmegaConf, open_dict
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import seismic.config  # noqa: F401
from seismic.data.datamodule import SeismicDataModule
from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import Normalisation, SplitSpec, WindowSpec, extract_windows, sample_centres
from seismic.features import window_features
from seismic.inference.tiling import blend_sections
from seismic.pipeline.precision import cpu_has_native_bf16
from seismic.pipeline.train import train
from seismic.tasks import FaciesClassificationTask, FaciesSegmentationTask, dense_scores, load_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_EXPERIMENTS = ["cnn1d_default", "cnn2d_default"]
# Acquisition grid of --grid: one parameter moved at a time from the held-out survey's nominal values.
GRID = {
    "wavelet_peak_hz": (12.0, 15.0, 20.0, 25.0, 40.0, 50.0, 60.0),
    "wavelet_phase_deg": (-90.0, -45.0, 45.0, 90.0, 180.0),
    "snr_db": (0.0, 5.0, 20.0),
    "gain": (0.25, 0.5, 2.0, 4.0),
}


def compose_experiment(name: str, root: Path, extra: list[str]):
    os.environ["SEISMIC_ROOT"] = str(root)
    overrides = [f"experiment={name}", "logger=none", "publish.enabled=false"]
    overrides += [f"paths.output_dir={root}/{name}", *extra]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
    return cfg


def holdout_survey(cfg, seed: int, n_inlines: int | None = None):
    """The held-out survey: the recipe's survey options with another seed (and ``n_inlines`` when given, so
    that recipes trained on surveys of other sizes are scored on the same held-out survey)."""
    options = OmegaConf.to_container(cfg.data.survey, resolve=True)
    options.update({"n_inlines": n_inlines} if n_inlines else {})
    trained_on = options.pop("seed")
    if seed in (trained_on if isinstance(trained_on, list) else [trained_on]):
        raise SystemExit(f"--holdout-seed {seed} is a training survey's seed; choose another")
    return generate_survey(SyntheticSurveyConfig.from_mapping({**options, "seed": seed}))


def holdout_centres(survey, n: int, spec: WindowSpec, seed: int) -> tuple[np.ndarray, ...]:
    """Uniform window centres over the whole held-out survey (the same for every model of a window spec)."""
    return sample_centres(survey.labels, n, spec, balance=False, seed=seed)


@torch.no_grad()
def predict_dense(task: FaciesSegmentationTask, survey, inlines: range, norm: Normalisation) -> np.ndarray:
    """Classes of every sample of ``inlines`` by a segmentation net: blended tiles per section."""
    net = task.net.eval()
    spec = WindowSpec.from_mapping(task.hparams.window)

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = net(torch.from_numpy(tiles))
        return torch.softmax(logits.float(), dim=1).numpy(), embedding.float().numpy()

    out = np.empty((len(inlines), *survey.shape[1:]), dtype=np.int64)
    for row, il in enumerate(inlines):
        section = np.asarray(survey.amplitudes[il], dtype=np.float32)
        sections, tile = (
            (section, (spec.length,)) if spec.width == 1 else (section[None], (spec.width, spec.length))
        )
        probabilities = blend_sections(
            sections, run, tile, num_classes=len(task.class_names), batch_size=32, normalise=norm.apply
        )
        out[row] = probabilities.argmax(axis=1).reshape(survey.shape[1:])
    return out


def predict_block_by_windows(
    task: FaciesClassificationTask, survey, inlines: range, norm: Normalisation, batch: int = 4096
) -> np.ndarray:
    """Classes of every sample of ``inlines`` by a window classifier: one window per sample."""
    spec = WindowSpec.from_mapping(task.hparams.window)
    shape = (len(inlines), *survey.shape[1:])
    il, xl, t = (a.ravel() for a in np.indices(shape))
    il = il + inlines.start
    out = np.empty(il.size, dtype=np.int64)
    for s in range(0, il.size, batch):
        sl = slice(s, s + batch)
        out[sl] = predict(task, norm.apply(extract_windows(survey.amplitudes, il[sl], xl[sl], t[sl], spec)))
    return out.reshape(shape)


def dense_block_scores(predicted: np.ndarray, truth: np.ndarray, class_names: list[str]) -> dict:
    c = len(class_names)
    cm = np.bincount(truth.ravel() * c + predicted.ravel(), minlength=c * c).reshape(c, c)
    values = dense_scores(cm, class_names)
    return {k: round(values[k], 4) for k in ("pa", "mca", "miou", "fwiu", "macro_f1")} | {
        "samples": int(truth.size)
    }


_GRID_SURVEYS: dict[SyntheticSurveyConfig, object] = {}


def trained_ranges(cfg) -> dict[str, tuple[float, float]]:
    """The acquisition range each grid parameter was trained over: the recipe's ranges, else its value."""
    survey = OmegaConf.to_container(cfg.data.survey, resolve=True)
    acquisition = OmegaConf.to_container(cfg.data.acquisition, resolve=True)
    augment = OmegaConf.to_container(cfg.data.augment, resolve=True)
    defaults = SyntheticSurveyConfig.from_mapping({k: v for k, v in survey.items() if k != "seed"})
    out = {}
    for name in ("wavelet_peak_hz", "wavelet_phase_deg", "snr_db"):
        nominal = getattr(defaults, name)
        low, high = acquisition.get(name) or (nominal, nominal)
        if augment.get(name):  # re-imaged on the fly (data.augment), around the surveys' own values
            low, high = min(low, augment[name][0]), max(high, augment[name][1])
        out[name] = (low, high)
    out["gain"] = tuple(augment.get("gain") or (1.0, 1.0))
    return out


def acquisition_grid(cfg, task, norm: Normalisation, spec: WindowSpec, args) -> list[dict]:
    """Held-out macro-F1 at every point of :data:`GRID` (same geology and windows, another acquisition)."""
    options = OmegaConf.to_container(cfg.data.survey, resolve=True)
    options.pop("seed")
    options.update({"n_inlines": args.holdout_inlines} if args.holdout_inlines else {})
    ranges = trained_ranges(cfg)
    rows = []
    for name, values in GRID.items():
        for value in values:
            imaged = {**options, "seed": args.holdout_seed}
            if name != "gain":
                imaged[name] = value
            config = SyntheticSurveyConfig.from_mapping(imaged)
            if config not in _GRID_SURVEYS:  # the experiments of one run score the same surveys
                _GRID_SURVEYS[config] = generate_survey(config)
            survey = _GRID_SURVEYS[config]
            seed = args.holdout_seed
            il, xl, t = sample_centres(survey.labels, args.windows, spec, balance=False, seed=seed)
            gain = np.float32(value if name == "gain" else 1.0)
            x = extract_windows(survey.amplitudes, il, xl, t, spec) * gain
            y = survey.labels[il, xl, t]
            low, high = ranges[name]
            rows.append(
                {
                    "parameter": name,
                    "value": value,
                    "inside_training_range": bool(low <= value <= high),
                    "macro_f1": scores(y, predict(task, norm.apply(x)), list(task.hparams.class_names))[
                        "macro_f1"
                    ],
                }
            )
            print(f"  {name}={value:g}: macro-F1 {rows[-1]['macro_f1']:.4f}", flush=True)
    return rows


@torch.no_grad()
def predict(task: FaciesClassificationTask, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Class at each window's centre; a segmentation net's dense logits are read at the centre sample (one
    tile per window, no blending: the acquisition grid's quick look, not the test-inline score)."""
    net = task.net.eval()
    step = 32 if isinstance(task, FaciesSegmentationTask) else batch  # a tile is thousands of samples
    out = []
    for s in range(0, len(windows), step):
        logits = net(torch.from_numpy(windows[s : s + step]))[0]
        if logits.dim() > 2:
            logits = logits[(slice(None), slice(None), *(n // 2 for n in logits.shape[2:]))]
        out.append(logits.argmax(1).numpy())
    return np.concatenate(out)


def training_windows(dm: SeismicDataModule, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The CNN's training windows, a uniform subset of ``cap`` when there are more (feature extraction and
    gradient boosting on 100k+ windows would dominate the benchmark's run time)."""
    ds = dm.datasets["train"]
    idx = np.arange(len(ds))
    if len(idx) > cap:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=cap, replace=False))
    return ds.raw(idx)


def scores(y: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict:
    per_class = f1_score(y, pred, average=None, labels=range(len(class_names)), zero_division=0)
    return {
        "macro_f1": round(float(f1_score(y, pred, average="macro", labels=range(len(class_names)))), 4),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "f1_per_class": {c: round(float(v), 3) for c, v in zip(class_names, per_class, strict=True)},
    }


def run_experiment(name: str, root: Path, args) -> list[dict]:
    cfg = compose_experiment(name, root, args.overrides)
    started = time.perf_counter()
    metrics = train(cfg)
    minutes = (time.perf_counter() - started) / 60
    # save_top_k=1: the one epoch* checkpoint is the best by the recipe's monitor (val/miou for segmentation)
    (best,) = sorted((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch*.ckpt"))[-1:]
    task = load_task(best, map_location="cpu")
    spec = WindowSpec.from_mapping(task.hparams.window)
    norm = Normalisation.from_mapping(task.hparams.normalisation)
    survey = holdout_survey(cfg, args.holdout_seed, args.holdout_inlines)
    dt_ms = survey.dt_ms
    il, xl, t = holdout_centres(survey, args.windows, spec, args.holdout_seed)
    x_hold, y_hold = extract_windows(survey.amplitudes, il, xl, t, spec), survey.labels[il, xl, t]
    class_names = list(task.hparams.class_names)
    lo, hi = SplitSpec.from_mapping(OmegaConf.to_container(cfg.data.split, resolve=True)).blocks(
        survey.shape[0]
    )["test"]
    started = time.perf_counter()
    if isinstance(task, FaciesSegmentationTask):
        everything = predict_dense(task, survey, range(survey.shape[0]), norm)
        window_pred, block_pred = everything[il, xl, t], everything[lo:hi]
    else:
        window_pred = predict(task, norm.apply(x_hold))
        block_pred = predict_block_by_windows(task, survey, range(lo, hi), norm)
    rows = [
        {
            "experiment": name,
            "model": cfg.model.name,
            "task": "segmentation" if isinstance(task, FaciesSegmentationTask) else "classification",
            "window": list(spec.sample_shape),
            "train_minutes": round(minutes, 2),
            "val_macro_f1": round(
                metrics.get("val/macro_f1_best", metrics.get("val/macro_f1", float("nan"))), 4
            ),
            "holdout": scores(y_hold, window_pred, class_names),
            "holdout_test_inlines": {
                "inlines": [int(lo), int(hi)],
                **dense_block_scores(block_pred, np.asarray(survey.labels[lo:hi]), class_names),
                "predict_seconds": round(time.perf_counter() - started, 1),
            },
        }
    ]
    if args.grid:
        rows[0]["trained_ranges"] = trained_ranges(cfg)
        rows[0]["acquisition_grid"] = acquisition_grid(cfg, task, norm, spec, args)
    if args.skip_baselines:
        return rows
    dm = SeismicDataModule(**OmegaConf.to_container(cfg.data, resolve=True))
    dm.prepare_data()
    dm.setup("fit")
    x_train, y_train = training_windows(dm, args.baseline_windows)
    f_train = window_features(norm.apply(x_train), dt_ms)
    f_hold = window_features(norm.apply(x_hold), dt_ms)
    for label, clf in (
        ("logistic regression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        ("gradient boosting", HistGradientBoostingClassifier(random_state=0)),
    ):
        started = time.perf_counter()
        clf.fit(f_train, y_train)
        rows.append(
            {
                "experiment": f"baseline: {label} on features",
                "model": label,
                "window": list(spec.sample_shape),
                "train_minutes": round((time.perf_counter() - started) / 60, 2),
                "val_macro_f1": None,
                "holdout": scores(y_hold, clf.predict(f_hold), class_names),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=DEFAULT_EXPERIMENTS)
    parser.add_argument("--holdout-seed", type=int, default=12345)
    parser.add_argument(
        "--holdout-inlines",
        type=int,
        default=128,
        help="inlines of the held-out survey: the same survey for every recipe, whatever it trained on",
    )
    parser.add_argument("--windows", type=int, default=20000)
    parser.add_argument("--baseline-windows", type=int, default=30000, help="training windows of baselines")
    parser.add_argument("--skip-baselines", action="store_true", help="CNNs only (for quick comparisons)")
    parser.add_argument("--grid", action="store_true", help="also score over the acquisition grid (GRID)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/accuracy.json"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every experiment")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="seismic-bench-acc-") as tmp:
        rows = [row for name in args.experiments for row in run_experiment(name, Path(tmp), args)]
    print(f"\nheld-out survey: seed {args.holdout_seed}, {args.windows} uniform windows")
    header = ("experiment", "window", "train min", "val F1", "holdout F1", "holdout acc")
    print(f"{header[0]:44} {header[1]:14} {header[2]:>9} {header[3]:>7} {header[4]:>10} {header[5]:>11}")
    for r in rows:
        val = f"{r['val_macro_f1']:.4f}" if r["val_macro_f1"] is not None else "-"
        print(
            f"{r['experiment']:44} {r['window']!s:14} {r['train_minutes']:9.2f} {val:>7} "
            f"{r['holdout']['macro_f1']:10.4f} {r['holdout']['accuracy']:11.4f}"
        )
    dense = [r for r in rows if "holdout_test_inlines" in r]
    if dense:
        block = dense[0]["holdout_test_inlines"]
        print(
            f"\nevery sample of the held-out survey's test inlines {block['inlines']} "
            f"({block['samples']} samples)"
        )
        print(f"{'experiment':44} {'PA':>7} {'MCA':>7} {'mIoU':>7} {'FWIU':>7} {'macro F1':>9}")
        for r in dense:
            d = r["holdout_test_inlines"]
            print(
                f"{r['experiment']:44} {d['pa']:7.4f} {d['mca']:7.4f} {d['miou']:7.4f} {d['fwiu']:7.4f} "
                f"{d['macro_f1']:9.4f}"
            )
    for r in rows:
        if "acquisition_grid" in r:
            print(f"\n{r['experiment']}: held-out macro-F1 by acquisition (*: inside training ranges)")
            for name in GRID:
                cells = [g for g in r["acquisition_grid"] if g["parameter"] == name]
                line = "  ".join(
                    f"{g['value']:g}{'*' if g['inside_training_range'] else ''}={g['macro_f1']:.3f}"
                    for g in cells
                )
                print(f"  {name:18} {line}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "holdout_seed": args.holdout_seed,
        "holdout_inlines": args.holdout_inlines,
        "windows": args.windows,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv[1:],
        "rows": rows,
    }
    args.json.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    import record

    # one record per run: named after --json when given (runs of one recipe with other overrides differ)
    picked = argparse.ArgumentParser(add_help=False)
    picked.add_argument("--experiments", nargs="+", default=DEFAULT_EXPERIMENTS)
    picked.add_argument("--json", type=Path)
    known = picked.parse_known_args()[0]
    name = known.json.stem.replace("_", "-") if known.json else "accuracy-" + "-".join(known.experiments)
    record.run(main, name, title="Held-out accuracy: " + " ".join(sys.argv[1:]))
