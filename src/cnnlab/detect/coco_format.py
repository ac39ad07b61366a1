"""COCO detection json, read and checked: each problem names the file and the entry
(``annotations[12]``), or the line and column of broken JSON.

Categories become classes in the order of their ids; crowd annotations (``iscrowd`` 1) are left
out; an image's file is looked for in ``images/`` next to the json, then next to the json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.runtime.validate import is_integer

COCO_TOLERANCE = 0.5  # pixels a box may reach past the image's edge (rounding) before refused


def read_coco(path: Path) -> tuple[Any, list[Path], list[np.ndarray], list[np.ndarray], list[Any]]:
    """Classes, image files, per image pixel boxes (x1, y1, x2, y2) and classes, and the
    (width, height, where) each image entry declares."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{path}: expected COCO json: an object with lists images, annotations and categories"
        )
    categories = {}
    for k, category in enumerate(data["categories"]):
        named = isinstance(category, dict) and isinstance(category.get("name"), str)
        if not named or not is_integer(category.get("id")) or category["id"] in categories:
            raise ValueError(
                f"{path}: categories[{k}]: expected a unique integer id and a name: {category!r}"
            )
        categories[category["id"]] = category["name"]
    index_of = {cid: k for k, cid in enumerate(sorted(categories))}
    images: dict[int, tuple[Path, int, int]] = {}
    for k, image in enumerate(data["images"]):
        images[_coco_image_id(path, k, image, images)] = _coco_image(path, k, image)
    per_image: dict[int, list[list[float]]] = {image_id: [] for image_id in images}
    for k, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: expected an object, got {ann!r}")
        if ann.get("image_id") not in images:
            raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        if ann.get("category_id") not in index_of:
            raise ValueError(
                f"{where}: category_id {ann.get('category_id')!r} is out of range: "
                f"categories are {sorted(categories)}"
            )
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise ValueError(f"{where}: bbox must be [x, y, w, h] (4 numbers): {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        _, width, height = images[ann["image_id"]]
        if w <= 0 or h <= 0:
            raise ValueError(f"{where}: bbox {bbox} has w or h <= 0")
        if (
            x < -COCO_TOLERANCE
            or y < -COCO_TOLERANCE
            or x + w > width + COCO_TOLERANCE
            or y + h > height + COCO_TOLERANCE
        ):
            raise ValueError(
                f"{where}: bbox {bbox} reaches outside image {ann['image_id']} ({width}x{height})"
            )
        per_image[ann["image_id"]].append([index_of[ann["category_id"]], x, y, x + w, y + h])
    classes = tuple(categories[cid] for cid in sorted(categories))
    files, boxes, labels, declared = [], [], [], []
    for k, (image_id, (file, width, height)) in enumerate(images.items()):
        table = np.array(per_image[image_id], dtype=np.float64).reshape(-1, 5)
        files.append(file)
        boxes.append(table[:, 1:])
        labels.append(table[:, 0].astype(np.int64))
        declared.append((width, height, f"{path}: images[{k}] (id {image_id})"))
    return classes, files, boxes, labels, declared


def _coco_image_id(path: Path, k: int, image: Any, seen: dict[int, Any]) -> int:
    if not isinstance(image, dict) or not is_integer(image.get("id")) or image["id"] in seen:
        raise ValueError(f"{path}: images[{k}]: expected a unique integer id: {image!r}")
    return int(image["id"])


def _coco_image(path: Path, k: int, image: dict[str, Any]) -> tuple[Path, int, int]:
    where = f"{path}: images[{k}] (id {image['id']})"
    name, width, height = image.get("file_name"), image.get("width"), image.get("height")
    if not isinstance(name, str) or not is_integer(width) or not is_integer(height):
        raise ValueError(f"{where}: expected file_name, width and height: {image!r}")
    for folder in (path.parent / "images", path.parent):
        if (folder / name).is_file():
            return folder / name, width, height
    raise FileNotFoundError(
        f"{where}: image file {name!r} not found in {path.parent / 'images'} or {path.parent}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
