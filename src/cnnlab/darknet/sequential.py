"""A chain of PyTorch layers as a Darknet cfg and module: ``export_sequential``.

Each layer maps to a Darknet section computing the same numbers:

- ``Conv2d`` [+ ``BatchNorm2d``] [+ activation] -> [convolutional] (``padding=p``; Darknet's
  batch norm divides by sqrt(var) + 1e-6 where PyTorch's divides by sqrt(var + eps), so the
  variance written is (sqrt(var + eps) - 1e-6)^2, which gives the same divisor);
- ``MaxPool2d(k, s, p)`` -> [maxpool] size=k stride=s padding=2p (Darknet pads padding/2 on the
  left and top, and its output size (n + padding - k)/s + 1 is PyTorch's for ceil_mode=False;
  with ceil_mode, p = 0 and s <= 2, padding=s-1 rounds up as PyTorch does);
- ``AvgPool2d(k, s)`` -> a depthwise [convolutional] (groups = channels, weights 1/k^2, linear):
  Darknet's [avgpool] is global only, so a 2x2 average becomes a fixed convolution. It computes
  the same outputs; Darknet would train those weights if it trained the model;
- ``AdaptiveAvgPool2d`` -> [avgpool] when it averages to 1x1; nothing when it keeps the size;
- ``Linear`` [+ activation] -> [connected]; ``Dropout`` -> [dropout]; ``Flatten`` -> nothing
  ([connected] flattens its input in the same C, H, W order);
- and a final [softmax], as cnnlab models return logits and Darknet's classifiers probabilities.

Anything else (residual blocks, Inception blocks, LeCun's scaled tanh) raises
``NotExportableError`` saying why.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.darknet import layers as L
from cnnlab.darknet.cfg import parse_cfg
from cnnlab.darknet.network import DarknetNet, build_network
from cnnlab.models.googlenet import Inception
from cnnlab.models.lenet import ConnectionTableConv2d, EuclideanRBF, ScaledTanh, Subsampling
from cnnlab.models.resnet import BasicBlock, Bottleneck


class NotExportableError(ValueError):
    """A model (or one of its layers) that Darknet's classic layers cannot express."""


ACTIVATIONS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ReLU, "relu"),
    (nn.Tanh, "tanh"),
    (nn.Sigmoid, "logistic"),
    (nn.ELU, "elu"),
)
REASONS: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], str], ...] = (
    (
        (BasicBlock, Bottleneck),
        "its residual blocks add the block's input to its output: Darknet's [shortcut] could "
        "express that (with a [route] back for the downsampling projection), but cnnlab's "
        "exporter writes chains of layers only",
    ),
    (
        Inception,
        "its Inception blocks run four branches on the same input and concatenate them: "
        "Darknet's [route] could express that, but cnnlab's exporter writes chains of layers only",
    ),
    (ScaledTanh, "LeCun's 1.7159 * tanh(2/3 x) is not one of Darknet's activations"),
    (
        (Subsampling, ConnectionTableConv2d, EuclideanRBF),
        "Darknet has no layer for it (trainable subsampling, a partial connection table, "
        "RBF output units)",
    ),
    (nn.LocalResponseNorm, "Darknet's [normalization] is LRN, but cnnlab does not build it"),
)
DARKNET_BN_EPS = L.DARKNET_BN_EPS


def _leaves(model: nn.Module) -> list[nn.Module]:
    """The layers of a chain, nested nn.Sequential flattened."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in _leaves(child)]
    return [model]


def _refuse(name: str, module: nn.Module, reason: str | None = None) -> NotExportableError:
    if reason is None:
        reason = next(
            (text for types, text in REASONS if isinstance(module, types)),
            f"Darknet has no layer for {type(module).__name__}",
        )
    what = type(module).__name__
    return NotExportableError(f"{name} cannot be exported to Darknet: {reason} (a {what})")


def _activation(module: nn.Module | None) -> str | None:
    if isinstance(module, nn.LeakyReLU) and module.negative_slope == 0.1:
        return "leaky"
    if isinstance(module, nn.LeakyReLU) and module.negative_slope == 0.01:
        return "relie"
    if isinstance(module, nn.ELU) and module.alpha != 1:
        return None
    return next((name for kind, name in ACTIVATIONS if isinstance(module, kind)), None)


def _square(value, what: str, name: str, module: nn.Module) -> int:
    pair = value if isinstance(value, tuple) else (value, value)
    if isinstance(pair[0], str) or pair[0] != pair[1]:
        raise _refuse(name, module, f"Darknet's {what} is the same for height and width")
    return int(pair[0])


def _plan_chain(name: str, leaves: list[nn.Module], shape: tuple[int, int, int]):
    """Darknet sections (as option dicts) and, per section, the PyTorch modules it takes."""
    sections: list[tuple[str, dict[str, object], tuple[nn.Module, ...]]] = []
    c, h, w = shape
    i = 0
    while i < len(leaves):
        module = leaves[i]
        following = leaves[i + 1] if i + 1 < len(leaves) else None
        if isinstance(module, nn.Conv2d):
            if (
                module.padding_mode != "zeros"
                or _square(module.dilation, "dilation", name, module) > 1
            ):
                raise _refuse(
                    name, module, "Darknet convolutions are not dilated and pad with zeros"
                )
            size = _square(module.kernel_size, "kernel size", name, module)
            stride = _square(module.stride, "stride", name, module)
            padding = _square(module.padding, "padding", name, module)
            parts = [module]
            bn = following if isinstance(following, nn.BatchNorm2d) else None
            if bn is not None:
                parts.append(bn)
            after = leaves[i + len(parts)] if i + len(parts) < len(leaves) else None
            activation = _activation(after)
            if activation is not None:
                parts.append(after)
            options = dict(
                batch_normalize=int(bn is not None), filters=module.out_channels, size=size,
                stride=stride, padding=padding, groups=module.groups,
                activation=activation or "linear",
            )  # fmt: skip
            sections.append(("convolutional", options, tuple(parts)))
            c = module.out_channels
            h, w = ((n + 2 * padding - size) // stride + 1 for n in (h, w))
            i += len(parts)
            continue
        if isinstance(module, nn.MaxPool2d):
            size = _square(module.kernel_size, "pool size", name, module)
            stride = _square(module.stride, "pool stride", name, module)
            padding = _square(module.padding, "pool padding", name, module)
            if _square(module.dilation, "dilation", name, module) > 1:
                raise _refuse(name, module, "Darknet's maxpool is not dilated")
            total = 2 * padding
            if module.ceil_mode:  # Darknet's padding = stride - 1 rounds up, with none on the left
                if padding or stride > 2:
                    raise _refuse(
                        name, module, "ceil_mode maps to Darknet only unpadded, stride <= 2"
                    )
                total = stride - 1
            sections.append(("maxpool", dict(size=size, stride=stride, padding=total), ()))
            h, w = ((n + total - size) // stride + 1 for n in (h, w))
        elif isinstance(module, nn.AvgPool2d):
            size = _square(module.kernel_size, "pool size", name, module)
            stride = _square(module.stride, "pool stride", name, module)
            if module.padding != 0 or module.ceil_mode:
                raise _refuse(name, module, "only unpadded average pooling maps to Darknet")
            options = dict(filters=c, size=size, stride=stride, padding=0, groups=c)
            sections.append(("convolutional", {**options, "activation": "linear"}, (module,)))
            h, w = ((n - size) // stride + 1 for n in (h, w))
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            target = module.output_size
            target = target if isinstance(target, tuple) else (target, target)
            if tuple(target) == (1, 1):
                sections.append(("avgpool", {}, ()))
                h = w = 1
            elif tuple(target) != (h, w):
                raise _refuse(
                    name, module, f"it averages {h}x{w} maps to {target}; Darknet's avgpool is "
                    "global (to 1x1) only",
                )  # fmt: skip
        elif isinstance(module, nn.Linear):
            activation = _activation(following)
            parts = (module, following) if activation is not None else (module,)
            options = dict(output=module.out_features, activation=activation or "linear")
            sections.append(("connected", options, parts))
            c, h, w = module.out_features, 1, 1
            i += len(parts)
            continue
        elif isinstance(module, nn.Dropout):
            sections.append(("dropout", dict(probability=module.p), ()))
        elif not isinstance(module, nn.Flatten):
            reason = None
            if _activation(module) is not None:
                reason = "Darknet applies activations in convolutional and connected layers only"
            raise _refuse(name, module, reason)
        i += 1
    sections.append(("softmax", dict(groups=1), ()))
    return sections


def _cfg_text(shape: tuple[int, int, int], sections) -> str:
    c, h, w = shape
    blocks = [f"[net]\nbatch=1\nchannels={c}\nheight={h}\nwidth={w}"]
    for kind, options, _ in sections:
        blocks.append("\n".join([f"[{kind}]", *(f"{k}={v}" for k, v in options.items())]))
    return "\n\n".join(blocks) + "\n"


@torch.no_grad()
def _copy(target: nn.Module, parts: tuple[nn.Module, ...]) -> None:
    """The PyTorch layers' weights into the Darknet layer built from them."""
    source = parts[0]
    if isinstance(target, L.Connected):
        target.linear.weight.copy_(source.weight)
        target.linear.bias.copy_(source.bias if source.bias is not None else 0)
        return
    conv = target.conv
    if isinstance(source, nn.AvgPool2d):
        conv.weight.fill_(1.0 / conv.weight[0, 0].numel())
        conv.bias.zero_()
        return
    conv.weight.copy_(source.weight)
    bn = parts[1] if len(parts) > 1 and isinstance(parts[1], nn.BatchNorm2d) else None
    if bn is None:
        conv.bias.copy_(source.bias if source.bias is not None else 0)
        return
    if bn.running_mean is None or not bn.affine:
        raise NotExportableError("a BatchNorm2d without running statistics or affine weights")
    target.bn.weight.copy_(bn.weight)
    target.bn.bias.copy_(bn.bias)
    target.bn.running_mean.copy_(bn.running_mean)
    divisor = (bn.running_var.double() + bn.eps).sqrt() - DARKNET_BN_EPS
    target.bn.running_var.copy_(divisor.square())


def export_sequential(
    model: nn.Module, input_shape: tuple[int, int, int]
) -> tuple[str, DarknetNet]:
    """The cfg text of a chain-of-layers model and the Darknet module holding its weights."""
    name = getattr(getattr(model, "cnnlab", None), "name", type(model).__name__)
    if not isinstance(model, nn.Sequential):
        raise _refuse(name, model, "it is not a chain of layers (nn.Sequential)")
    sections = _plan_chain(name, _leaves(model), tuple(input_shape))
    text = _cfg_text(tuple(input_shape), sections)
    darknet = build_network(parse_cfg(text, f"{name}.cfg"))
    for module, (_, _, parts) in zip(darknet.layers, sections, strict=True):
        if parts:
            _copy(module, parts)
    return text, darknet.eval()
