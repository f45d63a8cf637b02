"""Well-formedness of what configs point at: tracking URIs, model sources, paths. Nothing is contacted."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

_DB_SCHEMES = ("postgresql", "mysql", "mssql")
# MLflow's registry names may hold anything but the separators of models:/<name>@<alias> and /<version>
_MODEL_NAME = re.compile(r"^[^/@\s]+$")


def tracking_uri_problem(uri: object) -> str | None:
    """Why ``uri`` is not an MLflow tracking URI MLflow would accept, or None."""
    if not isinstance(uri, str) or not uri.strip():
        return f"must be a non-empty string, got {uri!r}"
    if uri != uri.strip():
        return f"{uri!r} has leading or trailing blanks"
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    expected = (
        "expected sqlite:///PATH, http(s)://HOST[:PORT], file:///PATH, postgresql://HOST/DB or databricks"
    )
    if scheme == "":  # a local folder (MLflow's file store), unless it is a URI with its colon lost
        typo = re.match(r"(https?|sqlite|file|postgresql|mysql|mssql|databricks)/+", uri)
        return f"{uri!r} looks like a URI without its ':'; {expected}" if typo or "://" in uri else None
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or not uri.removeprefix("sqlite:///").strip("/"):
            return f"{uri!r}: a sqlite store is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        return None
    if scheme in ("http", "https"):
        try:
            port = parsed.port  # raises for a port that is not a number in range
        except ValueError as err:
            return f"{uri!r}: {err}"
        if not parsed.hostname:
            return f"{uri!r} has no host"
        return f"{uri!r}: port 0" if port == 0 else None
    if scheme == "file":
        return None if parsed.path else f"{uri!r} has no path"
    if scheme in _DB_SCHEMES:
        return None if parsed.hostname and parsed.path.strip("/") else f"{uri!r}: expected {scheme}://HOST/DB"
    if scheme in ("databricks", "databricks-uc"):
        return None
    if len(scheme) == 1:  # a Windows drive letter: a local path
        return None
    return f"{uri!r}: unknown scheme {parsed.scheme!r}; {expected}"


def model_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        return f"a registered model name must be non-empty without '/', '@' or blanks, got {name!r}"
    return None


def model_source_problem(source: object) -> str | None:
    """A model folder path, or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``."""
    if not isinstance(source, str) or not source.strip():
        return f"must be a model folder or a models:/ URI, got {source!r}"
    if source.startswith("models:/"):
        from serving.runtime import ModelLoadError, parse_registry_uri

        try:
            parse_registry_uri(source)
        except ModelLoadError as err:
            return str(err)
        return None
    if "://" in source:
        return f"{source!r}: a model source is a folder or models:/<name>@<alias>; other URIs are not loaded"
    return path_problem(source)


def path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return f"must be a non-empty path, got {path!r}"
    if "\x00" in path:
        return f"{path!r} holds a NUL byte"
    return None


def is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("models:/")


def exists(path: str) -> bool:
    return Path(path).expanduser().exists()
