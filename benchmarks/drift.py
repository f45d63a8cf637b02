"""Detection benchmark of the drift engine: false alarms without shift, power per shift, run times.

    python benchmarks/drift.py            # recorded: 50 no-shift windows, 20 per shift
    python benchmarks/drift.py --quick    # smoke run (few windows, 100 permutations)
    python benchmarks/drift.py --field same   # reference and current windows from the same surveys
    python benchmarks/drift.py --model cnn2d  # another network watched: cnn1d (default), cnn2d, unet2d
    python benchmarks/drift.py --checkpoint outputs/train/runs/<run>/checkpoints/last.ckpt

Model: a small network trained on surveys 1000-1002 with a plain loop and cached (``drift_models.py``), or a
Lightning checkpoint (its window shape and normalisation come from the checkpoint). Reference: uniform
windows (each survey's own facies mix) of ``--ref-surveys`` other survey seeds, as a multi-survey reference
profile holds them, calibrated with chunks = inline halves of those surveys (the unit a current window is
cut from), each compared with the other surveys. Current windows of ``--window`` rows are cut from the two
inline halves of NEW survey seeds (same geology, every geology draw new): no shift, or one shift applied to
the whole survey before cutting (noise x2, peak frequency -25 %, gain x1.3, polarity flip, 90-degree phase
rotation, 10 % dead traces) or a facies mix change (one facies, ``MIX_FACIES``, drawn 3x, or 8x, as often).
``--field same`` is what a model deployed on its own field sees: the reference comes from the even blocks of
``BLOCK`` inlines of each current survey (a leak-free split trains on blocks) and every current window from
its odd blocks. Its calibration chunks are spread (``drift.calibration.chunking``), as its windows sample
the whole field. Raw features, predictions and embeddings of each window go through
``seismic.monitoring.drift.detector.compare``; the table gives the share of windows flagged per family. Then
each test's run time at 1k/5k/10k rows per side, and any installed peer side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
import torch
from drift_mix import MIX_FACIES, MIX_WEIGHTS, missed, mix_oracle, true_shares
from drift_models import MODELS, Watched, cached_model, load_checkpoint, survey
from drift_timing import PEER_ROWS, peers, timings

from seismic.data.synthetic import GENERATOR_VERSION, ricker
from seismic.data.windows import WindowSpec, sample_centres
from seismic.features import FEATURE_NAMES
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline

ROOT = Path(__file__).resolve().parents[1]
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
BLOCK = 4  # inlines: the same field's reference and current windows come from alternate blocks
FAMILIES = ("raw", "polarity", "predictions", "embedding", "mmd", "classifier", "combined")


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


def part_inlines(n_inlines: int, part: int | str) -> np.ndarray:
    """Inlines of a part of a survey: half 0 or 1, or the ``even`` / ``odd`` blocks of BLOCK inlines."""
    inlines = np.arange(n_inlines)
    if part in (0, 1):
        return inlines[: n_inlines // 2] if part == 0 else inlines[n_inlines // 2 :]
    return inlines[(inlines // BLOCK) % 2 == ("even", "odd").index(part)]


def cut(s, spec: WindowSpec, part: int | str, n: int, seed: int, mix: float = 1.0):
    """``n`` windows from a part of a survey (:func:`part_inlines`): uniform, or MIX_FACIES ``mix`` times as
    likely."""
    inlines = part_inlines(s.shape[0], part)
    labels = s.labels[inlines]
    if mix == 1.0:
        il, xl, t = sample_centres(labels, n, spec, balance=False, seed=seed)
    else:
        il, xl, t = sample_centres(labels, 10 * n, spec, balance=False, seed=seed)
        w = np.where(labels[il, xl, t] == MIX_FACIES, mix, 1.0)
        pick = np.random.default_rng(seed).choice(len(w), n, replace=False, p=w / w.sum())
        il, xl, t = il[pick], xl[pick], t[pick]
    return inlines[il], xl, t


def reference(
    args, model: Watched, seed: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, float, np.ndarray]:
    """Uniform windows, their calibration group (the chunk a current window is cut from), their survey seed
    and the true share of each facies. New field (``seed`` None): ``--ref-surveys`` other survey seeds from
    ``--ref-seed`` on, grouped by survey x inline half. Same field: the even blocks of BLOCK inlines of
    survey ``seed`` (what a leak-free split trains on), grouped by inline as a reference profile groups
    its rows."""
    parts, groups, seeds, shares = [], [], [], []
    if seed is None:
        chunks = [(args.ref_seed + k, half) for k in range(args.ref_surveys) for half in (0, 1)]
        per_chunk = args.reference // len(chunks)
        for g, (survey_seed, half) in enumerate(chunks):
            s = survey(survey_seed)
            centres = cut(s, model.spec, half, per_chunk, g // 2)
            parts.append(model.describe(s.amplitudes, centres, s.dt_ms))
            groups.append(np.full(per_chunk, g))
            seeds.append(np.full(per_chunk, survey_seed))
            shares.append(s.labels[centres])
    else:
        s = survey(seed)
        centres = cut(s, model.spec, "even", args.reference, seed)
        parts.append(model.describe(s.amplitudes, centres, s.dt_ms))
        groups.append(centres[0])
        seeds.append(np.full(args.reference, seed))
        shares.append(s.labels[centres])
    ref = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return ref, np.concatenate(groups), np.concatenate(seeds), s.dt_ms, true_shares(np.concatenate(shares))


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


def polarity_spread(baselines, scores: dict[str, list[float]]) -> dict[str, list[float]]:
    """Min / median / max of the polarity score per shift, and of the reference chunks' own scores."""
    null = [q for b in baselines if b.polarity for q in b.polarity.null]
    out = {"reference_chunks": null, **scores}
    return {k: [round(float(q), 2) for q in np.quantile(v, [0, 0.5, 1])] if v else [] for k, v in out.items()}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, few permutations")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="cnn1d", help="the network watched (drift_models.py)"
    )
    parser.add_argument("--checkpoint", help="a Lightning checkpoint instead of the quick training")
    parser.add_argument("--config", default=str(ROOT / "configs/drift/default.yaml"))
    parser.add_argument("--out", help="result JSON (default: benchmarks/results/<record name>.json)")
    parser.add_argument("--window", type=int, default=2000, help="rows per current window")
    parser.add_argument("--reference", type=int, default=12000, help="reference rows")
    parser.add_argument("--ref-surveys", type=int, default=8, help="survey seeds in the reference")
    parser.add_argument(
        "--field",
        choices=("new", "same"),
        default="new",
        help="new: reference from other surveys; same: from the current surveys' other inline blocks",
    )
    parser.add_argument(
        "--chunking",
        choices=("contiguous", "spread"),
        help="drift.calibration.chunking; default: spread for --field same, else the config's",
    )
    parser.add_argument("--ref-seed", type=int, default=2000, help="first reference survey seed (new field)")
    parser.add_argument("--current-seed", type=int, default=3000, help="first current survey seed")
    parser.add_argument("--noshift", type=int, help="no-shift windows (default 50; --quick 8)")
    parser.add_argument("--per-shift", type=int, help="windows per shift (default 20; --quick 2)")
    return parser


def main() -> None:
    args = arguments().parse_args()
    args.out = args.out or str(ROOT / f"benchmarks/results/{record_name(args)}.json")
    args.noshift = args.noshift or (8 if args.quick else 50)
    args.per_shift = args.per_shift or (2 if args.quick else 20)
    cfg = DriftConfig.from_yaml(args.config)
    chunking = args.chunking or ("spread" if args.field == "same" else cfg.calibration.chunking)
    cfg = DriftConfig.from_mapping(
        {**cfg.to_dict(), "calibration": {**cfg.to_dict()["calibration"], "chunking": chunking}}
    )
    if args.quick:
        cfg = DriftConfig.from_mapping(
            {**cfg.to_dict(), "embedding": {**cfg.to_dict()["embedding"], "mmd": {"permutations": 100}}}
        )
    torch.set_num_threads(2)
    started = time.perf_counter()

    if args.checkpoint:
        model, how = load_checkpoint(args.checkpoint), args.checkpoint
    else:
        model, how = cached_model(args.model)  # the same model for --quick (cached)
    print(f"model ready: {how} ({time.perf_counter() - started:.0f} s)")

    n_surveys = max(math.ceil(args.noshift / 2), math.ceil(args.per_shift / 2))
    current_seeds = [args.current_seed + k for k in range(n_surveys)]
    same = args.field == "same"
    fit_s: list[float] = []

    def fit(seed: int | None):
        ref, groups, surveys, dt, share = reference(args, model, seed)
        t0 = time.perf_counter()
        baseline = fit_baseline(
            cfg, feature_names=FEATURE_NAMES, n_classes=6, groups=groups, surveys=surveys, **ref
        )
        fit_s.append(time.perf_counter() - t0)
        return baseline, dt, share, len(groups)

    if not same:
        baseline, dt, ref_share, ref_rows = fit(None)
        print(f"reference: {ref_rows} rows of {args.ref_surveys} surveys; calibrated in {fit_s[0]:.1f} s")
    baselines = []

    counts = {s: dict.fromkeys(FAMILIES, 0) for s in ("no_shift", *SHIFTS)}
    runs = {s: 0 for s in counts}
    alarms: dict[str, dict[str, int]] = {s: {} for s in counts}  # windows in which each feature drifted
    compare_s, pool = [], []
    # change of each facies' true share from the reference's, per window
    mix_share: dict[str, list[np.ndarray]] = {s: [] for s in ("no_shift", *MIX_WEIGHTS)}
    polarity_scores: dict[str, list[float]] = {s: [] for s in counts}
    missed_mix: list[dict[str, Any]] = []
    for k, seed in enumerate(current_seeds):
        s = survey(seed)
        if same:  # each field has its own reference: its first inline half
            baseline, dt, ref_share, ref_rows = fit(seed)
        baselines.append(baseline)
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
                part = "odd" if same else draw
                ci = cut(s, model.spec, part, args.window, 100 * k + draw, MIX_WEIGHTS.get(shift, 1.0))
                cur = model.describe(amp, ci, dt)
                if name in mix_share:
                    mix_share[name].append(true_shares(s.labels[ci]) - ref_share)
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
                if name in MIX_WEIGHTS and not result.drifted:
                    missed_mix.append(missed(result, baseline, mix_share[name][-1]))
        print(f"survey {k + 1}/{n_surveys} done ({time.perf_counter() - started:.0f} s)")

    rates = {s: {f: counts[s][f] / runs[s] for f in FAMILIES} for s in counts}
    print(
        f"\nfalse alarms: {runs['no_shift']} no-shift windows; power: {args.per_shift} windows per shift;"
        + (
            f" {args.window} rows per window; reference: {ref_rows} rows of each survey's even inline blocks"
            if same
            else f" {args.window} rows per window, reference {ref_rows} rows of {args.ref_surveys} surveys"
        )
    )
    print(f"{'shift':<14}" + "".join(f"{f:>13}" for f in FAMILIES))
    for s in counts:
        print(f"{s:<14}" + "".join(f"{rates[s][f]:>13.2f}" for f in FAMILIES))

    print("features flagged in no-shift windows:", {k: v for k, v in alarms["no_shift"].items() if v})
    for m in missed_mix:
        print(
            f"missed {m['window']}: facies {MIX_FACIES} predicted share {m['predicted_change']:+.3f}"
            f" (threshold {m['threshold']:.3f}), true share {m['true_change']:+.3f}"
        )
    spread = polarity_spread(baselines, polarity_scores)
    print("polarity scores (min / median / max):", {k: v for k, v in spread.items() if v})
    combined_false_alarm = rates["no_shift"]["combined"]
    oracle = {shift: mix_oracle(mix_share, shift, combined_false_alarm) for shift in MIX_WEIGHTS}
    for shift, o in oracle.items():
        detector = rates[shift]["combined"]
        o["detector_power"] = detector
        for key, what in (("", "knowing the facies"), ("blind_", "blind")):
            power = o["blind"]["power"] if key else o["power"]
            o[f"detector_over_{key}oracle"] = detector / power if power else None
            ratio = "n/a" if not power else f"{detector / power:.2f}"
            found = o["blind"] if key else o
            print(
                f"{shift}: oracle on the TRUE facies shares ({what}): false alarms"
                f" {found['false_alarm']:.2f}, power {power:.2f}; detector (combined) {detector:.2f}"
                f" = {ratio}"
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
        "model": model.name,
        "checkpoint": args.checkpoint,
        "window_rows": args.window,
        "reference_rows": ref_rows,
        "field": args.field,
        "generator_version": GENERATOR_VERSION,
        "reference_surveys": "each current survey's even inline blocks" if same else args.ref_surveys,
        "mix_facies": MIX_FACIES,
        "mix_weights": MIX_WEIGHTS,
        "runs": runs,
        "rates": rates,
        "facies_mix_oracle": oracle,
        "polarity_scores": spread,
        "feature_alarms": {s: {k: v for k, v in a.items() if v} for s, a in alarms.items()},
        "missed_mix": missed_mix,
        "thresholds": baseline.summary()["thresholds"],
        "baseline_fit_seconds": round(float(np.median(fit_s)), 2),
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


def record_name(args: argparse.Namespace) -> str:
    """``drift[_same_field][_<model>][_seeds<ref>_<current>][_<chunking>]``: defaults give the plain name."""
    seeds = (args.ref_seed, args.current_seed) != (2000, 3000)
    chunking = args.chunking not in (None, "spread" if args.field == "same" else "contiguous")
    return (
        "drift"
        + ("_same_field" if args.field == "same" else "")
        + ("" if args.model == "cnn1d" else f"_{args.model}")
        + (f"_seeds{args.ref_seed}_{args.current_seed}" if seeds else "")
        + (f"_{args.chunking}" if chunking else "")
    )


if __name__ == "__main__":
    import record

    known, _ = arguments().parse_known_args()
    title = ", ".join(
        ["Drift detection"]
        + ["same field"] * (known.field == "same")
        + [known.model] * (known.model != "cnn1d")
    )
    record.run(main, record_name(known).replace("_", "-"), title=title)
