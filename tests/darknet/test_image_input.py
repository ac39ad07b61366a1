"""Images as Darknet reads them: 8-bit RGB (grey repeated, alpha dropped), then / 255 in double
stored as float (load_image_color), which ``unit_float`` computes as a float32 quotient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.darknet.classify import load_image_color, load_image_rgb8, unit_float


def test_unit_float_is_darknets_double_division_for_every_byte():
    every = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    darknet = (every.transpose(2, 0, 1).astype(np.float64) / 255.0).astype(np.float32)
    ours = unit_float(every)
    assert ours.dtype == np.float32 and ours.shape == (3, 16, 16)
    np.testing.assert_array_equal(ours, darknet)  # bit for bit, not within a tolerance


def test_unit_float_keeps_the_pixels_order_for_channels_last():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    batch = torch.from_numpy(unit_float(pixels))[None]
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[0, :, 2, 3], torch.from_numpy(pixels[2, 3] / np.float32(255)))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_alpha_and_palette_images_are_read_as_rgb(tmp_path, mode):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    image.save(tmp_path / "x.png")
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(load_image_rgb8(tmp_path / "x.png"), expected)
    np.testing.assert_array_equal(load_image_color(tmp_path / "x.png"), unit_float(expected))
