"""Detection data in memory: images as one uint8 tensor, boxes and classes as flat tensors.

    from cnnlab.detect.datasets import load_detection_data
    data = load_detection_data("scenes")            # what `cnnlab data scenes` wrote, or yours
    data.train.images                               # uint8 (N, C, H, W)
    data.train.boxes_of(0), data.train.labels_of(0) # (K, 4) x1, y1, x2, y2 pixels; (K,)
    data.train.to("cuda").targets(indices)          # (T, 6) rows: batch row, class, x1..y2

A folder holds a train split and a test split (``train/`` and ``test/``, ``val/`` or
``valid/``; or Ultralytics' ``images/train`` + ``labels/train``). Each split is either

- YOLO/Darknet: ``images/`` and ``labels/`` with one ``NAME.txt`` per image (``class cx cy w h``,
  normalised to 0..1; an empty file is a scene without objects), class names in ``names.txt``,
  ``classes.txt`` or a ``*.names`` file, one per line; or
- COCO: ``annotations.json`` (images, annotations with ``bbox`` [x, y, w, h] in pixels,
  categories), the images in ``images/`` or next to the json; read when there is no
  ``labels/`` folder. Categories become classes in
  the order of their ids; crowd annotations (``iscrowd`` 1) are left out.

Everything is checked as it is read; the first problem is a ``ValueError`` naming the file and
the line (or the json entry): a malformed line, a class id out of range, a box reaching
outside its image, an image without labels or labels without an image, a missing image.
Images of different sizes are letterboxed (Darknet's rule: scaled to fit, centred, grey 127
around) when ``size`` is given, and refused otherwise.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.detect.coco_format import read_coco

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TEST_NAMES = ("test", "val", "valid")
NAME_FILES = ("names.txt", "classes.txt")
YOLO_TOLERANCE = 1e-3  # normalised units a box may reach past the edge (rounding) before refused
LETTERBOX_GREY = 127


class MixedSizesError(ValueError):
    """The images of a split differ in size and no ``size`` was given to letterbox them."""


@dataclass(frozen=True, eq=False)
class DetectionSet:
    """One split: ``images[i]`` holds the objects ``boxes[offsets[i]:offsets[i + 1]]``."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    boxes: torch.Tensor  # float32 (M, 4): x1, y1, x2, y2 in pixels of `images`
    labels: torch.Tensor  # int64 (M,)
    offsets: torch.Tensor  # int64 (N + 1,)
    files: tuple[str, ...]  # where each image came from

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W); got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        assert self.offsets.shape == (n + 1,) and len(self.files) == n
        assert self.boxes.shape == (len(self.labels), 4) and int(self.offsets[-1]) == len(
            self.labels
        )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return f"DetectionSet(images={len(self)}, objects={len(self.labels)}, image={h}x{w}x{c})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def counts(self) -> torch.Tensor:
        """Objects per image, (N,)."""
        return self.offsets[1:] - self.offsets[:-1]

    def boxes_of(self, index: int) -> torch.Tensor:
        return self.boxes[self.offsets[index] : self.offsets[index + 1]]

    def labels_of(self, index: int) -> torch.Tensor:
        return self.labels[self.offsets[index] : self.offsets[index + 1]]

    def to(self, device: str | torch.device) -> DetectionSet:
        """The same set on ``device`` (images stay uint8: a quarter of float32's memory)."""
        move = {name: getattr(self, name).to(device) for name in ("images", "boxes", "labels")}
        return DetectionSet(**move, offsets=self.offsets.to(device), files=self.files)

    def targets(self, indices: torch.Tensor) -> torch.Tensor:
        """The objects of images ``indices`` (a batch), as (T, 6) float rows: the row of the
        image in the batch, class, x1, y1, x2, y2; on the set's device, without a Python loop."""
        indices = torch.as_tensor(indices, device=self.offsets.device)
        starts, counts = self.offsets[indices], self.counts()[indices]
        rows = torch.repeat_interleave(torch.arange(len(indices), device=starts.device), counts)
        first = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
        objects = first + torch.arange(len(rows), device=starts.device)
        return torch.cat(
            [rows[:, None].float(), self.labels[objects, None].float(), self.boxes[objects]], 1
        )

    def class_counts(self, classes: int) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=classes).tolist()


@dataclass(frozen=True, eq=False)
class DetectionData:
    """A detection dataset: its classes and the train and test splits."""

    name: str
    classes: tuple[str, ...]
    train: DetectionSet
    test: DetectionSet
    source: str
    format: str  # "yolo" or "coco"

    def __repr__(self) -> str:
        return (
            f"DetectionData({self.name!r}, {self.format}, train={self.train!r}, "
            f"test={self.test!r}, classes={len(self.classes)})"
        )


def is_detection_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like detection data (a split folder or one holding splits)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return bool(_split_folders(path)) or _split_kind(path) is not None


def load_detection_data(path: str | os.PathLike[str], *, size: int | None = None) -> DetectionData:
    """Read and check the train and test splits of the detection folder ``path``."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data must be a folder of detection data. Received: data='{root}'")
    splits = _split_folders(root)
    if not splits:
        raise ValueError(
            f"data must hold a train split and a test split: train/ and test/ (or val/, valid/), "
            f"each YOLO (images/ + labels/) or COCO (annotations.json), or images/train + "
            f"labels/train. Received: data='{root}'"
        )
    train_classes, train, kind = read_split(*splits["train"], root=root, size=size)
    test_classes, test, _ = read_split(*splits["test"], root=root, size=size)
    if test_classes != train_classes:
        raise ValueError(
            f"{root}: the train and test splits name different classes: "
            f"{list(train_classes)} and {list(test_classes)}"
        )
    if train.image_shape != test.image_shape:
        raise ValueError(
            f"{root}: train images are {train.image_shape} (C, H, W) and test images "
            f"{test.image_shape}: give size= to letterbox both to one size"
        )
    return DetectionData(root.name, train_classes, train, test, str(root.resolve()), kind)


def read_split(
    images_dir: Path, labels: Path | None, *, root: Path, size: int | None = None
) -> tuple[tuple[str, ...], DetectionSet, str]:
    """One split: (classes, set, "yolo"|"coco"). ``labels`` is the labels folder or the COCO
    json; None means ``images_dir`` is a split folder to look into."""
    if labels is None:
        found = _split_kind(images_dir)
        if found is None:
            raise ValueError(
                f"{images_dir}: expected images/ and labels/ (YOLO) or annotations.json (COCO)"
            )
        images_dir, labels = found
    if labels.suffix == ".json":
        classes, files, boxes, classes_of, declared = read_coco(labels)
        return classes, _assemble(files, boxes, classes_of, size, declared=declared), "coco"
    classes = _read_names(root, labels.parent)
    files, boxes, classes_of = _read_yolo(images_dir, labels, len(classes))
    return classes, _assemble(files, boxes, classes_of, size), "yolo"


def _split_folders(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """{"train": ..., "test": ...} as (images folder or split folder, labels or None)."""
    test = next((name for name in TEST_NAMES if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        return {"train": (root / "train", None), "test": (root / test, None)}
    test = next((name for name in TEST_NAMES if (root / "images" / name).is_dir()), None)
    if (root / "images" / "train").is_dir() and test is not None:
        return {
            split: (root / "images" / name, root / "labels" / name)
            for split, name in (("train", "train"), ("test", test))
        }
    return {}


def _split_kind(folder: Path) -> tuple[Path, Path] | None:
    """(images, labels folder or COCO json) of a split folder; YOLO labels first when a folder
    has both (as `cnnlab data scenes` writes), so that edited label files are what is read."""
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return folder / "images", folder / "labels"
    if (folder / "annotations.json").is_file():
        return folder / "images", folder / "annotations.json"
    return None


def _read_names(root: Path, split_folder: Path) -> tuple[str, ...]:
    for folder in (split_folder, root, split_folder.parent):
        candidates = [folder / name for name in NAME_FILES] + sorted(folder.glob("*.names"))
        for path in candidates:
            if path.is_file():
                names = tuple(line.strip() for line in path.read_text().splitlines())
                names = tuple(name for name in names if name)
                if not names:
                    raise ValueError(f"{path}: no class names (expected one name per line)")
                return names
    raise ValueError(
        f"{root}: no class names: expected names.txt, classes.txt or a *.names file "
        f"(one class name per line) in {split_folder} or {root}"
    )


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the images folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise ValueError(
                f"{path} and {by_stem[path.stem].name}: two images share the name "
                f"{path.stem!r}, so labels/{path.stem}.txt cannot tell which it is"
            )
        by_stem[path.stem] = path
    return by_stem


def _read_yolo(
    images_dir: Path, labels_dir: Path, classes: int
) -> tuple[list[Path], list[np.ndarray], list[np.ndarray]]:
    """Image files and, per image, normalised cx, cy, w, h boxes (still in 0..1) and classes."""
    images = _image_files(images_dir)
    label_files = {p.stem: p for p in labels_dir.glob("*.txt")}
    for stem, path in sorted(label_files.items()):
        if stem not in images:
            raise ValueError(f"{path}: no image {images_dir / stem}.* for this label file")
    files, boxes, labels = [], [], []
    for stem, image in images.items():
        if stem not in label_files:
            raise ValueError(
                f"{image}: no label file {labels_dir / (stem + '.txt')} (an image without "
                f"objects needs an empty one)"
            )
        rows = [
            _yolo_row(label_files[stem], number, line, classes)
            for number, line in enumerate(_text(label_files[stem]).splitlines(), 1)
            if line.strip()
        ]
        table = np.array(rows, dtype=np.float64).reshape(-1, 5)
        files.append(image)
        boxes.append(table[:, 1:])
        labels.append(table[:, 0].astype(np.int64))
    return files, boxes, labels


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not a text file ({error.reason} at byte {error.start})"
        ) from None


def _yolo_row(path: Path, number: int, line: str, classes: int) -> list[float]:
    where = f"{path}:{number}"
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(
            f"{where}: expected 'class cx cy w h' (5 numbers), got {len(fields)} "
            f"fields: {line.strip()!r}"
        )
    if not fields[0].isdigit():
        raise ValueError(f"{where}: class id {fields[0]!r} is not a whole number >= 0")
    label = int(fields[0])
    if label >= classes:
        raise ValueError(
            f"{where}: class id {label} is out of range: the names file has "
            f"{classes} classes (0..{classes - 1})"
        )
    try:
        cx, cy, w, h = (float(value) for value in fields[1:])
    except ValueError:
        raise ValueError(f"{where}: cx cy w h must be numbers: {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"{where}: expected finite numbers with w > 0 and h > 0: {line.strip()!r}")
    for axis, centre, extent in (("x", cx, w), ("y", cy, h)):
        low, high = centre - extent / 2, centre + extent / 2
        if low < -YOLO_TOLERANCE or high > 1 + YOLO_TOLERANCE:
            raise ValueError(
                f"{where}: the box reaches outside the image: {axis} from "
                f"{low:.4g} to {high:.4g}, expected 0..1"
            )
    return [label, cx, cy, w, h]


def _assemble(
    files: list[Path],
    boxes: list[np.ndarray],
    labels: list[np.ndarray],
    size: int | None,
    *,
    declared: list[tuple[int, int, str]] | None = None,
) -> DetectionSet:
    """Decode the images (threads), letterbox them if ``size``, and build the set. Without
    ``declared`` (YOLO) boxes are normalised cx, cy, w, h; with it (COCO) pixel x1, y1, x2, y2
    and each image must have the width and height its entry declares."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(decode_image, files))
    shapes = [image.shape[:2] for image in decoded]
    for (height, width), (want_w, want_h, where) in zip(shapes, declared or [], strict=False):
        if (width, height) != (want_w, want_h):
            raise ValueError(f"{where}: declares {want_w}x{want_h}, the file is {width}x{height}")
    if size is None and len(set(shapes)) > 1:
        first, other = (files[shapes.index(s)] for s in sorted(set(shapes))[:2])
        raise MixedSizesError(
            f"images differ in size ({first}, {other}): give size= to letterbox "
            f"them to one square size"
        )
    colour = any(image.ndim == 3 for image in decoded)
    arrays, pixel_boxes = [], []
    for image, box in zip(decoded, boxes, strict=True):
        height, width = image.shape[:2]
        if declared is None:
            cx, cy, w, h = box.T
            box = np.stack(
                [
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                ],
                axis=1,
            )
        box = np.clip(box, 0, [width, height, width, height])
        if size is not None:
            image, box = letterbox(image, box, size)
        if colour and image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        arrays.append(image[None] if image.ndim == 2 else image.transpose(2, 0, 1))
        pixel_boxes.append(box)
    counts = [len(b) for b in pixel_boxes]
    if not arrays:
        raise ValueError(f"no images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return DetectionSet(
        images=torch.from_numpy(np.stack(arrays)),
        boxes=torch.from_numpy(np.concatenate(pixel_boxes).astype(np.float32)),
        labels=torch.from_numpy(np.concatenate(labels)),
        offsets=torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int64),
        files=tuple(str(f) for f in files),
    )


def decode_image(path: Path) -> np.ndarray:
    """(H, W) uint8 for grayscale files, (H, W, 3) for everything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = image.mode in ("1", "L", "I", "I;16", "F")
            return np.asarray(image.convert("L" if grey else "RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None


def letterbox(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Darknet's letterbox_image: scaled to fit ``size`` x ``size`` keeping its aspect, centred,
    grey around; ``boxes`` (pixels) follow."""
    from PIL import Image

    from cnnlab.darknet.classify import letterbox_size

    height, width = image.shape[:2]
    new_w, new_h = (max(1, side) for side in letterbox_size(width, height, size, size))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    out = np.full((size, size, *image.shape[2:]), LETTERBOX_GREY, dtype=np.uint8)
    dx, dy = (size - new_w) // 2, (size - new_h) // 2
    out[dy : dy + new_h, dx : dx + new_w] = resized
    scale = np.array([new_w / width, new_h / height] * 2)
    return out, boxes * scale + [dx, dy, dx, dy]
