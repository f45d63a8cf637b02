"""Drift reports: the machine-readable JSON (versioned schema) and the HTML page for people."""
