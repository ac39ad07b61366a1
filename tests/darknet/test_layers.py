"""Darknet's layers against loops written from Darknet's C, and shape arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.darknet import layers as L
from cnnlab.darknet import parse_cfg, plan_network


def reorg_loop(x: np.ndarray, stride: int, forward: int) -> np.ndarray:
    """blas.c's reorg_cpu, loop for loop (w, h, c: the layer's input size)."""
    batch, c, h, w = x.shape
    flat, out = x.reshape(-1), np.zeros(x.size, dtype=x.dtype)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = flat[in_index]
                    else:
                        out[in_index] = flat[out_index]
    return out


def test_reorg_is_darknets_legacy_order_not_pixel_unshuffle():
    x = torch.arange(2 * 8 * 4 * 6, dtype=torch.float32).reshape(2, 8, 4, 6)
    ours = L.Reorg(2)(x)
    assert ours.shape == (2, 32, 2, 3)
    np.testing.assert_array_equal(ours.numpy().reshape(-1), reorg_loop(x.numpy(), 2, 0))
    assert not torch.equal(ours, F.pixel_unshuffle(x, 2))
    back = L.Reorg(2, reverse=True)(x)
    assert back.shape == (2, 2, 8, 12)
    np.testing.assert_array_equal(back.numpy().reshape(-1), reorg_loop(x.numpy(), 2, 1))


def maxpool_loop(x: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """maxpool_layer.c's forward_maxpool_layer: offset -pad/2, -FLT_MAX outside."""
    c, h, w = x.shape
    out_h, out_w = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.empty((c, out_h, out_w), dtype=x.dtype)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                best = -np.finfo(np.float32).max
                for n in range(size):
                    for m in range(size):
                        y, x_ = -(pad // 2) + i * stride + n, -(pad // 2) + j * stride + m
                        if 0 <= y < h and 0 <= x_ < w:
                            best = max(best, x[k, y, x_])
                out[k, i, j] = best
    return out


@pytest.mark.parametrize(
    ("size", "stride", "pad", "hw", "expected"),
    [(2, 1, 1, 13, 13), (2, 2, 1, 13, 7), (2, 2, 1, 12, 6), (3, 2, 2, 7, 4), (5, 1, 4, 5, 5)],
)
def test_maxpool_darknet_padding(size, stride, pad, hw, expected):
    x = torch.randn(1, 2, hw, hw, generator=torch.Generator().manual_seed(size + hw)) - 3
    ours = L.MaxPool(size, stride, pad)(x)
    assert ours.shape[-2:] == (expected, expected)
    np.testing.assert_array_equal(ours[0].numpy(), maxpool_loop(x[0].numpy(), size, stride, pad))


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 4), stride=st.integers(1, 3), extra=st.integers(0, 3), hw=st.integers(4, 12)
)
def test_maxpool_plan_matches_module(size, stride, extra, hw):
    pad = size - 1 + extra
    text = (
        f"[net]\nheight={hw}\nwidth={hw + 1}\nchannels=1\n"
        f"[max]\nsize={size}\nstride={stride}\npadding={pad}\n"
    )
    plan = plan_network(parse_cfg(text))
    out = L.MaxPool(size, stride, pad)(torch.zeros(1, 1, hw, hw + 1))
    assert tuple(out.shape[1:]) == plan.layers[0].output_shape


def test_shortcut_of_different_sizes_follows_shortcut_cpu():
    x, add = (
        torch.ones(1, 4, 4, 4),
        torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8),
    )
    out = L.Shortcut(0, "linear", alpha=1, beta=1)(x, add)
    expected = x.clone()
    expected[:, :2] += add[:, :, ::2, ::2]  # stride 2 over the bigger map, only shared channels
    torch.testing.assert_close(out, expected)


def test_route_groups_take_one_slice_of_each_input():
    a, b = torch.arange(8.0).reshape(1, 4, 1, 2), torch.arange(8.0, 12.0).reshape(1, 2, 1, 2)
    out = L.Route((0, 1), groups=2, group_id=1)([a, b])
    torch.testing.assert_close(out, torch.cat([a[:, 2:], b[:, 1:]], dim=1))


@pytest.mark.parametrize(
    "name",
    [
        "leaky",
        "relu",
        "logistic",
        "linear",
        "ramp",
        "relie",
        "plse",
        "lhtan",
        "hardtan",
        "elu",
        "selu",
        "loggy",
        "tanh",
        "stair",
    ],
)
def test_activations_match_darknets_formulas(name):
    x = torch.linspace(-6, 6, 97, dtype=torch.float64)
    formulas = {
        "leaky": lambda v: v if v > 0 else 0.1 * v,
        "relu": lambda v: v * (v > 0),
        "logistic": lambda v: 1 / (1 + np.exp(-v)),
        "linear": lambda v: v,
        "ramp": lambda v: v * (v > 0) + 0.1 * v,
        "relie": lambda v: v if v > 0 else 0.01 * v,
        "plse": lambda v: (
            0.01 * (v + 4) if v < -4 else (0.01 * (v - 4) + 1 if v > 4 else 0.125 * v + 0.5)
        ),
        "lhtan": lambda v: 0.001 * v if v < 0 else (0.001 * (v - 1) + 1 if v > 1 else v),
        "hardtan": lambda v: min(1, max(-1, v)),
        "elu": lambda v: v if v >= 0 else np.exp(v) - 1,
        "selu": lambda v: 1.0507 * v if v >= 0 else 1.0507 * 1.6732 * (np.exp(v) - 1),
        "loggy": lambda v: 2 / (1 + np.exp(-v)) - 1,
        "tanh": lambda v: (np.exp(2 * v) - 1) / (np.exp(2 * v) + 1),
        "stair": lambda v: (
            np.floor(v / 2) if int(np.floor(v)) % 2 == 0 else (v - np.floor(v)) + np.floor(v / 2)
        ),
    }
    expected = [formulas[name](float(v)) for v in x]
    np.testing.assert_allclose(L.Activation(name)(x).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_batch_norm_divides_by_sqrt_var_plus_eps_as_darknet_in_eval():
    """normalize_cpu: (x - mean) / (sqrt(var) + .000001f); a channel of tiny variance shows it."""
    conv = L.Convolutional(2, 3, 1, 1, 0, 1, True, "linear").eval()
    with torch.no_grad():
        conv.bn.running_var.copy_(torch.tensor([1e-8, 1.0, 2.0]))
        conv.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        conv.bn.weight.copy_(torch.tensor([0.5, 1.5, 1.0]))
        conv.bn.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))
        x = torch.randn(2, 2, 4, 4, dtype=torch.float64).float()
        y = conv.conv(x).double()
        bn = conv.bn
        view = (1, -1, 1, 1)
        expected = (y - bn.running_mean.double().view(view)) / (
            bn.running_var.double().sqrt().view(view) + 1e-6
        ) * bn.weight.double().view(view) + bn.bias.double().view(view)
        out = conv(x)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
        conv.fold_batch_norm()
        torch.testing.assert_close(conv(x), out, rtol=1e-5, atol=1e-3)
