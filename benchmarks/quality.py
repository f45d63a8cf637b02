"""Label-free performance estimate (CBPE) against the realised performance, on the drift benchmark's shifts.

    python benchmarks/quality.py             # 12 no-shift windows, 6 per shift, 2000 rows each (~1 min here)
    python benchmarks/quality.py --quick     # 4 and 2

Model: the drift benchmark's cached cnn1d (``benchmarks/drift.py``, trained on surveys 1000-1002). Its
temperature is fitted (``seismic.export.calibration``) on inline half 0 of surveys 2000-2003 (validation), the
reference (probabilities, labels, chunk groups = 8-inline blocks) is inline half 1 of the same surveys, as
an exported model's profile is its test split. Current windows: ``--window`` rows from an inline half of NEW
survey seeds, unshifted or with each of the drift benchmark's shifts. For every window: the CBPE estimate of
accuracy and macro-F1 from the calibrated probabilities (and from the raw softmax, to show what calibration
buys), its 5-95 % band, the realised metrics on the window's true labels, and whether the monitor's drop
alert would fire. With NannyML installed (``pip install -e ".[quality-peers]"``) its CBPE runs on the same
inputs (fitted on the same reference; it calibrates the reference probabilities itself, isotonic).
Last, the spatial drift map (``serving.quality_maps``) of a new survey with each shift applied to its first
quadrant only. Prints tables and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from drift import MIX_WEIGHTS, SHIFTS, cut, shift_volume
from drift_models import cached_model, survey
from scipy.special import softmax

from seismic.data.windows import extract_windows
from seismic.export.calibration import calibration_report
from seismic.monitoring.drift.calibration import chunk_ids
from seismic.monitoring.profile import build_profile
from seismic.monitoring.quality.performance import (
    confusion,
    estimated_metrics,
    fit_thresholds,
    judge,
    metrics,
    widen,
)
from serving.quality_maps import SurveyMaps

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "macro_f1")
# shifts that leave P(facies | window) as it was: only the mix of facies changes, calibration survives
LABEL_SHIFTS = ("no_shift", *MIX_WEIGHTS)
TARGET_MAE = 0.03


@torch.no_grad()
def logits_of(net, norm, raw: np.ndarray) -> np.ndarray:
    parts = [net(torch.from_numpy(norm.apply(b)))[0] for b in np.array_split(raw, max(1, len(raw) // 2048))]
    return torch.cat(parts).double().numpy()


def windows_of(s, spec, half, n, seed, mix=1.0, amplitudes=None):
    ci = cut(s, spec, half, n, seed, mix=mix)
    return extract_windows(s.amplitudes if amplitudes is None else amplitudes, *ci, spec), s.labels[ci], ci


def nannyml_cbpe(reference: dict, class_names: list[str]):
    """NannyML's CBPE fitted on the reference, or None when nannyml is not installed."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # it phones home otherwise (offline here)
    try:
        import nannyml as nml
        import pandas as pd
    except ImportError:
        return None

    def frame(p, pred, true=None):
        df = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(class_names)})
        df["y_pred"] = [class_names[i] for i in pred]
        if true is not None:
            df["y_true"] = [class_names[i] for i in true]
        return df

    def make(n_rows):
        return nml.CBPE(
            y_pred_proba={c: f"p_{c}" for c in class_names},
            y_pred="y_pred",
            y_true="y_true",
            problem_type="classification_multiclass",
            metrics=["accuracy", "f1"],
            chunk_size=n_rows,
        )

    fitted: dict[int, object] = {}
    ref_df = frame(reference["p"], reference["p"].argmax(1), reference["labels"])

    def estimate(p: np.ndarray) -> dict[str, float]:
        n = len(p)
        if n not in fitted:
            fitted[n] = make(n).fit(ref_df)
        out = fitted[n].estimate(frame(p, p.argmax(1))).filter(period="analysis").to_df()
        return {
            "accuracy": float(out[("accuracy", "value")].iloc[0]),
            "macro_f1": float(out[("f1", "value")].iloc[0]),
        }

    return estimate


def maps_benchmark(ref_raw, ref_y, ref_p, spec, args) -> list[dict]:
    """The drift map of a survey with a shift applied to its first quadrant only: how far the shifted tiles
    score from the others (z: difference of the means in units of the other tiles' spread) and which share
    of them rises above the other tiles' 95th percentile."""
    raw = np.concatenate([r for r, _, _ in ref_raw])
    # the drift map reads the profile's features and (survey, inline) groups only: no embedding needed
    profile = build_profile(
        raw, ref_y, ref_p.astype(np.float32), np.zeros((len(raw), 1), np.float32),
        dt_ms=survey(2000).dt_ms, class_names=[str(i) for i in range(ref_p.shape[1])], max_embeddings=10,
        survey=np.concatenate([np.full(len(r), k) for r, _, k in ref_raw]),
        inline=np.concatenate([il for _, il, _ in ref_raw]),
    )  # fmt: skip
    s = survey(3999)
    q_il, q_xl = s.shape[0] // 2, s.shape[1] // 2
    rows = []
    print(
        f"\nspatial drift map: survey 3999 {s.shape[:2]}, shift on inlines < {q_il} and crosslines < {q_xl}"
    )
    print(f"{'shift':<14}{'shifted':>9}{'others':>9}{'sd':>7}{'z':>7}{'> p95':>7}")
    for shift in ("no_shift", *(sh for sh in SHIFTS if sh not in MIX_WEIGHTS)):
        amp = s.amplitudes.copy()
        if shift != "no_shift":
            rng = np.random.default_rng(0)
            amp[:q_il, :q_xl] = shift_volume(amp[:q_il, :q_xl], shift, s.dt_ms, 10.0, rng)
        maps = SurveyMaps(
            amp, spec, profile, s.dt_ms, windows_per_trace=args.map_windows, block=args.map_block
        )
        for start in range(0, s.shape[0], 16):
            maps.add_drift(start, min(start + 16, s.shape[0]))
        tiles = maps.drift()[:: args.map_block, :: args.map_block]
        inside = np.zeros(tiles.shape, bool)
        inside[: q_il // args.map_block, : q_xl // args.map_block] = True
        shifted, others = tiles[inside], tiles[~inside]
        row = {
            "shift": shift,
            "shifted_mean": float(shifted.mean()),
            "others_mean": float(others.mean()),
            "others_sd": float(others.std()),
            "z": float((shifted.mean() - others.mean()) / others.std()),
            "above_p95": float(np.mean(shifted > np.percentile(others, 95))),
        }
        rows.append(row)
        print(
            f"{shift:<14}{row['shifted_mean']:>9.2f}{row['others_mean']:>9.2f}{row['others_sd']:>7.2f}"
            f"{row['z']:>7.1f}{row['above_p95']:>7.2f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--window", type=int, default=2000, help="rows per current window")
    parser.add_argument("--noshift", type=int, help="no-shift windows (default 12; --quick 4)")
    parser.add_argument("--per-shift", type=int, help="windows per shift (default 6; --quick 2)")
    parser.add_argument("--ref-surveys", type=int, default=4)
    parser.add_argument("--map-windows", type=int, default=4, help="drift map: windows per trace")
    parser.add_argument("--map-block", type=int, default=4, help="drift map: tile of block x block traces")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/quality.json"))
    args = parser.parse_args()
    args.noshift = args.noshift or (4 if args.quick else 12)
    args.per_shift = args.per_shift or (2 if args.quick else 6)
    torch.set_num_threads(2)
    started = time.perf_counter()
    model, how = cached_model("cnn1d")
    net, norm, spec = model.net, model.norm, model.spec
    print(f"model ready: {how} ({time.perf_counter() - started:.0f} s)")

    val_logits, val_labels, ref_logits, ref_labels, ref_groups, ref_raw = [], [], [], [], [], []
    per_half = 3000 // args.ref_surveys
    for k in range(args.ref_surveys):
        s = survey(2000 + k)
        raw, labels, _ = windows_of(s, spec, 0, per_half, seed=k)
        val_logits.append(logits_of(net, norm, raw))
        val_labels.append(labels)
        raw, labels, ci = windows_of(s, spec, 1, per_half, seed=50 + k)
        ref_logits.append(logits_of(net, norm, raw))
        ref_labels.append(labels)
        ref_groups.append(k * 1000 + ci[0] // 8)
        ref_raw.append((raw, ci[0], k))
    val = np.concatenate(val_logits), np.concatenate(val_labels)
    ref_l, ref_y, groups = np.concatenate(ref_logits), np.concatenate(ref_labels), np.concatenate(ref_groups)
    cal = calibration_report(*val, ref_l, ref_y)
    temperature = cal["temperature"]
    ref_p = softmax(ref_l / temperature, axis=1)
    thresholds = fit_thresholds(ref_p, ref_y, chunk_ids(len(ref_y), 16, groups))
    ece = f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}"
    print(f"temperature {temperature:.3f}: {ece} on the reference")
    sd = {m: round(v, 4) for m, v in thresholds.calibration_sd.items()}
    print(f"estimate - realised on reference chunks, sd beyond sampling error: {sd}")
    class_names = [str(i) for i in range(ref_p.shape[1])]
    peer = nannyml_cbpe({"p": ref_p, "labels": ref_y}, class_names)

    rows: dict[str, list[dict]] = {name: [] for name in ("no_shift", *SHIFTS)}
    n_surveys = max(math.ceil(args.noshift / 2), math.ceil(args.per_shift / 2))
    for k in range(n_surveys):
        s = survey(3000 + k)
        jobs = [("no_shift", None)] * (2 * k < args.noshift) + [(sh, sh) for sh in SHIFTS] * (
            2 * k < args.per_shift
        )
        for name, shift in jobs:
            rng = np.random.default_rng(10 * k + 7)
            amp = (
                None
                if shift is None or shift in MIX_WEIGHTS
                else shift_volume(s.amplitudes, shift, s.dt_ms, 10.0, rng)
            )
            for half in (0, 1):
                raw, labels, _ = windows_of(
                    s, spec, half, args.window, 100 * k + half, MIX_WEIGHTS.get(shift, 1.0), amp
                )
                logits = logits_of(net, norm, raw)
                p, pred = softmax(logits / temperature, axis=1), logits.argmax(axis=1)
                est = estimated_metrics(p, pred, n_draws=100, seed=k)
                raw_est = estimated_metrics(softmax(logits, axis=1), pred, n_draws=10)
                real = metrics(confusion(labels.astype(np.int64), pred, p.shape[1]))
                verdict = judge(est, real, thresholds, min_labelled=100)
                row = {
                    "realised": {m: real[m] for m in METRICS},
                    "estimated": {m: est[m] for m in METRICS},
                    "uncalibrated": {m: raw_est[m] for m in METRICS},
                    "sampling_band": est["band"],
                    "band": widen(est, thresholds.calibration_sd),
                    "alert": any(verdict["estimated"]["dropped"].values()),
                    "realised_drop": any(verdict["realised"]["dropped"].values()),
                }
                if peer is not None:
                    row["nannyml"] = peer(p)
                rows[name].append(row)
        print(f"survey {k + 1}/{n_surveys} done ({time.perf_counter() - started:.0f} s)")

    summary = {}
    for name, rs in rows.items():
        if not rs:
            continue

        def mae(key, metric, rs=rs):
            return float(np.mean([abs(r[key][metric] - r["realised"][metric]) for r in rs]))

        summary[name] = {
            "windows": len(rs),
            **{f"realised_{m}": float(np.mean([r["realised"][m] for r in rs])) for m in METRICS},
            **{f"estimated_{m}": float(np.mean([r["estimated"][m] for r in rs])) for m in METRICS},
            **{f"mae_{m}": mae("estimated", m) for m in METRICS},
            **{f"mae_uncalibrated_{m}": mae("uncalibrated", m) for m in METRICS},
            "sampling_band_covers_accuracy": float(
                np.mean(
                    [
                        r["sampling_band"]["accuracy"][0]
                        <= r["realised"]["accuracy"]
                        <= r["sampling_band"]["accuracy"][1]
                        for r in rs
                    ]
                )
            ),
            "band_covers_accuracy": float(
                np.mean(
                    [
                        r["band"]["accuracy"][0] <= r["realised"]["accuracy"] <= r["band"]["accuracy"][1]
                        for r in rs
                    ]
                )
            ),
            "alert_rate": float(np.mean([r["alert"] for r in rs])),
            "realised_drop_rate": float(np.mean([r["realised_drop"] for r in rs])),
            **({f"mae_nannyml_{m}": mae("nannyml", m) for m in METRICS} if peer is not None else {}),
        }
    columns = ("n", "real acc", "est acc", "MAE acc", "MAE F1", "MAE raw", "band", "alert", "drop")
    head = f"{'shift':<14}" + "".join(f"{c:>9}" for c in columns)
    head += f"{'NannyML acc/F1':>16}" if peer is not None else ""
    print("\n" + head)
    for name, r in summary.items():
        line = (
            f"{name:<14}{r['windows']:>9}{r['realised_accuracy']:>9.3f}{r['estimated_accuracy']:>9.3f}"
            f"{r['mae_accuracy']:>9.3f}{r['mae_macro_f1']:>9.3f}{r['mae_uncalibrated_accuracy']:>9.3f}"
            f"{r['band_covers_accuracy']:>9.2f}{r['alert_rate']:>9.2f}{r['realised_drop_rate']:>9.2f}"
        )
        if peer is not None:
            line += f"{r['mae_nannyml_accuracy']:>10.3f}/{r['mae_nannyml_macro_f1']:.3f}"
        print(line)
    failing = {
        n: round(max(r["mae_accuracy"], r["mae_macro_f1"]), 3)
        for n, r in summary.items()
        if max(r["mae_accuracy"], r["mae_macro_f1"]) > TARGET_MAE
    }
    met = {
        n: max(summary[n]["mae_accuracy"], summary[n]["mae_macro_f1"]) <= TARGET_MAE
        for n in LABEL_SHIFTS
        if n in summary
    }
    print(f"\ntarget MAE <= {TARGET_MAE} on no-shift and facies-mix windows: {met}")
    print(f"the estimate fails (MAE > {TARGET_MAE}) on: {failing}")
    spatial = maps_benchmark(ref_raw, ref_y, ref_p, spec, args)
    result = {
        "spatial_maps": spatial,
        "quick": args.quick,
        "window_rows": args.window,
        "calibration": cal,
        "thresholds": thresholds.to_dict(),
        "summary": summary,
        "target_met": met,
        "estimate_fails_on": failing,
        "nannyml": peer is not None,
        "windows": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("target_met", "estimate_fails_on", "nannyml", "total_seconds")}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    import record

    record.run(main, "quality", title="Performance estimate and quality maps")
