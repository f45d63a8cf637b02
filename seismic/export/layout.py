"""File names of a model folder (kept free of torch so that registry look-ups and serving can use them)."""

ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.pt"
PROFILE_FILES = ("profile.json", "profile.npz")  # seismic.monitoring.profile writes them
