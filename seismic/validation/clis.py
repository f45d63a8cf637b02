"""The checks of each CLI's composed configuration: what the CLI itself validates before it starts work,
plus what it would only find out later or never (a misspelt top-level key that no schema catches, a
malformed URI, a launcher whose plugin cannot be imported)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seismic.validation import sections, uris
from seismic.validation.sections import library, number, target, typed
from serving.settings import CONFIG_SECTIONS as SERVE_SECTIONS

SHARED = ("paths", "env", "registry")
# configs/monitor.yaml has no structured schema: the keys scripts/monitor.py and the schedule read
MONITOR_KEYS = {
    "": {
        *SHARED, "drift", "model_dir", "log_dir", "start", "end", "lookback", "granularity",
        "max_rows_per_window", "compare_previous", "output_dir", "schedule", "workdir", "state_file",
        "metrics", "alerts", "adaptive", "retrain", "quality",
    },
    "quality": {"labels_dir", "z", "min_drop", "min_labelled", "n_draws", "maps_dir"},
    "schedule": {"every", "once", "delay", "backfill", "poll"},
    "metrics": {"host", "port", "pushgateway", "push_job"},
    "alerts": {
        "channels", "receiver", "external_url", "repeat_interval", "cooldown", "quality", "max_items",
        "retry",
    },
    "alerts.quality": {"nonfinite", "dead", "out_of_range"},
}  # fmt: skip
PLACEHOLDER_URI = "http://placeholder.invalid:5000"
SURVEY_FORMATS = ("ieee", "ibm")  # what make_survey writes and verifies (IBM within its precision)
_UNEXPECTED = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
_CLASS_SECTIONS = {"RetrainConfig": "retrain", "RetryPolicy": "alerts.retry", "AlertSettings": "alerts"}


@contextlib.contextmanager
def placeholder_env(names: set[str], note: Callable[[str], None]) -> Iterator[None]:
    """Environment variables the configs read but that are not set here, set to placeholders meanwhile."""
    saved = {}
    for name in sorted(names):
        if name not in os.environ:
            value = PLACEHOLDER_URI if re.search("URI|URL", name) else "placeholder"
            saved[name] = value
            os.environ[name] = value
            note(f"${name} is not set here: checked with the placeholder {value!r}")
    try:
        yield
    finally:
        for name in saved:
            os.environ.pop(name, None)


@dataclass
class Context:
    """One composition under check: where its problems and notes go."""

    problem: Callable[[str, str], None]
    note: Callable[[str], None]
    placeholders: dict[str, str] = field(default_factory=dict)
    hydra: dict[str, Any] = field(default_factory=dict)  # callbacks, sweeper, launcher, resolved
    model: Any = None  # seismic.validation.model.ModelFolder when model=... was given


def check(cli: str, cfg: DictConfig, ctx: Context) -> None:
    data = OmegaConf.to_container(cfg)
    assert isinstance(data, dict)
    for name in ("paths", "env", "registry", "publish"):
        if name in data:
            getattr(sections, name)(data[name], ctx.problem)
    if "data" in data:
        sections.data(data["data"], ctx.problem, ctx.note, ctx.placeholders)
    CHECKS.get(cli, _unknown)(cli, cfg, data, ctx)


def _unknown(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    ctx.note(f"{cli}: composed and resolved; no CLI-specific checks are known for it")


def _source(key: str, source: Any, tracking: tuple[str, Any], ctx: Context) -> None:
    """A model source, and for a registry source the tracking URI it is looked up in (key, value)."""
    if reason := uris.model_source_problem(source):
        ctx.problem(key, reason)
    elif str(source).startswith("models:/"):
        if tracking[1] is not None and (reason := uris.tracking_uri_problem(tracking[1])):
            ctx.problem(tracking[0], reason)
    elif key not in ctx.placeholders and not uris.exists(str(source)):
        ctx.note(f"{key} {source} does not exist here (fine if it does where the job runs)")


def _known_keys(data: Mapping[str, Any], known: dict[str, set[str]], ctx: Context) -> None:
    for section, keys in known.items():
        node = OmegaConf.select(OmegaConf.create(dict(data)), section) if section else data
        if not isinstance(node, Mapping):
            continue
        for key in sorted(set(node) - keys):
            full = f"{section}.{key}" if section else key
            ctx.problem(full, f"unknown key (nothing reads it); known: {sorted(keys)}")


@cache
def _task_problem(model_json: str, window_json: str, num_classes: int) -> str | None:
    """Build the Lightning task as scripts/train.py does (network included; no data needed)."""
    from seismic.models import model_task
    from seismic.pipeline.train import LOSS_KEYS, TASK_KEYS
    from seismic.tasks import task_class

    model, window = json.loads(model_json), json.loads(window_json)
    loss = model.get("loss") or {}
    try:
        # the task the model declares (segmentation nets check their tile sizes and the Dice weight)
        name = str(model.get("name"))
        unknown = sorted(set(loss) - LOSS_KEYS[model_task(name)])
        if unknown:
            raise ValueError(f"model.loss: unknown key(s) {unknown}")
        extra = {"dice_weight": float(loss.get("dice_weight") or 0.0)} if "dice_weight" in loss else {}
        task_class(name)(
            model=model.get("name"),
            model_kwargs={k: v for k, v in model.items() if k not in TASK_KEYS},
            num_classes=num_classes,
            class_weights=loss.get("class_weights"),
            label_smoothing=float(loss.get("label_smoothing", 0.0)),
            optimizer=model.get("optimizer") or {},
            scheduler=model.get("scheduler"),
            window=window,
            **extra,
        )
    except (ValueError, TypeError, KeyError) as err:
        return str(err)
    return None


def train(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from seismic.pipeline.train import check_trainer_keys

    library("trainer", ctx.problem, lambda: check_trainer_keys(data["trainer"]))
    for key in sorted(set(data) - {f.name for f in dataclasses.fields(_train_schema())}):
        ctx.problem(key, "unknown top-level key")  # only reachable through an append (+key=...)
    model = data.get("model") or {}
    if not model.get("name"):
        ctx.problem("model.name", "missing: the model group (model=cnn1d|cnn2d) sets it")
    else:
        from seismic.data.facies import FACIES

        # the class count comes from the data at run time: the generator's facies, or the SEG-Y's labels
        names = (data["data"].get("segy") or {}).get("class_names")
        weights = (model.get("loss") or {}).get("class_weights")
        synthetic = data["data"]["source"] == "synthetic"
        n = len(FACIES) if synthetic else len(names or weights or FACIES)
        reason = _task_problem(json.dumps(model, sort_keys=True), json.dumps(data["data"]["window"]), n)
        if reason:
            ctx.problem(_task_key(reason), reason)
    for group in ("callbacks", "logger"):
        for name, node in (data.get(group) or {}).items():
            target(node, f"{group}.{name}", ctx.problem)
            uri = node.get("tracking_uri") if isinstance(node, Mapping) else None
            if uri is not None and (reason := uris.tracking_uri_problem(uri)):
                ctx.problem(f"{group}.{name}.tracking_uri", reason)
    _sweep(cfg, ctx)


def _task_key(reason: str) -> str:
    """The model key a task error is about (the task's messages name its own arguments)."""
    if match := re.search(r"unknown argument\(s\) \['(\w+)'", reason):
        return f"model.{match[1]}"
    if match := re.match(r"(optimizer|scheduler)\.(\w+)", reason):
        return f"model.{match[1]}.{match[2]}"
    if match := re.match(r"(class_weights|label_smoothing)\b", reason):
        return f"model.loss.{match[1]}"
    return "data.window.width" if reason.startswith("window width") else "model"


def _train_schema() -> type:
    from seismic.config import TrainSchema

    return TrainSchema


def _sweep(cfg: DictConfig, ctx: Context) -> None:
    """Hydra's callbacks, sweeper and launcher as a -m run instantiates them."""
    for name, node in (ctx.hydra.get("callbacks") or {}).items():
        target(node, f"hydra.callbacks.{name}", ctx.problem)
    for part in ("sweeper", "launcher"):
        node = ctx.hydra.get(part)
        if isinstance(node, Mapping) and node.get("_target_"):
            from hydra.utils import get_object

            try:
                get_object(str(node["_target_"]))
            except Exception as err:  # ImportError, or whatever the plugin raises on import
                ctx.problem(f"hydra.{part}._target_", f"cannot import {node['_target_']!r}: {err}")
    for key in (ctx.hydra.get("sweeper") or {}).get("params") or {}:
        name = str(key).lstrip("+~")
        if not str(key).startswith("+") and OmegaConf.select(cfg, name, default=_MISSING) is _MISSING:
            ctx.problem(f"hydra.sweeper.params.{key}", f"searches {name}, which the config does not have")


_MISSING = object()


def export(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    if reason := uris.path_problem(data.get("ckpt_path")):
        ctx.problem("ckpt_path", reason)
    elif "ckpt_path" not in ctx.placeholders and not uris.exists(str(data["ckpt_path"])):
        ctx.note(f"ckpt_path {data['ckpt_path']} does not exist here (fine if it does where the job runs)")


def promote(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from seismic.registry.policy import GateConfig

    if data["action"] not in ("promote", "rollback", "status"):
        ctx.problem("action", f"must be promote, rollback or status, got {data['action']!r}")
    version = data.get("version")
    if version is not None and not (str(version).isdigit() and int(version) >= 1):
        ctx.problem("version", f"must be null or a registry version number >= 1, got {version!r}")
    gate = dict(data["gate"])
    if typed(GateConfig, gate, "gate", ctx.problem):
        library("gate", ctx.problem, lambda: GateConfig.from_mapping(gate))


def make_survey(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from seismic.data.synthetic import SyntheticSurveyConfig

    if data["data"]["source"] != "synthetic":
        ctx.problem("data.source", "make_survey generates synthetic surveys only")
    elif data["data"].get("survey") is not None:  # one survey: a list of seeds is a training feature
        library(
            "data.survey", ctx.problem, lambda: SyntheticSurveyConfig.from_mapping(data["data"]["survey"])
        )
    if data["sample_format"] not in SURVEY_FORMATS:
        ctx.problem("sample_format", f"must be one of {SURVEY_FORMATS}, got {data['sample_format']!r}")
    if data["endian"] not in ("big", "little"):
        ctx.problem("endian", f"must be 'big' or 'little', got {data['endian']!r}")
    if reason := uris.path_problem(data["output"]):
        ctx.problem("output", reason)


def _pydantic(err: Any, ctx: Context) -> None:
    """One problem per pydantic error, at the key its location names, with the value it got."""
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            reason = "unknown key (Extra inputs are not permitted)"
        elif item["type"] == "missing" or not loc:
            reason = item["msg"]
        else:
            reason = f"{item['msg']}, got {item['input']!r}"
        ctx.problem(loc, reason)


def _providers(key: str, providers: Any, ctx: Context) -> None:
    import onnxruntime as ort

    known = set(ort.get_all_providers())
    for name in providers or ():
        if name not in known:
            ctx.problem(key, f"{name!r} is not an onnxruntime execution provider; known: {sorted(known)}")


def serve(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from pydantic import ValidationError

    from serving.settings import load_settings

    for key in sorted(set(data) - {*SERVE_SECTIONS, *SHARED}):
        ctx.problem(key, f"unknown key (scripts/serve.py reads {list(SERVE_SECTIONS)})")
    # what scripts/serve.py settings_from() hands to the server: the tracking URI only for registry sources
    values = {"env": data["env"]["name"], **{k: data[k] for k in SERVE_SECTIONS if k in data}}
    model = dict(values.get("model") or {})
    if not str(model.get("source", "")).startswith("models:/"):
        model["tracking_uri"] = None
    values["model"] = model
    key_env = (values.get("auth") or {}).get("api_key_env", "SEISMIC_API_KEY")
    required = bool((values.get("auth") or {}).get("required"))
    try:  # auth.required refuses to start without the key: its value is a secret, never in a config
        with placeholder_env({key_env} if required else set(), ctx.note):
            settings = load_settings(values)
    except ValidationError as err:
        _pydantic(err, ctx)
        return
    _providers("model.providers", settings.model.providers, ctx)
    _source("model.source", settings.model.source, ("model.tracking_uri", settings.model.tracking_uri), ctx)
    if ctx.model is not None:
        ctx.model.against_serve(settings, ctx)


def predict(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from pydantic import ValidationError

    from serving.predict_settings import load_predict_settings

    try:
        settings = load_predict_settings(data)
    except ValidationError as err:
        _pydantic(err, ctx)
        return
    _providers("runtime.providers", settings.runtime.providers, ctx)
    _source("model.source", settings.model.source, ("model.tracking_uri", settings.model.tracking_uri), ctx)
    if "input" not in ctx.placeholders and not uris.exists(settings.input):
        ctx.note(f"input {settings.input} does not exist here (fine if it does where the job runs)")
    if settings.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            ctx.note("engine=ray: Ray is not installed here (pip install -e '.[ray]')")
        address = settings.ray.address
        if address not in (None, "auto", "local") and not re.fullmatch(r"(ray://)?[\w.\-]+:\d{1,5}", address):
            ctx.problem(
                "ray.address", f"expected null, auto, local, HOST:PORT or ray://HOST:PORT, got {address!r}"
            )
    if ctx.model is not None:
        ctx.model.against_predict(settings, ctx)


def monitor(cli: str, cfg: DictConfig, data: dict, ctx: Context) -> None:
    from seismic.monitoring.alerting.channels import RetryPolicy, build_channels
    from seismic.monitoring.drift.adaptive import AdaptiveConfig
    from seismic.monitoring.drift.config import DriftConfig
    from seismic.monitoring.job.retrain import RetrainConfig
    from seismic.monitoring.job.run import as_utc, parse_granularity
    from seismic.monitoring.job.schedule import duration, settings_from_config
    from seismic.monitoring.quality.window import QualitySettings

    found: list[str] = []

    def problem(key: str, reason: str) -> None:
        found.append(key)
        ctx.problem(key, reason)

    _known_keys(data, MONITOR_KEYS, ctx)
    missing = sorted(k for k in MONITOR_KEYS[""] if k not in data)
    for key in missing:
        problem(key, "missing (scripts/monitor.py reads it)")
    if missing:
        return
    library("drift", problem, lambda: DriftConfig.from_mapping(data["drift"]))
    library("adaptive", problem, lambda: AdaptiveConfig.from_mapping(data["adaptive"]))
    library("quality", problem, lambda: QualitySettings(**data["quality"]))
    lookback = library("lookback", problem, lambda: parse_granularity(data["lookback"]))
    if lookback is not None and not isinstance(lookback, dt.timedelta):  # as scripts/monitor.py checks it
        problem("lookback", f"lookback must be a duration like 24h, got {data['lookback']!r}")
    library("granularity", problem, lambda: parse_granularity(data["granularity"]))
    for key in ("start", "end"):
        if data.get(key) is not None:
            library(key, problem, lambda key=key: as_utc(str(data[key])))
    number(data["max_rows_per_window"], "max_rows_per_window", problem, low=1, integer=True)
    _source("model_dir", data["model_dir"], ("registry.tracking_uri", data["registry"]["tracking_uri"]), ctx)
    for key in ("log_dir", "output_dir", "workdir", "state_file"):
        if reason := uris.path_problem(data.get(key)):
            problem(key, reason)
    # the scheduled mode's sections, read only with schedule.every set: checked as if it were
    for key in (
        "schedule.every",
        "schedule.delay",
        "schedule.poll",
        "alerts.repeat_interval",
        "alerts.cooldown",
    ):
        value = OmegaConf.select(cfg, key)
        if value is not None:
            library(key, problem, lambda value=value: duration(value))
    for section, cls in (("retrain", RetrainConfig), ("alerts.retry", RetryPolicy)):
        node = OmegaConf.select(cfg, section)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(set(node or {}) - known):
            problem(f"{section}.{key}", f"unknown key; {cls.__name__} takes {sorted(known)}")
    if data["retrain"].get("action") not in ("command", "webhook"):
        problem("retrain.action", f"must be command or webhook, got {data['retrain'].get('action')!r}")
    if found:
        return
    scheduled = cfg.copy()
    if scheduled.schedule.every is None:
        scheduled.schedule.every = "1h"
    try:  # what is left: how the monitor puts its settings together
        settings = settings_from_config(scheduled)
    except KeyError as err:
        name = str(err.args[0])
        section = next((s for s, keys in MONITOR_KEYS.items() if s and name in keys), "")
        problem(f"{section}.{name}" if section else name, "missing (the scheduled monitor reads it)")
        return
    except (ValueError, TypeError) as err:
        match = _UNEXPECTED.search(str(err))
        key = f"{_CLASS_SECTIONS.get(match[1], match[1])}.{match[2]}" if match else "schedule"
        problem(key, str(err))
        return
    if settings.channels != list(data["env"]["alert_channels"]):  # else checked with the env section
        library("alerts.channels", problem, lambda: build_channels(settings.channels, "x"))
    if ctx.model is not None:
        ctx.model.against_monitor(ctx)


CHECKS: dict[str, Callable[[str, DictConfig, dict, Context], None]] = {
    "train": train,
    "export": export,
    "promote": promote,
    "make_survey": make_survey,
    "serve": serve,
    "predict": predict,
    "monitor": monitor,
}
