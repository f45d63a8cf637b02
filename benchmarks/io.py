"""SEG-Y read throughput against a raw ``numpy.memmap`` of the same file, and window extraction rate.

    python benchmarks/io.py [--inlines 300 --crosslines 250 --samples 1000] [--repeats 3] [--json PATH]

Writes IEEE and IBM (big-endian) files of a few hundred MB into a temporary folder. Both readers produce the
same native float32 cube; the raw baseline decodes the bytes with numpy (byte swap, and IBM -> IEEE by a
256-entry scale table), which is the least work any reader of that file must do. Reads are warm
(page cache); the best of ``--repeats`` is reported. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seismic.data.survey import Survey
from seismic.data.windows import Normalisation, WindowSpec, extract_windows, sample_centres
from seismic.io.segy import open_segy, write_cube

TEXT_AND_BINARY_HEADER = 3600
TRACE_HEADER = 240
N_WINDOW_BATCHES = 40


# float32 value of one unit of the 24-bit fraction for each sign+exponent byte:
# IBM = (-1)^s * F / 2^24 * 16^(E - 64)
with np.errstate(over="ignore"):
    _IBM_SCALE = (
        np.where(np.arange(256) >= 128, -1.0, 1.0) * 16.0 ** (np.arange(256) % 128 - 64) / 2.0**24
    ).astype(np.float32)


def ibm_to_float32(words: np.ndarray) -> np.ndarray:
    """IBM System/360 single precision (uint32 words) -> IEEE float32: one table lookup and one multiply."""
    words = np.asarray(words, dtype=np.uint32)
    return (words & 0x00FFFFFF).astype(np.float32) * _IBM_SCALE[words >> 24]


def raw_memmap_read(path: Path, n_traces: int, n_samples: int, ibm: bool) -> np.ndarray:
    dtype = np.dtype([("header", f"V{TRACE_HEADER}"), ("data", ">u4" if ibm else ">f4", (n_samples,))])
    traces = np.memmap(path, dtype=dtype, mode="r", offset=TEXT_AND_BINARY_HEADER, shape=(n_traces,))["data"]
    return ibm_to_float32(traces) if ibm else traces.astype(np.float32)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_benchmarks(workdir: Path, shape: tuple[int, int, int], repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    cube = rng.standard_normal(shape, dtype=np.float32)
    n_il, n_xl, n_t = shape
    rows = []
    for fmt in ("ieee", "ibm"):
        path = workdir / f"bench-{fmt}.sgy"
        write_cube(path, cube, 4.0, sample_format=fmt)
        mb = cube.nbytes / 1e6

        def ours(path=path) -> np.ndarray:
            with open_segy(path) as f:
                return f.read_all()

        def ours_by_inline_chunks(path=path) -> None:
            with open_segy(path) as f:
                for start in range(0, n_il, 16):
                    f.read_inlines(start, min(start + 16, n_il))

        def raw(path=path, fmt=fmt) -> np.ndarray:
            return raw_memmap_read(path, n_il * n_xl, n_t, ibm=fmt == "ibm")

        np.testing.assert_allclose(ours().reshape(-1, n_t), raw(), rtol=1e-6)
        t_raw = best_of(repeats, raw)
        for reader, fn in (("seismic read_all", ours), ("seismic read_inlines x16", ours_by_inline_chunks)):
            t = best_of(repeats, fn)
            rows.append(
                {
                    "format": fmt,
                    "reader": reader,
                    "file_mb": round(path.stat().st_size / 1e6, 1),
                    "seconds": round(t, 4),
                    "mb_per_s": round(mb / t, 1),
                    "vs_raw_memmap": round(t_raw / t, 3),
                }
            )
        rows.append(
            {
                "format": fmt,
                "reader": "raw numpy.memmap",
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "seconds": round(t_raw, 4),
                "mb_per_s": round(mb / t_raw, 1),
                "vs_raw_memmap": 1.0,
            }
        )
        path.unlink()
    return rows


def window_benchmarks(workdir: Path, shape: tuple[int, int, int], repeats: int, batch: int) -> list[dict]:
    rng = np.random.default_rng(1)
    survey = Survey(
        amplitudes=rng.standard_normal(shape, dtype=np.float32),
        labels=rng.integers(0, 6, shape).astype(np.uint8),
        dt_ms=4.0,
    )
    survey.save(workdir / "survey")
    mapped = Survey.load(workdir / "survey", mmap=True)
    norm = Normalisation(mean=0.0, std=1.0)
    rows = []
    for name, spec in (
        ("1d [1, 64]", WindowSpec(length=64)),
        ("2d [1, 32, 64]", WindowSpec(length=64, width=32)),
    ):
        il, xl, t = sample_centres(mapped.labels, batch * N_WINDOW_BATCHES, spec, balance=True, seed=0)

        def run(il=il, xl=xl, t=t, spec=spec) -> None:
            for b in range(N_WINDOW_BATCHES):
                s = slice(b * batch, (b + 1) * batch)
                norm.apply(extract_windows(mapped.amplitudes, il[s], xl[s], t[s], spec))

        seconds = best_of(repeats, run)
        rows.append(
            {
                "windows": name,
                "batch": batch,
                "windows_per_s": round(batch * N_WINDOW_BATCHES / seconds),
                "batches_per_s": round(N_WINDOW_BATCHES / seconds, 1),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inlines", type=int, default=300)
    parser.add_argument("--crosslines", type=int, default=250)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/io.json"))
    args = parser.parse_args()
    shape = (args.inlines, args.crosslines, args.samples)
    with tempfile.TemporaryDirectory(prefix="seismic-bench-io-") as tmp:
        reads = read_benchmarks(Path(tmp), shape, args.repeats)
        windows = window_benchmarks(
            Path(tmp), (min(args.inlines, 200), min(args.crosslines, 200), 512), args.repeats, args.batch
        )
    print_table(reads)
    print_table(windows)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}
    result = {"shape": shape, "machine": machine, "reads": reads, "windows": windows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    import record

    record.run(main, "io", title="SEG-Y reading and window extraction")
