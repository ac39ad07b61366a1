"""The LeNet family: the lecture's Keras "LeNet-like", LeNet-5 as tabled, and LeCun's 1998 original.

The three share a shape (two convolution + pooling stages, then dense layers, input 32x32) and
differ in what the lecture set out to compare: ReLU against tanh, plain against trainable pooling,
full against sparse C3 connectivity, a dense output against the 1998 paper's RBF units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.init import keras_init_
from cnnlab.models.registry import register_model

LECUN_1998 = (
    "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-Based Learning Applied to Document "
    "Recognition', Proc. IEEE 86(11), 1998"
)

# LeCun et al. 1998, Table I: the S2 maps (0-5) that each C3 map (0-15) reads. Six maps see three
# neighbouring inputs, nine see four (six neighbouring, three non-neighbouring), one sees all six.
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


class ScaledTanh(nn.Module):
    """LeCun's squashing function ``A * tanh(S * x)`` with A = 1.7159, S = 2/3 (1998, Appendix A).

    The constants make f(1) = 1 and f(-1) = -1 and put the maximal gain near the targets.
    """

    # Summaries fold activations into the layer before them, as Keras does.
    is_activation = True
    activation_name = "scaled-tanh"

    def __init__(self, amplitude: float = 1.7159, slope: float = 2 / 3) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"{self.amplitude} * tanh({self.slope:.4g} * x)"


class Subsampling(nn.Module):
    """The 1998 S-layers: each map sums its 2x2 cells, times one trainable coefficient, plus a bias.

    Two parameters per map; plain ``AvgPool2d`` is the special case coefficient 1/4, bias 0.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / kernel_size**2))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        cell_sum = F.avg_pool2d(x, k) * (k * k)  # (N, C, H/k, W/k)
        return cell_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        k = self.kernel_size
        return f"{self.weight.numel()}, kernel_size={k}, stride={k} (coefficient x sum + bias)"


class ConnectionTableConv2d(nn.Module):
    """A convolution in which output map ``j`` reads only the input maps ``table[j]``.

    Only the connected kernels are parameters (``weight`` holds one k x k kernel per connection),
    so the parameter count is the paper's. The forward pass scatters them into a dense kernel
    whose unconnected entries are structurally zero, then runs one ordinary convolution: the
    multiply-adds are those of the dense 16x6 convolution, the parameters those of the sparse one.
    """

    def __init__(
        self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        pairs = [(j, i) for j, inputs in enumerate(table) for i in inputs]
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        self.register_buffer("out_index", torch.tensor([j for j, _ in pairs]), persistent=False)
        self.register_buffer("in_index", torch.tensor([i for _, i in pairs]), persistent=False)
        # nn.Conv2d's default initialisation, U(+-1/sqrt(fan_in)), with fan_in counting the
        # connected inputs only (3, 4 or 6 maps x k x k) rather than all six maps.
        fan_in = torch.tensor([float(len(inputs) * kernel_size**2) for inputs in table])
        bound = fan_in.rsqrt()
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).mul_(bound[self.out_index].view(-1, 1, 1))
            self.bias.uniform_(-1.0, 1.0).mul_(bound)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel with zeros where the table has no connection."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        return dense.index_put((self.out_index, self.in_index), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"connections={self.weight.shape[0]} of {self.in_channels * self.out_channels}"
        )


class EuclideanRBF(nn.Module):
    """The 1998 output layer: one unit per class, each the squared distance to its centre.

    The paper's units output the penalty ``sum (x - w)^2``; as logits we return its negative, so the
    closest centre wins and ``softmax`` / cross-entropy apply unchanged. The paper fixed the centres
    to +-1 bitmaps of stylised characters; here they start as random +-1 codes and are trainable.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.empty(num_classes, in_features))
        with torch.no_grad():
            self.centres.bernoulli_(0.5).mul_(2.0).sub_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(1) - self.centres  # (N, classes, features)
        return -(diff * diff).sum(dim=-1)  # (N, classes)

    def extra_repr(self) -> str:
        classes, features = self.centres.shape
        return f"in_features={features}, centres={classes} (logits = -squared distance)"


@register_model(
    "lenet-like",
    input_shape=(1, 32, 32),
    num_classes=10,
    description="The lecture's Keras LeNet-like: 3x3 ReLU convs, average pooling, 120-84-10",
    reference="Lecture slides 'LeNet-like' (Keras model.summary(), 81,194 parameters)",
)
def lenet_like(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The Keras model from the slides, layer for layer and initialised as Keras does; it returns
    logits, not probabilities."""
    model = nn.Sequential(
        nn.Conv2d(in_channels, 6, 3),  # (N, 6, 30, 30)
        nn.ReLU(),
        nn.AvgPool2d(2),  # (N, 6, 15, 15)
        nn.Conv2d(6, 16, 3),  # (N, 16, 13, 13)
        nn.ReLU(),
        nn.AvgPool2d(2),  # (N, 16, 6, 6): 13 // 2, the last row and column are dropped
        nn.Flatten(),  # (N, 576)
        nn.Linear(16 * 6 * 6, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    return keras_init_(model)


@register_model(
    "lenet5",
    input_shape=(1, 32, 32),
    num_classes=10,
    description="LeNet-5 as in Table 14-1: tanh 5x5 convs, average pooling, full C3, dense output",
    reference=LECUN_1998 + "; simplified as in the slides' Table 14-1",
)
def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5 with the usual simplifications: plain pooling, fully connected C3, dense output."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),  # C1 (N, 6, 28, 28)
        nn.Tanh(),
        nn.AvgPool2d(2),  # S2 (N, 6, 14, 14)
        nn.Conv2d(6, 16, 5),  # C3 (N, 16, 10, 10)
        nn.Tanh(),
        nn.AvgPool2d(2),  # S4 (N, 16, 5, 5)
        nn.Conv2d(16, 120, 5),  # C5 (N, 120, 1, 1): a convolution that covers the whole map
        nn.Tanh(),
        nn.Flatten(),  # (N, 120)
        nn.Linear(120, 84),  # F6
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


@register_model(
    "lenet5-1998",
    input_shape=(1, 32, 32),
    num_classes=10,
    description="LeNet-5 as published: C3 connection table, trainable subsampling, RBF output",
    reference=LECUN_1998,
)
def lenet5_1998(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5 as in the 1998 paper (section II.B); layers up to F6 squash with 1.7159 tanh."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),  # C1 (N, 6, 28, 28)
        ScaledTanh(),
        Subsampling(6),  # S2 (N, 6, 14, 14)
        ScaledTanh(),
        ConnectionTableConv2d(6, C3_CONNECTIONS, 5),  # C3 (N, 16, 10, 10)
        ScaledTanh(),
        Subsampling(16),  # S4 (N, 16, 5, 5)
        ScaledTanh(),
        nn.Conv2d(16, 120, 5),  # C5 (N, 120, 1, 1)
        ScaledTanh(),
        nn.Flatten(),  # (N, 120)
        nn.Linear(120, 84),  # F6
        ScaledTanh(),
        EuclideanRBF(84, num_classes),  # (N, classes)
    )
