#!/usr/bin/env bash
# The peer servers of benchmarks/latency.py, each in its own venv under .peers/ (their dependencies clash
# with ours and with each other): bash benchmarks/peers/setup.sh [triton] [litserve] [kserve]
# PyTriton's Python backend stub links the system libpython3.11, so its venv must come from that same build
# (Debian's /usr/bin/python3.11; override with TRITON_PYTHON). The others use PYTHON (default python3.11).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3.11}
TRITON_PYTHON=${TRITON_PYTHON:-/usr/bin/python3.11}
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(triton litserve kserve)
for peer in "${peers[@]}"; do
  case "$peer" in
    triton) python=$TRITON_PYTHON; packages="nvidia-pytriton==0.7.0" ;;
    litserve) python=$PYTHON; packages="litserve==0.2.19" ;;
    kserve) python=$PYTHON; packages="kserve==0.21.0" ;;
    *) echo "setup.sh: unknown peer '$peer' (triton, litserve, kserve)" >&2; exit 2 ;;
  esac
  "$python" -m venv ".peers/$peer"
  ".peers/$peer/bin/python" -m pip install --quiet --upgrade pip
  ".peers/$peer/bin/python" -m pip install --quiet $packages "onnxruntime==$(.venv/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || echo 1.32.0)" numpy
  echo "peer $peer: .peers/$peer"
done
