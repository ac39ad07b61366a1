"""A one-cell Darknet detector whose raw map is set by hand: a 32x32 input max-pooled to 1x1,
a 1x1 convolution with zero weights and chosen biases (the raw map, whatever the image), and a
[yolo] or [region] head over 2 classes."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cnnlab.darknet import build_network, save_weights

HEADS = {
    # anchors in input pixels; raw tx, ty, tw, th, objectness, class 0, class 1
    "yolo": (
        "[yolo]\nmask=0\nanchors=8,16\nclasses=2\nnum=1\n",
        (0, 0, math.log(2), 0, math.log(9), 0, math.log(3)),
    ),
    # anchors in grid cells; softmax classes
    "region": (
        "[region]\nanchors=2,3\nclasses=2\ncoords=4\nnum=1\nsoftmax=1\n",
        (0, math.log(3), math.log(2), 0, math.log(4), 0, math.log(3)),
    ),
}

BODY = """[net]
height=32
width=32
channels=3

[maxpool]
size=32
stride=32

[convolutional]
filters=7
size=1
stride=1
pad=0
activation=linear

"""


def write_tiny_detector(folder: Path, kind: str) -> tuple[Path, Path]:
    """``kind``'s cfg and weights in ``folder``."""
    head, raw = HEADS[kind]
    cfg = folder / f"tiny-{kind}.cfg"
    cfg.write_text(BODY + head)
    network = build_network(cfg)
    conv = network.layers[1].conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor(raw))
    return cfg, save_weights(network, folder / f"tiny-{kind}.weights")
