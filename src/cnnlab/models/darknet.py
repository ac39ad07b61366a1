"""Darknet-19, the classifier behind YOLOv2, as Darknet itself prints it (slides "YOLO").

The layer table below is Darknet's printout for ``darknet19.cfg`` at 256x256x3: 3x3 convolutions
that double the channels after each max-pool, with 1x1 convolutions between them that halve the
channels again (the network-in-network bottleneck). Modules are named after Darknet's layer index
(``conv0``, ``max1``, ...) so that a Darknet-style summary lines up with the printout.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.models.registry import register_model

MAXPOOL = "max"

# Darknet layers 0-22: (filters, kernel size) for a convolution, MAXPOOL for a 2x2/2 max-pool.
# Layer 23, the 1x1 classifier convolution, depends on num_classes and is added by the builder.
DARKNET19_LAYERS: tuple[tuple[int, int] | str, ...] = (
    (32, 3), MAXPOOL,
    (64, 3), MAXPOOL,
    (128, 3), (64, 1), (128, 3), MAXPOOL,
    (256, 3), (128, 1), (256, 3), MAXPOOL,
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), MAXPOOL,
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
)  # fmt: skip


@register_model(
    "darknet19",
    input_shape=(3, 256, 256),
    num_classes=1000,
    description="Darknet-19 ImageNet classifier (YOLOv2 backbone): conv-BN-leaky, 7.29 BFLOPs",
    reference="J. Redmon, A. Farhadi, 'YOLO9000: Better, Faster, Stronger', CVPR 2017; "
    "darknet19.cfg",
)
def darknet19(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """Darknet-19: every conv but the last is conv (no bias) + BatchNorm + LeakyReLU(0.1).

    The last 1x1 convolution is linear with a bias, as in Darknet; its ``num_classes`` maps are
    averaged over the 8x8 grid (Darknet's ``avg`` layer) to give the logits.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_channels
    for index, layer in enumerate(DARKNET19_LAYERS):
        if isinstance(layer, str):  # MAXPOOL
            layers[f"max{index}"] = nn.MaxPool2d(2, 2)  # halves H and W
            continue
        filters, size = layer
        layers[f"conv{index}"] = nn.Conv2d(channels, filters, size, padding=size // 2, bias=False)
        layers[f"bn{index}"] = nn.BatchNorm2d(filters)
        layers[f"leaky{index}"] = nn.LeakyReLU(0.1)
        channels = filters
    index = len(DARKNET19_LAYERS)
    layers[f"conv{index}"] = nn.Conv2d(channels, num_classes, 1)  # (N, classes, 8, 8)
    layers[f"avg{index + 1}"] = nn.AdaptiveAvgPool2d(1)  # (N, classes, 1, 1)
    layers["flatten"] = nn.Flatten()  # (N, classes)
    return nn.Sequential(layers)
