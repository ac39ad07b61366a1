"""explain_conv / explain_pool traces and the slide examples: the slide's arithmetic, exactly."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops import (
    SLIDE_2D,
    SLIDE_2D_STRIDE2,
    SLIDE_EXAMPLES,
    SLIDE_POOL_AVG,
    SLIDE_POOL_MAX,
    SLIDE_RGB,
    conv2d,
    explain_conv,
    explain_pool,
    format_number,
    output_size,
    pool2d,
)

# --- the 2D example ("2D Convolution with a Kernel: Principle") --------------------------------


def test_slide_2d_top_left_equation():
    assert SLIDE_2D.explain().equation() == "5*60 + (-1)*113 + (-1)*73 = 114"


def test_slide_2d_top_left_equation_with_all_terms():
    assert SLIDE_2D.explain().equation(all_terms=True) == (
        "0*0 + (-1)*0 + 0*0 + (-1)*0 + 5*60 + (-1)*113 + 0*0 + (-1)*73 + 0*121 = 114"
    )


def test_slide_2d_trace_holds_the_padded_window_and_products():
    trace = SLIDE_2D.explain()
    (channel,) = trace.channels
    np.testing.assert_array_equal(channel.window, [[0, 0, 0], [0, 60, 113], [0, 73, 121]])
    np.testing.assert_array_equal(channel.kernel, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(channel.products, [[0, 0, 0], [0, 300, -113], [0, -73, 0]])
    assert channel.total == 114
    assert trace.bias is None
    assert trace.result == 114
    assert trace.padded_input.shape == (1, 7, 7)
    assert trace.window_origin == (0, 0)


def test_slide_2d_trace_carries_the_full_output():
    np.testing.assert_array_equal(
        SLIDE_2D.explain().output,
        [
            [114, 328, -26, 470, 158],
            [53, 266, -61, -30, 344],
            [403, 116, -47, 295, 244],
            [108, -135, 256, -128, 344],
            [314, 346, 279, 153, 421],
        ],
    )


def test_slide_2d_stride_2_trace():
    trace = SLIDE_2D_STRIDE2.explain(at=(1, 1))
    np.testing.assert_array_equal(trace.output, [[114, -26, 158], [403, -47, 244], [314, 279, 421]])
    assert trace.window_origin == (2, 2)
    assert trace.result == -47
    assert trace.equation() == "(-1)*54 + (-1)*99 + 5*70 + (-1)*129 + (-1)*115 = -47"


# --- the RGB example ("3D Convolution with a Kernel: Principle") -------------------------------


def test_slide_rgb_channel_sums_bias_and_output():
    trace = SLIDE_RGB.explain()
    assert [c.total for c in trace.channels] == [308, -498, 164]
    assert trace.bias == 1
    assert trace.result == -25
    assert trace.output[0, 0] == -25
    assert trace.sum_equation() == "308 - 498 + 164 + 1 = -25"


def test_slide_rgb_equation_lines():
    assert SLIDE_RGB.explain().equation().splitlines() == [
        "1*156 + (-1)*155 + 1*153 + 1*154 = 308",
        "(-1)*167 + (-1)*166 + (-1)*165 = -498",
        "1*163 + (-1)*160 + 1*161 = 164",
        "308 - 498 + 164 + 1 = -25",
    ]
    assert SLIDE_RGB.explain().equation(all_terms=True).splitlines() == [
        "(-1)*0 + (-1)*0 + 1*0 + 0*0 + 1*156 + (-1)*155 + 0*0 + 1*153 + 1*154 = 308",
        "1*0 + 0*0 + 0*0 + 1*0 + (-1)*167 + (-1)*166 + 1*0 + 0*164 + (-1)*165 = -498",
        "0*0 + 1*0 + 1*0 + 0*0 + 1*163 + 0*162 + 1*0 + (-1)*160 + 1*161 = 164",
        "308 - 498 + 164 + 1 = -25",
    ]


def test_multi_channel_without_bias_has_no_bias_term():
    trace = explain_conv(SLIDE_RGB.x, SLIDE_RGB.w, padding=1)
    assert trace.sum_equation() == "308 - 498 + 164 = -26"


# --- the pooling examples ("CNN Pooling: The Principle") ---------------------------------------


def test_slide_max_pool_trace():
    trace = SLIDE_POOL_MAX.explain(at=(0, 1))
    np.testing.assert_array_equal(trace.window, [[28, 184], [70, 38]])
    assert trace.result == 184
    assert trace.equation() == "max(28, 184, 70, 38) = 184"
    np.testing.assert_array_equal(trace.output, [[100, 184], [12, 45]])


def test_slide_avg_pool_trace_shows_36_5_and_says_why_the_slide_shows_36():
    trace = SLIDE_POOL_AVG.explain()
    assert trace.equation() == "(31 + 15 + 0 + 100) / 4 = 36.5"
    np.testing.assert_array_equal(trace.output, [[36.5, 80], [12, 15]])
    assert "36.5" in SLIDE_POOL_AVG.note
    assert "truncates" in SLIDE_POOL_AVG.note


def test_max_pool_padding_counts_as_minus_infinity():
    trace = explain_pool([[1, 2], [3, 4]], size=2, stride=1, padding=1, mode="max")
    assert trace.equation() == "max(-inf, -inf, -inf, 1) = 1"
    assert json.loads(json.dumps(trace.to_dict(), allow_nan=False))["window"] == [
        [None, None],
        [None, 1.0],
    ]


def test_avg_pool_padding_counts_as_zero():
    trace = explain_pool([[1, -2], [3, 4]], size=2, stride=1, padding=1, mode="avg", at=(0, 1))
    assert trace.equation() == "(0 + 0 + 1 - 2) / 4 = -0.25"


def test_slide_examples_are_listed_by_name():
    assert set(SLIDE_EXAMPLES) == {
        "slide-2d",
        "slide-2d-stride2",
        "slide-rgb",
        "slide-pool-max",
        "slide-pool-avg",
    }
    assert all(name == example.name for name, example in SLIDE_EXAMPLES.items())
    assert not SLIDE_2D.x.flags.writeable


# --- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.0, "5"),
        (-1, "-1"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (-0.2, "-0.2"),
        (36.5, "36.5"),
        (1 / 3, "0.333333"),
        (0.1 + 0.2, "0.3"),
        (1e20, "1e+20"),
        (float("-inf"), "-inf"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_equation_with_fractional_weights_and_negative_bias():
    trace = explain_conv([[60, 113], [73, 121]], [[0.5, -0.2], [0, 1]], b=-1.5)
    assert trace.equation() == "0.5*60 + (-0.2)*113 + 1*121 + (-1.5) = 126.9"


def test_negative_inputs_are_parenthesised_too():
    assert explain_conv([[-3]], [[2]]).equation() == "2*(-3) = -6"


def test_all_zero_products_still_make_an_equation():
    assert explain_conv(np.ones((3, 3)), np.zeros((3, 3))).equation() == "0 = 0"


# --- traces as data ----------------------------------------------------------------------------


def test_traces_are_immutable():
    trace = SLIDE_2D.explain()
    with pytest.raises(dataclasses.FrozenInstanceError):
        trace.result = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        trace.channels[0].window[0, 0] = 1


def test_to_dict_is_plain_json():
    data = json.loads(json.dumps(SLIDE_RGB.explain().to_dict(), allow_nan=False))
    assert data["result"] == -25
    assert data["bias"] == 1
    assert [c["sum"] for c in data["channels"]] == [308, -498, 164]
    assert data["equation"].splitlines()[-1] == "308 - 498 + 164 + 1 = -25"
    assert json.loads(json.dumps(SLIDE_POOL_AVG.explain().to_dict()))["result"] == 36.5


def test_reprs_show_the_arithmetic():
    assert repr(SLIDE_2D.explain()) == (
        "ConvTrace(at=(0, 0), out_channel=0, 5*60 + (-1)*113 + (-1)*73 = 114)"
    )
    assert repr(SLIDE_RGB.explain().channels[1]) == "ChannelTrace(channel=1, sum=-498)"
    assert repr(SLIDE_POOL_MAX.explain()) == "PoolTrace(at=(0, 0), max(29, 15, 0, 100) = 100)"
    assert repr(SLIDE_2D) == (
        "ConvExample('slide-2d', x=(1, 5, 5), w=(1, 1, 3, 3), stride=1, padding=1)"
    )


def test_out_channel_picks_the_output_map():
    w = np.concatenate([SLIDE_2D.w, -SLIDE_2D.w])  # (2, 1, 3, 3)
    trace = explain_conv(SLIDE_2D.x, w, [0.0, 1.0], padding=1, out_channel=1, at=(0, 0))
    assert trace.result == -113
    np.testing.assert_array_equal(trace.output, conv2d(SLIDE_2D.x, w, [0.0, 1.0], padding=1)[1])


@st.composite
def conv_trace_cases(draw):
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    k, stride, padding, dilation = (
        draw(st.integers(lo, hi)) for lo, hi in [(1, 3), (1, 2), (0, 2), (1, 2)]
    )
    size = draw(st.integers(max(1, dilation * (k - 1) + 1 - 2 * padding), 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-9, 10, (c_in, size, size)).astype(float)
    w = rng.integers(-3, 4, (c_out, c_in, k, k)).astype(float)
    b = rng.integers(-5, 6, c_out).astype(float)
    out = output_size(size, k, stride, padding, dilation)
    at = (draw(st.integers(0, out - 1)), draw(st.integers(0, out - 1)))
    out_channel = draw(st.integers(0, c_out - 1))
    conv = {"stride": stride, "padding": padding, "dilation": dilation}
    return x, w, b, conv, at, out_channel


@settings(max_examples=40, deadline=None)
@given(conv_trace_cases())
def test_every_conv_trace_agrees_with_conv2d(case):
    x, w, b, conv, at, out_channel = case
    output = conv2d(x, w, b, **conv)[out_channel]
    trace = explain_conv(x, w, b, at=at, out_channel=out_channel, **conv)
    assert trace.result == pytest.approx(output[at])
    np.testing.assert_array_equal(trace.output, output)
    for channel in trace.channels:
        np.testing.assert_array_equal(channel.products, channel.window * channel.kernel)
    assert trace.equation().splitlines()[-1].endswith(f"= {format_number(trace.result)}")


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3), st.integers(0, 1), st.sampled_from(["max", "avg"]), st.integers(0, 2**32 - 1)
)
def test_every_pool_trace_agrees_with_pool2d(size, padding, mode, seed):
    rng = np.random.default_rng(seed)
    padding = min(padding, size // 2)
    x = rng.integers(-9, 10, (size + int(rng.integers(0, 5)), size + 2)).astype(float)
    output = pool2d(x, size, 1, padding, mode)
    at = (int(rng.integers(output.shape[0])), int(rng.integers(output.shape[1])))
    trace = explain_pool(x, size, 1, padding, mode, at=at)
    assert trace.result == output[at]
    np.testing.assert_array_equal(trace.output, output)


# --- convenience shapes and errors -------------------------------------------------------------


def test_explain_conv_accepts_2d_and_3d_shapes_and_a_scalar_bias():
    image = SLIDE_2D.x[0]  # (5, 5)
    kernel = SLIDE_2D.w[0, 0]  # (3, 3)
    assert explain_conv(image, kernel, 1, padding=1).result == 115
    assert explain_conv(SLIDE_RGB.x, SLIDE_RGB.w[0], 1, padding=1).result == -25


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: SLIDE_2D.explain(at=(5, 0)),
            "at must be a (row, col) pair inside the 5x5 output: row in 0..4, col in 0..4. "
            "Received: at=(5, 0)",
        ),
        (lambda: SLIDE_2D.explain(at=(0, -1)), "Received: at=(0, -1)"),
        (lambda: SLIDE_2D.explain(at=(0,)), "Received: at=(0,)"),
        (
            lambda: SLIDE_2D_STRIDE2.explain(at=(3, 3)),
            "inside the 3x3 output: row in 0..2, col in 0..2. Received: at=(3, 3)",
        ),
        (
            lambda: SLIDE_POOL_MAX.explain(at=(2, 0)),
            "inside the 2x2 output: row in 0..1, col in 0..1. Received: at=(2, 0)",
        ),
        (
            lambda: explain_conv(SLIDE_2D.x, SLIDE_2D.w, padding=1, out_channel=1),
            "out_channel must be an integer in 0..0. Received: out_channel=1",
        ),
        (
            lambda: explain_conv(np.ones((1, 1, 5, 5)), SLIDE_2D.w),
            "x must have shape (H, W) or (C_in, H, W). Received: x.shape=(1, 1, 5, 5)",
        ),
        (
            lambda: explain_conv(SLIDE_2D.x, np.ones(3)),
            "w must have shape (kH, kW), (C_in, kH, kW) or (C_out, C_in, kH, kW). "
            "Received: w.shape=(3,)",
        ),
        (
            lambda: explain_conv(SLIDE_2D.x, SLIDE_2D.w, stride=0),
            "stride must be a positive integer or a pair of them. Received: stride=0",
        ),
        (
            lambda: explain_conv(SLIDE_2D.x, SLIDE_2D.w, [1.0, 2.0]),
            "b must have shape (C_out,) = (1,), one bias per output channel. "
            "Received: b.shape=(2,)",
        ),
        (
            lambda: explain_conv(SLIDE_2D.x, SLIDE_2D.w, "one"),
            "b must be an array of numbers. Received: b='one'",
        ),
        (
            lambda: explain_pool(np.ones((1, 4, 4))),
            "x must have shape (H, W). Received: x.shape=(1, 4, 4)",
        ),
        (
            lambda: explain_pool(np.ones((4, 4)), mode="sum"),
            "mode must be one of ('max', 'avg'). Received: mode='sum'",
        ),
    ],
)
def test_errors_name_the_argument_and_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
