"""Inference helpers shared by training, batch scoring and serving (numpy only: no torch here)."""
