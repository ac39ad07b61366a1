"""Model summaries: per-layer output shapes, parameters and FLOPs, in Keras and Darknet styles.

The model runs once on the ``meta`` device (shapes only, no arithmetic, no memory for
activations) through ``torch.func.functional_call``, so summarising VGG-16 costs nothing and
the caller's model and its weights are never touched. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs = 2 x multiply-accumulates); training FLOPs
are counted by running the backward pass too, not by a "3x forward" rule.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.callable_module import make_callable
from cnnlab.models import create_model
from cnnlab.runtime.formatting import format_si as human_count


class LayerKind(str, enum.Enum):
    CONV = "conv"
    DENSE = "dense"
    MAX_POOL = "max"
    AVG_POOL = "avg"
    GLOBAL_AVG_POOL = "global-avg"
    FLATTEN = "flatten"
    DROPOUT = "dropout"
    NORM = "norm"
    ACTIVATION = "activation"
    OTHER = "other"


_KINDS: tuple[tuple[type[nn.Module], LayerKind], ...] = (
    (nn.Conv2d, LayerKind.CONV),
    (nn.Linear, LayerKind.DENSE),
    (nn.MaxPool2d, LayerKind.MAX_POOL),
    (nn.AvgPool2d, LayerKind.AVG_POOL),
    (nn.AdaptiveAvgPool2d, LayerKind.GLOBAL_AVG_POOL),
    (nn.Flatten, LayerKind.FLATTEN),
    (nn.Dropout, LayerKind.DROPOUT),
    (nn.modules.batchnorm._BatchNorm, LayerKind.NORM),
    (
        (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU),
        LayerKind.ACTIVATION,
    ),
)

# Keras's class names for the PyTorch layers it has an equivalent of (Keras-style tables).
_KERAS_TYPES: dict[LayerKind, str] = {
    LayerKind.CONV: "Conv2D",
    LayerKind.DENSE: "Dense",
    LayerKind.MAX_POOL: "MaxPooling2D",
    LayerKind.AVG_POOL: "AveragePooling2D",
    LayerKind.GLOBAL_AVG_POOL: "GlobalAveragePooling2D",
    LayerKind.FLATTEN: "Flatten",
    LayerKind.DROPOUT: "Dropout",
    LayerKind.NORM: "BatchNormalization",
}


def layer_kind(module: nn.Module) -> LayerKind:
    """Classify a module by type; custom activations opt in with ``is_activation = True``."""
    if getattr(module, "is_activation", False):
        return LayerKind.ACTIVATION
    for types, kind in _KINDS:
        if isinstance(module, types):
            if kind is LayerKind.GLOBAL_AVG_POOL and _pair(module.output_size) != (1, 1):
                return LayerKind.OTHER
            return kind
    return LayerKind.OTHER


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


@dataclass(frozen=True)
class LayerSummary:
    """One row of a summary: a layer as called in the forward pass, per sample."""

    index: int
    path: str  # the module's qualified name, e.g. "features.0"
    module_type: str  # the PyTorch class, e.g. "Conv2d", or the module's own ``summary_type``
    kind: LayerKind
    input_shape: tuple[int, ...]  # per sample, PyTorch order (C, H, W)
    output_shape: tuple[int, ...]
    trainable_params: int
    non_trainable_params: int  # frozen parameters and running statistics (BN mean/var)
    flops: int  # forward FLOPs per sample
    activation: str | None = None  # an activation module folded into this row
    kernel_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    filters: int | None = None
    dropout: float | None = None

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    def __repr__(self) -> str:
        return (
            f"LayerSummary({self.index}, {self.path!r}, {self.module_type}, "
            f"out={self.output_shape}, params={self.params:,}, flops={self.flops:,})"
        )


@dataclass(frozen=True)
class ModelSummary:
    """A whole model: its rows and totals. Build it with :func:`summary`."""

    model_name: str
    input_shape: tuple[int, ...]  # per sample, (C, H, W)
    layers: tuple[LayerSummary, ...]
    trainable_params: int
    non_trainable_params: int
    forward_flops: int  # per sample
    training_flops: int  # per sample, forward + backward
    param_bytes: int
    activation_bytes: int  # the layers' outputs for one sample
    output: str | None = "softmax"  # how logits become predictions, if the model declares it
    num_classes: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_params"] = self.total_params
        for row, layer in zip(data["layers"], self.layers, strict=True):
            row["kind"] = layer.kind.value
            row["params"] = layer.params
        return data

    def __repr__(self) -> str:
        return (
            f"ModelSummary({self.model_name!r}, input={self.input_shape}, "
            f"layers={len(self.layers)}, params={self.total_params:,}, "
            f"forward_flops={self.forward_flops:,})"
        )


def _model_defaults(model: nn.Module) -> tuple[str, tuple[int, ...] | None, str | None, int | None]:
    info = getattr(model, "cnnlab", None)
    if info is None:
        return type(model).__name__, None, None, None
    return info.name, tuple(info.input_shape), info.output, info.num_classes


def _check_input_size(input_size: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(v < 1 for v in shape) or tuple(input_size) != shape:
        raise ValueError(
            "input_size must be a sequence of positive integers per sample, like (3, 224, 224). "
            f"Received: input_size={input_size!r}"
        )
    return shape


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaves, plus containers that own parameters or buffers directly (custom layers)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if name
        and (
            not any(True for _ in module.children())
            or any(True for _ in module.parameters(recurse=False))
            or any(True for _ in module.buffers(recurse=False))
        )
    ]


def _own_counts(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
    stats = sum(b.numel() for b in module.buffers(recurse=False) if b.is_floating_point())
    return trainable, frozen + stats


def _empty_output_check(model_name, input_size, path, module, x) -> None:
    """Raise a clear error before a conv/pool layer would produce an empty output."""
    if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) or x.dim() < 3:
        return
    height, width = x.shape[-2:]
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    padding = _pair(module.padding if isinstance(module.padding, (int, tuple)) else 0)
    dilation = _pair(getattr(module, "dilation", 1))
    out = [
        math.floor((size + 2 * p - d * (k - 1) - 1) / s) + 1
        for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation, strict=True)
    ]
    if min(out) < 1:
        raise ValueError(
            f"input_size={input_size} is too small for {model_name}: layer {path!r} "
            f"({type(module).__name__} {kernel[0]}x{kernel[1]}/{stride[0]}) gets a "
            f"{height}x{width} input and its output would be empty ({out[0]}x{out[1]})."
        )


def summary(
    model: nn.Module, input_size: Sequence[int] | None = None, *, batch_size: int = 2
) -> ModelSummary:
    """Summarise ``model`` at ``input_size`` (per sample, e.g. (1, 32, 32)).

    ``input_size`` defaults to the size a zoo model declares. Counts are per sample; the
    model is run with ``batch_size`` samples on the meta device (2, so batch norm can train).
    """
    model_name, default_shape, output, num_classes = _model_defaults(model)
    if input_size is None:
        if default_shape is None:
            raise ValueError(
                f"input_size is required for a model not built by create_model ({model_name}). "
                "Received: input_size=None"
            )
        input_size = default_shape
    shape = _check_input_size(input_size)

    meta_state = {
        name: torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    counter = FlopCounterMode(display=False)
    rows: list[dict[str, Any]] = []
    last_output: list[torch.Tensor | None] = [None]
    seen: set[int] = set()
    flops_at_start: dict[int, int] = {}
    handles = []

    def pre_hook(path, module, args):
        x = _first_tensor(args)
        if x is not None:
            _empty_output_check(model_name, shape, path, module, x)
        flops_at_start[id(module)] = counter.get_total_flops()

    def post_hook(path, module, args, result):
        x, y = _first_tensor(args), _first_tensor(result)
        flops = (counter.get_total_flops() - flops_at_start[id(module)]) // batch_size
        kind = layer_kind(module)
        in_shape = tuple(x.shape[1:]) if x is not None else ()
        out_shape = tuple(y.shape[1:]) if y is not None else ()
        folds = kind is LayerKind.ACTIVATION and rows and x is not None and x is last_output[0]
        last_output[0] = y
        if folds:
            rows[-1]["activation"] = _activation_name(module)
            rows[-1]["flops"] += flops
            return
        trainable, non_trainable = (0, 0) if id(module) in seen else _own_counts(module)
        seen.add(id(module))
        row = dict(
            path=path,
            # a module may name its rows (Darknet's [yolo] and [region] are PassThrough modules)
            module_type=getattr(module, "summary_type", None) or type(module).__name__,
            kind=kind,
            input_shape=in_shape,
            output_shape=out_shape,
            trainable_params=trainable,
            non_trainable_params=non_trainable,
            flops=flops,
            activation=_activation_name(module) if kind is LayerKind.ACTIVATION else None,
        )
        if kind in (LayerKind.CONV, LayerKind.MAX_POOL, LayerKind.AVG_POOL):
            row["kernel_size"] = _pair(module.kernel_size)
            row["stride"] = _pair(module.stride if module.stride is not None else 1)
        if kind is LayerKind.CONV:
            row["filters"] = module.out_channels
        if kind is LayerKind.DROPOUT:
            row["dropout"] = float(module.p)
        rows.append(row)

    for path, module in _layer_modules(model):
        handles.append(module.register_forward_pre_hook(lambda m, a, p=path: pre_hook(p, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, r, p=path: post_hook(p, m, a, r)))
    was_training = model.training
    try:
        model.eval()
        x = torch.empty((batch_size, *shape), device="meta")
        with counter:
            functional_call(model, meta_state, (x,))
        forward_flops = counter.get_total_flops() // batch_size
        for handle in handles:
            handle.remove()
        handles.clear()
        model.train()
        training_counter = FlopCounterMode(display=False)
        with training_counter:
            logits = _first_tensor(functional_call(model, meta_state, (x,)))
            if logits.requires_grad:
                logits.sum().backward()
        training_flops = training_counter.get_total_flops() // batch_size
    except RuntimeError as error:
        raise ValueError(
            f"{model_name} cannot run at input_size={shape}: {error}".rstrip()
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    layers = tuple(LayerSummary(index=i, **row) for i, row in enumerate(rows))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    element_bytes = next(model.parameters()).element_size() if trainable + frozen else 4
    return ModelSummary(
        model_name=model_name,
        input_shape=shape,
        layers=layers,
        trainable_params=trainable,
        non_trainable_params=frozen + stats,
        forward_flops=forward_flops,
        training_flops=training_flops,
        param_bytes=(trainable + frozen + stats) * element_bytes,
        activation_bytes=sum(math.prod(row.output_shape) for row in layers) * element_bytes,
        output=output,
        num_classes=num_classes,
    )


def _activation_name(module: nn.Module) -> str:
    if isinstance(module, nn.LeakyReLU):
        return f"leaky({module.negative_slope:g})"
    return getattr(module, "activation_name", type(module).__name__.lower())


def _keras_shape(shape: tuple[int, ...]) -> str:
    """PyTorch's channels-first per-sample shape as Keras prints it: (None, H, W, C)."""
    channels_last = (*shape[1:], shape[0]) if len(shape) >= 2 else shape
    return "(" + ", ".join(["None", *map(str, channels_last)]) + ")"


def _snake_case(name: str) -> str:
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i and (not name[i - 1].isupper() or name[i - 1 : i + 2].islower()):
            out.append("_")
        out.append(char.lower())
    return "".join(out).replace("2_d", "2d")


def format_keras(result: ModelSummary) -> str:
    """The table Keras's ``model.summary()`` prints, with cnnlab's FLOPs and sizes below it."""
    counters: dict[str, int] = {}
    names = []
    for layer in result.layers:
        keras_type = _KERAS_TYPES.get(layer.kind, layer.module_type)
        base = _snake_case(keras_type)
        count = counters.get(base, 0)
        counters[base] = count + 1
        names.append(f"{base}{f'_{count}' if count else ''} ({keras_type})")
    shapes = [_keras_shape(layer.output_shape) for layer in result.layers]
    name_width = max([28, *(len(n) + 2 for n in names)])
    shape_width = max([26, *(len(s) + 2 for s in shapes)])
    width = name_width + shape_width + 12
    forward, training = result.forward_flops, result.training_flops
    lines = [f'Model: "{result.model_name}"', "_" * width]
    lines.append(f"{' Layer (type)':<{name_width}}{'Output Shape':<{shape_width}}Param #")
    lines.append("=" * width)
    for i, (name, shape, layer) in enumerate(zip(names, shapes, result.layers, strict=True)):
        lines.append(f" {name:<{name_width - 1}}{shape:<{shape_width}}{layer.params}")
        lines.append("=" * width if i == len(names) - 1 else "_" * width)
    lines += [
        f"Total params: {result.total_params:,}",
        f"Trainable params: {result.trainable_params:,}",
        f"Non-trainable params: {result.non_trainable_params:,}",
        "_" * width,
        f"Input (per sample): {'x'.join(map(str, result.input_shape))}",
        f"Forward FLOPs per sample: {human_count(forward)}FLOPs ({forward:,})",
        f"Training FLOPs per sample (forward + backward): {human_count(training)}FLOPs",
        f"Params size: {result.param_bytes / 2**20:.2f} MiB; "
        f"activations per sample: {result.activation_bytes / 2**20:.2f} MiB",
    ]
    return "\n".join(lines)


def _hwc(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        channels, height, width = shape
        return f"{height:>3} x {width:>3} x{channels:>4}"
    return f"{math.prod(shape):>15}"


def _darknet_row(number: int, layer: LayerSummary, scale: float) -> str | None:
    """One layer in the layout Darknet prints while it builds a network."""
    kind, size = layer.kind, ""
    if layer.kernel_size is not None:
        (kh, kw), (sh, _) = layer.kernel_size, layer.stride
        size = f"{kh} x {kw} / {sh}"
    head = f"{number:>6} "
    if kind is LayerKind.CONV:
        return (
            f"{head}{'conv':<4}{layer.filters:>7}  {size:>9}  {_hwc(layer.input_shape)} -> "
            f"{_hwc(layer.output_shape)}  {layer.flops / scale:.3f}"
        )
    if kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL):
        return (
            f"{head}{kind.value:<11}  {size:>9}  {_hwc(layer.input_shape)} -> "
            f"{_hwc(layer.output_shape)}"
        )
    if kind is LayerKind.GLOBAL_AVG_POOL:
        return f"{head}{'avg':<24}{_hwc(layer.input_shape)} -> {math.prod(layer.output_shape):>5}"
    if kind is LayerKind.DENSE:
        n_in, n_out = math.prod(layer.input_shape), math.prod(layer.output_shape)
        return f"{head}{'connected':<24}{n_in:>15} -> {n_out:>5}  {layer.flops / scale:.3f}"
    if kind is LayerKind.DROPOUT:
        n = math.prod(layer.output_shape)
        return f"{head}{'dropout':<11}  {f'p = {layer.dropout:.2f}':>9}  {n:>15} -> {n:>5}"
    if kind in (LayerKind.FLATTEN, LayerKind.NORM):
        return None
    return (
        f"{head}{(layer.activation or layer.module_type.lower()):<24}"
        f"{_hwc(layer.input_shape)} -> {_hwc(layer.output_shape)}"
    )


def format_darknet(result: ModelSummary) -> str:
    """The layer table Darknet prints: conv rows carry their batch norm and activation.

    A model whose logits are read through softmax ends with Darknet's ``softmax`` row.
    """
    # Darknet prints billions; a LeNet would be all zeros, so small models print millions.
    unit, scale = ("B", 1e9) if result.forward_flops >= 1e8 else ("M", 1e6)
    lines = [
        f"layer  type     filters  size/strd   input              output           {unit}FLOPs"
    ]
    number = 0
    for layer in result.layers:
        row = _darknet_row(number, layer, scale)
        if row is not None:
            lines.append(row)
            number += 1
    if result.output == "softmax" and result.num_classes:
        lines.append(f"{number:>6} {'softmax':<44}{result.num_classes:>4}")
    lines.append(f"    total {result.forward_flops / scale:.2f} {unit}FLOPs")
    return "\n".join(lines)


def summarize(name: str, input_size: Sequence[int] | None = None, **model_kwargs) -> ModelSummary:
    """Summarise the zoo model ``name``, built on the meta device (no weights, no memory)."""
    with torch.device("meta"):
        model = create_model(name, **model_kwargs)
    return summary(model, input_size)


make_callable(__name__, "summary")  # cnnlab.summary(model) is cnnlab.summary.summary(model)
