"""The hand-written U-Net against segmentation-models-pytorch: held-out mIoU for the same training minutes.

smp builds its U-Nets on torchvision-style encoders and imports torchvision, and PyPI's torchvision does not
import beside the project's local torch 2.13 CPU build ("operator torchvision::nms does not exist"). So this
runs in a venv of its own, with the torch / torchvision pair that lies on this machine's disk (x86_64; a CUDA
build, run here on the CPU) and only what the script reads of ``seismic`` (numpy, scipy, segyio, torch)::

    python3.11 -m venv /tmp/smp-venv
    /tmp/smp-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 segmentation-models-pytorch scipy segyio
    PYTHONPATH=. /tmp/smp-venv/bin/python benchmarks/unet_vs_smp.py [--minutes 4] [--smp-encoders resnet18]

Both sides get the same data and loop: tiles of 32 traces x 128 samples with every sample labelled, drawn
fresh each epoch from generator-v4 training surveys (seeds 0..``--surveys``-1, the default survey size),
normalised as training normalises them; AdamW with the one-cycle learning-rate shape spread over the
wall-clock budget; cross-entropy; bf16 autocast where the CPU runs bf16 natively. Nothing is
pretrained (``encoder_weights=None``: nothing can be downloaded). Each model then labels every sample of the
held-out survey's (seed 12345) test inlines by blended tiles (``seismic.inference.tiling``, as batch scoring
does), scored with the F3 benchmark's pixel accuracy and mIoU. Prints a table and writes JSON.
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
from latency_targets import cpu_model

from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import WindowSpec, extract_label_windows, extract_windows, fit_normalisation
from seismic.inference.tiling import blend_sections
from seismic.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SPEC = WindowSpec(length=128, width=32)
TEST_INLINES = (110, 128)  # the default split's test block of a 128-inline survey
N_CLASSES = 6


def surveys(seeds: list[int]):
    return [generate_survey(SyntheticSurveyConfig(seed=s)) for s in seeds]


def tiles(train, norm, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tiles spread over the training surveys, inline direction, centres uniform where a tile fits."""
    xs, ys = [], []
    for k, s in enumerate(train):
        m = n // len(train) + (k < n % len(train))
        n_il, n_xl, n_t = s.shape
        il = rng.integers(0, n_il, m)
        xl = rng.integers(SPEC.width // 2, n_xl - SPEC.width // 2, m)
        t = rng.integers(SPEC.length // 2, n_t - SPEC.length // 2, m)
        xs.append(norm.apply(extract_windows(s.amplitudes, il, xl, t, SPEC)))
        ys.append(extract_label_windows(s.labels, il, xl, t, SPEC))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys).astype(np.int64))


class Logits(torch.nn.Module):
    """smp's nets return logits only; the loop and the tiler take (logits, embedding) like ours."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.new_zeros(len(x), 1)


def build(name: str) -> torch.nn.Module:
    if name.startswith("smp-"):
        import segmentation_models_pytorch as smp

        encoder = name.removeprefix("smp-")
        return Logits(smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=1, classes=N_CLASSES))
    return build_model("unet2d", num_classes=N_CLASSES, width=int(name.removeprefix("unet2d-w")))


def one_cycle(fraction: float, peak: float) -> float:
    """OneCycleLR's cosine shape over the share of the budget spent (30 % warm-up from peak/25)."""
    if fraction < 0.3:
        return peak * (1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * fraction / 0.3)) / 2)
    return peak * (1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * min(1.0, (fraction - 0.3) / 0.7))) / 2)


def train(net, data, norm, minutes: float, args, bf16: bool) -> dict:
    """Train for ``minutes`` of wall clock, the learning rate following the one-cycle shape over that time
    (a schedule in steps would end early or late for nets of other speeds)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    budget, steps, started = minutes * 60.0, 0, time.perf_counter()
    net.train()
    while (elapsed := time.perf_counter() - started) < budget:
        x, y = tiles(data, norm, args.tiles_per_epoch, rng)
        for batch in torch.randperm(len(x)).split(args.batch):
            for group in opt.param_groups:
                group["lr"] = one_cycle(elapsed / budget, args.lr)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(x[batch])[0]
            loss = torch.nn.functional.cross_entropy(logits.float(), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if (elapsed := time.perf_counter() - started) >= budget:
                break
    return {
        "steps": steps,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "tiles_seen": steps * args.batch,
        "final_loss": round(float(loss.detach()), 4),
    }


@torch.no_grad()
def evaluate(net, holdout, norm, bf16: bool) -> dict:
    net.eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, embedding = net(torch.from_numpy(batch))
        return torch.softmax(logits.float(), dim=1).numpy(), embedding.float().numpy()

    lo, hi = TEST_INLINES
    started = time.perf_counter()
    probabilities = blend_sections(
        np.asarray(holdout.amplitudes[lo:hi], dtype=np.float32), run, (SPEC.width, SPEC.length),
        num_classes=N_CLASSES, batch_size=32, normalise=norm.apply,
    )  # fmt: skip
    predicted = probabilities.argmax(axis=1).ravel()
    truth = np.asarray(holdout.labels[lo:hi]).ravel()
    cm = np.bincount(truth * N_CLASSES + predicted, minlength=N_CLASSES**2).reshape(N_CLASSES, N_CLASSES)
    # as seismic.tasks.dense_scores, which imports Lightning (not in this venv)
    tp, true, pred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    present = (true + pred) > 0
    iou = tp[present] / (true + pred - tp)[present]
    return {"pa": round(float(tp.sum() / cm.sum()), 4), "miou": round(float(iou.mean()), 4),
            "samples": int(cm.sum()), "predict_s": round(time.perf_counter() - started, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per model")
    parser.add_argument("--surveys", type=int, default=4, help="training survey seeds 0..N-1")
    parser.add_argument("--ours", nargs="*", default=["unet2d-w8", "unet2d-w16"], help="unet2d-w<width>")
    parser.add_argument("--smp-encoders", nargs="*", default=["resnet18"])
    parser.add_argument("--tiles-per-epoch", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/unet_vs_smp.json")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    bf16 = bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    t0 = time.perf_counter()
    data = surveys(list(range(args.surveys)))
    holdout = generate_survey(SyntheticSurveyConfig(seed=12345))
    norm = fit_normalisation([s.amplitudes for s in data], seed=0)
    print(f"surveys ready ({time.perf_counter() - t0:.0f} s); bf16 autocast: {bf16}", flush=True)
    rows = []
    for name in [*args.ours, *(f"smp-{e}" for e in args.smp_encoders)]:
        net = build(name)
        params = sum(p.numel() for p in net.parameters())
        row = {
            "model": name,
            "params_k": round(params / 1e3, 1),
            **train(net, data, norm, args.minutes, args, bf16),
        }
        row.update(evaluate(net, holdout, norm, bf16))
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = list(rows[0])
    print("\n" + "  ".join(f"{k:>13}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]!s:>13}" for k in keys))
    payload = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "bf16": bf16,
        "torch": torch.__version__,
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    import record

    record.run(main, "unet_vs_smp", title="Hand-written U-Net against segmentation-models-pytorch")
