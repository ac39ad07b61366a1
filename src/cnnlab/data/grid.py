"""A picture of a dataset: a few samples of each class, one row per class, written atomically.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state), imported
only when a grid is drawn.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data.dataset import Dataset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CELL_INCHES = 0.55
LABEL_INCHES = 1.3


def save_sample_grid(
    dataset: Dataset, path: str | Path, *, per_class: int = 8, split: str = "train"
) -> Path:
    """Write a PNG of the first ``per_class`` images of each class of ``split``, class names as
    row labels; written to a temporary file in the same folder, then renamed into place."""
    if not isinstance(per_class, int) or not 1 <= per_class <= 64:
        raise ValueError(
            f"per_class must be an integer in 1..64. Received: per_class={per_class!r}"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"the grid is a PNG: expected a path ending in .png. Received: path={str(path)!r}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: the folder {path.parent} does not exist. "
            f"Received: path={str(path)!r}"
        )
    images = getattr(dataset, f"{split}_images").numpy()
    labels = getattr(dataset, f"{split}_labels").numpy()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _grid_figure(images, labels, dataset.classes, per_class, f"{dataset.name} ({split})")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            FigureCanvasAgg(figure).print_png(file)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return path


def _grid_figure(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], per_class: int, title: str
) -> Figure:
    from matplotlib.figure import Figure

    rows = len(classes)
    width = LABEL_INCHES + per_class * CELL_INCHES
    height = 0.4 + rows * CELL_INCHES
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(
        left=LABEL_INCHES / width, right=0.99, top=1 - 0.35 / height, bottom=0.05 / height,
        wspace=0.05, hspace=0.05,
    )  # fmt: skip
    axes = figure.subplots(rows, per_class, squeeze=False)
    gray = images.shape[1] == 1
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)[:per_class]
        for column, ax in enumerate(axes[label]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if column < len(members):
                image = images[members[column]]  # (C, H, W)
                pixels = image[0] if gray else image.transpose(1, 2, 0)
                ax.imshow(pixels, cmap="gray" if gray else None, vmin=0, vmax=255)
        text = name if name == str(label) else f"{label}: {name}"
        axes[label][0].set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return figure
