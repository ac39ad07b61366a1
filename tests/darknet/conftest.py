"""Shared fixtures: Debian's darknet package and OpenCV as oracles, small cfgs, random weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DARKNET_ROOT = Path("/usr/share/darknet")
CFG_DIR = DARKNET_ROOT / "cfg"
DATA_DIR = DARKNET_ROOT / "data"
DARKNET_BIN = shutil.which("darknet")

needs_darknet_cfgs = pytest.mark.requires(
    not CFG_DIR.is_dir(), "Debian's darknet package (/usr/share/darknet)"
)
needs_darknet_binary = pytest.mark.requires(
    DARKNET_BIN is None or not CFG_DIR.is_dir(), "Debian's darknet binary (apt-get install darknet)"
)

# A small classifier in Darknet's own words: every layer type a classifier uses, 32x32 input.
SMALL_CLASSIFIER = """
[net]
batch=1
height=32
width=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=3
stride=1
pad=1
groups=2
activation=relu

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[shortcut]
from=-3
activation=linear

[maxpool]
size=2
stride=1

[dropout]
probability=.5

[connected]
output=12
activation=leaky

[connected]
output=10
activation=linear
batch_normalize=1

[softmax]
groups=1
"""


@pytest.fixture
def small_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "small.cfg"
    path.write_text(SMALL_CLASSIFIER)
    return path


@pytest.fixture
def ten_names(tmp_path: Path) -> Path:
    path = tmp_path / "ten.names"
    path.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    return path


def resized_cfg(source: Path, folder: Path, height: int, width: int) -> Path:
    """A copy of a Debian cfg at another input size (the oracles read the file)."""
    lines = []
    for line in source.read_text().splitlines():
        key = line.replace(" ", "").split("=")[0]
        if key == "height":
            line = f"height={height}"
        elif key == "width":
            line = f"width={width}"
        lines.append(line)
    path = folder / source.name
    path.write_text("\n".join(lines) + "\n")
    return path
