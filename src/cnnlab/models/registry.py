"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Each model family registers its builders with ``@register_model(...)``, declaring the input
shape and class count the model was designed for. ``create_model`` builds one by name and
attaches a :class:`ModelInfo` as ``model.cnnlab`` so that summaries, trainers and checkpoints
know what the model expects without being told again.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cnnlab.names import closest_names

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before it is built."""

    name: str
    builder: Builder
    input_shape: tuple[int, int, int]  # (C, H, W) at the defaults
    num_classes: int
    description: str
    reference: str = ""

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return f"ModelSpec({self.name!r}, input={c}x{h}x{w}, classes={self.num_classes})"


@dataclass(frozen=True)
class ModelInfo:
    """Attached to every model built by ``create_model`` as ``model.cnnlab``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 10
    output: str = "softmax"  # the model returns logits; probabilities are softmax(logits)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    description: str,
    reference: str = "",
) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name``. Builders take ``num_classes`` and ``in_channels``."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"register_model: name={name!r} is already registered")
        accepted = inspect.signature(builder).parameters
        for required in ("num_classes", "in_channels"):
            if required not in accepted:
                raise TypeError(f"register_model({name!r}): the builder must accept {required}=")
        _REGISTRY[name] = ModelSpec(
            name, builder, tuple(input_shape), num_classes, description, reference
        )
        return builder

    return decorate


def get_model_spec(name: str) -> ModelSpec:
    """The registered spec for ``name``; an unknown name lists the closest registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = closest_names(name, _REGISTRY)
        hint = f"Did you mean: {', '.join(close)}? " if close else ""
        raise ValueError(
            f"Unknown model: name={name!r}. {hint}Registered models: {', '.join(list_models())}"
        ) from None


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard like ``'resnet*'``."""
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; keyword arguments go to its builder."""
    spec = get_model_spec(name)
    accepted = inspect.signature(spec.builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"create_model({name!r}): unexpected argument(s) {', '.join(unknown)}. "
            f"Accepted: {', '.join(accepted)}"
        )
    for key in ("num_classes", "in_channels"):
        value = kwargs.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(
                f"create_model({name!r}): expected a positive integer for {key}. "
                f"Received: {key}={value!r}"
            )
    model = spec.builder(**kwargs)
    _, height, width = spec.input_shape
    model.cnnlab = ModelInfo(
        name=name,
        kwargs=dict(kwargs),
        input_shape=(kwargs.get("in_channels", spec.input_shape[0]), height, width),
        num_classes=kwargs.get("num_classes", spec.num_classes),
    )
    return model
