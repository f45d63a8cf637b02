"""Drift statistics, their chunk calibration, and the detectors that turn them into decisions."""
