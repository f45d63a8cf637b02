"""The monitoring job: windows of the inference log through the detectors, with metrics, retraining."""
