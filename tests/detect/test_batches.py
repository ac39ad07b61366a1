"""Detection batches on the device: padded targets, and boxes that move with their pixels."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.data.device import Augmentation, InputAdapter, Normalization
from cnnlab.detect.batches import (
    DetectionBatches,
    move_boxes,
    padded_targets,
    scene_flip_ok,
)
from cnnlab.detect.datasets import DetectionSet


def scene_set(rectangles: list[list[tuple[int, int, int, int, int]]], size: int = 40):
    """Images with a filled rectangle per object (class, x1, y1, x2, y2 in pixel edges)."""
    images = torch.zeros((len(rectangles), 1, size, size), dtype=torch.uint8)
    boxes, labels, offsets = [], [], [0]
    for index, objects in enumerate(rectangles):
        for cls, x1, y1, x2, y2 in objects:
            images[index, 0, y1:y2, x1:x2] = 50 + 20 * cls
            boxes.append([x1, y1, x2, y2])
            labels.append(cls)
        offsets.append(len(labels))
    return DetectionSet(
        images,
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(offsets),
        tuple(f"{i}.png" for i in range(len(rectangles))),
    )


SCENES = [
    [(1, 2, 3, 12, 20), (3, 20, 22, 35, 38)],
    [],
    [(0, 0, 0, 9, 9), (2, 30, 1, 40, 8), (1, 15, 15, 25, 25)],
]


def test_padded_targets_hold_each_images_objects_then_padding():
    targets = padded_targets(scene_set(SCENES))
    assert targets.shape == (3, 3, 5)
    expected = torch.full((3, 3, 5), 0.0)
    expected[..., 0] = -1
    for index, objects in enumerate(SCENES):
        for slot, row in enumerate(objects):
            expected[index, slot] = torch.tensor(row, dtype=torch.float32)
    torch.testing.assert_close(targets, expected)


def tight_box(image: torch.Tensor, value: int) -> list[float]:
    ys, xs = torch.nonzero(image[0] == value, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shift", [(0, 0), (3, -4), (-5, 6)])
def test_augmented_boxes_are_the_tight_boxes_of_the_moved_pixels(flip, shift):
    part = scene_set(SCENES)
    batches = DetectionBatches(
        part.images, padded_targets(part), batch_size=3, device="cpu",
        normalization=Normalization((0.0,), (1.0,)), adapter=InputAdapter((1, 40, 40), (1, 40, 40)),
        augmentation=Augmentation(max_shift=6, flip=True), shuffle=False,
    )  # fmt: skip
    shifts = torch.tensor([shift] * 3)
    flips = torch.tensor([flip] * 3)
    images, targets = batches._augment(part.images, batches.labels, shifts, flips)
    checked = 0
    for index, objects in enumerate(SCENES):
        for slot, (cls, *_) in enumerate(objects):
            row = targets[index, slot]
            assert row[0] == cls
            assert row[1:].tolist() == tight_box(images[index], 50 + 20 * cls)
            checked += 1
    assert checked == 5


def test_a_box_moved_out_of_the_image_becomes_padding_and_others_are_clipped():
    targets = torch.tensor([[[4.0, 0, 0, 5, 5], [1.0, 10, 10, 30, 30], [-1.0, 0, 0, 0, 0]]])
    moved = move_boxes(targets, torch.tensor([[-2, -6]]), torch.tensor([False]), (40, 40))
    assert moved[0, 0, 0] == -1  # x2 = 5 - 6 < 0: nothing of it is left
    torch.testing.assert_close(moved[0, 1], torch.tensor([1.0, 4, 8, 24, 28]))
    assert moved[0, 2, 0] == -1  # padding stays padding
    flipped = move_boxes(targets, torch.tensor([[0, 0]]), torch.tensor([True]), (40, 40))
    torch.testing.assert_close(flipped[0, 1], torch.tensor([1.0, 10, 10, 30, 30]))
    torch.testing.assert_close(flipped[0, 0], torch.tensor([4.0, 35, 0, 40, 5]))


def test_batches_refuse_targets_of_the_wrong_shape():
    part = scene_set(SCENES)
    with pytest.raises(ValueError, match=r"expected targets of shape \(3, M, 5\).*\(3, 3, 4\)"):
        DetectionBatches(
            part.images, padded_targets(part)[..., :4], batch_size=2, device="cpu",
            normalization=Normalization((0.0,), (1.0,)),
            adapter=InputAdapter((1, 40, 40), (1, 40, 40)),
        )  # fmt: skip


def test_flips_only_for_scenes_of_a_mirror_safe_source(tmp_path):
    for source, expected in (("fashion-mnist", True), ("mnist", False), ("folder:x", False)):
        folder = tmp_path / source.replace(":", "_")
        folder.mkdir()
        (folder / "scenes.json").write_text(json.dumps({"config": {"source": source}}))
        assert scene_flip_ok(folder) is expected
    assert scene_flip_ok(tmp_path) is False  # a user's own folder: no scenes.json
