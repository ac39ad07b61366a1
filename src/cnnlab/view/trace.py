"""One cell of a feature map, explained with ``cnnlab.ops``: the window, the kernel, the sum.

``explain_cell`` takes a layer of a real forward pass (``ViewSession.forward``) and traces one
output cell with ``ops.explain_conv`` or ``ops.explain_pool`` on the layer's actual input and the
model's actual weights and bias: the reference arithmetic, never a second convolution. The
trace's sum is compared with the activation PyTorch computed. ``slide_trace`` steps the lecture's
worked examples (``ops.SLIDE_EXAMPLES``) with the stride, padding and kernel a student picks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.ops import (
    KERNELS,
    SLIDE_EXAMPLES,
    ConvExample,
    ConvTrace,
    PoolTrace,
    explain_conv,
    explain_pool,
    format_number,
)
from cnnlab.summary import LayerKind
from cnnlab.view.session import LayerRecord

MAX_INPUT_MAPS = 8  # input channels whose whole (padded) map is sent, to draw the window on
MAX_CHANNEL_LINES = 64  # per-channel lines of arithmetic sent; the sum line has them all
SLIDE_KERNEL = "slide"  # the example's own kernel
MAX_SLIDE_STRIDE = 4
MAX_SLIDE_PADDING = 3
MAX_SLIDE_POOL = 5


def explain_cell(record: LayerRecord, channel: int, row: int, col: int) -> dict[str, Any]:
    """The arithmetic behind ``record``'s output ``[channel, row, col]`` as JSON-ready data."""
    layer = record.row
    shape = tuple(record.before.shape)
    if len(shape) != 3:
        raise ValueError(
            f"layer {layer.path!r} ({layer.module_type}) has no feature maps (its output is "
            f"{shape}): expected a convolution or pooling layer"
        )
    maps, rows, cols = shape
    for name, value, size in (("channel", channel, maps), ("row", row, rows), ("col", col, cols)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
            raise ValueError(
                f"{name} must be an integer in 0..{size - 1} for layer {layer.path!r} of shape "
                f"{maps}x{rows}x{cols}. Received: {name}={value!r}"
            )
    module = record.module
    if isinstance(module, nn.Conv2d):
        data = _conv_cell(record, module, channel, (row, col))
    elif layer.kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL, LayerKind.GLOBAL_AVG_POOL):
        data = _pool_cell(record, module, channel, (row, col))
    else:
        raise ValueError(
            f"layer {layer.path!r} is a {layer.module_type}: only Conv2d, MaxPool2d, AvgPool2d "
            "and global average pooling cells can be traced"
        )
    before = float(record.before[channel, row, col])
    data.update(
        layer=layer.index,
        path=layer.path,
        module_type=layer.module_type,
        channel=channel,
        at=[row, col],
        model_before=before,
        difference=abs(data["result"] - before),
    )
    data.update(_activation(record, channel, row, col, data["result"]))
    data["matches"] = is_close(data["result"], before) and (
        data["activated"] is None or is_close(data["activated"], data["model_after"])
    )
    return data


def _conv_cell(
    record: LayerRecord, conv: nn.Conv2d, channel: int, at: tuple[int, int]
) -> dict[str, Any]:
    if conv.padding_mode != "zeros":
        raise ValueError(
            f"layer {record.row.path!r} pads with {conv.padding_mode!r}: only zero padding "
            "can be traced"
        )
    weight = conv.weight.detach().double().numpy()  # (C_out, C_in / groups, kH, kW)
    per_group = conv.in_channels // conv.groups
    group = channel // (conv.out_channels // conv.groups)
    first = group * per_group
    x = record.inputs[first : first + per_group].double().numpy()  # (C_in / groups, H, W)
    bias = None if conv.bias is None else float(conv.bias.detach()[channel])
    trace = explain_conv(
        x,
        weight[channel],
        bias,
        at=at,
        stride=conv.stride,
        padding=_padding(record, conv),
        dilation=conv.dilation,
    )
    return _conv_data(trace, first_channel=first) | {
        "kind": "conv",
        "groups": conv.groups,
    }


def _padding(record: LayerRecord, conv: nn.Conv2d) -> tuple[int, int]:
    """PyTorch's padding as (top/bottom, left/right); "same" when it is symmetric."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding != "same":
        return tuple(int(p) for p in conv.padding)  # type: ignore[return-value]
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    if any(t % 2 for t in totals):
        raise ValueError(
            f"layer {record.row.path!r} pads 'same' unevenly (kernel {conv.kernel_size}): only "
            "symmetric padding can be traced"
        )
    return totals[0] // 2, totals[1] // 2


def _conv_data(trace: ConvTrace, *, first_channel: int = 0) -> dict[str, Any]:
    """A convolution trace for the page: the arithmetic, and the input maps to draw."""
    kh, kw = trace.channels[0].kernel.shape
    dh, dw = trace.dilation
    return {
        "stride": list(trace.stride),
        "padding": list(trace.padding),
        "dilation": list(trace.dilation),
        "window_origin": list(trace.window_origin),
        "extent": [dh * (kh - 1) + 1, dw * (kw - 1) + 1],
        "input_channels": len(trace.channels),
        "first_channel": first_channel,
        "input_maps": [_finite(m) for m in trace.padded_input[:MAX_INPUT_MAPS]],
        "channels": [_channel(c) for c in trace.channels[:MAX_CHANNEL_LINES]],
        "bias": trace.bias,
        "sum_equation": trace.sum_equation(),
        "equation": trace.equation() if len(trace.channels) <= MAX_CHANNEL_LINES else None,
        "result": trace.result,
        "output_shape": list(trace.output.shape),
    }


def _channel(trace: Any) -> dict[str, Any]:
    return {
        "channel": trace.channel,
        "window": trace.window.tolist(),
        "kernel": trace.kernel.tolist(),
        "products": trace.products.tolist(),
        "sum": trace.total,
        "equation": trace.equation(),
    }


def _pool_cell(
    record: LayerRecord, pool: nn.Module, channel: int, at: tuple[int, int]
) -> dict[str, Any]:
    x = record.inputs[channel].double().numpy()  # (H, W)
    if record.row.kind is LayerKind.GLOBAL_AVG_POOL:
        size, stride, padding, mode = x.shape, x.shape, 0, "avg"
    else:
        _check_pool(record, pool)
        size, stride, padding = pool.kernel_size, pool.stride, pool.padding
        mode = "max" if record.row.kind is LayerKind.MAX_POOL else "avg"
    trace = explain_pool(x, _pair(size), _pair(stride), _pair(padding), mode, at=at)
    return _pool_data(trace) | {"kind": "pool"}


def _check_pool(record: LayerRecord, pool: nn.Module) -> None:
    """Refuse the pooling options ``ops.pool2d`` does not reproduce, naming the option."""
    options = {
        "ceil_mode": (getattr(pool, "ceil_mode", False), False),
        "dilation": (_pair(getattr(pool, "dilation", 1)), (1, 1)),
        "count_include_pad": (getattr(pool, "count_include_pad", True), True),
        "divisor_override": (getattr(pool, "divisor_override", None), None),
    }
    for name, (value, supported) in options.items():
        if value != supported:
            raise ValueError(
                f"layer {record.row.path!r} uses {name}={value!r}: the traced pooling supports "
                f"{name}={supported!r} only"
            )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _pool_data(trace: PoolTrace) -> dict[str, Any]:
    window = trace.window
    return {
        "mode": trace.mode,
        "stride": list(trace.stride),
        "padding": list(trace.padding),
        "window_origin": list(trace.window_origin),
        "extent": list(trace.size),
        "input_channels": 1,
        "first_channel": 0,
        "input_maps": [_finite(trace.padded_input)],
        "channels": [{"channel": 0, "window": _finite(window), "equation": trace.equation()}],
        "bias": None,
        "sum_equation": trace.equation(),
        "equation": trace.equation(),
        "result": trace.result,
        "output_shape": list(trace.output.shape),
    }


def _finite(values: np.ndarray) -> list[Any]:
    """An array as nested lists; -inf (max pooling's padding) as None, which JSON can hold."""
    return np.where(np.isfinite(values), values, None).tolist()


def _activation(record: LayerRecord, channel: int, row: int, col: int, result: float) -> dict:
    """The activation function applied to the traced sum, next to the value the model shows."""
    if record.activation is None or record.after is None:
        return {"activation": None, "activated": None, "model_after": None}
    value = torch.tensor([[[[result]]]], dtype=torch.float64)
    with torch.inference_mode():
        activated = float(record.activation(value).reshape(-1)[0])
    name = record.row.activation or type(record.activation).__name__.lower()
    return {
        "activation": name,
        "activated": activated,
        "model_after": float(record.after[channel, row, col]),
        "activation_equation": f"{name}({format_number(result)}) = {format_number(activated)}",
    }


def slide_examples() -> list[dict[str, Any]]:
    """The lecture's examples with their own settings, for the slide mode's controls."""
    examples = []
    for example in SLIDE_EXAMPLES.values():
        conv = isinstance(example, ConvExample)
        examples.append(
            {
                "name": example.name,
                "title": example.title,
                "kind": "conv" if conv else example.mode,
                "stride": example.stride if conv else (example.stride or example.size),
                "padding": example.padding,
                "size": int(example.w.shape[-1]) if conv else example.size,
                "note": example.note,
            }
        )
    return examples


def slide_kernels() -> list[str]:
    """The kernels a convolution example may slide: its own, or a preset of ``ops.KERNELS``."""
    return [SLIDE_KERNEL, *KERNELS]


def slide_trace(
    name: str,
    *,
    row: int = 0,
    col: int = 0,
    stride: int | None = None,
    padding: int | None = None,
    size: int | None = None,
    kernel: str = SLIDE_KERNEL,
) -> dict[str, Any]:
    """Output cell (row, col) of a lecture example with the controls' settings."""
    example = SLIDE_EXAMPLES.get(name)
    if example is None:
        raise ValueError(
            f"example must be one of {', '.join(SLIDE_EXAMPLES)}. Received: example={name!r}"
        )
    conv = isinstance(example, ConvExample)
    default_stride = example.stride if conv else (example.stride or example.size)
    stride = default_stride if stride is None else stride
    padding = example.padding if padding is None else padding
    _check_control("stride", stride, 1, MAX_SLIDE_STRIDE)
    _check_control("padding", padding, 0, MAX_SLIDE_PADDING)
    if conv:
        weights = _slide_weights(example, kernel)
        trace = explain_conv(
            example.x, weights, example.b, at=(row, col), stride=stride, padding=padding
        )
        data = _conv_data(trace) | {"kind": "conv", "kernel": kernel}
    else:
        size = example.size if size is None else size
        _check_control("size", size, 1, MAX_SLIDE_POOL)
        trace = explain_pool(example.x, size, stride, padding, example.mode, at=(row, col))
        data = _pool_data(trace) | {"kind": "pool", "size": size}
    return data | {
        "example": example.name,
        "title": example.title,
        "note": example.note,
        "at": [row, col],
        "output": _finite(trace.output),
        "input": _finite(np.asarray(example.x)),
    }


def _slide_weights(example: ConvExample, kernel: str) -> np.ndarray:
    if kernel == SLIDE_KERNEL:
        return example.w
    preset = KERNELS.get(kernel)
    if preset is None:
        raise ValueError(
            f"kernel must be one of {', '.join(slide_kernels())}. Received: kernel={kernel!r}"
        )
    channels = example.x.shape[0]
    return np.broadcast_to(preset, (1, channels, *preset.shape))  # the preset on every channel


def _check_control(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(
            f"{name} must be an integer from {low} to {high}. Received: {name}={value!r}"
        )


def is_close(traced: float, model: float) -> bool:
    """Float tolerance between the float64 trace and PyTorch's float32 activation."""
    return math.isclose(traced, model, rel_tol=1e-4, abs_tol=1e-4)
