"""AlexNet for ImageNet, in the single-GPU form of the torchvision definition (61,100,840 params).

Krizhevsky et al. split the network over two GPUs with 96-256-384-384-256 filters; the common
single-tower variant (from Krizhevsky's "one weird trick" paper) uses 64-192-384-256-256 and has
no local response normalisation. An adaptive average pool fixes the classifier's input at 6x6, so
inputs other than 224x224 (down to 63x63) still work.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.registry import register_model


@register_model(
    "alexnet",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="AlexNet (single-tower 64-192-384-256-256), the 2012 ImageNet winner",
    reference="A. Krizhevsky, I. Sutskever, G. Hinton, 'ImageNet Classification with Deep "
    "Convolutional Neural Networks', NeurIPS 2012; A. Krizhevsky, 'One weird trick for "
    "parallelizing convolutional neural networks', arXiv:1404.5997, 2014",
)
def alexnet(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> nn.Module:
    """Five convolutions with overlapping 3x3/2 max-pools, then a 4096-4096 classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),  # (N, 64, 55, 55)
        nn.ReLU(),
        nn.MaxPool2d(3, 2),  # (N, 64, 27, 27)
        nn.Conv2d(64, 192, 5, padding=2),  # (N, 192, 27, 27)
        nn.ReLU(),
        nn.MaxPool2d(3, 2),  # (N, 192, 13, 13)
        nn.Conv2d(192, 384, 3, padding=1),  # (N, 384, 13, 13)
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),  # (N, 256, 13, 13)
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),  # (N, 256, 13, 13)
        nn.ReLU(),
        nn.MaxPool2d(3, 2),  # (N, 256, 6, 6)
        nn.AdaptiveAvgPool2d(6),  # (N, 256, 6, 6) whatever the input size
        nn.Flatten(),  # (N, 9216)
        nn.Dropout(dropout),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, num_classes),
    )
