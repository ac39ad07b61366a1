"""Kernel presets, kernel parsing and input loading: the user-facing ends of ``cnnlab.ops``.

``parse_kernel`` and ``load_input`` turn what a person types (a preset name, a matrix string,
a file) into float arrays, and fail with messages that say what was wrong and what is accepted.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError


def _preset(rows: ArrayLike, scale: float = 1.0) -> np.ndarray:
    a = np.array(rows, dtype=np.float64) * scale
    a.flags.writeable = False
    return a


KERNELS: Mapping[str, np.ndarray] = MappingProxyType(
    {
        "sharpen": _preset([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        # the slide "2D Convolution with a Kernel: Different Kernels", left to right
        "slide-a": _preset([[-0.2, 0.0, 0.5], [1.0, 0.3, -0.6], [0.0, 0.0, 0.8]]),
        "slide-b": _preset([[0.0, 0.0, 0.0], [0.8, -0.5, 0.8], [0.0, -0.2, 0.0]]),
        "slide-c": _preset([[0.4, 0.2, -0.2], [-0.8, 0.0, 0.8], [0.0, -0.5, 0.2]]),
        "edge": _preset([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
        "sobel-x": _preset([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
        "sobel-y": _preset([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
        "blur": _preset([[1, 2, 1], [2, 4, 2], [1, 2, 1]], scale=1 / 16),
        "identity": _preset([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    }
)

KERNEL_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "sharpen": "the slide's sharpen kernel: 5 * centre minus the 4 neighbours",
        "slide-a": "first of the slide's 'Different Kernels'",
        "slide-b": "second of the slide's 'Different Kernels'",
        "slide-c": "third of the slide's 'Different Kernels'",
        "edge": "Laplacian-style edge detector: 8 * centre minus the 8 neighbours",
        "sobel-x": "Sobel, responds to left-to-right brightness changes (vertical edges)",
        "sobel-y": "Sobel, responds to top-to-bottom brightness changes (horizontal edges)",
        "blur": "3x3 Gaussian blur, [[1,2,1],[2,4,2],[1,2,1]] / 16 (weights sum to 1)",
        "identity": "leaves the image unchanged (with padding 1)",
    }
)

_KERNEL_FORMAT = (
    "a preset name or a matrix like '0,-1,0;-1,5,-1;0,-1,0' (rows separated by ';', values by ',')"
)
INPUT_FORMATS = (
    ".npy (2D, or 3D with channels first), .csv (numbers separated by commas, one row per line), "
    "or an image file Pillow can read (png, jpg, bmp, ...; read as grayscale 0..255)"
)


def parse_kernel(text: str) -> np.ndarray:
    """A kernel from a preset name (see ``KERNELS``) or a matrix string like ``"1,0;0,-1"``."""
    if not isinstance(text, str):
        raise _kernel_error(text, "it is not a string")
    spec = text.strip()
    if spec.lower() in KERNELS:
        return KERNELS[spec.lower()].copy()
    if not spec:
        raise _kernel_error(text, "it is empty")
    if re.fullmatch(r"[A-Za-z][\w-]*", spec):  # a word: most likely a mistyped preset name
        close = difflib.get_close_matches(spec.lower(), list(KERNELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _kernel_error(text, f"{spec!r} is not a preset{hint}")
    rows = spec.removesuffix(";").split(";")
    matrix: list[list[float]] = []
    for i, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row.split(",")]
        if cells == [""]:
            raise _kernel_error(text, f"row {i} is empty")
        bad = [c for c in cells if not _is_float(c)]
        if bad:
            raise _kernel_error(text, f"row {i} has {bad[0]!r}, which is not a number")
        values = [float(cell) for cell in cells]
        if not all(math.isfinite(v) for v in values):
            raise _kernel_error(text, f"row {i} has a value that is not finite")
        if matrix and len(values) != len(matrix[0]):
            raise _kernel_error(
                text, f"row {i} has {_count(len(values))} but row 1 has {_count(len(matrix[0]))}"
            )
        matrix.append(values)
    return np.array(matrix, dtype=np.float64)


def load_input(path: str | Path) -> np.ndarray:
    """An input image as a float64 array: (H, W), or (C, H, W) from a 3D ``.npy``.

    ``.npy`` and ``.csv`` are read as numbers; anything else is opened with Pillow and
    converted to grayscale (0..255).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file does not exist. Received: input={str(p)!r}")
    if not p.is_file():
        raise ValueError(f"input must be a file, not a folder. Received: input={str(p)!r}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            data = np.load(p, allow_pickle=False)
        elif suffix == ".csv":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file
                data = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2)
        else:
            with warnings.catch_warnings():
                # Pillow only warns between its pixel limit and twice it: refuse both alike.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(p) as image:
                    data = np.asarray(image.convert("L"))
        array = np.asarray(data, dtype=np.float64)
    except (
        OSError,
        ValueError,
        TypeError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise ValueError(
            f"input could not be read ({error}). Accepted formats: {INPUT_FORMATS}. "
            f"Received: input={str(p)!r}"
        ) from None
    if array.size == 0:
        raise ValueError(
            "input holds no numbers (an empty file?): expected a non-empty 2D array (or 3D, "
            f"channels first, in .npy). Accepted formats: {INPUT_FORMATS}. "
            f"Received: input={str(p)!r}"
        )
    if array.ndim not in (2, 3) or (suffix != ".npy" and array.ndim != 2):
        raise ValueError(
            f"input must hold a non-empty 2D array (or 3D, channels first, in .npy), got shape "
            f"{array.shape}. Accepted formats: {INPUT_FORMATS}. Received: input={str(p)!r}"
        )
    if not np.isfinite(array).all():
        raise ValueError(
            f"input must hold finite numbers, but it has NaN or infinite values. "
            f"Received: input={str(p)!r}"
        )
    return array


def _count(n: int) -> str:
    return f"{n} value" if n == 1 else f"{n} values"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kernel_error(text: object, problem: str) -> ValueError:
    return ValueError(
        f"kernel must be {_KERNEL_FORMAT}, but {problem}. Presets: {', '.join(sorted(KERNELS))}. "
        f"Received: kernel={text!r}"
    )
