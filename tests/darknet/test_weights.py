"""The .weights reader and writer: Darknet's layout, both headers, truncation, exact sizes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from cnnlab.darknet import build_network, load_weights, parse_cfg, randomize_weights, save_weights
from cnnlab.darknet.weights import weights_size

ONE_CONV_BN = (
    "[net]\nheight=4\nwidth=4\nchannels=2\n"
    "[conv]\nbatch_normalize=1\nfilters=3\nsize=1\nactivation=leaky\n"
)
ONE_DENSE = "[net]\nheight=1\nwidth=1\nchannels=2\n[connected]\noutput=3\nactivation=linear\n"


def header(major=0, minor=2, revision=0, seen=0):
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000  # parser.c's rule
    return struct.pack("<3i", major, minor, revision) + struct.pack("<q" if wide else "<i", seen)


def test_batch_norm_order_bias_scale_mean_variance_weights(tmp_path):
    model = build_network(parse_cfg(ONE_CONV_BN))
    values = np.arange(3 * 4 + 3 * 2, dtype="<f4")
    path = tmp_path / "a.weights"
    path.write_bytes(header() + values.tobytes())
    info = load_weights(model, path)
    conv = model.layers[0]
    assert info.complete and info.header.size == 20
    torch.testing.assert_close(conv.bn.bias, torch.tensor([0.0, 1, 2]))
    torch.testing.assert_close(conv.bn.weight, torch.tensor([3.0, 4, 5]))
    torch.testing.assert_close(conv.bn.running_mean, torch.tensor([6.0, 7, 8]))
    torch.testing.assert_close(conv.bn.running_var, torch.tensor([9.0, 10, 11]))
    torch.testing.assert_close(conv.conv.weight.reshape(-1), torch.arange(12.0, 18.0))


@pytest.mark.parametrize(("major", "minor", "transposed"), [(0, 2, False), (0, 1001, True)])
def test_connected_order_and_transpose_flag(tmp_path, major, minor, transposed):
    model = build_network(parse_cfg(ONE_DENSE))
    bias, weights = np.array([1, 2, 3], "<f4"), np.arange(6, dtype="<f4")
    path = tmp_path / "d.weights"
    path.write_bytes(header(major, minor) + bias.tobytes() + weights.tobytes())
    load_weights(model, path)
    expected = weights.reshape(2, 3).T if transposed else weights.reshape(3, 2)
    np.testing.assert_array_equal(model.layers[0].linear.weight.detach().numpy(), expected)
    np.testing.assert_array_equal(model.layers[0].linear.bias.detach().numpy(), bias)
    save_weights(model, tmp_path / "back.weights")
    assert (tmp_path / "back.weights").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("version", [(0, 2, 0), (0, 1, 0), (1, 0, 0)])
def test_round_trip_is_bit_exact(small_cfg, tmp_path, version):
    model = randomize_weights(build_network(small_cfg), seed=5)
    first = save_weights(model, tmp_path / "a.weights", version=version, seen=123456)
    size = 20 if version[0] * 10 + version[1] >= 2 else 16
    assert (
        first.stat().st_size == weights_size(model, version)
        and weights_size(model, version) % 4 == size % 4
    )
    again = build_network(small_cfg)
    info = load_weights(again, first)
    assert (info.header.seen, info.header.size) == (123456, size)
    second = save_weights(again, tmp_path / "b.weights")
    assert first.read_bytes() == second.read_bytes()
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("delta", [-4, 4, -1])
def test_a_float_short_or_long_names_expected_and_actual(small_cfg, tmp_path, delta):
    model = randomize_weights(build_network(small_cfg))
    path = save_weights(model, tmp_path / "a.weights")
    size = path.stat().st_size
    data = path.read_bytes()
    path.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    with pytest.raises(ValueError) as raised:
        load_weights(build_network(small_cfg), path)
    message = str(raised.value)
    assert (
        f"expected {size:,} bytes" in message
        and f"found {size + delta:,} ({delta:+,} bytes)" in message
    )
    if delta == -4:
        assert "it ends inside layer 9" in message  # the last connected layer


def test_truncated_conv_file_loads_the_first_layers(small_cfg, tmp_path):
    model = randomize_weights(build_network(small_cfg), seed=2)
    full = save_weights(model, tmp_path / "full.weights").read_bytes()
    first_conv = 8 + 3 * 8 + 8 * 3 * 3 * 3  # bias, BN statistics, weights of layer 0
    second_conv = 16 + 16 * 4 * 3 * 3  # no batch norm, groups=2
    part = tmp_path / "small.conv.3"
    part.write_bytes(full[: 20 + 4 * (first_conv + second_conv)])
    fresh = build_network(small_cfg)
    untouched = fresh.layers[3].conv.weight.clone()
    info = load_weights(fresh, part)
    assert info.loaded_layers == (0, 2) and info.weighted_layers == 5 and not info.complete
    assert "first 2 of 5 weighted layers (layers 0-2)" in info.describe()
    assert torch.equal(fresh.layers[2].conv.weight, model.layers[2].conv.weight)
    assert torch.equal(fresh.layers[3].conv.weight, untouched)
    with pytest.raises(ValueError, match="expected"):
        load_weights(build_network(small_cfg), part, allow_truncated=False)


def test_not_a_weights_file(tmp_path, small_cfg):
    model = build_network(small_cfg)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_weights(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="No such weights file"):
        load_weights(model, tmp_path / "missing.weights")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter than the 16-byte header"):
        load_weights(model, tmp_path / "tiny")


def test_folded_model_is_not_written(small_cfg, tmp_path):
    model = randomize_weights(build_network(small_cfg)).optimize_for_inference()
    with pytest.raises(ValueError, match="folded"):
        save_weights(model, tmp_path / "x.weights")


def test_folding_keeps_the_outputs(small_cfg):
    model = randomize_weights(build_network(small_cfg), seed=9).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = model(x)
        after = model.optimize_for_inference()(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
