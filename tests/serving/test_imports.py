"""The serving process stays free of torch and Lightning (small image, fast start)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_serving_imports_neither_torch_nor_lightning(model_dirs):
    code = (
        "import sys, json, numpy as np\n"
        "import serving.app, serving.runtime, serving.server, serving.reload\n"
        f"m = serving.runtime.load_model({str(model_dirs['cnn1d'])!r})\n"
        "m.predict(np.zeros((2, 1, 64), np.float32))\n"
        "print(json.dumps([k for k in sys.modules if k.split('.')[0] in "
        "('torch', 'lightning', 'pytorch_lightning')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
