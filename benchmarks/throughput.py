"""Training throughput: Lightning vs a plain PyTorch loop on the same model and batches; loader vs model.

    python benchmarks/throughput.py [--models cnn1d cnn2d] [--precision 32-true bf16-mixed] [--batches 200]
        [--repeats 3] [--length-1d 64] [--json PATH]

For each model the same task (net, loss, optimizer) is trained for ``--batches`` batches three ways, after a
warm-up: (1) a plain loop over pre-built tensors: forward, cross-entropy, backward, AdamW step; (2) the same
plain loop fed by the project's DataLoader; (3) ``lightning.Trainer.fit`` with the project's task and
DataModule (checkpointing, validation, logging and progress bar off: what is left is Lightning's loop, the
task's metric updates and its data loading). The data loader alone is timed too. Best of ``--repeats``.
Each precision is one row: ``bf16-mixed`` is CPU autocast in the plain loops and Lightning's precision
plugin in ``fit`` (``trainer.precision: auto`` picks it where the CPU has AMX or AVX512-BF16).
Lightning's time includes ``fit``'s fixed start-up, so the default of 200 batches (close to one
epoch of the default experiments, 234 batches) weighs it as a real epoch does, not as a 60-batch toy would.
Segmentation nets (``--models unet1d unet2d``) train on dense tiles (the recipes' tile sizes and batch sizes,
a fifth of ``--batches``: each batch is ~10^5 labelled samples); every row also reports *labelled samples*
per second (a window classifier labels one sample per window, a segmentation net every sample of its tile),
the number that compares the two tasks.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from seismic.data.datamodule import SeismicDataModule
from seismic.models import model_task
from seismic.pipeline.precision import cpu_has_native_bf16
from seismic.tasks import FaciesClassificationTask, task_class

WINDOWS = {
    "cnn1d": {"length": 64, "width": 1},
    "cnn2d": {"length": 64, "width": 32},
    "unet1d": {"length": 128, "width": 1},
    "unet2d": {"length": 128, "width": 32},
}
# the recipes' batch sizes of the segmentation nets (configs/model/unet*.yaml: 128 traces, 16 tiles)
DENSE_BATCH = {"unet1d": 128, "unet2d": 16}


def make_datamodule(model: str, cache: Path, n_windows: int, batch: int) -> SeismicDataModule:
    dm = SeismicDataModule(
        source="synthetic",
        cache_dir=cache,
        window=WINDOWS[model],
        sampling={"train": n_windows, "val": batch, "test": batch},
        batch_size=batch,
        dense=model_task(model) == "segmentation",
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def make_task(model: str, dm: SeismicDataModule) -> FaciesClassificationTask:
    return task_class(model)(
        model=model,
        num_classes=len(dm.class_names),
        class_names=list(dm.class_names),
        optimizer={"name": "adamw", "lr": 1e-3},
        scheduler=None,
    )


def plain_loop(task: FaciesClassificationTask, batches, precision: str) -> float:
    net = task.net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    bf16 = precision.startswith("bf16")
    start = time.perf_counter()
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = net(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def lightning_fit(
    task: FaciesClassificationTask, dm: SeismicDataModule, n_batches: int, precision: str
) -> float:
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_epochs=1,
        limit_train_batches=n_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    return time.perf_counter() - start


def loader_only(dm: SeismicDataModule, n_batches: int) -> float:
    start = time.perf_counter()
    for i, _ in enumerate(dm.train_dataloader()):
        if i + 1 == n_batches:
            break
    return time.perf_counter() - start


def best(repeats: int, fn) -> float:
    return min(fn() for _ in range(repeats))


def measure(model: str, precision: str, cache: Path, n_batches: int, batch: int, repeats: int) -> dict:
    dense = model_task(model) == "segmentation"
    if dense:
        batch, n_batches = DENSE_BATCH.get(model, batch), max(10, n_batches // 5)
    labels = WINDOWS[model]["length"] * WINDOWS[model]["width"] if dense else 1  # per window
    dm = make_datamodule(model, cache, n_batches * batch, batch)
    loader = dm.train_dataloader()
    tensors = [b for _, b in zip(range(n_batches), loader, strict=False)]
    task = make_task(model, dm)
    plain_loop(task, tensors[:5], precision)  # warm-up: allocator, kernels
    n = n_batches * batch
    t_plain = best(repeats, lambda: plain_loop(make_task(model, dm), tensors, precision))
    t_plain_loader = best(
        repeats,
        lambda: plain_loop(
            make_task(model, dm), (b for _, b in zip(range(n_batches), loader, strict=False)), precision
        ),
    )
    t_lightning = best(repeats, lambda: lightning_fit(make_task(model, dm), dm, n_batches, precision))
    t_loader = best(repeats, lambda: loader_only(dm, n_batches))
    return {
        "model": model,
        "window": "x".join(str(v) for v in (dm.window.width, dm.window.length) if v > 1) or "1",
        "precision": precision,
        "batch": batch,
        "plain_tensors_sps": round(n / t_plain),
        "plain_loader_sps": round(n / t_plain_loader),
        "lightning_sps": round(n / t_lightning),
        "lightning_vs_plain_loader": round(t_plain_loader / t_lightning, 3),
        "loader_sps": round(n / t_loader),
        "loader_vs_model": round((n / t_loader) / (n / t_plain), 1),
        "labelled_per_window": labels,
        "plain_labelled_sps": round(n * labels / t_plain),
        "lightning_labelled_sps": round(n * labels / t_lightning),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn1d", "cnn2d", "unet1d", "unet2d"])
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--length-1d", type=int, default=64, help="samples of a cnn1d window (recipe: 128)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    WINDOWS["cnn1d"] = {**WINDOWS["cnn1d"], "length": args.length_1d}
    with tempfile.TemporaryDirectory(prefix="seismic-bench-tp-") as tmp:
        rows = [
            measure(m, p, Path(tmp), args.batches, args.batch, args.repeats)
            for m in args.models
            for p in args.precision
        ]
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    machine = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "python": platform.python_version(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    import record

    # the 128-sample run of the 1D recipe is a measurement of its own, beside the default one
    length = next((a.split("=")[1] for a in sys.argv if a.startswith("--length-1d=")), None)
    if "--length-1d" in sys.argv:
        length = sys.argv[sys.argv.index("--length-1d") + 1]
    name = "throughput" if length in (None, "64") else f"throughput-{length}"
    record.run(
        main,
        name,
        title="Training throughput" + ("" if name == "throughput" else f", {length}-sample windows"),
    )
