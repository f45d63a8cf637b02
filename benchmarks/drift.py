"""Detection benchmark of the drift engine: false alarms without shift, power per shift, run times.

    python benchmarks/drift.py            # recorded: 50 no-shift windows, 20 per shift
    python benchmarks/drift.py --quick    # smoke run (few windows, 100 permutations)
    python benchmarks/drift.py --field same   # reference and current windows from the same surveys
    python benchmarks/drift.py --checkpoint outputs/train/runs/<run>/checkpoints/last.ckpt

Model: a small cnn1d trained on surveys 1000-1002 with a plain loop, cached in
``benchmarks/results/drift_model.pt`` (delete it to retrain), or a Lightning checkpoint (its window length
and normalisation come from the checkpoint). Reference: uniform windows (each survey's own facies mix) of
``--ref-surveys`` other survey seeds, as a multi-survey reference profile holds them, calibrated with
chunks = inline halves of those surveys (the unit a current window is cut from). Current windows of
``--window`` rows are cut from the two inline halves of NEW survey seeds (same geology, every geology
draw new): no shift, or one shift applied to the whole survey before cutting (noise x2, peak frequency
-25 %, gain x1.3, polarity flip, 90-degree phase rotation, 10 % dead traces) or a facies mix change
(one facies, ``MIX_FACIES``, drawn 3x, or 8x, as often). ``--field same`` is what a model deployed on its own
field sees: the reference comes from the first inline half of the current surveys and every current window
from their second half. Raw features, predictions and
embeddings of each window go through ``seismic.monitoring.drift.detector.compare``; the table gives the share
of windows flagged per family. Then each test's run time at 1k/5k/10k rows per side, and any installed
peer side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
import scipy.stats
import torch
from drift_timing import PEER_ROWS, peers, timings

from seismic.data.synthetic import GENERATOR_VERSION, SyntheticSurveyConfig, generate_survey, ricker
from seismic.data.windows import Normalisation, WindowSpec, extract_windows, fit_normalisation, sample_centres
from seismic.features import FEATURE_NAMES, window_features
from seismic.models.registry import build_model
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline

ROOT = Path(__file__).resolve().parents[1]
GEOLOGY = {"n_inlines": 64, "n_crosslines": 48, "n_samples": 640}  # default geology, smaller lateral extent
SHIFTS = (
    "noise_x2",
    "freq_-25%",
    "gain_x1.3",
    "polarity",
    "phase_90",
    "dead_10%",
    "facies_mix",
    "facies_mix_x8",
)
MIX_WEIGHTS = {"facies_mix": 3.0, "facies_mix_x8": 8.0}  # MIX_FACIES drawn this many times as often
MIX_FACIES = 3  # thin_bedded: a shift that matters (a share of ~1/6 tripled), not chosen for detectability
MODEL_CACHE = ROOT / "benchmarks/results/drift_model.pt"
FAMILIES = ("raw", "polarity", "predictions", "embedding", "mmd", "classifier", "combined")


def survey(seed: int, n_inlines: int | None = None):
    return generate_survey(
        SyntheticSurveyConfig(**{**GEOLOGY, "n_inlines": n_inlines or GEOLOGY["n_inlines"], "seed": seed})
    )


def train_model(args, spec: WindowSpec):
    """A cnn1d fitted for a few epochs with a plain loop (the benchmark needs an embedding, not a record)."""
    surveys = [survey(seed) for seed in (1000, 1001, 1002)]
    norm = fit_normalisation(surveys[0].amplitudes, seed=0)
    xs, ys = [], []
    for k, s in enumerate(surveys):
        il, xl, t = sample_centres(s.labels, args.train_windows // 3, spec, balance=True, seed=k)
        xs.append(norm.apply(extract_windows(s.amplitudes, il, xl, t, spec)))
        ys.append(s.labels[il, xl, t].astype(np.int64))
    x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
    torch.manual_seed(0)
    net = build_model("cnn1d", num_classes=6)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    net.train()
    for _ in range(args.epochs):
        for batch in torch.randperm(len(x)).split(256):
            loss = torch.nn.functional.cross_entropy(net(x[batch])[0], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), norm


def cached_model(args, spec: WindowSpec):
    """The cached model when it was trained with this spec, size and generator, else train and cache it."""
    key = {
        "spec": spec.to_dict(),
        "train_windows": args.train_windows,
        "epochs": args.epochs,
        "generator_version": GENERATOR_VERSION,  # surveys of another generator are other data
    }
    if MODEL_CACHE.exists():
        saved = torch.load(MODEL_CACHE, map_location="cpu", weights_only=True)
        if saved["key"] == json.dumps(key, sort_keys=True):
            net = build_model("cnn1d", num_classes=6)
            net.load_state_dict(saved["state"])
            return net.eval(), Normalisation.from_mapping(json.loads(saved["norm"])), "cached"
    net, norm = train_model(args, spec)
    MODEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "key": json.dumps(key, sort_keys=True),
        "state": net.state_dict(),
        "norm": json.dumps(norm.to_dict()),
    }
    torch.save(state, MODEL_CACHE)
    return net, norm, "trained"


def load_model(path: str):
    from seismic.tasks.classification import FaciesClassificationTask

    task = FaciesClassificationTask.load_from_checkpoint(path, map_location="cpu")
    hp = task.hparams
    spec = WindowSpec.from_mapping(hp.get("window") or {})
    if spec.width != 1:
        raise SystemExit("benchmarks/drift.py measures the 1D pipeline; give a cnn1d checkpoint")
    return task.net.eval(), Normalisation.from_mapping(hp["normalisation"]), spec


@torch.no_grad()
def describe(net, norm: Normalisation, raw: np.ndarray, dt_ms: float) -> dict[str, np.ndarray]:
    """Features of the raw windows (what serving logs) and the model's predictions and embeddings."""
    logits, emb = zip(
        *(net(torch.from_numpy(norm.apply(b))) for b in np.array_split(raw, max(1, len(raw) // 2048))),
        strict=True,
    )
    return {
        "features": window_features(raw, dt_ms),
        "predictions": torch.cat(logits).argmax(1).numpy(),
        "embeddings": torch.cat(emb).numpy(),
    }


def shift_volume(amplitudes: np.ndarray, shift: str, dt_ms: float, snr_db: float, rng) -> np.ndarray:
    """The survey as a shifted acquisition/processing would record it (float32, whole traces)."""
    a = amplitudes.astype(np.float32, copy=True)
    if shift == "noise_x2":  # independent noise of sqrt(3) x the old noise RMS: total noise RMS doubles
        noise = scipy.signal.fftconvolve(
            rng.standard_normal(a.shape), ricker(30.0, dt_ms)[None, None], mode="same", axes=2
        )
        noise *= math.sqrt(3.0) * 10.0 ** (-snr_db / 20.0) / noise.std()
        return a + noise.astype(np.float32)
    if shift == "freq_-25%":  # Ricker(22.5 Hz) / Ricker(30 Hz) spectral ratio: bounded (<= 2.37), exact for
        f = np.fft.rfftfreq(a.shape[2], dt_ms / 1000.0)  # signal and noise alike; RMS kept
        ratio = (30.0 / 22.5) ** 3 * np.exp(-(f**2) * (1 / 22.5**2 - 1 / 30.0**2))
        out = scipy.fft.irfft(scipy.fft.rfft(a, axis=2) * ratio, n=a.shape[2], axis=2)
        return (out * (a.std() / out.std())).astype(np.float32)
    if shift == "gain_x1.3":
        return a * np.float32(1.3)
    if shift == "polarity":
        return -a
    if shift == "phase_90":  # x cos(phi) - H[x] sin(phi) on whole traces, phi = 90 degrees
        return (-np.imag(scipy.signal.hilbert(a, axis=2))).astype(np.float32)
    if shift == "dead_10%":
        dead = rng.random(a.shape[:2]) < 0.10
        a[dead] = 0.0
        return a
    raise ValueError(shift)


def cut(s, spec: WindowSpec, half: int, n: int, seed: int, mix: float = 1.0):
    """``n`` windows from inline half ``half`` of a survey: uniform, or MIX_FACIES ``mix`` times as likely."""
    lo, hi = (0, s.shape[0] // 2) if half == 0 else (s.shape[0] // 2, s.shape[0])
    labels = s.labels[lo:hi]
    if mix == 1.0:
        il, xl, t = sample_centres(labels, n, spec, balance=False, seed=seed)
    else:
        il, xl, t = sample_centres(labels, 10 * n, spec, balance=False, seed=seed)
        w = np.where(labels[il, xl, t] == MIX_FACIES, mix, 1.0)
        pick = np.random.default_rng(seed).choice(len(w), n, replace=False, p=w / w.sum())
        il, xl, t = il[pick], xl[pick], t[pick]
    return il + lo, xl, t


def reference(
    args, net, norm, spec: WindowSpec, current_seeds: list[int]
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Uniform windows and their calibration group (the chunk a current window is cut from): in a new field,
    ``--ref-surveys`` other survey seeds (2000, 2001, ...) grouped by survey x inline half; in the same field,
    the first inline half of the current surveys, grouped by survey."""
    same = args.field == "same"
    seeds = current_seeds if same else [2000 + k for k in range(args.ref_surveys)]
    halves = (0,) if same else (0, 1)
    parts, groups = [], []
    per_chunk = args.reference // (len(halves) * len(seeds))
    for k, seed in enumerate(seeds):
        s = survey(seed)
        for half in halves:
            centres = cut(s, spec, half, per_chunk, k)
            parts.append(describe(net, norm, extract_windows(s.amplitudes, *centres, spec), s.dt_ms))
            groups.append(np.full(per_chunk, len(halves) * k + half))
    ref = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return ref, np.concatenate(groups), s.dt_ms


def flags(result) -> dict[str, bool]:
    e = result.embedding
    return {
        "raw": result.raw_drifted,
        "polarity": result.polarity is not None and result.polarity.drifted,
        "predictions": result.predictions.drifted,
        "embedding": e.drifted,
        "mmd": e.mmd.drifted,
        "classifier": e.classifier.drifted,
        "combined": result.drifted,
    }


def polarity_spread(baseline, scores: dict[str, list[float]]) -> dict[str, list[float]]:
    """Min / median / max of the polarity score per shift, and of the reference chunks' own scores."""
    out = {"reference_chunks": list(baseline.polarity.null) if baseline.polarity else [], **scores}
    return {k: [round(float(q), 2) for q in np.quantile(v, [0, 0.5, 1])] if v else [] for k, v in out.items()}


def mix_oracle(shares: dict[str, list[float]], shift: str, false_alarm: float) -> dict[str, float]:
    """The best any detector could do on a facies-mix shift: a threshold on each window's true share of
    MIX_FACIES (from the labels), set so that the no-shift windows alarm at ``false_alarm`` (the detector's
    measured rate; at least one window's worth), which makes the two powers comparable."""
    null, shifted = np.asarray(shares["no_shift"]), np.asarray(shares[shift])
    level = 1.0 - max(false_alarm, 1.0 / len(null))
    threshold = float(np.quantile(null, level, method="higher"))
    return {
        "threshold": threshold,
        "false_alarm": float(np.mean(null > threshold)),
        "power": float(np.mean(shifted > threshold)),
        "no_shift_share": [float(np.min(null)), float(np.median(null)), float(np.max(null))],
        "shifted_share": [float(np.min(shifted)), float(np.median(shifted)), float(np.max(shifted))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, few permutations")
    parser.add_argument("--checkpoint", help="a cnn1d Lightning checkpoint instead of the quick training")
    parser.add_argument("--config", default=str(ROOT / "configs/drift/default.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/drift.json"))
    parser.add_argument("--window", type=int, default=2000, help="rows per current window")
    parser.add_argument("--reference", type=int, default=12000, help="reference rows")
    parser.add_argument("--ref-surveys", type=int, default=8, help="survey seeds in the reference")
    parser.add_argument(
        "--mix-weight",
        type=float,
        default=3.0,
        help="facies mix shift: MIX_FACIES drawn this many times as often",
    )
    parser.add_argument(
        "--field",
        choices=("new", "same"),
        default="new",
        help="new: reference from other surveys; same: reference from the current surveys' other inline half",
    )
    parser.add_argument("--noshift", type=int, help="no-shift windows (default 50; --quick 8)")
    parser.add_argument("--per-shift", type=int, help="windows per shift (default 20; --quick 2)")
    args = parser.parse_args()
    args.noshift = args.noshift or (8 if args.quick else 50)
    args.per_shift = args.per_shift or (2 if args.quick else 20)
    args.train_windows, args.epochs = 12000, 3  # the same model for --quick (cached)
    cfg = DriftConfig.from_yaml(args.config)
    if args.quick:
        cfg = DriftConfig.from_mapping(
            {**cfg.to_dict(), "embedding": {**cfg.to_dict()["embedding"], "mmd": {"permutations": 100}}}
        )
    torch.set_num_threads(2)
    started = time.perf_counter()

    if args.checkpoint:
        net, norm, spec = load_model(args.checkpoint)
        how = args.checkpoint
    else:
        spec = WindowSpec(length=64)
        net, norm, how = cached_model(args, spec)
    print(f"model ready: {how} ({time.perf_counter() - started:.0f} s)")

    n_surveys = max(math.ceil(args.noshift / 2), math.ceil(args.per_shift / 2))
    current_seeds = [3000 + k for k in range(n_surveys)]
    ref, groups, dt = reference(args, net, norm, spec, current_seeds)
    t0 = time.perf_counter()
    baseline = fit_baseline(cfg, feature_names=FEATURE_NAMES, n_classes=6, groups=groups, **ref)
    fit_s = time.perf_counter() - t0
    ref_surveys = n_surveys if args.field == "same" else args.ref_surveys
    print(f"reference: {len(groups)} rows of {ref_surveys} surveys; calibrated in {fit_s:.1f} s")

    counts = {s: dict.fromkeys(FAMILIES, 0) for s in ("no_shift", *SHIFTS)}
    runs = {s: 0 for s in counts}
    alarms: dict[str, dict[str, int]] = {s: {} for s in counts}  # windows in which each feature drifted
    compare_s, pool = [], []
    mix_share: dict[str, list[float]] = {s: [] for s in ("no_shift", *MIX_WEIGHTS)}  # true MIX_FACIES shares
    polarity_scores: dict[str, list[float]] = {s: [] for s in counts}
    for k, seed in enumerate(current_seeds):
        s = survey(seed)
        jobs = [("no_shift", None)] * (2 * k < args.noshift) + [(sh, sh) for sh in SHIFTS] * (
            2 * k < args.per_shift
        )
        for name, shift in jobs:
            rng = np.random.default_rng(10 * k + 7)
            amp = (
                s.amplitudes
                if shift is None or shift in MIX_WEIGHTS
                else shift_volume(s.amplitudes, shift, dt, 10.0, rng)
            )
            for draw in (0, 1):
                half = 1 if args.field == "same" else draw
                ci = cut(s, spec, half, args.window, seed=100 * k + draw, mix=MIX_WEIGHTS.get(shift, 1.0))
                cur = describe(net, norm, extract_windows(amp, *ci, spec), dt)
                if name in mix_share:
                    mix_share[name].append(float(np.mean(s.labels[ci] == MIX_FACIES)))
                if name == "no_shift":
                    pool.append(cur)
                t0 = time.perf_counter()
                result = compare(baseline, **cur, window={"id": f"{name}/{k}/{draw}"})
                compare_s.append(time.perf_counter() - t0)
                runs[name] += 1
                if result.polarity is not None:
                    polarity_scores[name].append(result.polarity.score)
                for fam, hit in flags(result).items():
                    counts[name][fam] += hit
                for f in result.features:
                    alarms[name][f.name] = alarms[name].get(f.name, 0) + f.drifted
        print(f"survey {k + 1}/{n_surveys} done ({time.perf_counter() - started:.0f} s)")

    rates = {s: {f: counts[s][f] / runs[s] for f in FAMILIES} for s in counts}
    print(
        f"\nfalse alarms: {runs['no_shift']} no-shift windows; power: {args.per_shift} windows per shift;"
        f" {args.window} rows per window, reference {len(groups)} rows of {ref_surveys} surveys"
        f" ({args.field} field)"
    )
    print(f"{'shift':<14}" + "".join(f"{f:>13}" for f in FAMILIES))
    for s in counts:
        print(f"{s:<14}" + "".join(f"{rates[s][f]:>13.2f}" for f in FAMILIES))

    print("features flagged in no-shift windows:", {k: v for k, v in alarms["no_shift"].items() if v})
    spread = polarity_spread(baseline, polarity_scores)
    print("polarity scores (min / median / max):", {k: v for k, v in spread.items() if v})
    combined_false_alarm = rates["no_shift"]["combined"]
    oracle = {shift: mix_oracle(mix_share, shift, combined_false_alarm) for shift in MIX_WEIGHTS}
    for shift, o in oracle.items():
        o["detector_power"] = rates[shift]["combined"]
        o["detector_over_oracle"] = o["detector_power"] / o["power"] if o["power"] else None
        ratio = "n/a" if o["detector_over_oracle"] is None else f"{o['detector_over_oracle']:.2f}"
        print(
            f"{shift}: oracle on the TRUE share of facies {MIX_FACIES} (labels, no model): threshold"
            f" {o['threshold']:.3f} -> false alarms {o['false_alarm']:.2f}, power {o['power']:.2f};"
            f" detector (combined) {o['detector_power']:.2f} = {ratio} of the oracle"
        )
    pooled = {k: np.concatenate([p[k] for p in pool]) for k in ("features", "predictions", "embeddings")}
    sizes = (1000, 5000) if args.quick else (1000, 5000, 10000)
    timing = timings(cfg, pooled, [n for n in sizes if 2 * n <= len(pooled["features"])])
    print(f"\n{'test':<26}{'rows/side':>10}{'seconds':>10}")
    for row in timing:
        print(f"{row['test']:<26}{row['rows_per_side']:>10}{row['seconds']:>10.3f}")
    print(f"\nMMD permutation tests side by side ({PEER_ROWS} vs {PEER_ROWS} no-shift embeddings, 64-dim):")
    peer_rows = peers(pooled)

    result = {
        "quick": args.quick,
        "checkpoint": args.checkpoint,
        "window_rows": args.window,
        "reference_rows": len(groups),
        "field": args.field,
        "generator_version": GENERATOR_VERSION,
        "reference_surveys": ref_surveys,
        "mix_facies": MIX_FACIES,
        "mix_weights": MIX_WEIGHTS,
        "runs": runs,
        "rates": rates,
        "facies_mix_oracle": oracle,
        "polarity_scores": spread,
        "feature_alarms": {s: {k: v for k, v in a.items() if v} for s, a in alarms.items()},
        "thresholds": baseline.summary()["thresholds"],
        "baseline_fit_seconds": round(fit_s, 2),
        "compare_seconds_median": round(float(np.median(compare_s)), 3),
        "timings": timing,
        "peers": peer_rows,
        "config": cfg.to_dict(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"\ncompare() median {result['compare_seconds_median']} s per window;"
        f" total {result['total_seconds']} s; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
