"""The VGG family (Simonyan & Zisserman 2015): stacks of 3x3 convolutions, one table for all depths.

Each configuration lists the output channels of its 3x3 convolutions, with ``MAXPOOL`` where a
2x2/2 max-pool halves the resolution: 224 -> 7 after five pools. The classifier is the paper's
4096-4096 with dropout, behind an adaptive 7x7 average pool as in the torchvision definition.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.models.registry import register_model

MAXPOOL = "M"

# Table 1 of the paper, columns A, B, D and E (the weight layers are the convs plus the 3 dense).
PAPER_COLUMN = {11: "A", 13: "B", 16: "D", 19: "E"}
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, MAXPOOL, 128, MAXPOOL, 256, 256, MAXPOOL, 512, 512, MAXPOOL, 512, 512, MAXPOOL),
    13: (64, 64, MAXPOOL, 128, 128, MAXPOOL, 256, 256, MAXPOOL, 512, 512, MAXPOOL,
         512, 512, MAXPOOL),
    16: (64, 64, MAXPOOL, 128, 128, MAXPOOL, 256, 256, 256, MAXPOOL, 512, 512, 512, MAXPOOL,
         512, 512, 512, MAXPOOL),
    19: (64, 64, MAXPOOL, 128, 128, MAXPOOL, 256, 256, 256, 256, MAXPOOL,
         512, 512, 512, 512, MAXPOOL, 512, 512, 512, 512, MAXPOOL),
}  # fmt: skip

VGG_REFERENCE = (
    "K. Simonyan, A. Zisserman, 'Very Deep Convolutional Networks for Large-Scale Image "
    "Recognition', ICLR 2015"
)


def vgg(
    depth: int, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5
) -> nn.Module:
    """A VGG network of ``depth`` weight layers (11, 13, 16 or 19), without batch normalisation."""
    if depth not in VGG_CONFIGS:
        raise ValueError(f"vgg: expected depth in {sorted(VGG_CONFIGS)}. Received: depth={depth!r}")
    features: list[nn.Module] = []
    channels = in_channels
    for entry in VGG_CONFIGS[depth]:
        if isinstance(entry, str):  # MAXPOOL
            features.append(nn.MaxPool2d(2, 2))
        else:
            features += [nn.Conv2d(channels, entry, 3, padding=1), nn.ReLU()]
            channels = entry
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*features),  # (N, 512, 7, 7) at 224x224
            avgpool=nn.AdaptiveAvgPool2d(7),  # (N, 512, 7, 7) whatever the input size
            flatten=nn.Flatten(),  # (N, 25088)
            classifier=nn.Sequential(
                nn.Linear(channels * 7 * 7, 4096),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            ),
        )
    )
    _init_weights(model)
    return model


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) convolutions and N(0, 0.01) dense layers: without BN, PyTorch's default
    initialisation lets the signal fade over 13-16 ReLU convolutions and VGG barely trains."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


def _register(depth: int) -> None:
    """Register ``vgg<depth>`` as a builder with the registry's standard keyword arguments."""

    def build(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> nn.Module:
        return vgg(depth, num_classes=num_classes, in_channels=in_channels, dropout=dropout)

    build.__name__ = build.__qualname__ = f"vgg{depth}"
    build.__doc__ = f"VGG-{depth}, configuration {PAPER_COLUMN[depth]} of the paper."
    convs = sum(not isinstance(entry, str) for entry in VGG_CONFIGS[depth])
    register_model(
        f"vgg{depth}",
        input_shape=(3, 224, 224),
        num_classes=1000,
        description=f"VGG-{depth}: {convs} 3x3 convolutions + 3 dense layers, no batch norm",
        reference=VGG_REFERENCE,
    )(build)


for _depth in VGG_CONFIGS:
    _register(_depth)
