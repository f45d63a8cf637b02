"""Monitoring: is live data still like the data the model was trained on, and who needs to know.

Sub-packages, each importing only from those listed before it (``tests/test_layers.py`` enforces this):

- ``profile``, ``state``: the reference profile written at export, and the monitor's persistent state.
- ``drift``: statistics, chunk calibration and detectors (raw features, predictions, embeddings, polarity),
  the drift config and result types, and thresholds adapted from history.
- ``reports``: the JSON report (schema, validation) and its HTML view.
- ``alerting``: alert rules (dedup, cooldown, resolve) and the channels that deliver them.
- ``job``: one monitoring run over a window of the inference log, the scheduler around it, Prometheus
  metrics of its reports and the retrain trigger.
"""
