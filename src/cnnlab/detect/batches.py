"""Detection scenes as training batches on the device: images with their boxes, augmented
together.

The trainer's ``DeviceBatches`` keeps the uint8 images on the device and slices, augments and
normalises each batch there; ``DetectionBatches`` is the same with a (N, M, 5) target tensor in
place of the class ids: per image M rows class, x1, y1, x2, y2 in pixels (M the most objects of
any image; padding rows have class -1). Augmentation moves the boxes with the pixels:

- a shift by (dy, dx) moves every box by the same amount, clipped to the image (the pixels
  shifted out are gone, what is left of the object lies in the clipped box; a box left with
  no area becomes padding);
- a horizontal flip maps x1, x2 to W - x2, W - x1. It is label-safe only where a mirrored
  object is still of its class: fashion-mnist's clothes are, digits are not (a mirrored 3 is no
  3). ``scene_flip_ok`` decides it from the scenes' source dataset (``scenes.json``); any other
  folder is not flipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cnnlab.data.device import DeviceBatches, shift_and_flip
from cnnlab.detect.datasets import DetectionSet

PADDING_CLASS = -1.0


def padded_targets(part: DetectionSet) -> torch.Tensor:
    """The boxes of every image of ``part`` as one (N, M, 5) float tensor (see the module)."""
    counts = part.counts()
    most = max(int(counts.max()) if len(counts) else 0, 1)
    out = torch.zeros((len(part), most, 5), dtype=torch.float32, device=part.boxes.device)
    out[..., 0] = PADDING_CLASS
    image = torch.repeat_interleave(torch.arange(len(part), device=counts.device), counts)
    slot = torch.arange(len(part.labels), device=counts.device) - part.offsets[image]
    out[image, slot, 0] = part.labels.float()
    out[image, slot, 1:] = part.boxes.float()
    return out


def scene_flip_ok(folder: str | Path) -> bool:
    """Whether a horizontal flip keeps the classes of the scenes in ``folder``: only for scenes
    cnnlab made (``scenes.json``) from a dataset whose catalog entry says flips are safe."""
    from cnnlab.data.catalog import get_entry

    try:
        source = json.loads((Path(folder) / "scenes.json").read_text(encoding="utf-8"))
        return bool(get_entry(source["config"]["source"]).flip_ok)
    except (OSError, ValueError, KeyError, TypeError):
        return False


class DetectionBatches(DeviceBatches):
    """Batches (inputs float32 (B, C, H, W), targets float32 (B, M, 5)) on the device."""

    def _device_labels(self, labels: torch.Tensor, count: int) -> torch.Tensor:
        if labels.dim() != 3 or labels.shape[0] != count or labels.shape[2] != 5:
            raise ValueError(
                f"DetectionBatches: expected targets of shape ({count}, M, 5): class, x1, y1, "
                f"x2, y2 per object. Received: shape {tuple(labels.shape)}"
            )
        return labels.to(self.device, torch.float32)

    def _augment(
        self, images: torch.Tensor, labels: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2:]
        images = shift_and_flip(images, shifts, flips, self.augmentation.max_shift)
        return images, move_boxes(labels, shifts, flips, (height, width))


def move_boxes(
    targets: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """(B, M, 5) targets after ``shift_and_flip`` with ``shifts`` (B, 2) as (dy, dx) and
    ``flips`` (B,): flipped, then moved, then clipped to the image of ``size`` (H, W)."""
    height, width = size
    x1, y1, x2, y2 = targets[..., 1:].unbind(-1)
    flipped = flips[:, None]
    x1, x2 = torch.where(flipped, width - x2, x1), torch.where(flipped, width - x1, x2)
    dy, dx = shifts[:, :1].float(), shifts[:, 1:].float()
    x1, x2 = (x1 + dx).clamp(0, width), (x2 + dx).clamp(0, width)
    y1, y2 = (y1 + dy).clamp(0, height), (y2 + dy).clamp(0, height)
    gone = (targets[..., 0] < 0) | (x2 <= x1) | (y2 <= y1)
    classes = torch.where(gone, torch.full_like(targets[..., 0], PADDING_CLASS), targets[..., 0])
    return torch.stack([classes, x1, y1, x2, y2], -1)
