"""One exception family for everything that reads or writes survey files.

Every error carries the offending path and a human-readable reason, so a message always says which
file and why; catch :class:`SeismicIOError` to handle them all.
"""

from __future__ import annotations

from pathlib import Path


class SeismicIOError(Exception):
    """Base class: ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SegyTruncatedError(SeismicIOError):
    """The file is shorter than its headers say (cut short during a copy or a write)."""


class SegyNoTracesError(SeismicIOError):
    """The file holds headers but no trace."""


class SegyFormatError(SeismicIOError):
    """Unknown or unsupported sample format code, or a byte order that cannot be decided."""


class SegyHeaderError(SeismicIOError):
    """A binary or trace header cannot be read or holds impossible values."""


class SegyTraceLengthError(SeismicIOError):
    """Traces do not all have the same number of samples, or it disagrees with the headers."""


class SegyGeometryError(SeismicIOError):
    """No inline/crossline geometry at the header bytes that were tried."""


class SurveyFileError(SeismicIOError):
    """A saved survey folder (arrays + metadata) is missing, incomplete or inconsistent."""
