"""GoogLeNet / Inception v1 (Szegedy et al. 2015), as in the torchvision definition, no aux heads.

Nine Inception modules, each four parallel branches concatenated along channels: a 1x1 conv,
a 1x1 reduce then 3x3, a 1x1 reduce then the "5x5", and a 3x3 max-pool then 1x1 projection.
Every conv is bias-free conv + BatchNorm(eps=0.001) + ReLU (batch norm came later, with
Inception v2; torchvision adds it to v1 and so do we).

The "5x5" branch uses a 3x3 kernel. That is what torchvision's definition does (a known slip,
kept for compatibility with its pretrained weights), and only it reproduces the canonical
6,624,904 parameters; true 5x5 kernels give 7,005,832 (25 - 9 = 16 more weights for each
input-output channel pair of the nine "5x5" convolutions, 23,808 pairs in all).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.registry import register_model

FIVE_BY_FIVE_KERNEL = 3  # see the module docstring: 3 gives 6,624,904 parameters, 5 does not


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Sequential:
    """A bias-free 'same' convolution, BatchNorm (eps 1e-3, as in torchvision) and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels, eps=0.001),
        nn.ReLU(),
    )


class Inception(nn.Module):
    """Four branches, concatenated: (N, in, H, W) -> (N, c1 + c3 + c5 + pool_proj, H, W)."""

    def __init__(
        self,
        in_channels: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.out_channels = c1 + c3 + c5 + pool_proj
        self.branch1 = conv_bn_relu(in_channels, c1, 1)
        self.branch3 = nn.Sequential(
            conv_bn_relu(in_channels, c3_reduce, 1), conv_bn_relu(c3_reduce, c3, 3)
        )
        self.branch5 = nn.Sequential(
            conv_bn_relu(in_channels, c5_reduce, 1),
            conv_bn_relu(c5_reduce, c5, FIVE_BY_FIVE_KERNEL),
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, 1, padding=1, ceil_mode=True), conv_bn_relu(in_channels, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


# Table 1 of the paper: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

# The max-pools that open groups 4 and 5, halving the resolution 28 -> 14 -> 7 (kernel sizes as in
# torchvision; with ceil_mode both give the same output size).
GROUP_POOL_KERNEL = {"4a": 3, "5a": 2}


@register_model(
    "googlenet",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="GoogLeNet / Inception v1 with batch norm, no auxiliary classifiers",
    reference="C. Szegedy et al., 'Going Deeper with Convolutions', CVPR 2015",
)
def googlenet(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    """The stem, Inception 3a-3b, 4a-4e and 5a-5b with max-pools between groups, then the head."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=conv_bn_relu(in_channels, 64, 7, stride=2),  # (N, 64, 112, 112)
        maxpool1=nn.MaxPool2d(3, 2, ceil_mode=True),  # (N, 64, 56, 56)
        conv2=conv_bn_relu(64, 64, 1),
        conv3=conv_bn_relu(64, 192, 3),  # (N, 192, 56, 56)
        maxpool2=nn.MaxPool2d(3, 2, ceil_mode=True),  # (N, 192, 28, 28)
    )
    channels = 192
    for name, widths in INCEPTION_WIDTHS.items():
        if name in GROUP_POOL_KERNEL:
            layers[f"maxpool{name[0]}"] = nn.MaxPool2d(GROUP_POOL_KERNEL[name], 2, ceil_mode=True)
        module = Inception(channels, *widths)
        layers[f"inception{name}"] = module
        channels = module.out_channels  # 256, 480, 512, 512, 512, 528, 832, 832, 1024
    layers.update(
        avgpool=nn.AdaptiveAvgPool2d(1),  # (N, 1024, 1, 1)
        flatten=nn.Flatten(),
        dropout=nn.Dropout(dropout),
        fc=nn.Linear(channels, num_classes),
    )
    return nn.Sequential(layers)
