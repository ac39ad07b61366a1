"""The hardware slide's multilayer perceptron: two wide ReLU layers with dropout, for MNIST.

The slide sweeps the width ``n = 2**i`` to show when a GPU starts to pay off; at i = 12
(``width=4096``) the three dense layers hold 3,215,360 + 16,781,312 + 40,970 parameters.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.init import keras_init_
from cnnlab.models.registry import register_model

IMAGE_SIZE = 28  # MNIST


@register_model(
    "mlp",
    input_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
    num_classes=10,
    description="Three-layer MLP with dropout (width 4096) from the lecture's hardware slide",
    reference="Lecture slides 'GPUs' (CPU vs GPU timing of a 784-n-n-10 MLP, n = 2**i)",
)
def mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    width: int = 4096,
    dropout: float = 0.5,
) -> nn.Module:
    """784 -> width -> width -> classes; ``in_channels`` multiplies the 28x28 input features."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"mlp: expected a positive integer width. Received: width={width!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"mlp: expected 0 <= dropout < 1. Received: dropout={dropout!r}")
    in_features = in_channels * IMAGE_SIZE * IMAGE_SIZE
    model = nn.Sequential(
        nn.Flatten(),  # (N, C*28*28)
        nn.Linear(in_features, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, num_classes),
    )
    return keras_init_(model)  # the slide's model is a Keras model
