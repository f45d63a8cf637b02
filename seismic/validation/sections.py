"""Checks of the sections several CLIs share (paths, env, registry, data, publish) and helpers for all.

Each check calls the library's own validation where the CLI does (the dataclasses' ``from_mapping``, the
alert channels' builder, the structured schemas of ``seismic.config``) and adds strict type checks where the
library would only fail later with a ``TypeError`` that names no key.
"""

from __future__ import annotations

import inspect
import logging
import re
import typing
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import TypeAdapter, ValidationError

from seismic.config import DataSchema, EnvSchema, PathsSchema, PublishSchema, RegistrySchema
from seismic.data.acquisition import AcquisitionRanges, Augmentation
from seismic.data.windows import NORMALISATION_DEFAULTS, SAMPLING_DEFAULTS, SplitSpec, WindowSpec
from seismic.validation import uris

Problem = Callable[[str, str], None]  # (dotted key, reason)
SCHEMAS = {"paths": PathsSchema, "env": EnvSchema, "registry": RegistrySchema, "publish": PublishSchema}
THRESHOLDS = {"alpha": (float, 0.0, 1.0), "calibration_z": (float, 0.0, None), "adaptive": (bool, None, None)}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_UNKNOWN = re.compile(r"unknown (?:key|argument)\(s\) \[([^\]]*)\]")


def refine(key: str, message: str, keys: set[str]) -> str:
    """The most precise existing config key a library message names under ``key`` (its validators name
    their own fields: ``raw.gate`` under ``drift`` is ``drift.raw.gate``); else ``key`` itself."""
    names = [n.strip(" '\"") for m in _UNKNOWN.finditer(message) for n in m[1].split(",")]
    names += _DOTTED.findall(message)
    last = key.split(".")[-1] if key else ""
    for name in names:
        candidates = [name, f"{key}.{name}" if key else name]
        if last and name.startswith(f"{last}."):
            candidates.append(f"{key}.{name.split('.', 1)[1]}")
        for candidate in candidates:
            if candidate in keys and (not key or candidate.startswith(f"{key}.") or candidate == key):
                return candidate
    return key


def flat_keys(node: Any, prefix: str = "") -> set[str]:
    """Every dotted path of a plain config (intermediate nodes included)."""
    keys = {prefix} if prefix else set()
    if isinstance(node, Mapping):
        for name, child in node.items():
            keys |= flat_keys(child, f"{prefix}.{name}" if prefix else str(name))
    return keys


@cache
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def typed(cls: type, mapping: Mapping[str, Any], section: str, problem: Problem) -> bool:
    """Each value of ``mapping`` against the type hint of ``cls``'s field (strict: no "64" for an int)."""
    hints = typing.get_type_hints(cls)
    ok = True
    for key, value in mapping.items():
        if key not in hints:
            continue
        plain = tuple(value) if isinstance(value, list) else value
        try:
            _adapter(hints[key]).validate_python(plain, strict=True)
        except ValidationError as err:
            problem(f"{section}.{key}", f"{err.errors()[0]['msg']}, got {value!r}")
            ok = False
    return ok


def library(section: str, problem: Problem, build: Callable[[], Any]) -> Any:
    """Run a library validator; its ValueError/TypeError becomes a problem at the key it names."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        problem(section, str(err))  # the key is refined where the problem is recorded
        return None


def schema(name: str, value: Any, problem: Problem, cls: type | None = None) -> bool:
    """``value`` merged onto a structured schema of seismic.config: unknown keys and wrong types."""
    try:
        OmegaConf.merge(OmegaConf.structured(cls or SCHEMAS[name]), value)
    except OmegaConfBaseException as err:
        problem(f"{name}.{err.full_key}" if err.full_key else name, str(err.msg or err).splitlines()[0])
        return False
    return True


def number(value: Any, key: str, problem: Problem, low: float | None = None, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (low is not None and value < low):
        what = "an integer" if integer else "a number"
        problem(key, f"must be {what}{f' >= {low}' if low is not None else ''}, got {value!r}")


def target(node: Any, key: str, problem: Problem) -> None:
    """A ``_target_`` node as hydra.utils.instantiate takes it: importable, and its keys accepted."""
    if node is None:
        return
    if not isinstance(node, Mapping) or "_target_" not in node:
        problem(key, f"must be a mapping with _target_ (or null), got {node!r}")
        return
    from hydra.utils import get_object

    try:
        obj = get_object(str(node["_target_"]))
    except Exception as err:  # ImportError, or whatever the module raises on import
        problem(f"{key}._target_", f"cannot import {node['_target_']!r}: {err}")
        return
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(node) - set(params) - HYDRA_KEYS)
    if unknown:
        problem(f"{key}.{unknown[0]}", f"{node['_target_']} takes no argument(s) {unknown}")


def paths(section: Mapping[str, Any], problem: Problem) -> None:
    if not schema("paths", section, problem):
        return
    for key, value in section.items():
        reason = uris.path_problem(value)
        if reason is None and not Path(str(value)).is_absolute():
            reason = f"must be absolute (run folders would move it), got {value!r}"
        if reason:
            problem(f"paths.{key}", reason)


def env(section: Mapping[str, Any], problem: Problem) -> None:
    if not schema("env", section, problem):
        return
    if reason := uris.tracking_uri_problem(section["tracking_uri"]):
        problem("env.tracking_uri", reason)
    location = section.get("artifact_location")
    if location is not None and (reason := uris.path_problem(location)):
        problem("env.artifact_location", reason)
    if section["log_level"] not in logging.getLevelNamesMapping():  # what Logger.setLevel takes
        levels = sorted(logging.getLevelNamesMapping())
        problem("env.log_level", f"must be one of {levels}, got {section['log_level']!r}")
    thresholds = section.get("thresholds") or {}
    for key in sorted(set(thresholds) - set(THRESHOLDS)):
        problem(f"env.thresholds.{key}", f"unknown key; known: {sorted(THRESHOLDS)}")
    for key, (kind, low, high) in THRESHOLDS.items():
        value = thresholds.get(key)
        if key not in thresholds:
            problem(f"env.thresholds.{key}", "missing (configs/monitor.yaml reads it)")
        elif kind is bool and not isinstance(value, bool):
            problem(f"env.thresholds.{key}", f"must be true or false, got {value!r}")
        elif kind is float and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value <= low  # type: ignore[operator]
            or (high is not None and value >= high)
        ):
            bound = f"in ({low}, {high})" if high is not None else f"> {low}"
            problem(f"env.thresholds.{key}", f"must be a number {bound}, got {value!r}")
    from seismic.monitoring.alerting.channels import build_channels

    quiet = logging.getLogger("seismic.monitoring.alerting.channels")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a channel whose secret is unset is warned about where it runs
    try:
        library("env.alert_channels", problem, lambda: build_channels(list(section["alert_channels"]), "x"))
    finally:
        quiet.setLevel(level)


def registry(section: Mapping[str, Any], problem: Problem) -> None:
    if not schema("registry", section, problem):
        return
    if reason := uris.model_name_problem(section["model_name"]):
        problem("registry.model_name", reason)
    if reason := uris.tracking_uri_problem(section["tracking_uri"]):
        problem("registry.tracking_uri", reason)


def publish(section: Mapping[str, Any], problem: Problem) -> None:
    if not schema("publish", section, problem):
        return
    number(section["export"]["opset"], "publish.export.opset", problem, low=7, integer=True)
    number(section["export"]["parity_bound"], "publish.export.parity_bound", problem, low=0.0)
    number(section["export"]["large_batch"], "publish.export.large_batch", problem, low=1, integer=True)
    for key in ("max_windows", "max_embeddings"):
        number(section["profile"][key], f"publish.profile.{key}", problem, low=1, integer=True)
    if reason := uris.path_problem(section["output_dir"]):
        problem("publish.output_dir", reason)


def data(
    section: Mapping[str, Any], problem: Problem, note: Callable[[str], None], placeholders: Mapping[str, str]
) -> None:
    """What SeismicDataModule and the survey sources check, before any survey is generated or read."""
    if not schema("data", section, problem, DataSchema):
        return
    if section["source"] not in ("synthetic", "segy"):
        problem("data.source", f"must be 'synthetic' or 'segy', got {section['source']!r}")
    window = dict(section["window"])
    if typed(WindowSpec, window, "data.window", problem):
        library("data.window", problem, lambda: WindowSpec.from_mapping(window))
    split = dict(section["split"])
    if typed(SplitSpec, split, "data.split", problem):
        library("data.split", problem, lambda: SplitSpec.from_mapping(split))
    for key, value in section["sampling"].items():
        if key not in SAMPLING_DEFAULTS:
            problem(f"data.sampling.{key}", f"unknown key; expected {sorted(SAMPLING_DEFAULTS)}")
            continue
        default = SAMPLING_DEFAULTS[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            problem(f"data.sampling.{key}", f"must be true or false, got {value!r}")
        elif isinstance(default, float):  # a share (cross_axis_fraction)
            number(value, f"data.sampling.{key}", problem, low=0)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 1:
                problem(f"data.sampling.{key}", f"must be a share in [0, 1], got {value!r}")
        elif not isinstance(default, bool):
            number(value, f"data.sampling.{key}", problem, low=0 if key == "seed" else 1, integer=True)
    number(
        section["normalisation"].get("max_traces"), "data.normalisation.max_traces", problem, 1, integer=True
    )
    for key in sorted(set(section["normalisation"]) - set(NORMALISATION_DEFAULTS)):
        problem(f"data.normalisation.{key}", f"unknown key; expected {sorted(NORMALISATION_DEFAULTS)}")
    if section["normalisation"].get("clip_sigma") is not None:
        number(section["normalisation"]["clip_sigma"], "data.normalisation.clip_sigma", problem, low=0.0)
    number(section["batch_size"], "data.batch_size", problem, low=1, integer=True)
    number(section["num_workers"], "data.num_workers", problem, low=0, integer=True)
    library("data.augment", problem, lambda: Augmentation.from_mapping(dict(section["augment"])))
    ranges = library(
        "data.acquisition", problem, lambda: AcquisitionRanges.from_mapping(dict(section["acquisition"]))
    )
    if ranges is not None and ranges.active and section["source"] != "synthetic":
        problem("data.acquisition", "acquisition ranges apply to synthetic surveys only; use data.augment")
    if section["source"] == "synthetic":
        if section.get("survey") is None:
            problem("data.survey", "data.source is synthetic: the survey generator's settings are needed")
        else:
            from seismic.data.sources import survey_configs

            library(
                "data.survey",
                problem,
                lambda: survey_configs(dict(section["survey"]), dict(section["acquisition"])),
            )
    elif section["source"] == "segy":
        segy = section.get("segy") or {}
        if reason := uris.path_problem(segy.get("path")):
            problem("data.segy.path", reason)
        elif "data.segy.path" not in placeholders and not uris.exists(segy["path"]):
            note(f"data.segy.path {segy['path']} does not exist here (fine if it does where the job runs)")
        for key in ("iline", "xline"):
            number(segy.get(key), f"data.segy.{key}", problem, low=1, integer=True)
