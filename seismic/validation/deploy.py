"""Every deployment file parses: YAML under deploy/, docker-compose*.yml, the GitHub workflows; JSON under
deploy/ (dashboards). Kubernetes-style documents (those with a ``kind``) need ``apiVersion`` and a name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from seismic.validation.compose import yaml_error

YAML_PATTERNS = (
    "deploy/**/*.yaml",
    "deploy/**/*.yml",
    "docker-compose*.yml",
    "docker-compose*.yaml",
    "compose*.yml",
    "compose*.yaml",
    ".github/workflows/*.yml",
    ".github/workflows/*.yaml",
)
JSON_PATTERNS = ("deploy/**/*.json",)


def files(root: Path) -> tuple[list[Path], list[Path]]:
    def matching(patterns: tuple[str, ...]) -> list[Path]:
        return sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})

    return matching(YAML_PATTERNS), matching(JSON_PATTERNS)


def check(root: Path, problem: Callable[[str, str, str], None]) -> int:
    """Parse every deployment file under ``root``; ``problem(file, key, reason)``. Returns the file count."""
    yaml_files, json_files = files(root)
    for path in yaml_files:
        rel = str(path.relative_to(root))
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as err:
            problem(rel, "", yaml_error(err))
            continue
        except (OSError, UnicodeDecodeError) as err:
            problem(rel, "", f"unreadable: {err}")
            continue
        for n, doc in enumerate(documents, 1):
            where = f"document {n}" if len(documents) > 1 else ""
            if doc is None:
                continue
            if not isinstance(doc, dict):
                problem(rel, where, f"is a {type(doc).__name__}, expected a mapping")
                continue
            if path.name.startswith(("docker-compose", "compose")) and not isinstance(
                doc.get("services"), dict
            ):
                problem(rel, "services", "a compose file needs a services mapping")
            if "kind" in doc:
                name = (
                    (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
                )
                label = f"{where or 'document'} ({doc['kind']})"
                if not doc.get("apiVersion"):
                    problem(rel, label, "a Kubernetes object needs apiVersion")
                kustomize = "kustomize.config.k8s.io" in str(doc.get("apiVersion"))  # no metadata needed
                if not name and not kustomize and not str(doc["kind"]).endswith("List"):
                    problem(rel, label, "a Kubernetes object needs metadata.name")
    for path in json_files:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError) as err:
            problem(str(path.relative_to(root)), "", f"invalid JSON: {err}")
    return len(yaml_files) + len(json_files)
