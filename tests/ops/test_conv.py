"""conv2d, pool2d, output_size: the slide's numbers, PyTorch as the oracle, the error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops import SLIDE_2D, SLIDE_POOL_AVG, SLIDE_POOL_MAX, conv2d, output_size, pool2d

SLIDE_2D_OUTPUT = [
    [114, 328, -26, 470, 158],
    [53, 266, -61, -30, 344],
    [403, 116, -47, 295, 244],
    [108, -135, 256, -128, 344],
    [314, 346, 279, 153, 421],
]
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


# --- golden numbers (REFERENCE.md section 1) ---------------------------------------------------


def test_slide_2d_full_output():
    out = conv2d(SLIDE_2D.x, SLIDE_2D.w, padding=1)
    np.testing.assert_array_equal(out, [SLIDE_2D_OUTPUT])


def test_slide_2d_stride_2_reduces_to_3x3():
    out = conv2d(SLIDE_2D.x, SLIDE_2D.w, stride=2, padding=1)
    np.testing.assert_array_equal(out, [[[114, -26, 158], [403, -47, 244], [314, 279, 421]]])


def test_batched_input_gives_batched_output():
    x = np.stack([SLIDE_2D.x, -SLIDE_2D.x])  # (2, 1, 5, 5)
    out = conv2d(x, SLIDE_2D.w, padding=1)
    assert out.shape == (2, 1, 5, 5)
    np.testing.assert_array_equal(out[0, 0], SLIDE_2D_OUTPUT)
    np.testing.assert_array_equal(out[1, 0], -np.array(SLIDE_2D_OUTPUT))


def test_bias_is_added_per_output_channel():
    w = np.concatenate([SLIDE_2D.w, SLIDE_2D.w])  # (2, 1, 3, 3)
    out = conv2d(SLIDE_2D.x, w, b=[1.0, -2.0], padding=1)
    np.testing.assert_array_equal(out[0], np.array(SLIDE_2D_OUTPUT) + 1)
    np.testing.assert_array_equal(out[1], np.array(SLIDE_2D_OUTPUT) - 2)


def test_slide_max_pool():
    np.testing.assert_array_equal(pool2d(SLIDE_POOL_MAX.x, 2), [[100, 184], [12, 45]])


def test_slide_avg_pool_is_36_5_not_the_slides_truncated_36():
    np.testing.assert_array_equal(pool2d(SLIDE_POOL_AVG.x, 2, mode="avg"), [[36.5, 80], [12, 15]])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, 3, 1, 1), 5),  # the slide's 2D example: "same" padding
        ((5, 3, 2, 1), 3),  # ... with a stride of 2
        ((4, 2, 2, 0), 2),  # the slide's 2x2 pooling
        ((32, 3, 1, 0), 30),  # LeNet-like: 32 -> 30 -> 15 -> 13 -> 6
        ((30, 2, 2, 0), 15),
        ((15, 3, 1, 0), 13),
        ((13, 2, 2, 0), 6),
        ((32, 5, 1, 0), 28),  # LeNet-5 C1
        ((256, 3, 1, 1), 256),  # Darknet19 conv
        ((256, 2, 2, 0), 128),  # Darknet19 max
        ((7, 3, 1, 0, 2), 3),  # dilation 2: the kernel spans 5
        ((6, 3, 2, 0), 2),  # floor((6 - 3) / 2) + 1
    ],
)
def test_output_size_formula(args, expected):
    assert output_size(*args) == expected


# --- PyTorch as the oracle ---------------------------------------------------------------------


def _pair_or_int(draw, low: int, high: int):
    """An int or an (h, w) pair, as users may pass either."""
    h, w = draw(st.integers(low, high)), draw(st.integers(low, high))
    as_int = h == w and draw(st.booleans())
    return (h, h) if as_int else (h, w), h if as_int else (h, w)


def _fitting_size(draw, extent: int, pad: int) -> int:
    """An input length for which the padded input holds the (dilated) kernel."""
    low = max(1, extent - 2 * pad)
    return draw(st.integers(low, low + 6))


@st.composite
def conv_cases(draw):
    batch = draw(st.none() | st.integers(1, 3))
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    (kh, kw) = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, stride_arg = _pair_or_int(draw, 1, 3)
    padding, padding_arg = _pair_or_int(draw, 0, 2)
    dilation, dilation_arg = _pair_or_int(draw, 1, 3)
    h = _fitting_size(draw, dilation[0] * (kh - 1) + 1, padding[0])
    w = _fitting_size(draw, dilation[1] * (kw - 1) + 1, padding[1])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((c_in, h, w) if batch is None else (batch, c_in, h, w))
    weight = rng.standard_normal((c_out, c_in, kh, kw))
    bias = rng.standard_normal(c_out) if draw(st.booleans()) else None
    kwargs = {"stride": stride_arg, "padding": padding_arg, "dilation": dilation_arg}
    return x, weight, bias, kwargs, (stride, padding, dilation)


@PROPERTY_SETTINGS
@given(conv_cases())
def test_conv2d_matches_torch(case):
    x, w, b, kwargs, (stride, padding, dilation) = case
    ours = conv2d(x, w, b, **kwargs)
    theirs = F.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(w),
        None if b is None else torch.from_numpy(b),
        stride=stride,
        padding=padding,
        dilation=dilation,
    ).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)
    expected_hw = tuple(
        output_size(n, k, s, p, d)
        for n, k, s, p, d in zip(x.shape[-2:], w.shape[-2:], stride, padding, dilation, strict=True)
    )
    assert ours.shape[-2:] == expected_hw


@st.composite
def pool_cases(draw):
    leading = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    size, size_arg = _pair_or_int(draw, 1, 4)
    stride, stride_arg = _pair_or_int(draw, 1, 4)
    if draw(st.booleans()):
        stride, stride_arg = size, None  # the default: stride = size
    pad_h, pad_w = draw(st.integers(0, size[0] // 2)), draw(st.integers(0, size[1] // 2))
    padding = (pad_h, pad_w)
    padding_arg = pad_h if pad_h == pad_w else padding
    h, w = _fitting_size(draw, size[0], pad_h), _fitting_size(draw, size[1], pad_w)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((*leading, h, w))
    kwargs = {"size": size_arg, "stride": stride_arg, "padding": padding_arg}
    return x, kwargs, (size, stride, padding)


@PROPERTY_SETTINGS
@given(pool_cases(), st.sampled_from(["max", "avg"]))
def test_pool2d_matches_torch(case, mode):
    x, kwargs, (size, stride, padding) = case
    ours = pool2d(x, mode=mode, **kwargs)
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    flat = torch.from_numpy(x.reshape(-1, *x.shape[-2:]))  # torch wants (C, H, W)
    theirs = pool(flat, size, stride, padding).numpy()
    theirs = theirs.reshape(*x.shape[:-2], *theirs.shape[-2:])
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)
    expected_hw = tuple(
        output_size(n, k, s, p)
        for n, k, s, p in zip(x.shape[-2:], size, stride, padding, strict=True)
    )
    assert ours.shape[-2:] == expected_hw


def test_conv2d_handles_a_256x256_image():
    x = np.random.default_rng(0).standard_normal((3, 256, 256))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    out = conv2d(x, w, padding=1)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-12)


# --- errors name the argument, the value and what was expected ---------------------------------

X = np.ones((1, 5, 5))
W = np.ones((1, 1, 3, 3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: conv2d(X, W, stride=0),
            "stride must be a positive integer or a pair of them. Received: stride=0",
        ),
        (
            lambda: conv2d(X, W, stride=(1, 0)),
            "stride must be a positive integer or a pair of them. Received: stride=(1, 0)",
        ),
        (
            lambda: conv2d(X, W, stride=1.5),
            "stride must be a positive integer or a pair of them. Received: stride=1.5",
        ),
        (
            lambda: conv2d(X, W, stride=True),
            "stride must be a positive integer or a pair of them. Received: stride=True",
        ),
        (
            lambda: conv2d(X, W, padding=-1),
            "padding must be a non-negative integer or a pair of them. Received: padding=-1",
        ),
        (
            lambda: conv2d(X, W, dilation=0),
            "dilation must be a positive integer or a pair of them. Received: dilation=0",
        ),
        (
            lambda: conv2d(np.ones((1, 2, 2)), W),
            "kernel 3x3 is larger than the padded input 2x2 (input 2x2 with padding (0, 0) on "
            "each side), so the output would be empty. Received: x.shape=(1, 2, 2), "
            "w.shape=(1, 1, 3, 3), padding=0, dilation=1",
        ),
        (
            lambda: conv2d(X, W, dilation=3),
            "kernel 3x3 (spanning 7x7 with dilation) is larger than the padded input 5x5",
        ),
        (
            lambda: conv2d(np.ones((3, 5, 5)), np.ones((1, 2, 3, 3))),
            "x and w must have the same number of input channels: x has 3, w expects 2. "
            "Received: x.shape=(3, 5, 5), w.shape=(1, 2, 3, 3)",
        ),
        (
            lambda: conv2d(np.ones((5, 5)), W),
            "x must be a non-empty array of shape (C_in, H, W) or (N, C_in, H, W). "
            "Received: x.shape=(5, 5)",
        ),
        (
            lambda: conv2d(X, np.ones((3, 3))),
            "w must be a non-empty array of shape (C_out, C_in, kH, kW). Received: w.shape=(3, 3)",
        ),
        (
            lambda: conv2d(X, W, b=[1.0, 2.0]),
            "b must have shape (C_out,) = (1,), one bias per output channel. "
            "Received: b.shape=(2,)",
        ),
        (lambda: conv2d("abc", W), "x must be an array of numbers. Received: x='abc'"),
        (
            lambda: pool2d(X, 2, mode="min"),
            "mode must be one of ('max', 'avg'). Received: mode='min'",
        ),
        (
            lambda: pool2d(X, 0),
            "size must be a positive integer or a pair of them. Received: size=0",
        ),
        (
            lambda: pool2d(X, 2, stride=0),
            "stride must be a positive integer or a pair of them. Received: stride=0",
        ),
        (
            lambda: pool2d(X, 2, padding=-1),
            "padding must be a non-negative integer or a pair of them. Received: padding=-1",
        ),
        (
            lambda: pool2d(X, 3, padding=2),
            "padding must be at most half the pool size, so that every window holds input "
            "values. Received: padding=2, size=3",
        ),
        (
            lambda: pool2d(np.ones((2, 2)), 3),
            "pool window 3x3 is larger than the padded input 2x2 (input 2x2 with padding (0, 0) "
            "on each side), so the output would be empty. Received: x.shape=(2, 2), size=3",
        ),
        (
            lambda: pool2d(np.ones(4), 2),
            "x must be a non-empty array of shape (..., H, W). Received: x.shape=(4,)",
        ),
        (
            lambda: output_size(0, 3),
            "in_size must be a positive integer. Received: in_size=0",
        ),
        (
            lambda: output_size(5, 0),
            "kernel_size must be a positive integer. Received: kernel_size=0",
        ),
        (
            lambda: output_size(5, 3, stride=0),
            "stride must be a positive integer. Received: stride=0",
        ),
        (
            lambda: output_size(5, 3, padding=-2),
            "padding must be a non-negative integer. Received: padding=-2",
        ),
        (
            lambda: output_size(3, 5),
            "kernel_size=5 is larger than the padded input 3 (input 3 with padding 0 on each "
            "side), so the output would be empty. Received: in_size=3, kernel_size=5",
        ),
    ],
)
def test_errors_name_the_argument_and_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_padding_makes_a_large_kernel_fit():
    assert conv2d(np.ones((1, 2, 2)), W, padding=1).shape == (1, 2, 2)
    assert output_size(3, 5, padding=1) == 1
