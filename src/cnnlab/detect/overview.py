"""What a detection dataset holds (``describe``) and a picture of it (``save_scene_grid``):
what ``cnnlab data info DIR [--grid grid.png]`` prints and draws for a scenes or YOLO/COCO
folder."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.detect.datasets import DetectionData, DetectionSet
from cnnlab.detect.draw import class_color

GRID_SCENES = 16


def describe(data: DetectionData) -> dict[str, Any]:
    """Counts per split and class, image shape, objects per image and box sides, as data."""
    c, h, w = data.train.image_shape
    info: dict[str, Any] = {
        "name": data.name,
        "source": data.source,
        "format": data.format,
        "image_shape": [c, h, w],
        "classes": list(data.classes),
    }
    for split, part in (("train", data.train), ("test", data.test)):
        counts = part.counts().numpy()
        boxes = part.boxes.numpy()
        sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        info[split] = {
            "images": len(part),
            "objects": int(counts.sum()),
            "empty_images": int((counts == 0).sum()),
            "objects_per_image": _spread(counts),
            "box_side": _spread(sides),  # sqrt(width * height), pixels
            "class_objects": part.class_counts(len(data.classes)),
        }
    return info


def _spread(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"min": None, "mean": None, "max": None}
    return {
        "min": round(float(values.min()), 2),
        "mean": round(float(values.mean()), 2),
        "max": round(float(values.max()), 2),
    }


def save_scene_grid(
    part: DetectionSet,
    classes: tuple[str, ...] | list[str],
    out: str | os.PathLike[str],
    *,
    count: int = GRID_SCENES,
    title: str = "",
) -> Path:
    """A PNG of the first ``count`` images with their boxes and class names (each class in the
    colour ``cnnlab detect`` draws it)."""
    from matplotlib.patches import Rectangle

    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(out, name="out")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: the folder {out.parent} does not exist")
    count = min(count, len(part))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = new_figure((2.6 * columns, 2.6 * rows + 0.3))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index >= count:
            continue
        image = part.images[index].numpy()  # (C, H, W)
        ax.imshow(
            image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
            cmap="gray",
            vmin=0,
            vmax=255,
        )
        for (x1, y1, x2, y2), label in zip(
            part.boxes_of(index).tolist(), part.labels_of(index).tolist(), strict=True
        ):
            colour = r, g, b = tuple(v / 255 for v in class_color(label, len(classes)))
            ax.add_patch(
                Rectangle(
                    (x1 - 0.5, y1 - 0.5),
                    x2 - x1,
                    y2 - y1,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1,
                )
            )
            ax.text(
                x1 - 0.5,
                y1 - 1.5,
                classes[label],
                color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.45 else "white",
                fontsize=5,
                backgroundcolor=colour,
                va="bottom",
                ha="left",
                bbox={"pad": 0.5, "color": colour},
            )
        ax.set_title(Path(part.files[index]).name, fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return save_png(figure, out)
