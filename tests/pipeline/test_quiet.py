"""seismic.pipeline.quiet: the third-party noise issue 18 lists is gone, real messages still come through."""

from __future__ import annotations

import logging
import warnings

import pytest

from seismic.pipeline.quiet import quiet


@pytest.fixture
def root_handler():
    # as under Hydra: the root logger has a handler, so propagated records are printed once, by it
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)


def test_lightning_lines_appear_once_and_tips_not_at_all(root_handler):
    import lightning  # noqa: F401  (installs its own console handler at import)

    quiet()
    assert not [h for h in logging.getLogger("lightning").handlers if type(h) is logging.StreamHandler]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.info("💡 Tip: For seamless cloud logging ... try installing [litlogger]")
    rank_zero.info("GPU available: False, used: False")
    messages = [r.getMessage() for r in root_handler]
    assert messages.count("GPU available: False, used: False") == 1
    assert not any("litlogger" in m for m in messages)


def test_mlflow_experiment_creation_is_info_and_other_warnings_stay(root_handler):
    quiet()
    mlflow_logger = logging.getLogger("lightning.pytorch.loggers.mlflow")
    mlflow_logger.warning("Experiment with name seismic-train not found. Creating it.")
    mlflow_logger.warning("something else went wrong")
    levels = {r.getMessage(): r.levelname for r in root_handler}
    assert levels["Experiment with name seismic-train not found. Creating it."] == "INFO"
    assert levels["something else went wrong"] == "WARNING"


def test_leafspec_deprecation_is_silenced_but_not_other_deprecations():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet()
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1
        )
        warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another deprecation"]


def test_quiet_is_idempotent():
    quiet()
    quiet()
    filters = logging.getLogger("lightning.pytorch.loggers.mlflow").filters
    assert len([f for f in filters if "Creating it" in getattr(f, "text", "")]) == 1
