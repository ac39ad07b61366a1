"""``make_scenes``: generate scenes and write them in the two formats detectors read.

    DIR/
      names.txt                      one class name per line (Darknet's .names)
      scenes.data                    Darknet's data file: classes, train, valid, names
      train.txt, test.txt            the image paths of each split, relative to DIR
      scenes.json                    how the scenes were made: config, counts, box rule, versions
      train/images/000000.png ...    the scenes (PNG, grayscale or RGB as the source)
      train/labels/000000.txt ...    YOLO: one "class cx cy w h" line per object, normalised
      train/annotations.json         COCO: images, annotations (bbox x, y, w, h in pixels),
                                     categories (id = class + 1)
      test/...                       the same, from the source's test images

Everything is written into a hidden staging folder next to DIR, flushed to disk, then renamed
to DIR in one step: an error or a kill leaves no DIR (or the empty one there was), never half
of one. The staging folder is removed on error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.detect.scenes import SPLITS, SceneBatch, SceneConfig, generate_split
from cnnlab.runtime.files import atomic_write, fsync_directory, write_json

NAMES_FILE = "names.txt"
COCO_FILE = "annotations.json"
IMAGES, LABELS = "images", "labels"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOX_RULE = (
    "tight box of the object's nonzero pixels after resizing, pixel edges: x1 = first nonzero "
    "column, x2 = last nonzero column + 1 (likewise y)"
)
ProgressCallback = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class SceneReport:
    """What ``make_scenes`` wrote: counts per split and class, and how fast."""

    out: Path
    source: str
    classes: tuple[str, ...]
    scenes: dict[str, int]
    objects: dict[str, int]
    class_objects: dict[str, list[int]]
    seconds: float
    config: SceneConfig
    files: dict[str, str] = field(default_factory=dict)

    @property
    def scenes_per_second(self) -> float:
        return sum(self.scenes.values()) / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "source": self.source,
            "classes": list(self.classes),
            "scenes": self.scenes,
            "objects": self.objects,
            "class_objects": self.class_objects,
            "seconds": round(self.seconds, 3),
            "scenes_per_second": round(self.scenes_per_second, 1),
            "box_rule": BOX_RULE,
            "config": self.config.as_dict(),
            "files": self.files,
        }


def make_scenes(
    config: SceneConfig,
    out: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dataset: Any = None,
    progress: ProgressCallback | None = None,
) -> SceneReport:
    """Make the scenes ``config`` describes from its source set (or ``dataset``, a
    ``cnnlab.data.Dataset`` already loaded) and write them to the new folder ``out``."""
    from cnnlab.data import load_dataset
    from cnnlab.runtime.context import software_context

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        found = "a folder with files in it" if out.is_dir() else "a file"
        raise ValueError(f"out must be a new or empty folder, not {found}. Received: out='{out}'")
    if dataset is None:
        dataset = load_dataset(config.source, data_dir=data_dir)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        counts = dict(zip(SPLITS, config.split_counts(), strict=True))
        objects, class_objects = {}, {}
        for split in SPLITS:
            per_class = _write_split(staging, split, dataset, counts[split], config, progress)
            objects[split] = int(per_class.sum())
            class_objects[split] = per_class.tolist()
        _write_darknet_files(staging, dataset.classes, counts)
        report = SceneReport(
            out=out,
            source=f"{config.source} ({dataset.source})",
            classes=tuple(dataset.classes),
            scenes=counts,
            objects=objects,
            class_objects=class_objects,
            seconds=time.perf_counter() - started,
            config=config,
            files={"names": NAMES_FILE, "darknet_data": "scenes.data", "coco": COCO_FILE},
        )
        write_json(staging / "scenes.json", report.as_dict() | {"context": software_context()})
        os.sync()  # every file on disk before the folder appears under its name
        os.rename(staging, out)  # an empty `out` is replaced; a non-empty one refuses
        fsync_directory(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _write_split(
    root: Path,
    split: str,
    dataset: Any,
    count: int,
    config: SceneConfig,
    progress: ProgressCallback | None,
) -> np.ndarray:
    """Write ``count`` scenes of ``split``; returns the number of objects of each class."""
    folder = root / split
    (folder / IMAGES).mkdir(parents=True)
    (folder / LABELS).mkdir()
    images = getattr(dataset, f"{split}_images")
    labels = getattr(dataset, f"{split}_labels")
    coco = coco_skeleton(dataset.classes)
    per_class = np.zeros(len(dataset.classes), dtype=np.int64)
    done = 0
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for batch in generate_split(images, labels, count, config, split):
            names = [f"{done + i:06d}" for i in range(len(batch))]
            list(
                pool.map(
                    _write_scene,
                    [folder] * len(batch),
                    names,
                    [batch] * len(batch),
                    range(len(batch)),
                )
            )
            _add_coco(coco, batch, names, done)
            per_class += np.bincount(batch.labels, minlength=len(per_class))
            done += len(batch)
            if progress is not None:
                progress(f"{split} scenes", done, count)
    text = json.dumps(coco, separators=(",", ":"), allow_nan=False)  # compact: C's encoder
    atomic_write(folder / COCO_FILE, lambda file: file.write(text.encode()))
    (root / f"{split}.txt").write_text(
        "".join(f"{split}/{IMAGES}/{name:06d}.png\n" for name in range(count))
    )
    return per_class


def _write_scene(folder: Path, name: str, batch: SceneBatch, index: int) -> None:
    image, boxes, labels = batch.scene(index)
    size_y, size_x = image.shape[1:]
    (folder / IMAGES / f"{name}.png").write_bytes(encode_png(image))
    (folder / LABELS / f"{name}.txt").write_text(yolo_lines(boxes, labels, size_x, size_y))


def encode_png(image: np.ndarray) -> bytes:
    """A (1 or 3, H, W) uint8 image as an 8-bit grey or RGB PNG: every row unfiltered, zlib
    level 1. A quarter of Pillow's time on scenes (which tries filters per row) for files ~15%
    larger: mostly black canvases compress well either way."""
    channels, height, width = image.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0: none
    rows[:, 1:] = image.transpose(1, 2, 0).reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    chunks = (b"IHDR", header), (b"IDAT", zlib.compress(rows.tobytes(), 1)), (b"IEND", b"")
    return PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks
    )


def yolo_lines(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> str:
    """Darknet/YOLO label text: ``class cx cy w h`` per box, normalised by the image size."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / width
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / height
    w = (boxes[:, 2] - boxes[:, 0]) / width
    h = (boxes[:, 3] - boxes[:, 1]) / height
    return "".join(
        f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n"
        for c, x, y, bw, bh in zip(labels, cx, cy, w, h, strict=True)
    )


def coco_skeleton(classes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {
        "info": {"description": "cnnlab detection scenes"},
        "images": [],
        "annotations": [],
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "object"} for k, name in enumerate(classes)
        ],
    }


def _add_coco(coco: dict[str, Any], batch: SceneBatch, names: list[str], first: int) -> None:
    height, width = batch.images.shape[2:]
    annotations = coco["annotations"]
    for index, name in enumerate(names):
        image_id = first + index + 1
        coco["images"].append(
            {"id": image_id, "file_name": f"{name}.png", "width": width, "height": height}
        )
        _, boxes, labels = batch.scene(index)
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )


def _write_darknet_files(root: Path, classes: tuple[str, ...], counts: dict[str, int]) -> None:
    (root / NAMES_FILE).write_text("".join(f"{name}\n" for name in classes))
    lines = [f"classes = {len(classes)}", "train = train.txt", "valid = test.txt"]
    lines += [f"names = {NAMES_FILE}", "backup = backup/"]
    (root / "scenes.data").write_text("\n".join(lines) + "\n")


def scene_config_of(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``scenes.json`` of a folder ``make_scenes`` wrote, or None for any other folder."""
    path = Path(folder) / "scenes.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None
