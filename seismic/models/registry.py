"""Name -> network registry: ``@register_model("name")``, ``build_model(name, **kwargs)``, ``list_models()``.

Every registered network follows one contract (see :class:`FaciesNet`): ``forward(x)`` returns
``(logits, embedding [B, embedding_dim])`` and the module carries ``num_classes``, ``embedding_dim`` and
``input_ndim`` (1: trace windows ``[B, C, T]``, 2: patches ``[B, C, W, T]``). The class attribute ``task``
says what the logits are: ``"classification"`` (the default when absent): ``[B, num_classes]`` for the window
centre; ``"segmentation"``: ``[B, num_classes, T]`` / ``[B, num_classes, W, T]``, one label per input sample
(such nets also carry ``size_multiple``, what every spatial size must divide by). The model picks the task:
the training pipeline builds the Lightning task :func:`model_task` names.
The embedding is the pooled representation right before the classifier head, so monitoring can compare it.

Registering is all a new architecture needs: the task builds it by name and the generic model tests in
``tests/models`` run over :func:`list_models` automatically.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

__all__ = [
    "TASKS",
    "FaciesNet",
    "ModelConfigError",
    "build_model",
    "get_model_class",
    "list_models",
    "model_defaults",
    "model_task",
    "register_model",
]

_REGISTRY: dict[str, type[nn.Module]] = {}
TASKS = ("classification", "segmentation")

M = TypeVar("M", bound=type[nn.Module])


@runtime_checkable
class FaciesNet(Protocol):
    """What the task, the exporter and the monitor rely on."""

    num_classes: int
    embedding_dim: int
    input_ndim: int

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class ModelConfigError(TypeError, ValueError):
    """A bad keyword for a registered model; catchable as TypeError or ValueError."""


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator that makes ``build_model(name, ...)`` build the class."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_model: the name must be a non-empty string, got {name!r}")

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_model({name!r}): expected an nn.Module subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"register_model: {name!r} is already registered to "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def model_task(name_or_model: str | nn.Module) -> str:
    """The task a registered model (by name) or a built network declares: ``classification`` unless its
    class sets ``task``; a value outside :data:`TASKS` is an error naming the class."""
    cls = get_model_class(name_or_model) if isinstance(name_or_model, str) else type(name_or_model)
    task = getattr(cls, "task", "classification")
    if task not in TASKS:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__}.task is {task!r}; expected one of {TASKS}")
    return task


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}") from None


def _parameters(cls: type[nn.Module]) -> tuple[dict[str, inspect.Parameter], bool]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        k: p
        for k, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    return named, var_kw


def model_defaults(name: str) -> dict[str, Any]:
    """Keyword arguments of a registered model with their defaults (required ones map to ``None``)."""
    named, _ = _parameters(get_model_class(name))
    return {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in named.items()}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name`` with keyword arguments checked against its signature."""
    cls = get_model_class(name)
    named, var_kw = _parameters(cls)
    unknown = sorted(set(kwargs) - set(named))
    if unknown and not var_kw:
        raise ModelConfigError(
            f"model {name!r} got unknown argument(s) {unknown}; it accepts {sorted(named)}"
        )
    missing = sorted(k for k, p in named.items() if p.default is inspect.Parameter.empty and k not in kwargs)
    if missing:
        raise ModelConfigError(f"model {name!r} is missing required argument(s) {missing}")
    return cls(**kwargs)
