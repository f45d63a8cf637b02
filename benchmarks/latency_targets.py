"""The acceptance checks of ``benchmarks/latency.py``, per model, from the rows of one run (1 worker each).

Against MLflow's scoring server (issue 5) and against every peer that ran (issue 19): at batch 1 and
concurrency 8 our requests/s at least the peer's on the same body, with a p99 no worse; at batch 64 our best
binary windows/s at least every peer's best binary, and our best JSON at least every peer's best JSON.
"""

from __future__ import annotations

import platform
from pathlib import Path

BINARY = {"predict-binary", "v2-binary"}
JSON = {"predict-json", "invocations-json", "v2-json"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _best(rows: list[dict], server: str, kinds: set[str]) -> dict | None:
    cells = [r for r in rows if r["server"] == server and r["batch"] == 64 and r["target"] in kinds]
    return max(cells, key=lambda r: r["windows_per_s"], default=None)


def _check(name: str, check: str, value, target, met: bool) -> dict:
    return {"model": name, "check": check, "value": value, "target": target, "met": bool(met)}


def targets(local: list[dict], remote: list[dict]) -> list[dict]:
    checks = []
    for name in sorted({r["model"] for r in remote}):
        rows = [r for r in remote if r["model"] == name and r.get("workers", 1) == 1]

        def cell(server, target, batch, conc, rows=rows):
            return next(
                (
                    r
                    for r in rows
                    if (r["server"], r["target"], r["batch"], r["concurrency"])
                    == (server, target, batch, conc)
                ),
                None,
            )

        ort64 = next(
            r["windows_per_s"]
            for r in local
            if (r["model"], r["runtime"], r["batch"]) == (name, "onnxruntime", 64)
        )
        binary = _best(rows, "seismic", {"predict-binary"})
        checks.append(
            _check(
                name,
                "batch 64 binary >= 60% of in-process onnxruntime",
                round(binary["windows_per_s"] / ort64, 2),
                0.6,
                binary["windows_per_s"] >= 0.6 * ort64,
            )
        )
        ours_json = _best(rows, "seismic", {"invocations-json"})["windows_per_s"]
        mlflow_json = _best(rows, "mlflow", {"invocations-json"})["windows_per_s"]
        checks.append(
            _check(
                name,
                "batch 64 JSON >= 3x MLflow windows/s",
                round(ours_json / max(mlflow_json, 1), 2),
                3.0,
                ours_json >= 3 * mlflow_json,
            )
        )
        peers = sorted({r["server"] for r in rows} - {"seismic"})
        for peer in peers:
            for target in sorted({r["target"] for r in rows if r["server"] == peer}):
                ours1, theirs1 = cell("seismic", target, 1, 8), cell(peer, target, 1, 8)
                if ours1 is None or theirs1 is None:
                    continue
                checks.append(
                    _check(
                        name,
                        f"batch 1 conc 8 {target}: req/s vs {peer}",
                        round(ours1["requests_per_s"] / max(theirs1["requests_per_s"], 1e-9), 2),
                        ">= 1" if peer != "mlflow" else ">= 2",
                        ours1["requests_per_s"] >= (2 if peer == "mlflow" else 1) * theirs1["requests_per_s"],
                    )
                )
                checks.append(
                    _check(
                        name,
                        f"batch 1 conc 8 {target}: p99 vs {peer}",
                        f"{ours1['p99_ms']} vs {theirs1['p99_ms']} ms",
                        "no worse",
                        ours1["p99_ms"] <= theirs1["p99_ms"],
                    )
                )
            if peer == "mlflow":
                continue
            for kinds, label in ((BINARY, "binary"), (JSON, "JSON")):
                theirs = _best(rows, peer, kinds)
                if theirs is None:
                    continue
                ours = _best(rows, "seismic", kinds)
                checks.append(
                    _check(
                        name,
                        f"batch 64 best {label} windows/s vs {peer}",
                        round(ours["windows_per_s"] / max(theirs["windows_per_s"], 1), 2),
                        ">= 1",
                        ours["windows_per_s"] >= theirs["windows_per_s"],
                    )
                )
    return checks
