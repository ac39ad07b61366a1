"""The lecture's worked examples ("CNN Kernels", "CNN Kernels in 3D", "CNN Pooling") as data.

Each example carries exactly the numbers printed on the slide, so ``cnnlab explain`` and the
tests reproduce the slide; see REFERENCE.md section 1 for the expected outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from cnnlab.ops.conv import PoolMode
from cnnlab.ops.explain import ConvTrace, PoolTrace, explain_conv, explain_pool


def _constant(values: ArrayLike) -> np.ndarray:
    a = np.array(values, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ConvExample:
    """A convolution from the slides, ready for ``conv2d(x, w, b, stride, padding)``."""

    name: str
    title: str
    x: np.ndarray  # (C_in, H, W)
    w: np.ndarray  # (C_out, C_in, kH, kW)
    b: np.ndarray | None  # (C_out,)
    stride: int = 1
    padding: int = 0
    note: str = ""

    def explain(self, at: tuple[int, int] = (0, 0)) -> ConvTrace:
        return explain_conv(self.x, self.w, self.b, at=at, stride=self.stride, padding=self.padding)

    def __repr__(self) -> str:
        return (
            f"ConvExample({self.name!r}, x={self.x.shape}, w={self.w.shape}, "
            f"stride={self.stride}, padding={self.padding})"
        )


@dataclass(frozen=True, eq=False)
class PoolExample:
    """A pooling from the slides, ready for ``pool2d(x, size, stride, padding, mode)``."""

    name: str
    title: str
    x: np.ndarray  # (H, W)
    size: int
    mode: PoolMode
    stride: int | None = None
    padding: int = 0
    note: str = ""

    def explain(self, at: tuple[int, int] = (0, 0)) -> PoolTrace:
        return explain_pool(self.x, self.size, self.stride, self.padding, self.mode, at=at)

    def __repr__(self) -> str:
        return f"PoolExample({self.name!r}, x={self.x.shape}, size={self.size}, mode={self.mode!r})"


_IMAGE_5X5 = [
    [60, 113, 56, 139, 85],
    [73, 121, 54, 84, 128],
    [131, 99, 70, 129, 127],
    [80, 57, 115, 69, 134],
    [104, 126, 123, 95, 130],
]
_SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]

SLIDE_2D = ConvExample(
    name="slide-2d",
    title="CNN Kernels: 2D Convolution with a Kernel: Principle",
    x=_constant([_IMAGE_5X5]),
    w=_constant([[_SHARPEN]]),
    b=None,
    padding=1,
)

SLIDE_2D_STRIDE2 = ConvExample(
    name="slide-2d-stride2",
    title="Figure 14-4. Reducing dimensionality using a stride of 2 (on the 2D example)",
    x=SLIDE_2D.x,
    w=SLIDE_2D.w,
    b=None,
    stride=2,
    padding=1,
)

SLIDE_RGB = ConvExample(
    name="slide-rgb",
    title="CNN Kernels in 3D: 3D Convolution with a Kernel: Principle",
    x=_constant(
        [
            [  # red
                [156, 155, 156, 158, 158],
                [153, 154, 157, 159, 159],
                [149, 151, 155, 158, 159],
                [146, 146, 149, 153, 158],
                [145, 143, 148, 148, 158],
            ],
            [  # green
                [167, 166, 167, 169, 169],
                [164, 165, 168, 170, 170],
                [160, 162, 166, 169, 170],
                [156, 156, 159, 163, 168],
                [155, 153, 153, 158, 168],
            ],
            [  # blue
                [163, 162, 163, 165, 165],
                [160, 161, 164, 166, 166],
                [156, 158, 162, 165, 166],
                [155, 155, 158, 162, 167],
                [154, 152, 152, 157, 167],
            ],
        ]
    ),
    w=_constant(
        [
            [
                [[-1, -1, 1], [0, 1, -1], [0, 1, 1]],
                [[1, 0, 0], [1, -1, -1], [1, 0, -1]],
                [[0, 1, 1], [0, 1, 0], [1, -1, 1]],
            ]
        ]
    ),
    b=_constant([1]),
    padding=1,
    note=(
        "The slide shows only the top-left 5x5 of each channel of a larger image and only the "
        "top-left output (-25); output cells in the last row or column of this crop see zero "
        "padding where the full image has pixels."
    ),
)

SLIDE_POOL_MAX = PoolExample(
    name="slide-pool-max",
    title="CNN Pooling: The Principle: Max Pooling",
    x=_constant([[29, 15, 28, 184], [0, 100, 70, 38], [12, 12, 7, 2], [12, 12, 45, 6]]),
    size=2,
    mode="max",
)

SLIDE_POOL_AVG = PoolExample(
    name="slide-pool-avg",
    title="CNN Pooling: The Principle: Average Pooling",
    x=_constant([[31, 15, 28, 184], [0, 100, 70, 38], [12, 12, 7, 2], [12, 12, 45, 6]]),
    size=2,
    mode="avg",
    note=(
        "The slide prints 36 for the top-left cell: it truncates (31 + 15 + 0 + 100) / 4 = 36.5. "
        "cnnlab shows 36.5."
    ),
)

SLIDE_EXAMPLES: Mapping[str, ConvExample | PoolExample] = MappingProxyType(
    {e.name: e for e in (SLIDE_2D, SLIDE_2D_STRIDE2, SLIDE_RGB, SLIDE_POOL_MAX, SLIDE_POOL_AVG)}
)
