"""Darknet's classifier: ``darknet classifier predict`` (examples/classifier.c, predict_classifier).

Darknet loads the image as RGB floats in [0, 1] (load_image_color: 8-bit values / 255),
letterboxes it to the network's width x height (letterbox_image: scaled to fit with its aspect
kept, by Darknet's own bilinear resize_image, centred on grey 0.5), runs the network with batch
1, and prints the top k of the softmax as ``"%5.2f%%: %s"``. Every step here computes the same
float32 numbers, so that the printed lines match Darknet's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.darknet.network import DarknetNet


def load_image_rgb8(path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a grey image is repeated, alpha is dropped, as Darknet's OpenCV or
    stb loaders with 3 channels do."""
    file = Path(path)
    if file.is_dir():
        raise FileNotFoundError(f"image must be an image file, not a folder: {file}")
    if not file.exists():
        raise FileNotFoundError(f"No such image: {file}")
    try:
        with Image.open(file) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{file} is not an image Pillow can read ({error})") from None


def unit_float(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> (C, H, W) float32 in [0, 1], Darknet's values: its data / 255. in
    double, stored as float, equals the float32 quotient for each of the 256 values (IEEE
    division rounds correctly; tests/darknet check all 256). The array keeps the (H, W, C)
    memory order: a PyTorch tensor of it is channels_last without a copy."""
    pixels = rgb8.transpose(2, 0, 1).astype(np.float32)
    pixels /= np.float32(255)
    return pixels


def load_image_color(path: str | os.PathLike[str]) -> np.ndarray:
    """(3, H, W) float32 RGB in [0, 1] (``load_image_rgb8`` / 255)."""
    return unit_float(load_image_rgb8(path))


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Darknet's resize_image (image.c): bilinear over the corners (scale (w-1)/(new_w-1)),
    columns first, then rows, in float32. Each step is one float32 operation, as in Darknet's
    loops (so the values are Darknet's, bit for bit), done by PyTorch on the whole image (its
    kernels use every thread: 768x576 to 416x312 in 13 ms where NumPy took 20)."""
    pixels = torch.from_numpy(image)
    channels, old_h, old_w = pixels.shape
    f32 = torch.float32
    if old_w == 1 or width == 1:
        part = pixels[:, :, old_w - 1 :].expand(channels, old_h, width).contiguous()
    else:
        w_scale = float(np.float32(old_w - 1) / np.float32(width - 1))  # a float32 value
        sx = torch.arange(width - 1, dtype=f32) * w_scale
        ix = sx.to(torch.int64)
        dx = sx - ix.to(f32)
        part = torch.empty((channels, old_h, width), dtype=f32)
        left, right = pixels.index_select(2, ix), pixels.index_select(2, ix + 1)
        torch.add((1 - dx) * left, dx * right, out=part[:, :, : width - 1])
        part[:, :, width - 1] = pixels[:, :, old_w - 1]
    if old_h == 1 or height == 1:
        rows = part[:, :1].expand(channels, height, width) if old_h == 1 else part[:, :1]
        return rows.contiguous().numpy()
    h_scale = float(np.float32(old_h - 1) / np.float32(height - 1))
    sy = torch.arange(height, dtype=f32) * h_scale
    iy = sy.to(torch.int64)
    dy = (sy - iy.to(f32))[None, :, None]
    resized = (1 - dy) * part.index_select(1, iy)
    below = torch.clamp(iy[: height - 1] + 1, max=old_h - 1)
    resized[:, : height - 1] += dy[:, : height - 1] * part.index_select(1, below)
    return resized.numpy()


def letterbox_size(old_w: int, old_h: int, width: int, height: int) -> tuple[int, int]:
    """The (width, height) an old_w x old_h image takes inside a width x height letterbox
    (letterbox_image, and correct_region_boxes when detections are mapped back)."""
    if np.float32(width) / np.float32(old_w) < np.float32(height) / np.float32(old_h):
        return width, (old_h * width) // old_w
    return (old_w * height) // old_h, height


def letterbox_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Darknet's letterbox_image: fit inside width x height keeping the aspect, centre on 0.5."""
    _, old_h, old_w = image.shape
    new_w, new_h = letterbox_size(old_w, old_h, width, height)
    resized = resize_image(image, new_w, new_h)
    boxed = np.full((image.shape[0], height, width), 0.5, dtype=np.float32)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    boxed[:, top : top + new_h, left : left + new_w] = resized
    return boxed


def read_names(path: str | os.PathLike[str]) -> list[str]:
    """A Darknet names file: one class name per line (get_labels)."""
    file = Path(path)
    if file.is_dir():
        raise FileNotFoundError(f"names must be a file of class names, not a folder: {file}")
    if not file.exists():
        raise FileNotFoundError(f"No such names file: {file}")
    return file.read_text(encoding="utf-8", errors="replace").splitlines()


def top_k(probabilities: np.ndarray, k: int) -> list[int]:
    """Darknet's top_k (utils.c): highest first; of equal values the earlier index first."""
    values = probabilities.astype(np.float32)
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]


def format_prediction(probability: float, name: str) -> str:
    """Darknet's ``printf("%5.2f%%: %s\\n", predictions[index]*100, names[index])``."""
    return f"{float(np.float32(probability) * np.float32(100)):5.2f}%: {name}"


@dataclass(frozen=True)
class Classification:
    """One image's top k, with both clocks: Darknet prints process CPU time (``clock()``)."""

    image: str
    top: tuple[tuple[float, str], ...]  # (probability, name), best first
    wall_seconds: float
    cpu_seconds: float

    def lines(self) -> list[str]:
        """The lecture's lines: ``IMAGE: Predicted in S seconds.`` (wall time) and the top k."""
        head = f"{self.image}: Predicted in {self.wall_seconds:f} seconds."
        return [head, *(format_prediction(p, name) for p, name in self.top)]


def classify(
    model: DarknetNet, images: list[str | os.PathLike[str]], names: list[str], *, top: int = 5
) -> list[Classification]:
    """Classify each image as ``darknet classifier predict`` does (batch 1, in order)."""
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive integer. Received: top={top!r}")
    channels, height, width = model.plan.input_shape
    outputs = model.plan.output.outputs
    if channels != 3:
        raise ValueError(
            f"{model.plan.cfg.source}: the classifier needs 3 input channels, not {channels}"
        )
    if len(names) < outputs:
        raise ValueError(
            f"names has {len(names)} class names but the network has {outputs} outputs; "
            "expected one name per output"
        )
    if model.plan.output.kind not in ("softmax", "cost", "avgpool", "connected"):
        raise ValueError(
            f"{model.plan.cfg.source} ends in a {model.plan.output.kind} layer, not a classifier"
        )
    model.eval()
    results = []
    for path in images:
        boxed = letterbox_image(load_image_color(path), width, height)
        batch = torch.from_numpy(boxed)[None].to(memory_format=torch.channels_last)
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            predictions = model(batch)[0].float().numpy()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        chosen = top_k(predictions, min(top, outputs))
        results.append(
            Classification(
                str(path), tuple((float(predictions[i]), names[i]) for i in chosen), wall, cpu
            )
        )
    return results
