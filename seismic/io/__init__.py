"""Survey file I/O: SEG-Y reading/writing (:mod:`seismic.io.segy`), atomic writes and the error family."""

from seismic.io.segy import (
    SegyFile,
    labels_path_for,
    open_segy,
    provenance_path_for,
    read_cube,
    write_cube,
)

__all__ = ["SegyFile", "labels_path_for", "open_segy", "provenance_path_for", "read_cube", "write_cube"]
