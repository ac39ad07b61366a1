"""Figures: a matplotlib Figure on the Agg canvas (no pyplot, no display) and an atomic PNG save.

matplotlib is imported inside the functions so that importing cnnlab stays fast for the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnlab.runtime.files import atomic_write

DPI = 110


def new_figure(size: tuple[float, float], *, layout: str | None = "constrained") -> Any:
    """A ``matplotlib.figure.Figure`` of ``size`` inches with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg
    return figure


def png_path(path: str | os.PathLike[str], *, name: str = "path") -> Path:
    """``path`` as a Path, checked to be a file name ending in .png."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a file path ending in .png. Received: {name}={path!r}")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{name} must end in .png. Received: {name}={str(out)!r}")
    return out


def save_png(figure: Any, out: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Render ``figure`` to ``out`` atomically (its folder is created)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda file: figure.savefig(file, format="png", dpi=dpi))
