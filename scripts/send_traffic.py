"""Send a running server realistic traffic: windows cut from a SEG-Y survey, as a client would send them.

    python scripts/send_traffic.py data/tour/survey.sgy [--url http://127.0.0.1:8080] [--windows 4000]
        [--block test] [--batch 32] [--rate 1000] [--gain 2.0] [--noise 1.0] [--polarity] [--seed 0]

Windows are cut from the survey at uniformly drawn positions with the served model's own window shape (read
from ``/model_info``) and sent as raw amplitudes, little-endian float32, to ``/predict``: the same
amplitudes the model was trained on, so the answers and the inference log look like production traffic
(random ``normal(0, 1e3)`` windows saturate the model and every data-quality check). ``--block test`` draws
only from the inline block the model was tested on, and from which its reference profile was taken (the
split is in the served model's metadata): traffic that should read as "no drift", where the training block,
which the network has fitted, reads as slightly different embeddings. ``--gain``, ``--noise``
(extra Gaussian noise, in units of the survey's RMS) and ``--polarity`` shift what is sent, which the
monitor then reports as drift. ``--rate`` paces the windows a second, so the server's feature sampling
(``inference_log.feature_rate``, 500 a second by default) sees most of them.

Prints one line per 1,000 windows and a JSON summary: windows sent, requests ok/failed, the predicted class
mix and where the server logs them. Exit status 0 when every request succeeded, 1 otherwise, 2 when the
survey or the server cannot be used (one line on stderr). Needs no torch: it runs beside ``serving/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from seismic.data.windows import SPLITS, SplitSpec, WindowSpec, extract_windows
from seismic.io.errors import SeismicIOError
from seismic.io.segy import read_cube


class TrafficError(RuntimeError):
    pass


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url: str, wait_s: float) -> dict:
    """The server's ``/model_info`` once ``/ready`` says a model is loaded, polling for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as response:
                if response.status == 200:
                    return _get(f"{url}/model_info", timeout=10)
        except (urllib.error.URLError, OSError) as err:
            last = err
        if time.monotonic() >= deadline:
            raise TrafficError(
                f"no server ready at {url} after {wait_s:.0f} s ({last}); start scripts/serve.py"
            )
        time.sleep(0.5)


def window_spec(info: dict) -> WindowSpec:
    """The served model's window: from its metadata, else from the input shape ``[1, (W,) T]``."""
    meta = info.get("metadata") or {}
    if isinstance(meta.get("window"), dict):
        return WindowSpec.from_mapping(meta["window"])
    shape = info["window_shape"]
    return WindowSpec(length=int(shape[-1]), width=int(shape[-2]) if len(shape) == 3 else 1)


def shifted(
    windows: np.ndarray, rng: np.random.Generator, rms: float, args: argparse.Namespace
) -> np.ndarray:
    out = windows * np.float32(args.gain)
    if args.noise:
        out = out + rng.normal(0.0, args.noise * rms, size=out.shape).astype(np.float32)
    if args.polarity:
        out = -out
    return out.astype("<f4", copy=False)


def send(url: str, batch: np.ndarray, api_key: str | None, timeout: float) -> dict:
    headers = {"Content-Type": "application/octet-stream", "X-Shape": ",".join(map(str, batch.shape))}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(f"{url}/predict", data=batch.tobytes(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def run(args: argparse.Namespace) -> dict:
    url = args.url.rstrip("/")
    info = wait_ready(url, args.wait)
    spec = window_spec(info)
    try:
        volume, _, _, _ = read_cube(args.survey)
    except (SeismicIOError, OSError) as err:
        raise TrafficError(f"cannot read the survey: {err}") from None
    rng = np.random.default_rng(args.seed)
    first, stop = 0, volume.shape[0]
    if args.block:
        split = (info.get("metadata") or {}).get("split")
        try:
            first, stop = (SplitSpec.from_mapping(split) if split else SplitSpec()).blocks(volume.shape[0])[
                args.block
            ]
        except ValueError as err:
            raise TrafficError(f"{args.survey}: --block {args.block}: {err}") from None
    shape = (stop - first, *volume.shape[1:])
    rms = float(np.sqrt(np.mean(np.square(volume[:: max(1, shape[0] // 16)], dtype=np.float64))))
    classes: Counter[str] = Counter()
    ok = failed = sent = 0
    errors: list[str] = []
    started = time.monotonic()
    while sent < args.windows:
        n = min(args.batch, args.windows - sent)
        centres = [rng.integers(0, size, n) for size in shape]
        centres[0] += first
        batch = shifted(extract_windows(volume, *centres, spec), rng, rms, args)
        try:
            answer = send(url, batch, args.api_key, args.timeout)
            ok += 1
            classes.update(answer["class_names"][c] for c in answer["classes"])
        except (urllib.error.URLError, OSError, KeyError, ValueError) as err:
            failed += 1
            if len(errors) < 5:
                body = (
                    err.read().decode(errors="replace")[:300]
                    if isinstance(err, urllib.error.HTTPError)
                    else ""
                )
                errors.append(f"{err} {body}".strip())
        before = sent
        sent += n
        if sent // 1000 > before // 1000 or sent == args.windows:
            print(f"send_traffic: {sent}/{args.windows} windows, {failed} failed request(s)", file=sys.stderr)
        if args.rate:  # pace to the asked windows/s
            ahead = sent / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    seconds = time.monotonic() - started
    return {
        "server": url,
        "model": {"name": info.get("name"), "version": info.get("version")},
        "survey": str(args.survey),
        "inlines": [first, stop],
        "shift": {"gain": args.gain, "noise": args.noise, "polarity": args.polarity},
        "windows": sent,
        "requests_ok": ok,
        "requests_failed": failed,
        "seconds": round(seconds, 1),
        "windows_per_s": round(sent / seconds, 1) if seconds else None,
        "predicted": dict(sorted(classes.items())),
        "errors": errors,
        "logged_to": "the server's inference_log.directory (default data/inference_log)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "survey", type=Path, help="a post-stack SEG-Y cube (e.g. the one the model trained on)"
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--windows", type=int, default=4000, help="windows to send in all")
    parser.add_argument("--block", choices=SPLITS, default=None, help="only this split's inlines")
    parser.add_argument("--batch", type=int, default=32, help="windows per request")
    parser.add_argument("--rate", type=float, default=1000.0, help="windows a second at most (0: no pacing)")
    parser.add_argument("--gain", type=float, default=1.0, help="multiply the amplitudes (drift: 2.0)")
    parser.add_argument("--noise", type=float, default=0.0, help="add noise of this many survey RMS")
    parser.add_argument("--polarity", action="store_true", help="reverse the polarity (x -> -x)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server to be ready")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--api-key", default=None, help="the server's key, if it needs one ($SEISMIC_API_KEY)"
    )
    args = parser.parse_args(argv)
    for name in ("windows", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.rate < 0 or args.noise < 0:
        parser.error("--rate and --noise must be >= 0")
    if args.api_key is None:
        args.api_key = os.environ.get("SEISMIC_API_KEY")
    try:
        summary = run(args)
    except TrafficError as err:
        print(f"send_traffic failed: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0 if summary["requests_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
