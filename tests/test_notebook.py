"""examples/quickstart.ipynb runs from top to bottom (slow: it trains a small model).

Executed with nbclient in a real Jupyter kernel, as a user would run it; the notebook asserts its own drift
verdicts (no drift as it is, drift at gain x2), so a wrong answer fails here as a CellExecutionError.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat", reason="the notebook extra: pip install -e '.[notebook]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra: pip install -e '.[notebook]'")


def test_notebook_is_stored_without_outputs() -> None:
    # outputs in git are stale pictures of another machine's run, and bloat every diff
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with_outputs = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not with_outputs, (
        f"{NOTEBOOK.name}: cells {with_outputs} carry outputs; clear them before committing"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEISMIC_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    (tmp_path / "work").mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "test macro-F1" in outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert (tmp_path / "work" / "survey.classes.sgy").is_file()
