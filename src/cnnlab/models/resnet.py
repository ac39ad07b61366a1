"""ResNet (He et al. 2016) for ImageNet: one network, two residual blocks, five depths.

ResNet-18/34 stack basic blocks (two 3x3 convs); ResNet-50/101/152 stack bottleneck blocks
(1x1 reduce, 3x3, 1x1 expand by 4), which keep the FLOPs of the deep nets near ResNet-34's.
As in torchvision ("ResNet v1.5") a downsampling bottleneck strides in its 3x3 conv, not its
first 1x1; the parameter count is the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.registry import register_model

RESNET_REFERENCE = (
    "K. He, X. Zhang, S. Ren, J. Sun, 'Deep Residual Learning for Image Recognition', CVPR 2016"
)


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> list[nn.Module]:
    """A bias-free convolution with 'same' padding and its batch norm (the BN supplies the bias)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels)]


class ResidualBlock(nn.Module):
    """``relu_out(residual(x) + shortcut(x))``; subclasses define ``residual`` and ``expansion``.

    The shortcut is the identity unless the block changes resolution or width, in which case it
    is a strided 1x1 conv + BN (the paper's option B). Modules are registered in the order they
    run: residual, shortcut, then the ReLU after the addition, which is a module of its own.
    """

    expansion: int = 1

    def __init__(self, residual: nn.Sequential, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.residual = residual
        self.shortcut = (
            nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
            if stride != 1 or in_channels != out_channels
            else None
        )
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual(x)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu_out(residual + identity)


class BasicBlock(ResidualBlock):
    """3x3 conv-BN-ReLU, 3x3 conv-BN: the block of ResNet-18 and -34."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        residual = nn.Sequential(
            *conv_bn(in_channels, width, 3, stride),
            nn.ReLU(),
            *conv_bn(width, width, 3),
        )
        super().__init__(residual, in_channels, width, stride)


class Bottleneck(ResidualBlock):
    """1x1 reduce to ``width``, 3x3 at ``width``, 1x1 expand to ``4 * width``: ResNet-50 and up."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        residual = nn.Sequential(
            *conv_bn(in_channels, width, 1),
            nn.ReLU(),
            *conv_bn(width, width, 3, stride),
            nn.ReLU(),
            *conv_bn(width, width * self.expansion, 1),
        )
        super().__init__(residual, in_channels, width, stride)


def resnet(
    block: type[BasicBlock | Bottleneck],
    blocks_per_stage: tuple[int, int, int, int],
    num_classes: int = 1000,
    in_channels: int = 3,
) -> nn.Sequential:
    """The ImageNet ResNet: a 7x7/2 stem and 3x3/2 max-pool, four stages, global average pool."""
    layers: list[nn.Module] = [
        *conv_bn(in_channels, 64, 7, stride=2),  # (N, 64, 112, 112)
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),  # (N, 64, 56, 56)
    ]
    channels = 64
    # Stage widths 64-128-256-512; each stage after the first halves the resolution: 56 -> 7.
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage, strict=True)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(block(channels, width, stride))
            channels = width * block.expansion
    layers += [
        nn.AdaptiveAvgPool2d(1),  # (N, 512 * expansion, 1, 1)
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    ]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


# depth: (block, blocks per stage), Table 1 of the paper.
RESNET_CONFIGS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _register(depth: int) -> None:
    """Register ``resnet<depth>`` as a builder with the registry's standard keyword arguments."""
    block, blocks_per_stage = RESNET_CONFIGS[depth]

    def build(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
        return resnet(block, blocks_per_stage, num_classes=num_classes, in_channels=in_channels)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth}: {block.__name__} x {blocks_per_stage}."
    register_model(
        f"resnet{depth}",
        input_shape=(3, 224, 224),
        num_classes=1000,
        description=f"ResNet-{depth}: {sum(blocks_per_stage)} "
        f"{'basic' if block is BasicBlock else 'bottleneck'} residual blocks (skip connections)",
        reference=RESNET_REFERENCE,
    )(build)


for _depth in RESNET_CONFIGS:
    _register(_depth)
