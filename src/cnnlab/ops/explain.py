"""Step-by-step traces of one convolution or pooling output cell, as data.

A trace holds every number the slide shows for one output cell (the input window with its
padding, the kernel, the products, the sums, the bias) plus the whole output map, so that a
renderer (the CLI, a notebook) can print it without recomputing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cnnlab.ops.conv import IntPair, PoolMode, as_float_array, as_pair, conv2d, pool2d


def format_number(value: float) -> str:
    """Integers without a decimal point (``5``, ``-1``); anything else compactly (``0.5``)."""
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _factor(value: float) -> str:
    """A number as a factor of a product: negatives in parentheses, as on the slide."""
    text = format_number(value)
    return f"({text})" if text.startswith("-") else text


def _signed_sum(values: list[float]) -> str:
    """``308 - 498 + 164 + 1``: a sum written with its signs, as on the slide."""
    parts = [format_number(values[0])]
    for v in values[1:]:
        text = format_number(v)
        parts.append(f"- {text[1:]}" if text.startswith("-") else f"+ {text}")
    return " ".join(parts)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # a private copy, so the trace cannot change under us
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ChannelTrace:
    """One input channel's share of an output cell: window * kernel, summed."""

    channel: int
    window: np.ndarray  # (kH, kW) input values under the kernel, padding zeros included
    kernel: np.ndarray  # (kH, kW)
    products: np.ndarray  # (kH, kW) window * kernel
    total: float

    def terms(self, all_terms: bool = False) -> str:
        """``5*60 + (-1)*113 + (-1)*73``: weight*input in row-major order.

        Terms whose product is zero (a zero weight, or a zero input such as padding) are left
        out, as on the slide, unless ``all_terms``.
        """
        terms = [
            f"{_factor(k)}*{_factor(x)}"
            for k, x, p in zip(self.kernel.flat, self.window.flat, self.products.flat, strict=True)
            if all_terms or p != 0
        ]
        return " + ".join(terms) or "0"

    def equation(self, all_terms: bool = False) -> str:
        """``5*60 + (-1)*113 + (-1)*73 = 114``: the terms and their sum."""
        return f"{self.terms(all_terms)} = {format_number(self.total)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "window": self.window.tolist(),
            "kernel": self.kernel.tolist(),
            "products": self.products.tolist(),
            "sum": self.total,
            "equation": self.equation(),
        }

    def __repr__(self) -> str:
        return f"ChannelTrace(channel={self.channel}, sum={format_number(self.total)})"


@dataclass(frozen=True, eq=False)
class ConvTrace:
    """How ``output[out_channel, row, col]`` of a convolution is computed."""

    at: tuple[int, int]  # (row, col) in the output map
    out_channel: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    window_origin: tuple[int, int]  # top-left of the window in padded_input coordinates
    padded_input: np.ndarray  # (C_in, H + 2*pad, W + 2*pad)
    channels: tuple[ChannelTrace, ...]
    bias: float | None
    result: float
    output: np.ndarray  # (H', W'): the whole output map of out_channel

    def sum_equation(self) -> str:
        """``308 - 498 + 164 + 1 = -25``: channel sums plus bias, as on the slide."""
        values = [c.total for c in self.channels]
        if self.bias is not None:
            values.append(self.bias)
        return f"{_signed_sum(values)} = {format_number(self.result)}"

    def equation(self, all_terms: bool = False) -> str:
        """The arithmetic of this cell, one line per input channel then the sum line.

        With one input channel it is a single line, the bias (if any) added as a last term.
        """
        if len(self.channels) > 1:
            lines = [c.equation(all_terms) for c in self.channels]
            return "\n".join([*lines, self.sum_equation()])
        products = self.channels[0].terms(all_terms)
        if self.bias is not None:
            products = f"{products} + {_factor(self.bias)}"
        return f"{products} = {format_number(self.result)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": list(self.at),
            "out_channel": self.out_channel,
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "window_origin": list(self.window_origin),
            "padded_input": self.padded_input.tolist(),
            "channels": [c.to_dict() for c in self.channels],
            "bias": self.bias,
            "result": self.result,
            "output": self.output.tolist(),
            "equation": self.equation(),
        }

    def __repr__(self) -> str:
        eq = self.equation().replace("\n", "; ")
        return f"ConvTrace(at={self.at}, out_channel={self.out_channel}, {eq})"


@dataclass(frozen=True, eq=False)
class PoolTrace:
    """How ``output[row, col]`` of a max or average pooling is computed."""

    at: tuple[int, int]
    mode: PoolMode
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    window_origin: tuple[int, int]  # top-left of the window in padded_input coordinates
    padded_input: np.ndarray  # padding is -inf for max, 0 for avg: what the pool sees
    window: np.ndarray  # (size_h, size_w)
    result: float
    output: np.ndarray  # (H', W')

    def equation(self) -> str:
        """``max(29, 15, 0, 100) = 100`` or ``(31 + 15 + 0 + 100) / 4 = 36.5``."""
        values = [float(v) for v in self.window.flat]
        if self.mode == "max":
            lhs = f"max({', '.join(format_number(v) for v in values)})"
        else:
            lhs = f"({_signed_sum(values)}) / {len(values)}"
        return f"{lhs} = {format_number(self.result)}"

    def to_dict(self) -> dict[str, Any]:
        def finite(a: np.ndarray) -> list[Any]:  # JSON has no -inf: max-pool padding is null
            return np.where(np.isfinite(a), a, None).tolist()

        return {
            "at": list(self.at),
            "mode": self.mode,
            "size": list(self.size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "window_origin": list(self.window_origin),
            "padded_input": finite(self.padded_input),
            "window": finite(self.window),
            "result": self.result,
            "output": self.output.tolist(),
            "equation": self.equation(),
        }

    def __repr__(self) -> str:
        return f"PoolTrace(at={self.at}, {self.equation()})"


def explain_conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | float | None = None,
    *,
    at: tuple[int, int] = (0, 0),
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    out_channel: int = 0,
) -> ConvTrace:
    """Trace output cell ``at`` of ``conv2d(x, w, b)`` for output channel ``out_channel``.

    For convenience ``x`` may be (H, W) or (C_in, H, W), ``w`` (kH, kW), (C_in, kH, kW) or
    (C_out, C_in, kH, kW), and ``b`` a number (the same bias for every output channel).
    """
    xa, wa = as_float_array(x, "x"), as_float_array(w, "w")
    if xa.ndim not in (2, 3):
        raise ValueError(f"x must have shape (H, W) or (C_in, H, W). Received: x.shape={xa.shape}")
    if wa.ndim not in (2, 3, 4):
        raise ValueError(
            "w must have shape (kH, kW), (C_in, kH, kW) or (C_out, C_in, kH, kW). "
            f"Received: w.shape={wa.shape}"
        )
    xa = xa.reshape((1,) * (3 - xa.ndim) + xa.shape)  # (C_in, H, W)
    wa = wa.reshape((1,) * (4 - wa.ndim) + wa.shape)  # (C_out, C_in, kH, kW)
    ba = None if b is None else as_float_array(b, "b")
    if ba is not None and ba.ndim == 0:
        ba = np.full(wa.shape[0], ba)  # (C_out,): one number is every channel's bias
    output = conv2d(xa, wa, ba, stride, padding, dilation)
    _check_index(out_channel, output.shape[0], "out_channel")
    out_map = output[out_channel]
    row, col = _check_at(at, out_map.shape)

    sh, sw = as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    dh, dw = as_pair(dilation, "dilation", minimum=1)
    padded = np.pad(xa, ((0, 0), (ph, ph), (pw, pw)))
    kernel = wa[out_channel]  # (C_in, kH, kW)
    r0, c0 = row * sh, col * sw
    rows = slice(r0, r0 + dh * (kernel.shape[1] - 1) + 1, dh)  # every dh-th row from r0
    cols = slice(c0, c0 + dw * (kernel.shape[2] - 1) + 1, dw)
    channels = []
    for c in range(kernel.shape[0]):
        window = padded[c, rows, cols]
        products = window * kernel[c]
        channels.append(
            ChannelTrace(
                channel=c,
                window=_frozen(window),
                kernel=_frozen(kernel[c]),
                products=_frozen(products),
                total=float(products.sum()),
            )
        )
    bias = None if ba is None else float(ba[out_channel])
    result = sum(ch.total for ch in channels) + (bias or 0.0)
    return ConvTrace(
        at=(row, col),
        out_channel=out_channel,
        stride=(sh, sw),
        padding=(ph, pw),
        dilation=(dh, dw),
        window_origin=(r0, c0),
        padded_input=_frozen(padded),
        channels=tuple(channels),
        bias=bias,
        result=result,
        output=_frozen(out_map),
    )


def explain_pool(
    x: ArrayLike,
    size: IntPair = 2,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    mode: PoolMode = "max",
    at: tuple[int, int] = (0, 0),
) -> PoolTrace:
    """Trace output cell ``at`` of ``pool2d(x, size, stride, padding, mode)`` for a 2D ``x``."""
    xa = as_float_array(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must have shape (H, W). Received: x.shape={xa.shape}")
    output = pool2d(xa, size, stride, padding, mode)
    row, col = _check_at(at, output.shape)
    kh, kw = as_pair(size, "size", minimum=1)
    sh, sw = (kh, kw) if stride is None else as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    fill = -np.inf if mode == "max" else 0.0
    padded = np.pad(xa, ((ph, ph), (pw, pw)), constant_values=fill)
    r0, c0 = row * sh, col * sw
    return PoolTrace(
        at=(row, col),
        mode=mode,
        size=(kh, kw),
        stride=(sh, sw),
        padding=(ph, pw),
        window_origin=(r0, c0),
        padded_input=_frozen(padded),
        window=_frozen(padded[r0 : r0 + kh, c0 : c0 + kw]),
        result=float(output[row, col]),
        output=_frozen(output),
    )


def _check_index(value: object, length: int, name: str) -> int:
    if (
        not isinstance(value, int | np.integer)
        or isinstance(value, bool)
        or not 0 <= value < length
    ):
        raise ValueError(
            f"{name} must be an integer in 0..{length - 1}. Received: {name}={value!r}"
        )
    return int(value)


def _check_at(at: object, shape: tuple[int, ...]) -> tuple[int, int]:
    """``at`` must be a (row, col) inside an output map of ``shape``."""
    rows, cols = shape
    message = (
        f"at must be a (row, col) pair inside the {rows}x{cols} output: row in 0..{rows - 1}, "
        f"col in 0..{cols - 1}. Received: at={at!r}"
    )
    if not isinstance(at, tuple | list) or len(at) != 2:
        raise ValueError(message)
    try:
        return _check_index(at[0], rows, "row"), _check_index(at[1], cols, "col")
    except ValueError:
        raise ValueError(message) from None
