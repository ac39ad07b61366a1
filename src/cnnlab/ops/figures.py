"""Figure 14-6 for any image: the input next to one feature map per kernel.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state) and written
atomically, so a failed or interrupted run never leaves a half-written PNG behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from cnnlab.ops.conv import IntPair, as_float_array, conv2d
from cnnlab.ops.explain import format_number
from cnnlab.runtime.figures import save_png

PANEL_WIDTH_IN = 3.2  # inches per panel; the figure grows with the number of kernels
TEXT_HEIGHT_IN = 1.4  # titles above and captions below the images
DPI = 110


def feature_maps_figure(
    image: ArrayLike,
    kernels: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    padding: IntPair = 1,
    stride: IntPair = 1,
) -> Path:
    """Write a PNG of ``image`` and its feature map under each kernel, side by side.

    Each map is titled "feature map i => with kernel i (name)" as on the slide, with the kernel
    values and the map's value range printed beneath it. Returns the path written.
    """
    img = as_float_array(image, "image")
    if img.ndim != 2 or img.size == 0:
        raise ValueError(
            f"image must be a non-empty 2D array (H, W). Received: image.shape={img.shape}"
        )
    if not isinstance(kernels, Mapping) or not kernels:
        raise ValueError(
            "kernels must be a non-empty mapping of name to 2D kernel. "
            f"Received: kernels={kernels!r}"
        )
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png. Received: path={str(out)!r}")
    maps = []
    for name, kernel in kernels.items():
        k = as_float_array(kernel, f"kernels[{name!r}]")
        if k.ndim != 2:
            raise ValueError(
                f"kernels[{name!r}] must be a 2D array (kH, kW). Received: shape={k.shape}"
            )
        maps.append((name, k, conv2d(img[None], k[None, None], None, stride, padding)[0]))

    figure = _draw(img, maps, f"conv padding {padding!r}, stride {stride!r}")
    return save_png(figure, out, dpi=DPI)  # temp file, fsync, rename: never half a PNG


def _draw(image: np.ndarray, maps: list[tuple[str, np.ndarray, np.ndarray]], settings: str):
    # imported here so that `import cnnlab.ops` stays fast for the CLI
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = len(maps) + 1
    aspect = min(image.shape[0] / image.shape[1], 2.0)  # keep very tall images printable
    height = 0.92 * PANEL_WIDTH_IN * aspect + TEXT_HEIGHT_IN
    figure = Figure(figsize=(PANEL_WIDTH_IN * panels, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    shape = f"{image.shape[0]}x{image.shape[1]}"
    _panel(axes[0], image, "input", f"{shape}, {_range(image)}\n{settings}")
    for i, (name, kernel, fmap) in enumerate(maps, start=1):
        title = f"feature map {i}\n=> with kernel {i} ({name})"
        caption = f"{_matrix(kernel)}\n{fmap.shape[0]}x{fmap.shape[1]}, {_range(fmap)}"
        _panel(axes[i], fmap, title, caption)
    return figure  # a matplotlib Figure


def _panel(ax, data: np.ndarray, title: str, caption: str) -> None:  # ax: matplotlib Axes
    ax.imshow(data, cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(caption, fontsize=8, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])


def _matrix(kernel: np.ndarray) -> str:
    """The kernel as right-aligned rows of numbers, for a monospace caption."""
    cells = [[format_number(v) for v in row] for row in kernel]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)


def _range(data: np.ndarray) -> str:
    return f"values {data.min():.4g}..{data.max():.4g}"
