"""Images as Darknet reads them: 8-bit RGB (grey repeated, alpha dropped), then / 255 in double
stored as float (load_image_color), which ``unit_float`` computes as a float32 quotient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.darknet.classify import load_image_color, load_image_rgb8, resize_image, unit_float


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


def darknet_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """image.c's resize_image, loop for loop, each operation in float32 as Darknet's C does."""
    f32 = np.float32
    channels, old_h, old_w = image.shape
    part = np.zeros((channels, old_h, width), dtype=f32)
    w_scale = f32(old_w - 1) / f32(width - 1) if width > 1 else f32(0)
    h_scale = f32(old_h - 1) / f32(height - 1) if height > 1 else f32(0)
    for k in range(channels):
        for r in range(old_h):
            for c in range(width):
                if c == width - 1 or old_w == 1:
                    val = image[k, r, old_w - 1]
                else:
                    sx = f32(c) * w_scale
                    ix = int(sx)
                    dx = sx - f32(ix)
                    val = (f32(1) - dx) * image[k, r, ix] + dx * image[k, r, ix + 1]
                part[k, r, c] = val
    resized = np.zeros((channels, height, width), dtype=f32)
    for k in range(channels):
        for r in range(height):
            sy = f32(r) * h_scale
            iy = int(sy)
            dy = sy - f32(iy)
            for c in range(width):
                resized[k, r, c] = (f32(1) - dy) * part[k, iy, c]
            if r == height - 1 or old_h == 1:
                continue
            for c in range(width):
                resized[k, r, c] += dy * part[k, iy + 1, c]
    return resized


@pytest.mark.parametrize(
    ("old", "new"),
    [((7, 11), (5, 4)), ((7, 11), (13, 17)), ((9, 6), (6, 9)), ((1, 8), (3, 5)), ((6, 1), (4, 3))],
)
def test_resize_is_darknets_loop_bit_for_bit(old, new):
    image = np.random.default_rng(2).random((2, *old), dtype=np.float32)
    new_h, new_w = new
    np.testing.assert_array_equal(
        resize_image(image, new_w, new_h), darknet_resize(image, new_w, new_h)
    )
