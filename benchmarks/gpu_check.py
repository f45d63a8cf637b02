"""The GPU check: one script, minutes on one GPU, every CUDA path of the project measured and printed.

    python benchmarks/gpu_check.py [--steps 60] [--seconds 2] [--skip-server] [--output PATH]

1. CUDA: available, device name, capability, native bf16, driver/runtime versions.
2. Training samples/s of each recipe (``configs/experiment/*_default.yaml``: its network, window and batch
   size) on random windows for ``--steps`` optimizer steps after a warm-up, in float32 and in bf16 autocast
   (what ``trainer.precision: auto`` picks on such a GPU).
3. onnxruntime in process, the recipe network exported to ONNX: windows/s and p50 latency at batch 1, 64 and
   512 for the CUDA provider, the TensorRT provider where onnxruntime has it, and the CPU provider; the
   largest difference of each GPU provider's probabilities from the CPU provider's on the same windows.
4. Our server with the CUDA provider under ``benchmarks/latency.py --quick`` (``--skip-server`` to leave out).

Without CUDA (torch sees no device, or onnxruntime has no CUDA provider) it says so, writes the JSON with
``"skipped"`` and exits 0: the script is tested that way on CPU machines. Prints a table, writes
``benchmarks/results/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
RECIPES = ("cnn1d_default", "cnn2d_default")
BATCHES = (1, 64, 512)


def cuda_facts() -> dict:
    import onnxruntime as ort
    import torch

    facts = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
    }
    if facts["cuda_available"]:
        facts |= {
            "device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "bf16": torch.cuda.is_bf16_supported(),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        }
    return facts


def recipe(name: str) -> dict:
    """The recipe's network name and keywords, window shape and batch size, from the composed config."""
    from hydra import compose, initialize_config_dir

    import seismic.config  # noqa: F401  (registers the structured schemas the configs extend)

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={name}"])
    model = {k: v for k, v in cfg.model.items() if k not in ("name", "optimizer", "scheduler", "loss")}
    width, length = int(cfg.data.window.width), int(cfg.data.window.length)
    shape = (1, length) if width == 1 else (1, width, length)
    return {"net": cfg.model.name, "kwargs": model, "shape": shape, "batch": int(cfg.data.batch_size)}


def build(spec: dict, n_classes: int = 6):
    from seismic.models import build_model

    return build_model(spec["net"], num_classes=n_classes, **spec["kwargs"])


def train_rate(spec: dict, precision: str, steps: int) -> float:
    """Samples/s of forward, cross-entropy, backward and an AdamW step on the GPU (random windows)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = build(spec).cuda().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(spec["batch"], *spec["shape"], device="cuda")
    y = torch.randint(0, 6, (spec["batch"],), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(net(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * spec["batch"] / (time.perf_counter() - started)


def export(spec: dict, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "serving"))
    from models import export_tiny

    traces = spec["shape"][1] if len(spec["shape"]) == 3 else 1
    return export_tiny(folder, spec["net"], length=spec["shape"][-1], traces=traces, **spec["kwargs"])


def ort_rows(folder: Path, spec: dict, seconds: float) -> list[dict]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    sessions = {
        "CPUExecutionProvider": ort.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )
    }
    for p in providers:
        try:
            sessions[p] = ort.InferenceSession(
                str(folder / "model.onnx"), providers=[p, "CPUExecutionProvider"]
            )
        except Exception as err:  # a provider that cannot build this graph: say so, measure the rest
            print(f"  {p}: cannot create a session: {err}")
    rows = []
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        x = rng.normal(size=(batch, *spec["shape"])).astype(np.float32)
        reference = sessions["CPUExecutionProvider"].run(["probabilities"], {"windows": x})[0]
        for name, session in sessions.items():
            out = session.run(["probabilities"], {"windows": x})[0]  # warm-up (TensorRT builds its engine)
            times = []
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                t0 = time.perf_counter()
                session.run(["probabilities"], {"windows": x})
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "provider": name.removesuffix("ExecutionProvider"),
                    "batch": batch,
                    "windows_per_s": round(len(times) * batch / sum(times)),
                    "p50_ms": round(1000 * float(np.median(times)), 3),
                    "max_abs_diff_vs_cpu": float(np.abs(out - reference).max()),
                    "session_providers": session.get_providers()[0],
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=60, help="timed optimizer steps per recipe and precision"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per onnxruntime cell")
    parser.add_argument("--skip-server", action="store_true", help="leave out the server under load")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/gpu_check.json")
    args = parser.parse_args()
    facts = cuda_facts()
    result: dict = {"command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]), "cuda": facts}
    print(json.dumps(facts, indent=1))
    if not facts["cuda_available"] or "CUDAExecutionProvider" not in facts["ort_providers"]:
        why = (
            "torch sees no CUDA device" if not facts["cuda_available"] else "onnxruntime has no CUDA provider"
        )
        result["skipped"] = f"{why}: nothing to measure (install the gpu extra on a GPU host)"
        print(f"gpu_check: skipped: {result['skipped']}")
    else:
        training, inference = [], []
        with tempfile.TemporaryDirectory(prefix="seismic-gpu-") as tmp:
            for name in RECIPES:
                spec = recipe(name)
                for precision in ("32-true", "bf16-mixed"):
                    rate = train_rate(spec, precision, args.steps)
                    training.append({"recipe": name, "precision": precision, "samples_per_s": round(rate)})
                    print(f"  train {name} {precision}: {rate:.0f} samples/s", flush=True)
                folder = export(spec, Path(tmp) / name)
                inference += [{"recipe": name, **row} for row in ort_rows(folder, spec, args.seconds)]
        result |= {"training": training, "onnxruntime": inference}
        print("\ntraining\n" + table(training) + "\n\nonnxruntime in process\n" + table(inference))
        if not args.skip_server:
            quick = Path(tempfile.gettempdir()) / "gpu_check_latency.json"
            command = [sys.executable, str(ROOT / "benchmarks/latency.py"), "--quick", "--output", str(quick)]
            command += ["--server-arg", "model.providers=[CUDAExecutionProvider,CPUExecutionProvider]"]
            done = subprocess.run(command, timeout=420, check=False)
            result["server"] = (
                json.loads(quick.read_text()) if done.returncode == 0 else f"exit {done.returncode}"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
