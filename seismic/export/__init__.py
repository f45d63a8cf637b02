"""ONNX export with metadata and a parity check (:mod:`.onnx`), the PyTorch weights beside it
(:mod:`.weights`), held-out windows for checks (:mod:`.heldout`), the model folder's file names
(:mod:`.layout`, no torch). Import from the submodules."""
