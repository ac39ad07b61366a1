"""feature_maps_figure: a valid PNG with one panel per kernel plus the input, written atomically."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cnnlab.ops import KERNELS, feature_maps_figure
from cnnlab.ops.figures import DPI, PANEL_WIDTH_IN


def _shapes(size: int = 64) -> np.ndarray:
    """A synthetic image: a bright square and a grey disc on a dark ramp."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = 20.0 * xx / size
    image[size // 8 : size // 2, size // 8 : size // 2] = 200
    image[(yy - 0.65 * size) ** 2 + (xx - 0.6 * size) ** 2 < (0.25 * size) ** 2] = 120
    return image


@pytest.mark.parametrize("count", [1, 3])
def test_writes_a_png_with_one_panel_per_kernel_plus_the_input(tmp_path, count):
    kernels = {name: KERNELS[name] for name in ["sobel-x", "sobel-y", "edge"][:count]}
    path = feature_maps_figure(_shapes(), kernels, tmp_path / "maps.png")
    assert path == tmp_path / "maps.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == pytest.approx(PANEL_WIDTH_IN * DPI * (count + 1), abs=2)
    assert 300 < height < 800
    assert [p.name for p in tmp_path.iterdir()] == ["maps.png"]  # no temp file left behind


def test_the_panels_show_something(tmp_path):
    path = feature_maps_figure(_shapes(), {"edge": KERNELS["edge"]}, tmp_path / "maps.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank canvas


def test_overwrites_and_creates_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "maps.png"
    feature_maps_figure(_shapes(), {"blur": KERNELS["blur"]}, path, stride=2)
    feature_maps_figure(_shapes(), {"blur": KERNELS["blur"]}, str(path), padding=0)
    assert [p.name for p in path.parent.iterdir()] == ["maps.png"]


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        feature_maps_figure(_shapes(), {"edge": KERNELS["edge"]}, tmp_path / "maps.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("image", "kernels", "name", "message"),
    [
        (np.ones((2, 8, 8)), {"edge": KERNELS["edge"]}, "maps.png", "image.shape=(2, 8, 8)"),
        (np.ones((8, 8)), {}, "maps.png", "kernels must be a non-empty mapping"),
        (np.ones((8, 8)), {"k": np.ones((1, 3, 3))}, "maps.png", "kernels['k'] must be a 2D"),
        (np.ones((8, 8)), {"edge": KERNELS["edge"]}, "maps.jpg", "path must end in .png"),
        (np.ones((2, 2)), {"big": np.ones((7, 7))}, "maps.png", "the output would be empty"),
    ],
)
def test_bad_arguments_are_rejected_before_writing(tmp_path, image, kernels, name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        feature_maps_figure(image, kernels, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
