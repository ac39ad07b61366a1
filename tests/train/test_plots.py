"""The run plots: valid PNGs written atomically, the right layers drawn, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.models import create_model
from cnnlab.runtime.figures import DPI
from cnnlab.summary import LayerKind
from cnnlab.train.plots import (
    capture_features,
    conv_layers,
    first_layer_kernels,
    plot_confusion,
    plot_curves,
    plot_features,
    plot_kernels,
)

DIGITS = [str(d) for d in range(10)]


def metrics(epochs: int = 3, val: bool = True) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": 2.0 / e,
            "train_accuracy": 0.5 + 0.1 * e,
            "val_accuracy": 0.45 + 0.1 * e if val else None,
            "test_accuracy": 0.4 + 0.1 * e,
            "lr": 1e-3,
        }
        for e in range(1, epochs + 1)
    ]


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file, checking it is one and is not blank."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=float)
        size = image.size
    assert pixels.std() > 10
    return size


def only(folder, name: str) -> None:
    """``name`` is the only file in ``folder``: no temp file was left behind."""
    assert sorted(p.name for p in folder.iterdir()) == [name]


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return create_model("lenet-like").eval()


@pytest.mark.parametrize(("epochs", "val"), [(1, True), (5, True), (4, False)])
def test_curves(tmp_path, epochs, val):
    path = plot_curves(metrics(epochs, val), tmp_path / "curves.png", title="lenet-like on mnist")
    assert path == tmp_path / "curves.png"
    width, height = png_size(path)
    assert width == pytest.approx(10.5 * DPI, abs=2)
    assert height == pytest.approx(4.2 * DPI, abs=2)
    only(tmp_path, "curves.png")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], r"metrics must hold at least one epoch"),
        ({"epoch": 1, "loss": 1.0}, r"metrics must be a list"),
        ([{"epoch": 1}], r"metrics\[0\] must be a dict with 'epoch' and 'loss'"),
    ],
)
def test_curves_bad_metrics(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        plot_curves(bad, tmp_path / "curves.png")
    assert not list(tmp_path.iterdir())


def test_bad_path_is_refused_before_drawing(tmp_path, lenet):
    with pytest.raises(ValueError, match=r"path must end in \.png\. Received: path=.*curves\.jpg"):
        plot_curves(metrics(), tmp_path / "curves.jpg")
    with pytest.raises(ValueError, match="path must be a file path"):
        plot_kernels(lenet, None)


@pytest.mark.parametrize("classes", [DIGITS, [f"class {i}" for i in range(25)]])
def test_confusion(tmp_path, classes):
    k = len(classes)
    rng = np.random.default_rng(0)
    confusion = np.diag(rng.integers(50, 100, k)) + rng.integers(0, 5, (k, k))
    confusion[0] = 0  # a class with no samples must not divide by zero
    path = plot_confusion(confusion, classes, tmp_path / "sub" / "confusion.png")
    width, height = png_size(path)
    assert 500 < height < 2100 and width > height
    only(tmp_path / "sub", "confusion.png")


@pytest.mark.parametrize(
    ("confusion", "classes", "message"),
    [
        (np.ones((2, 3)), ["a", "b"], r"square \(K, K\).*shape=\(2, 3\)"),
        (np.ones((2, 2)), ["a", "b", "c"], "classes must name the 2 rows.*3 classes"),
        (-np.ones((2, 2)), ["a", "b"], "non-negative"),
        (np.zeros((2, 2)), ["a", "b"], "at least one sample"),
        (np.full((2, 2), np.nan), ["a", "b"], "finite"),
    ],
)
def test_confusion_bad_arguments(tmp_path, confusion, classes, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion(confusion, classes, tmp_path / "confusion.png")


def test_kernels_of_a_conv_net(tmp_path, lenet):
    kernels = first_layer_kernels(lenet)
    assert kernels.kind is LayerKind.CONV and kernels.layer == "0"
    assert kernels.tiles.shape == (6, 3, 3)  # one grey tile per filter
    np.testing.assert_allclose(kernels.tiles, lenet[0].weight.detach()[:, 0].numpy())
    png_size(plot_kernels(lenet, tmp_path / "kernels.png"))
    only(tmp_path, "kernels.png")


def test_kernels_rgb_and_channel_mean():
    rgb = create_model("lenet-like", in_channels=3)
    assert first_layer_kernels(rgb).tiles.shape == (6, 3, 3, 3)  # (filter, kH, kW, RGB)
    two = create_model("lenet-like", in_channels=2)
    expected = two[0].weight.detach().mean(dim=1).numpy()
    np.testing.assert_allclose(first_layer_kernels(two).tiles, expected, rtol=1e-6)
    assert first_layer_kernels(rgb, max_tiles=4).tiles.shape[0] == 4


def test_kernels_of_an_mlp_are_dense_templates(tmp_path):
    mlp = create_model("mlp", width=32)
    kernels = first_layer_kernels(mlp)
    assert kernels.kind is LayerKind.DENSE and kernels.total == 32
    assert kernels.tiles.shape == (16, 28, 28)  # the first 16 units, as 28x28 images
    np.testing.assert_allclose(kernels.tiles[3].ravel(), mlp[1].weight.detach()[3].numpy())
    png_size(plot_kernels(mlp, tmp_path / "kernels.png"))


def test_kernels_need_a_conv_or_dense_layer(tmp_path):
    with pytest.raises(ValueError, match="no Conv2d or Linear layer"):
        plot_kernels(nn.Sequential(nn.ReLU()), tmp_path / "kernels.png")
    with pytest.raises(ValueError, match="max_tiles must be a positive integer"):
        first_layer_kernels(nn.Sequential(nn.Conv2d(1, 2, 3)), max_tiles=0)


def test_features_one_entry_per_conv_layer(lenet):
    image = torch.randn(1, 32, 32)
    layers = capture_features(lenet, image)
    assert [f.layer for f in layers] == conv_layers(lenet) == ["0", "3"]
    assert [f.label for f in layers] == ["conv 1 (low-level)", "conv 2 (high-level)"]
    assert [f.maps.shape for f in layers] == [(6, 30, 30), (16, 13, 13)]
    assert [f.after for f in layers] == ["relu", "relu"]
    with torch.no_grad():
        expected = torch.relu(lenet[0](image[None]))[0].numpy()
    np.testing.assert_allclose(layers[0].maps, expected, rtol=1e-5, atol=1e-6)


def test_features_levels_and_layer_cap():
    lenet5 = create_model("lenet5")
    labels = [f.label for f in capture_features(lenet5, torch.randn(1, 32, 32))]
    assert labels == ["conv 1 (low-level)", "conv 2 (mid-level)", "conv 3 (high-level)"]
    deep = nn.Sequential(*(nn.Conv2d(2 if i else 1, 2, 3, padding=1) for i in range(7)))
    picked = capture_features(deep, torch.randn(1, 8, 8), max_layers=4)
    assert [f.position for f in picked] == [1, 3, 5, 7]  # evenly spaced, first and last kept
    assert {f.total for f in picked} == {7}
    assert deep.training  # the model's mode is restored


def test_plot_features_draws_one_row_per_layer(tmp_path, lenet):
    two = plot_features(lenet, torch.randn(1, 32, 32), tmp_path / "two.png")
    three = plot_features(create_model("lenet5"), torch.randn(1, 32, 32), tmp_path / "three.png")
    (_, two_high), (_, three_high) = png_size(two), png_size(three)
    # rows: the input + one per conv layer, each TILE_IN (1.15 in) high
    assert three_high - two_high == pytest.approx(1.15 * DPI, abs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.png", "two.png"]


def test_features_bad_arguments(tmp_path, lenet):
    with pytest.raises(ValueError, match=r"image must be a \(C, H, W\) tensor. Received: \(1, 1"):
        plot_features(lenet, torch.randn(1, 1, 32, 32), tmp_path / "f.png")
    with pytest.raises(ValueError, match="max_maps must be a positive integer"):
        plot_features(lenet, torch.randn(1, 32, 32), tmp_path / "f.png", max_maps=0)
    with pytest.raises(ValueError, match="has no convolution"):
        plot_features(create_model("mlp", width=8), torch.randn(1, 28, 28), tmp_path / "f.png")
    assert not list(tmp_path.iterdir())
