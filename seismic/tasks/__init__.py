"""Lightning tasks: what is optimised and measured, independent of the data and the network."""

from seismic.tasks.classification import MONITOR, MONITOR_MODE, FaciesClassificationTask, build_metrics

__all__ = ["MONITOR", "MONITOR_MODE", "FaciesClassificationTask", "build_metrics"]
