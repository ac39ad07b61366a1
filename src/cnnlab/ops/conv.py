"""Reference 2D convolution and pooling in NumPy, written to be read.

These are the slide's arithmetic made executable: cross-correlation as in PyTorch (the kernel
is not flipped), zero padding, stride and dilation. They are the oracle that explains and tests
the PyTorch models, not a fast path; everything is computed in float64 so that small integer
examples come out exact.
"""

from __future__ import annotations

import reprlib
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

IntPair = int | tuple[int, int]
PoolMode = Literal["max", "avg"]
POOL_MODES: tuple[str, ...] = ("max", "avg")


def output_size(
    in_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Length of a conv/pool output along one axis.

    PyTorch's formula ``floor((in + 2*pad - dilation*(k-1) - 1) / stride) + 1``; with
    ``dilation=1`` it is the slide's ``floor((in + 2*pad - k) / stride) + 1``.
    """
    (n,) = _ints(in_size, "in_size", minimum=1, pair=False)
    (k,) = _ints(kernel_size, "kernel_size", minimum=1, pair=False)
    (s,) = _ints(stride, "stride", minimum=1, pair=False)
    (p,) = _ints(padding, "padding", minimum=0, pair=False)
    (d,) = _ints(dilation, "dilation", minimum=1, pair=False)
    received = f"in_size={in_size}, kernel_size={kernel_size}, padding={padding}, dilation={d}"
    _check_fits("kernel_size=", (n,), (k,), (p,), (d,), received)
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv2d(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> np.ndarray:
    """2D cross-correlation of ``x`` with ``w`` plus bias, like ``torch.nn.functional.conv2d``.

    ``x`` is (C_in, H, W) or (N, C_in, H, W), ``w`` is (C_out, C_in, kH, kW), ``b`` is (C_out,).
    Returns (C_out, H', W') or (N, C_out, H', W') in float64.
    """
    xa = as_float_array(x, "x")
    wa = as_float_array(w, "w")
    if xa.ndim not in (3, 4) or xa.size == 0:
        raise ValueError(
            "x must be a non-empty array of shape (C_in, H, W) or (N, C_in, H, W). "
            f"Received: x.shape={xa.shape}"
        )
    if wa.ndim != 4 or wa.size == 0:
        raise ValueError(
            "w must be a non-empty array of shape (C_out, C_in, kH, kW). "
            f"Received: w.shape={wa.shape}"
        )
    batched = xa.ndim == 4
    xb = xa if batched else xa[None]  # (N, C_in, H, W)
    c_out, c_in, kh, kw = wa.shape
    if xb.shape[1] != c_in:
        raise ValueError(
            f"x and w must have the same number of input channels: x has {xb.shape[1]}, "
            f"w expects {c_in}. Received: x.shape={xa.shape}, w.shape={wa.shape}"
        )
    ba = None
    if b is not None:
        ba = as_float_array(b, "b")
        if ba.shape != (c_out,):
            raise ValueError(
                f"b must have shape (C_out,) = ({c_out},), one bias per output channel. "
                f"Received: b.shape={ba.shape}"
            )
    sh, sw = as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    dh, dw = as_pair(dilation, "dilation", minimum=1)
    received = f"x.shape={xa.shape}, w.shape={wa.shape}, padding={padding!r}, dilation={dilation!r}"
    _check_fits("kernel ", xb.shape[-2:], (kh, kw), (ph, pw), (dh, dw), received)

    padded = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)  # what a dilated kernel spans
    # (N, C_in, H', W', kH, kW): every window the kernel visits, sampled at the dilation
    windows = sliding_window_view(padded, extent, axis=(-2, -1))[..., ::sh, ::sw, ::dh, ::dw]
    out = np.einsum("nchwij,ocij->nohw", windows, wa, optimize=True)  # (N, C_out, H', W')
    if ba is not None:
        out += ba[None, :, None, None]
    return out if batched else out[0]


def pool2d(
    x: ArrayLike,
    size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    mode: PoolMode = "max",
) -> np.ndarray:
    """Max or average pooling over the last two axes of ``x`` (..., H, W).

    ``stride`` defaults to ``size`` (non-overlapping windows, as on the slide). Max pooling
    pads with -inf; average pooling pads with zeros and divides by the full window size,
    like ``torch.nn.functional.avg_pool2d`` with its default ``count_include_pad=True``.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {POOL_MODES}. Received: mode={mode!r}")
    xa = as_float_array(x, "x")
    if xa.ndim < 2 or xa.size == 0:
        raise ValueError(
            f"x must be a non-empty array of shape (..., H, W). Received: x.shape={xa.shape}"
        )
    kh, kw = as_pair(size, "size", minimum=1)
    sh, sw = (kh, kw) if stride is None else as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            "padding must be at most half the pool size, so that every window holds input "
            f"values. Received: padding={padding!r}, size={size!r}"
        )
    received = f"x.shape={xa.shape}, size={size!r}, padding={padding!r}"
    _check_fits("pool window ", xa.shape[-2:], (kh, kw), (ph, pw), (1, 1), received)

    fill = -np.inf if mode == "max" else 0.0
    pad_width = [(0, 0)] * (xa.ndim - 2) + [(ph, ph), (pw, pw)]
    padded = np.pad(xa, pad_width, constant_values=fill)
    windows = sliding_window_view(padded, (kh, kw), axis=(-2, -1))[..., ::sh, ::sw, :, :]
    if mode == "max":
        return windows.max(axis=(-2, -1))
    return windows.mean(axis=(-2, -1))


def as_pair(value: IntPair, name: str, *, minimum: int) -> tuple[int, int]:
    """Validate an int-or-(h, w) argument such as ``stride`` and return it as a pair."""
    h, w = _ints(value, name, minimum=minimum)
    return h, w


def _ints(value: object, name: str, *, minimum: int, pair: bool = True) -> tuple[int, ...]:
    """An int (or, when ``pair``, an (h, w) pair of ints) that is at least ``minimum``."""
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if minimum == 0:
        kind = "a non-negative integer"
    if _is_int(value):
        values: tuple[int, ...] | None = (int(value),) * (2 if pair else 1)
    elif pair and isinstance(value, tuple | list) and len(value) == 2 and all(map(_is_int, value)):
        values = (int(value[0]), int(value[1]))
    else:
        values = None
    if values is None or min(values) < minimum:
        expected = f"{kind} or a pair of them" if pair else kind
        raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")
    return values


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError naming the argument."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an array of numbers. Received: {name}={reprlib.repr(value)}"
        ) from None


def _check_fits(
    what: str,  # "kernel " or "kernel_size=": how the kernel is named in the message
    in_hw: tuple[int, ...],
    kernel_hw: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    received: str,
) -> None:
    """Raise when a (dilated) kernel does not fit in the padded input: the output would be empty."""
    padded = tuple(n + 2 * p for n, p in zip(in_hw, padding, strict=True))
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel_hw, dilation, strict=True))
    if all(e <= n for e, n in zip(extent, padded, strict=True)):
        return
    spans = "" if extent == tuple(kernel_hw) else f" (spanning {_dims(extent)} with dilation)"
    raise ValueError(
        f"{what}{_dims(kernel_hw)}{spans} is larger than the padded input {_dims(padded)} "
        f"(input {_dims(in_hw)} with padding {_dims(padding, ', ')} on each side), "
        f"so the output would be empty. Received: {received}"
    )


def _dims(values: tuple[int, ...], sep: str = "x") -> str:
    text = sep.join(str(v) for v in values)
    return f"({text})" if sep != "x" and len(values) > 1 else text
