"""Darknet's layers as PyTorch modules, computing what Darknet's CPU forward pass computes.

Each module documents the Darknet function it follows (pjreddie/darknet, 2018). Every tensor is
(N, C, H, W); a layer that Darknet treats as a vector (avgpool, connected, softmax, cost) keeps
its values as (N, K, 1, 1), as Darknet's out_c = K, out_h = out_w = 1 does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Darknet's batch normalisation divides by sqrt(variance) + this (blas.c, normalize_cpu).
DARKNET_BN_EPS = 1e-6


def _activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """Darknet's activation functions (src/activations.h, *_activate)."""
    if name == "linear":
        return x
    if name == "leaky":
        return F.leaky_relu(x, 0.1)
    if name == "relu":
        return F.relu(x)
    if name == "logistic":
        return torch.sigmoid(x)
    if name == "loggy":
        return 2 * torch.sigmoid(x) - 1
    if name == "elu":
        return F.elu(x)
    if name == "selu":
        return torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x))
    if name == "relie":
        return F.leaky_relu(x, 0.01)
    if name == "ramp":
        return F.relu(x) + 0.1 * x
    if name == "tanh":
        return torch.tanh(x)
    if name == "plse":
        return torch.where(
            x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)
        )
    if name == "hardtan":
        return x.clamp(-1, 1)
    if name == "lhtan":
        return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))
    if name == "stair":
        n = torch.floor(x)
        half = torch.floor(x / 2)
        return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)
    raise ValueError(f"activation must be one of Darknet's activations. Received: {name!r}")


class Activation(nn.Module):
    """A Darknet activation by name (``leaky`` is LeakyReLU(0.1), ``logistic`` the sigmoid)."""

    is_activation = True

    def __init__(self, name: str) -> None:
        super().__init__()
        _activate(name, torch.zeros(1))  # refuses an unknown name now, not in forward
        self.activation_name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_name in _IN_PLACE and not torch.is_grad_enabled():
            # Inference: overwrite the layer's fresh output instead of allocating another
            # (half the memory traffic of the activation on a CPU).
            return _IN_PLACE[self.activation_name](x)
        return _activate(self.activation_name, x)

    def extra_repr(self) -> str:
        return self.activation_name


_IN_PLACE = {
    "leaky": lambda x: F.leaky_relu_(x, 0.1),
    "relu": F.relu_,
    "linear": lambda x: x,
}


class _DarknetNormalization:
    """Darknet's inference batch norm: (x - mean) / (sqrt(var) + 1e-6) * scale + bias
    (normalize_cpu), where PyTorch's divides by sqrt(var + eps): the two differ for channels of
    tiny variance, which trained Darknet weights have. Training uses PyTorch's batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel, for (N, C) and (N, C, H, W)
        scale = self.weight / (self.running_var.sqrt() + DARKNET_BN_EPS)
        shift = self.bias - self.running_mean * scale
        return torch.addcmul(shift.reshape(shape), x, scale.reshape(shape))


class DarknetBatchNorm2d(_DarknetNormalization, nn.BatchNorm2d):
    """BatchNorm2d that normalises as Darknet does in eval mode."""


class DarknetBatchNorm1d(_DarknetNormalization, nn.BatchNorm1d):
    """BatchNorm1d that normalises as Darknet does in eval mode."""


class Convolutional(nn.Module):
    """[convolutional]: conv, then batch norm (whose beta is Darknet's bias), then activation."""

    def __init__(
        self,
        in_channels: int,
        filters: int,
        size: int,
        stride: int,
        padding: int,
        groups: int,
        batch_normalize: bool,
        activation: str,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, filters, size, stride, padding, groups=groups, bias=not batch_normalize
        )
        self.bn = DarknetBatchNorm2d(filters, eps=DARKNET_BN_EPS) if batch_normalize else None
        self.act = Activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold the batch norm into the convolution for inference, as Darknet scales it:
        (x - mean) / (sqrt(var) + 1e-6) * scale + bias."""
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv
        factor = bn.weight / (bn.running_var.sqrt() + DARKNET_BN_EPS)
        folded = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        ).to(conv.weight.device, conv.weight.dtype)
        folded.weight.copy_(conv.weight * factor.reshape(-1, 1, 1, 1))
        folded.bias.copy_(bn.bias - bn.running_mean * factor)
        self.conv, self.bn = folded, None


class MaxPool(nn.Module):
    """[maxpool] with Darknet's padding: ``padding`` (default size - 1) in total, padding // 2 of
    it left and top, the rest right and bottom, filled with -inf (maxpool_layer.c): so a 2x2/1
    max-pool keeps 13x13 at 13x13, and a 2x2/2 one halves 13 to 7 where PyTorch gives 6."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def output_size(self, size: int) -> int:
        return (size + self.padding - self.size) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        before = self.padding // 2
        pads = []
        for length in (width, height):  # F.pad takes the last dimension first
            reach = (self.output_size(length) - 1) * self.stride + self.size - before
            pads += [before, max(0, reach - length)]
        even = len(set(pads)) == 1 and 2 * pads[0] <= self.size
        if even and all(
            (n + 2 * pads[0] - self.size) // self.stride + 1 == self.output_size(n)
            for n in (height, width)
        ):
            # Even padding (none, for a 2x2/2 pool of an even map): max_pool2d pads with -inf
            # itself, without F.pad's copy of the whole map.
            return F.max_pool2d(x, self.size, self.stride, padding=pads[0])
        x = F.pad(x, pads, value=-math.inf)
        return F.max_pool2d(x, self.size, self.stride)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, padding={self.padding}"


class AvgPool(nn.Module):
    """[avgpool]: the mean of each channel over the whole map, (N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Connected(nn.Module):
    """[connected]: a dense layer over the flattened (C, H, W) input, optional batch norm."""

    def __init__(self, inputs: int, outputs: int, batch_normalize: bool, activation: str) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, outputs, bias=not batch_normalize)
        self.bn = DarknetBatchNorm1d(outputs, eps=DARKNET_BN_EPS) if batch_normalize else None
        self.act = Activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.flatten(1))
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)[:, :, None, None]  # (N, outputs, 1, 1)


class Softmax(nn.Module):
    """[softmax]: over each of ``groups`` equal slices of the flattened input, or over the
    groups of a hierarchy (``tree=``, Darknet's softmax_tree: consecutive sizes)."""

    def __init__(
        self, groups: int = 1, temperature: float = 1.0, tree: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        self.groups, self.temperature, self.tree = groups, temperature, tuple(tree)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1) / self.temperature
        if self.tree:
            parts = torch.split(flat, list(self.tree), dim=1)
            out = torch.cat([part.softmax(dim=1) for part in parts], dim=1)
        else:
            out = flat.reshape(flat.shape[0], self.groups, -1).softmax(dim=2)
        return out.reshape(x.shape)


class Dropout(nn.Dropout):
    """[dropout]: Darknet scales the kept values by 1 / (1 - p) in training, as PyTorch does."""


class Route(nn.Module):
    """[route]: the listed layers' outputs concatenated along channels; with ``groups`` > 1 only
    slice ``group_id`` of each (AlexeyAB's extension, also read by OpenCV)."""

    def __init__(self, layers: tuple[int, ...], groups: int = 1, group_id: int = 0) -> None:
        super().__init__()
        self.layers, self.groups, self.group_id = tuple(layers), groups, group_id

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.groups > 1:
            inputs = [x.chunk(self.groups, dim=1)[self.group_id] for x in inputs]
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, groups={self.groups}, group_id={self.group_id}"


class Shortcut(nn.Module):
    """[shortcut]: alpha * previous + beta * layer ``source`` (blas.c, shortcut_cpu), then the
    activation. Maps of different sizes are matched by striding or sampling, and only the
    channels both have are added, as Darknet does."""

    def __init__(self, source: int, activation: str, alpha: float = 1, beta: float = 1) -> None:
        super().__init__()
        self.source, self.alpha, self.beta = source, alpha, beta
        self.act = Activation(activation)

    def forward(self, x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        if x.shape == add.shape:
            out = x * self.alpha + add * self.beta if (self.alpha, self.beta) != (1, 1) else x + add
            return self.act(out)
        (c2, h2, w2), (c1, h1, w1) = x.shape[1:], add.shape[1:]
        stride, sample = max(1, w1 // w2), max(1, w2 // w1)
        ch, hh, ww = min(c1, c2), min(h1, h2), min(w1, w2)
        source = add[:, :ch, : hh * stride : stride, : ww * stride : stride]
        out = x.clone()
        target = out[:, :ch, : hh * sample : sample, : ww * sample : sample]
        target.copy_(target * self.alpha + source * self.beta)
        return self.act(out)


class Upsample(nn.Module):
    """[upsample]: nearest-neighbour by an integer ``stride``, times ``scale`` (upsample_cpu)."""

    def __init__(self, stride: int, scale: float = 1.0) -> None:
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
        return out * self.scale if self.scale != 1 else out


class Reorg(nn.Module):
    """[reorg]: Darknet's legacy space-to-depth (blas.c, reorg_cpu), NOT pixel_unshuffle.

    Darknet reads the (C, H, W) input's memory as if it were (C/s^2, H*s, W*s) and gathers from
    there, so channels and positions mix differently from ``F.pixel_unshuffle``; YOLOv2's
    weights were trained with this order. ``reverse=1`` runs the same map backwards.
    """

    def __init__(self, stride: int, reverse: bool = False) -> None:
        super().__init__()
        self.stride, self.reverse = stride, reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.stride
        if not self.reverse:
            # out[n, oy*s + ox, c2, j, i] = view[n, c2, j*s + oy, i*s + ox], view = (C/s^2, Hs, Ws)
            view = x.reshape(n, c // (s * s), h, s, w, s)
            out = view.permute(0, 3, 5, 1, 2, 4)
            return out.reshape(n, c * s * s, h // s, w // s)
        # reverse: the output (C/s^2, H*s, W*s) is written by the forward map of the input
        grid = x.reshape(n, s, s, c // (s * s), h, w).permute(0, 3, 4, 1, 5, 2)
        return grid.reshape(n, c // (s * s), h * s, w * s)


class ReorgExtra(nn.Module):
    """[reorg] with ``extra=K``: the input flattened, followed by K zeros (reorg_layer.c)."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        out = torch.cat([flat, flat.new_zeros(flat.shape[0], self.extra)], dim=1)
        return out[:, :, None, None]


class PassThrough(nn.Module):
    """[region], [yolo] and [cost]: their input unchanged. Region and YOLO outputs are the raw
    convolution maps here (decoding boxes is the detector's job); cost is a training loss."""

    def __init__(self, kind: str, **attributes) -> None:
        super().__init__()
        self.kind = kind
        self.attributes = attributes

    @property
    def summary_type(self) -> str:
        """What `cnnlab summary` rows call this layer: yolo, region or cost, as Darknet does."""
        return self.kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return self.kind
