"""Batch scoring (serving.batch.score_segy): throughput against onnxruntime alone, and peak memory.

Two measurements, each in a fresh subprocess (so peak RSS is the job's own, read from getrusage(RUSAGE_SELF)
at its end: the number ``/usr/bin/time -v`` prints as "Maximum resident set size"):

* ``rate``: end-to-end windows/s of ``score_segy`` (open, read, cut windows, normalise, onnxruntime, write
  SEG-Y outputs and summary) against onnxruntime's compute rate: the graph alone on the same number of
  windows already cut and normalised, same batch size and threads, asked for what scoring asks of it
  (``LoadedModel.run`` for window classifiers; probabilities and embedding for segmentation nets).
  Untrained nets of the default size and a small one (where everything around the model weighs most).
  The four architectures (window classifiers cnn1d, cnn2d; segmentation nets unet1d, unet2d, default sizes
  and the tiles their recipes train on) score the *same* cube, so samples labelled per second compare
  directly; a segmentation net's onnxruntime rate is measured on the very tiles blended scoring cuts
  (overlap included), per labelled sample. The F3-sized cube's (651 x 951 x 462 samples) time is
  extrapolated from each end-to-end rate; ``unet2d_4x`` scores a cube 4x as large, where the run's fixed
  costs weigh a quarter as much as on the shared one.
* ``memory``: the small model and unet2d on generated cubes ~1x and ~4x the chunk budget
  ``max_memory_mb``, scored with that budget; peak RSS split into anonymous memory (what the job allocates)
  and file-backed pages of the memory-mapped input (page cache, reclaimable), both sampled every 10 ms,
  plus ru_maxrss; and the same numbers for a process that only loads the model and opens the file (the
  floor scoring adds to).

``python benchmarks/batch_scoring.py`` prints a table and writes ``benchmarks/results/batch_scoring.json``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from latency_targets import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "batch_scoring.json"
BATCH = 1024
LENGTH = 64
# (name, architecture, net kwargs, cube shape) for the rate runs; the default net is ~15x slower per window
# (name, architecture, net kwargs, window (length, width), cube shape): one cube for the four architectures
SAME_CUBE = (24, 96, 256)  # 0.6 M samples: the fixed costs of a run (open, write) weigh little
RATE_RUNS = [
    ("cnn1d_default", "cnn1d", {}, (LENGTH, 1), SAME_CUBE),
    ("cnn2d_default", "cnn2d", {}, (LENGTH, 32), SAME_CUBE),
    ("unet1d_default", "unet1d", {}, (128, 1), SAME_CUBE),
    ("unet2d_default", "unet2d", {}, (128, 32), SAME_CUBE),
    ("unet2d_overlap0", "unet2d", {}, (128, 32), SAME_CUBE),  # tiles side by side: the cost of blending
    # the same net on a cube 4x the size: unet2d scores SAME_CUBE in ~0.6 s, where the run's fixed costs
    # (open, first onnxruntime call of a batch shape, writes) still weigh; a survey-sized job amortises them
    ("unet2d_4x", "unet2d", {}, (128, 32), (96, 96, 256)),
    ("cnn1d_small", "cnn1d", {"width": 8, "depth": 2}, (LENGTH, 1), (40, 50, 120)),
]
F3_SAMPLES = 651 * 951 * 462
MEMORY_BUDGET_MB = 2.0
MEMORY_CUBES = [(12, 100, 400), (48, 100, 400)]  # 1.9 MB and 7.7 MB: ~1x and ~4x the 2 MB chunk budget
MEMORY_MODELS = ["cnn1d_small", "unet2d_default"]

CHILD = r"""
import json, resource, sys, threading, time
import numpy as np

peaks = {"RssAnon": 0, "RssFile": 0}
def sample():
    while True:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in peaks:
                    peaks[key] = max(peaks[key], int(line.split()[1]))
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()

from serving.batch import score_segy
from serving.runtime import load_model
from seismic.data.windows import WindowSpec, extract_windows
from seismic.io.segy import open_segy

args = json.loads(sys.argv[1])
model = load_model(args["model"], providers=["CPUExecutionProvider"], spin_wait=False)  # as predict.py
out = {}
if args["mode"] == "open":
    with open_segy(args["input"]) as f:
        f.read_inlines(0, 1)
else:
    result = score_segy(model, args["input"], args["output"], summary_path=args["output"] + ".parquet",
                        max_memory_mb=args["budget_mb"], batch_size=args["batch"], progress=False,
                        overlap=args.get("overlap"))
    out["score"] = result.to_dict()
if args.get("compute") and model.dense:  # the very tiles blended scoring cuts, batched as it batches them
    from seismic.inference.tiling import TilePlan, iter_tiles
    from serving.batch_dense import tiles_per_call
    with open_segy(args["input"]) as f:
        cube = f.read_all()
    spec = WindowSpec.from_mapping(model.metadata["window"])
    if spec.width == 1:
        sections, tile = cube.reshape(-1, cube.shape[2]), (spec.length,)
    else:
        sections, tile = cube, (spec.width, spec.length)
    overlap = model.default_overlap if args.get("overlap") is None else args["overlap"]
    plan = TilePlan(sections.shape[1:], tile, overlap)
    il = np.zeros(cube.size)  # per labelled sample, as end to end
    batches = [model.normalise(np.stack([sections[(i, *plan._region(st))] for i, st in b]))[:, None]
               for b in iter_tiles(len(sections), plan, tiles_per_call(spec, args["batch"]))]
elif args.get("compute"):
    with open_segy(args["input"]) as f:
        cube = f.read_all()
    spec = WindowSpec.from_mapping(model.metadata["window"])
    il, xl, t = (a.ravel() for a in np.indices(cube.shape))
    batches = [model.normalise(extract_windows(cube, il[s:s + args["batch"]], xl[s:s + args["batch"]],
               t[s:s + args["batch"]], spec)) for s in range(0, il.size, args["batch"])]
if args.get("compute"):
    # what scoring asks of the graph: window classifiers take class and probability, blended tiles only
    # their probabilities and embedding
    run = (lambda x: model.outputs(x, ("probabilities", "embedding"))) if model.dense else model.run
    run(batches[0])
    best = 0.0
    for _ in range(2):
        started = time.perf_counter()
        for x in batches:
            run(x)
        best = max(best, il.size / (time.perf_counter() - started))
    out["compute_windows_per_s"] = best
time.sleep(0.03)
out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["peak_rss_anon_mb"] = peaks["RssAnon"] / 1024
out["peak_rss_file_mb"] = peaks["RssFile"] / 1024
print(json.dumps(out))
"""


def export(folder: Path, model: str, kwargs: dict, window: tuple[int, int] = (LENGTH, 1)) -> Path:
    import torch

    from seismic.export.onnx import export_onnx, metadata_from_hparams
    from seismic.models import build_model

    torch.manual_seed(0)
    length, width = window
    net = build_model(model, num_classes=6, **kwargs).eval()
    with torch.no_grad():
        _, embedding = net(torch.zeros(1, 1, *([width] if width > 1 else []), length))
    hparams = {
        "model": model,
        "model_kwargs": kwargs,
        "num_classes": 6,
        "class_names": [f"facies{i}" for i in range(6)],
        "window": {"length": length, "width": width, "axis": "inline", "pad_mode": "reflect"},
        "normalisation": {"mean": 0.0, "std": 250.0, "clip_sigma": 5.0},
        "metadata": {"dt_ms": 4.0},
    }
    export_onnx(
        net, folder, metadata_from_hparams(hparams, embedding_dim=int(embedding.shape[1])), large_batch=8
    )
    return folder


def cube(path: Path, shape: tuple[int, int, int]) -> Path:
    from seismic.io.segy import write_cube

    write_cube(path, (np.random.default_rng(0).normal(size=shape) * 250).astype(np.float32), 4.0)
    return path


def child(**args: object) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    rows_rate, rows_memory = [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, arch, kwargs, window, shape in RATE_RUNS:
            model = export(tmp / name, arch, kwargs, window)
            path = cube(tmp / f"cube_{'x'.join(map(str, shape))}.sgy", shape)
            output = str(tmp / f"{name}.classes.sgy")
            overlap = 0.0 if name.endswith("overlap0") else None
            run = child(mode="score", model=str(model), input=str(path), output=output, budget_mb=256.0,
                        batch=BATCH, compute=True, overlap=overlap)  # fmt: skip
            e2e = run["score"]["windows_per_s"]
            rows_rate.append(
                {
                    "model": name,
                    "cube": list(shape),
                    "samples": run["score"]["windows"],
                    "batch": BATCH,
                    "end_to_end_samples_per_s": round(e2e),
                    "onnxruntime_samples_per_s": round(run["compute_windows_per_s"]),
                    "ratio": round(e2e / run["compute_windows_per_s"], 3),
                    "f3_minutes": round(F3_SAMPLES / e2e / 60, 1),
                }
            )
        same = {r["model"]: r["end_to_end_samples_per_s"] for r in rows_rate if r["cube"] == list(SAME_CUBE)}
        for row in rows_rate:
            if row["cube"] == list(SAME_CUBE):
                row["x_cnn1d"] = round(row["end_to_end_samples_per_s"] / same["cnn1d_default"], 1)
                row["x_cnn2d"] = round(row["end_to_end_samples_per_s"] / same["cnn2d_default"], 1)
        for name, shape in [(m, c) for m in MEMORY_MODELS for c in MEMORY_CUBES]:
            path = cube(tmp / f"memory_{shape[0]}.sgy", shape)
            args = {
                "model": str(tmp / name),
                "input": str(path),
                "budget_mb": MEMORY_BUDGET_MB,
                "batch": BATCH,
            }
            opened = child(mode="open", **args)
            run = child(mode="score", output=str(tmp / "memory.classes.sgy"), **args)
            rows_memory.append(
                {
                    "model": name,
                    "cube": list(shape),
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    "budget_mb": MEMORY_BUDGET_MB,
                    "chunk_inlines": run["score"]["chunk_inlines"],
                    "windows": run["score"]["windows"],
                    "windows_per_s": round(run["score"]["windows_per_s"]),
                    "ru_maxrss_mb": round(run["ru_maxrss_mb"], 1),
                    "peak_anon_mb": round(run["peak_rss_anon_mb"], 1),
                    "peak_file_mb": round(run["peak_rss_file_mb"], 1),
                    "open_only_ru_maxrss_mb": round(opened["ru_maxrss_mb"], 1),
                    "open_only_peak_anon_mb": round(opened["peak_rss_anon_mb"], 1),
                }
            )
    print_table(rows_rate)
    print()
    print_table(rows_memory)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "cpu": cpu_model(),
        },
        "rate": rows_rate,
        "memory": rows_memory,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def print_table(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, "") for k in keys} for r in rows]
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


if __name__ == "__main__":
    import record

    record.run(main, "batch_scoring", title="Batch scoring")
