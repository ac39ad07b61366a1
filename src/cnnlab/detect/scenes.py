"""Synthetic detection scenes: classification images pasted onto a canvas, with their boxes.

    from cnnlab.detect.scenes import SceneConfig, make_scenes
    report = make_scenes(SceneConfig("fashion-mnist", count=10_000), "scenes")

Each scene is a ``size`` x ``size`` canvas (black, or uniform noise with ``noise``) holding
``min_objects``..``max_objects`` objects. An object is one image of the source set, resized
(bilinear, antialiased) to a square of side ``scale[0]..scale[1]`` pixels and pasted by taking
the per-pixel maximum with the canvas. Train scenes use the source's training images only,
test scenes its test images only. ``clutter`` adds fragments (a third of a source image)
before the objects: parts of objects that a detector must not report.

The box rule: an object's box is the tight box of its nonzero pixels after resizing (rounded to
uint8), in pixel-edge coordinates: a first nonzero column c0 and a last c1 give x1 = c0,
x2 = c1 + 1. Every pixel the object changes lies inside its box. A new object is placed only
where its box overlaps no earlier box by more than ``max_iou`` (IoU) and covers no more than
``max_cover`` of the smaller of the two boxes (so that a small object is not lost inside a large
one: IoU alone allows a 16-pixel box wholly inside a 64-pixel one); when 64 tries find no
such place the object is left out, so ``max_objects`` is reached when there is room.

Everything is drawn from NumPy generators seeded by (seed, split, chunk): the same config gives
the same scenes, byte for byte. Resizing, box finding and placement run on whole chunks at once
(torch and NumPy); pasting is one array slice per object.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.runtime.threads import torch_threads
from cnnlab.runtime.validate import check_int, check_number

CHUNK = 500  # scenes drawn and written at a time (part of the seed: fixed, not an option)
PLACEMENT_TRIES = 64
SPLITS = ("train", "test")
SCALE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class SceneConfig:
    """What ``cnnlab data scenes`` makes; validated when built."""

    source: str = "fashion-mnist"
    count: int = 10_000  # scenes in all: round(count * test_fraction) test, the rest train
    size: int = 256
    min_objects: int = 1
    max_objects: int = 10
    scale: tuple[int, int] = (16, 64)  # the side of an object's square, pixels
    max_iou: float = 0.2
    max_cover: float = 0.5  # of the smaller box, so a small object is not hidden in a big one
    noise: int = 0  # background: uniform noise 0..noise (0 = black)
    clutter: int = 0  # fragments per scene
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(
                f"source must be a dataset name or folder:PATH. Received: source={self.source!r}"
            )
        check_int("count", self.count, low=2, high=10_000_000)
        check_int("size", self.size, low=8, high=4096)
        check_int("max_objects", self.max_objects, low=1, high=100)
        check_int("min_objects", self.min_objects, low=0, high=self.max_objects)
        scale = tuple(self.scale) if isinstance(self.scale, (tuple, list)) else ()
        if (
            len(scale) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in scale)
            or not 2 <= scale[0] <= scale[1] <= self.size
        ):
            raise ValueError(
                f"scale must be two integers MIN..MAX with 2 <= MIN <= MAX <= size ({self.size}). "
                f"Received: scale={self.scale!r}"
            )
        object.__setattr__(self, "scale", scale)
        check_number("max_iou", self.max_iou, 0.0, 1.0, "a number from 0 up to (not including) 1")
        check_number("max_cover", self.max_cover, 0.0, 1.0 + 1e-9, "a number from 0 to 1")
        check_int("noise", self.noise, low=0, high=255)
        check_int("clutter", self.clutter, low=0, high=100)
        check_number("test_fraction", self.test_fraction, 0.0, 1.0, "a number between 0 and 1")
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        train, test = self.split_counts()
        if train < 1 or test < 1:
            raise ValueError(
                f"count and test_fraction leave {train} train and {test} test scenes: expected at "
                f"least one of each. Received: count={self.count}, "
                f"test_fraction={self.test_fraction}"
            )

    def split_counts(self) -> tuple[int, int]:
        """(train scenes, test scenes): the test share is round(count * test_fraction)."""
        test = round(self.count * self.test_fraction)
        return self.count - test, test

    def as_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["scale"] = list(self.scale)
        return data


def parse_scale(text: str) -> tuple[int, int]:
    """``"16..64"`` -> (16, 64); ``"32"`` -> (32, 32)."""
    match = SCALE_PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"scale must be MIN..MAX in pixels (e.g. 16..64) or one size. Received: scale={text!r}"
        )
    low = int(match[1])
    return low, int(match[2]) if match[2] else low


@dataclass(frozen=True, eq=False)
class SceneBatch:
    """Consecutive scenes of one split: images and, per scene, boxes and classes.

    ``boxes[offsets[i]:offsets[i + 1]]`` are scene i's boxes (x1, y1, x2, y2, pixel edges).
    """

    images: np.ndarray  # uint8 (n, C, size, size)
    boxes: np.ndarray  # int64 (M, 4)
    labels: np.ndarray  # int64 (M,)
    offsets: np.ndarray  # int64 (n + 1,)

    def __len__(self) -> int:
        return len(self.images)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (C, H, W), boxes (K, 4), labels (K,)) of scene ``index``."""
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.images[index], self.boxes[start:stop], self.labels[start:stop]


def generate_split(
    images: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    config: SceneConfig,
    split: str,
) -> Iterator[SceneBatch]:
    """``count`` scenes made from ``images`` (uint8 (N, C, h, w)) and their ``labels``, in
    batches of ``CHUNK``; ``split`` ("train"/"test") is part of the seed."""
    if len(images) == 0:
        raise ValueError(f"the source has no {split} images to make {split} scenes from")
    for chunk, start in enumerate(range(0, count, CHUNK)):
        n = min(CHUNK, count - start)
        seed = np.random.SeedSequence([config.seed, SPLITS.index(split), chunk])
        with torch_threads(1):  # small tensors: a thread pool costs more than it gives
            batch = _render_chunk(images, labels, n, config, np.random.default_rng(seed))
        yield batch


def _render_chunk(
    images: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    config: SceneConfig,
    rng: np.random.Generator,
) -> SceneBatch:
    size, (low, high) = config.size, config.scale
    wanted = rng.integers(config.min_objects, config.max_objects + 1, size=n)
    slots = config.max_objects
    sources = rng.integers(0, len(images), size=(n, slots))
    sides = rng.integers(low, high + 1, size=(n, slots))
    used = (np.arange(slots) < wanted[:, None]).ravel()  # (n * slots,) the slots drawn
    patches, tight = _resize_all(images, sources.ravel(), sides.ravel(), used)
    tight = tight.reshape(n, slots, 4)
    placed, corner = _place(tight, sides, wanted, config, rng)
    canvas = _background(n, images.shape[1], config, rng)
    if config.clutter:
        _paste_clutter(canvas, images, config, rng)
    scene_boxes, scene_labels, counts = [], [], placed.sum(axis=1)
    if (counts < config.min_objects).any():
        raise ValueError(
            f"could not place min_objects={config.min_objects} objects with max_iou="
            f"{config.max_iou} and max_cover={config.max_cover} in a {size}x{size} scene: "
            f"expected a smaller min_objects or scale, or a larger size, max_iou or max_cover"
        )
    for scene, slot in zip(*np.nonzero(placed), strict=True):
        patch = patches[scene * slots + slot]
        y, x = corner[scene, slot]
        side = patch.shape[-1]
        region = canvas[scene, :, y : y + side, x : x + side]
        np.maximum(region, patch, out=region)
        scene_boxes.append(tight[scene, slot] + [x, y, x, y])
        scene_labels.append(int(labels[sources[scene, slot]]))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    boxes = np.array(scene_boxes, dtype=np.int64).reshape(-1, 4)
    return SceneBatch(canvas, boxes, np.array(scene_labels, dtype=np.int64), offsets)


def _resize_all(
    images: torch.Tensor, indices: np.ndarray, sides: np.ndarray, used: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each ``images[indices[k]]`` resized to ``sides[k]`` squared (uint8), and the tight box of
    its nonzero pixels inside the square (x1, y1, x2, y2; all zeros for a blank image or one
    not ``used``)."""
    patches: list[np.ndarray] = [np.empty(0)] * len(indices)
    tight = np.zeros((len(indices), 4), dtype=np.int64)
    used = np.ones(len(indices), dtype=bool) if used is None else used
    for side in np.unique(sides[used]):
        members = np.flatnonzero((sides == side) & used)
        source = images[torch.from_numpy(indices[members])].float()  # (m, C, h, w)
        resized = F.interpolate(
            source, size=(int(side), int(side)), mode="bilinear", antialias=True
        )
        resized = resized.round_().clamp_(0, 255).to(torch.uint8).numpy()
        tight[members] = tight_boxes(resized)
        for k, member in enumerate(members):
            patches[member] = resized[k]
    return patches, tight


def tight_boxes(patches: np.ndarray) -> np.ndarray:
    """The box of the nonzero pixels of each patch (m, C, h, w): (m, 4) x1, y1, x2, y2 with
    exclusive x2/y2; (0, 0, 0, 0) for a patch with no nonzero pixel."""
    ink = patches.any(axis=1)  # (m, h, w)
    columns, rows = ink.any(axis=1), ink.any(axis=2)  # (m, w), (m, h)
    blank = ~columns.any(axis=1)
    x1 = columns.argmax(axis=1)
    x2 = columns.shape[1] - columns[:, ::-1].argmax(axis=1)
    y1 = rows.argmax(axis=1)
    y2 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    boxes[blank] = 0
    return boxes


def box_overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, cover) of boxes ``a`` (..., 4) against ``b`` (..., 4), broadcast over the leading
    axes; cover = the intersection over the smaller box's area (1 when one holds the other)."""
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union, smaller = area_a + area_b - inter, np.minimum(area_a, area_b)
    iou = np.divide(inter, union, out=np.zeros(np.shape(union)), where=union > 0)
    cover = np.divide(inter, smaller, out=np.zeros(np.shape(union)), where=smaller > 0)
    return iou, cover


def _place(
    tight: np.ndarray,
    sides: np.ndarray,
    wanted: np.ndarray,
    config: SceneConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (n, slots, 2 as y, x) for every object slot, tried ``PLACEMENT_TRIES``
    times in all scenes at once; ``placed`` (n, slots) marks the slots that found room."""
    n, slots = sides.shape
    placed = np.zeros((n, slots), dtype=bool)
    corner = np.zeros((n, slots, 2), dtype=np.int64)
    boxes = np.zeros((n, slots, 4), dtype=np.int64)  # in the canvas, for the placed slots
    blank = tight[..., 2] == 0
    for slot in range(slots):
        rows = np.flatnonzero((slot < wanted) & ~blank[:, slot])  # scenes that want this slot
        room = config.size - sides[rows, slot] + 1
        tries = (rng.random((len(rows), PLACEMENT_TRIES, 2)) * room[:, None, None]).astype(np.int64)
        y, x = tries[..., 0], tries[..., 1]
        candidate = tight[rows, slot, None, :] + np.stack([x, y, x, y], axis=-1)  # (r, T, 4)
        earlier = boxes[rows, None, :slot, :].astype(np.float32)  # (r, 1, slot, 4)
        iou, cover = box_overlap(candidate[:, :, None, :].astype(np.float32), earlier)
        fits = (iou <= config.max_iou) & (cover <= config.max_cover)  # (r, T, slot)
        fits = (fits | ~placed[rows, None, :slot]).all(axis=2)  # (r, T)
        first = fits.argmax(axis=1)
        ok = fits.any(axis=1)
        took = np.arange(len(rows))[ok], first[ok]
        corner[rows[ok], slot] = tries[took]
        boxes[rows[ok], slot] = candidate[took]
        placed[rows[ok], slot] = True
    return placed, corner


def _background(n: int, channels: int, config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    shape = (n, channels, config.size, config.size)
    if config.noise == 0:
        return np.zeros(shape, dtype=np.uint8)
    return rng.integers(0, config.noise + 1, size=shape, dtype=np.uint8)


def _paste_clutter(
    canvas: np.ndarray, images: torch.Tensor, config: SceneConfig, rng: np.random.Generator
) -> None:
    """``clutter`` fragments per scene: a random third of a source image, scaled as objects
    are, pasted anywhere (boxes may cover them; they are never boxed themselves)."""
    n, size = len(canvas), config.size
    count = n * config.clutter
    h, w = images.shape[-2:]
    crop_h, crop_w = max(1, h // 3), max(1, w // 3)
    sources = rng.integers(0, len(images), size=count)
    top = rng.integers(0, h - crop_h + 1, size=count)
    left = rng.integers(0, w - crop_w + 1, size=count)
    low, high = config.scale
    sides = rng.integers(max(1, low // 3), max(1, high // 3) + 1, size=count)
    rows = torch.from_numpy(top[:, None] + np.arange(crop_h))  # (count, crop_h)
    cols = torch.from_numpy(left[:, None] + np.arange(crop_w))
    crops = images[torch.from_numpy(sources)]  # (count, C, h, w)
    index = torch.arange(count)[:, None, None]
    crops = crops.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    patches, _ = _resize_all(crops.contiguous(), np.arange(count), sides)
    ys = (rng.random(count) * (size - sides + 1)).astype(np.int64)
    xs = (rng.random(count) * (size - sides + 1)).astype(np.int64)
    for k, patch in enumerate(patches):
        side = patch.shape[-1]
        region = canvas[k // config.clutter, :, ys[k] : ys[k] + side, xs[k] : xs[k] + side]
        np.maximum(region, patch, out=region)
