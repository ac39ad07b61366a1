"""From a parsed cfg to shapes (``plan_network``) and to a PyTorch module (``DarknetNet``).

``plan_network`` follows parse_network_cfg of pjreddie/darknet: each layer's input is the
previous layer's output, shapes are Darknet's integer formulas, and FLOPs are the ones Darknet
prints (2 x multiply-accumulates of convolutions and dense layers). The plan needs no torch and
is what the layer table prints; ``DarknetNet`` builds one module per layer from it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.darknet import layers as L
from cnnlab.darknet.cfg import DarknetCfg, Section, read_cfg

SUPPORTED = (
    "convolutional",
    "maxpool",
    "avgpool",
    "softmax",
    "connected",
    "dropout",
    "route",
    "shortcut",
    "upsample",
    "reorg",
    "region",
    "yolo",
    "cost",
)
VECTOR_KINDS = ("avgpool", "connected", "softmax", "cost")  # Darknet's (K, 1, 1) outputs


class UnsupportedLayerError(ValueError):
    """A cfg whose layer type cnnlab does not build (rnn, gru, crop, ...)."""


@dataclass(frozen=True)
class LayerPlan:
    """One layer: its section, input and output shapes as (C, H, W), FLOPs and settings."""

    index: int
    kind: str
    section: Section
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    flops: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> int:
        return math.prod(self.output_shape)

    def __repr__(self) -> str:
        return (
            f"LayerPlan({self.index}, {self.kind}, {self.input_shape} -> {self.output_shape}, "
            f"flops={self.flops:,})"
        )


@dataclass(frozen=True)
class NetworkPlan:
    """All layers of a cfg at its input size."""

    cfg: DarknetCfg
    input_shape: tuple[int, int, int]  # (C, H, W)
    layers: tuple[LayerPlan, ...]

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def output(self) -> LayerPlan:
        return self.layers[-1]

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"NetworkPlan({self.cfg.source!r}, input={c}x{h}x{w}, layers={len(self.layers)}, "
            f"bflops={self.flops / 1e9:.3f})"
        )


def _positive(section: Section, key: str, default: int | None = None) -> int:
    value = section.get(key, default)
    if value is None:
        raise section.error(key, "required, and missing")
    if value < 1:
        raise section.error(key, f"expected a positive integer, got {value}")
    return value


def _refer(section: Section, key: str, index: int, relative: int, plans: list[LayerPlan]) -> int:
    """Darknet's layer reference: negative counts back from this layer; it must come before."""
    target = index + relative if relative < 0 else relative
    if not 0 <= target < index:
        raise section.error(
            key,
            f"layer {index} can only use layers 0..{index - 1} (earlier layers); "
            f"{relative} points to layer {target}",
        )
    return target


def _read_tree(section: Section, tree: str) -> tuple[int, ...]:
    """Group sizes of a Darknet hierarchy file (tree.c): runs of lines with the same parent."""
    candidates = [Path(tree), Path(section.source).resolve().parent.parent / tree]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise section.error(
            "tree", f"no such hierarchy file (looked in {candidates[0]} and {candidates[1]})"
        )
    sizes: list[int] = []
    last_parent = None
    for line in found.read_text().splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        if parts[1] != last_parent:
            sizes.append(0)
            last_parent = parts[1]
        sizes[-1] += 1
    return tuple(sizes)


def _plan_layer(index: int, section: Section, shape, plans: list[LayerPlan]) -> LayerPlan:
    c, h, w = shape
    kind = section.kind
    settings: dict[str, Any] = {}
    flops = 0
    if kind not in SUPPORTED:
        raise UnsupportedLayerError(
            f"{section.source}, line {section.line}: layer {index}: layer type {kind} "
            f"({section.header}) is not supported; cnnlab builds {', '.join(SUPPORTED)}"
        )
    for key in ("numload", "binary", "xnor", "flipped"):
        if key in section.options and section.get(key):
            raise section.error(key, "not supported by cnnlab")
    if kind == "convolutional":
        filters, size = _positive(section, "filters", 1), _positive(section, "size", 1)
        stride, groups = _positive(section, "stride", 1), _positive(section, "groups", 1)
        padding = size // 2 if section.get("pad", 0) else section.get("padding", 0)
        if c % groups or filters % groups:
            raise section.error(
                "groups", f"expected a divisor of the input channels ({c}) and filters ({filters})"
            )
        out_h, out_w = (
            (h + 2 * padding - size) // stride + 1,
            (w + 2 * padding - size) // stride + 1,
        )
        settings = dict(
            filters=filters,
            size=size,
            stride=stride,
            padding=padding,
            groups=groups,
            batch_normalize=bool(section.get("batch_normalize", 0)),
            activation=section.get("activation", "logistic"),
        )
        out = (filters, out_h, out_w)
        flops = 2 * filters * size * size * (c // groups) * out_h * out_w
    elif kind == "maxpool":
        stride = _positive(section, "stride", 1)
        size = _positive(section, "size", stride)
        padding = section.get("padding", size - 1)
        out = (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
        settings = dict(size=size, stride=stride, padding=padding)
    elif kind == "avgpool":
        out = (c, 1, 1)
    elif kind == "connected":
        outputs = _positive(section, "output", 1)
        settings = dict(
            inputs=c * h * w,
            output=outputs,
            batch_normalize=bool(section.get("batch_normalize", 0)),
            activation=section.get("activation", "logistic"),
        )
        out = (outputs, 1, 1)
        flops = 2 * c * h * w * outputs
    elif kind == "softmax":
        groups = _positive(section, "groups", 1)
        if (c * h * w) % groups:
            raise section.error("groups", f"expected a divisor of the {c * h * w} inputs")
        tree = _read_tree(section, section.get("tree")) if section.has("tree") else ()
        if tree and sum(tree) != c * h * w:
            raise section.error("tree", f"its groups cover {sum(tree)} classes, not {c * h * w}")
        settings = dict(groups=groups, temperature=section.get("temperature", 1.0), tree=tree)
        out = shape
    elif kind == "dropout":
        probability = section.get("probability", 0.5)
        if not 0 <= probability < 1:
            raise section.error("probability", "expected a number in [0, 1)")
        settings = dict(probability=probability)
        out = shape
    elif kind == "route":
        if not section.has("layers"):
            raise section.error("layers", "required: the layers to concatenate")
        sources = [_refer(section, "layers", index, r, plans) for r in section.get("layers")]
        groups, group_id = _positive(section, "groups", 1), section.get("group_id", 0)
        if not 0 <= group_id < groups:
            raise section.error("group_id", f"expected 0..{groups - 1}")
        first = plans[sources[0]].output_shape
        channels = 0
        for source in sources:
            c_in, h_in, w_in = plans[source].output_shape
            if (h_in, w_in) != first[1:]:
                raise section.error(
                    "layers",
                    f"layer {source} is {h_in}x{w_in}, layer {sources[0]} "
                    f"{first[1]}x{first[2]}; routed maps must have the same size",
                )
            if c_in % groups:
                raise section.error("groups", f"layer {source}'s {c_in} channels do not split")
            channels += c_in // groups
        settings = dict(layers=tuple(sources), groups=groups, group_id=group_id)
        out = (channels, first[1], first[2])
    elif kind == "shortcut":
        if not section.has("from"):
            raise section.error("from", "required: the layer to add")
        source = _refer(section, "from", index, section.get("from"), plans)
        c1, h1, w1 = plans[source].output_shape
        if (w1 // w if w1 >= w else w // w1) != (h1 // h if h1 >= h else h // h1):
            raise section.error("from", f"layer {source} ({h1}x{w1}) cannot be added to {h}x{w}")
        settings = dict(
            source=source,
            from_shape=(c1, h1, w1),
            activation=section.get("activation", "linear"),
            alpha=section.get("alpha", 1.0),
            beta=section.get("beta", 1.0),
        )
        out = shape
    elif kind == "upsample":
        stride = _positive(section, "stride", 2)
        settings = dict(stride=stride, scale=section.get("scale", 1.0))
        out = (c, h * stride, w * stride)
    elif kind == "reorg":
        stride = _positive(section, "stride", 1)
        if section.get("flatten", 0):
            raise section.error("flatten", "not supported by cnnlab")
        extra, reverse = section.get("extra", 0), bool(section.get("reverse", 0))
        settings = dict(stride=stride, reverse=reverse, extra=extra)
        if extra:
            out = (c * h * w + extra, 1, 1)
        elif reverse:
            if c % (stride * stride):
                raise section.error("stride", f"{c} channels do not divide by stride^2")
            out = (c // (stride * stride), h * stride, w * stride)
        else:
            if h % stride or w % stride or c % (stride * stride):
                raise section.error(
                    "stride", f"a {c}x{h}x{w} input does not divide into {stride}x{stride} blocks"
                )
            out = (c * stride * stride, h // stride, w // stride)
    elif kind in ("region", "yolo"):
        classes, num = section.get("classes", 20), section.get("num", 1)
        if kind == "region":
            coords = section.get("coords", 4)
            expected = num * (classes + coords + 1)
            settings = dict(classes=classes, num=num, coords=coords)
        else:
            mask = section.get("mask", tuple(range(num)))
            expected = len(mask) * (classes + 4 + 1)
            settings = dict(classes=classes, num=num, mask=mask)
        settings["anchors"] = section.get("anchors", ())
        if c != expected:
            raise section.error(
                "classes",
                f"[{kind}] expects {expected} input channels from its settings, "
                f"the layer before gives {c}",
            )
        out = shape
    else:  # cost
        out = shape
    return LayerPlan(index, kind, section, shape, out, flops, settings)


def plan_network(
    cfg: DarknetCfg | str | os.PathLike[str], *, height: int | None = None, width: int | None = None
) -> NetworkPlan:
    """Every layer's shapes and FLOPs, at the cfg's input size or ``height`` x ``width``."""
    if not isinstance(cfg, DarknetCfg):
        cfg = read_cfg(cfg)
    net = cfg.net
    h = height if height is not None else net.get("height", 0)
    w = width if width is not None else net.get("width", 0)
    c = net.get("channels", 0)
    if not (h and w and c):
        inputs = net.get("inputs", 0)
        if inputs < 1:
            raise net.error("height", "the [net] section needs height, width and channels")
        h, w, c = 1, 1, inputs
    if min(h, w, c) < 1:
        raise net.error("height", f"expected positive height, width and channels, got {h}x{w}x{c}")
    plans: list[LayerPlan] = []
    shape = (c, h, w)
    for index, section in enumerate(cfg.layers):
        plan = _plan_layer(index, section, shape, plans)
        if min(plan.output_shape) < 1:
            raise section.error(
                None,
                f"layer {index} ({plan.kind}) gets a {'x'.join(map(str, shape))} input and "
                f"its output would be empty ({'x'.join(map(str, plan.output_shape))})",
            )
        plans.append(plan)
        shape = plan.output_shape
    if not plans:
        raise ValueError(f"{cfg.source}: no layers after [net]")
    return NetworkPlan(cfg, (c, h, w), tuple(plans))


def _module(plan: LayerPlan, logits: bool, last: bool) -> nn.Module:
    s = plan.settings
    if plan.kind == "convolutional":
        return L.Convolutional(
            plan.input_shape[0], s["filters"], s["size"], s["stride"], s["padding"],
            s["groups"], s["batch_normalize"], s["activation"],
        )  # fmt: skip
    if plan.kind == "maxpool":
        return L.MaxPool(s["size"], s["stride"], s["padding"])
    if plan.kind == "avgpool":
        return L.AvgPool()
    if plan.kind == "connected":
        return L.Connected(s["inputs"], s["output"], s["batch_normalize"], s["activation"])
    if plan.kind == "softmax":
        if logits and last:
            return L.PassThrough("softmax")  # cnnlab models return logits
        return L.Softmax(s["groups"], s["temperature"], s["tree"])
    if plan.kind == "dropout":
        return L.Dropout(s["probability"])
    if plan.kind == "route":
        return L.Route(s["layers"], s["groups"], s["group_id"])
    if plan.kind == "shortcut":
        return L.Shortcut(s["source"], s["activation"], s["alpha"], s["beta"])
    if plan.kind == "upsample":
        return L.Upsample(s["stride"], s["scale"])
    if plan.kind == "reorg":
        return L.ReorgExtra(s["extra"]) if s["extra"] else L.Reorg(s["stride"], s["reverse"])
    return L.PassThrough(plan.kind, **s)


class DarknetNet(nn.Module):
    """A Darknet cfg as one module: ``layers[i]`` is Darknet's layer i.

    ``forward`` returns the last layer's output, (N, K) for a classifier (the last layer's
    values are a vector) and (N, C, H, W) otherwise; ``forward_layers`` returns any layers'
    outputs (the YOLO heads, say). With ``logits=True`` a final softmax is left out, so the
    model returns logits as cnnlab's zoo models do.
    """

    def __init__(self, plan: NetworkPlan, *, logits: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.logits = logits
        count = len(plan.layers)
        trailing = count - 1
        while trailing > 0 and plan.layers[trailing].kind == "cost":
            trailing -= 1  # a cost layer after the softmax is a loss, not the output
        self.layers = nn.ModuleList(
            _module(layer, logits, index == trailing) for index, layer in enumerate(plan.layers)
        )
        self._kept = {
            source
            for layer in plan.layers
            for source in (layer.settings.get("layers") or (layer.settings.get("source"),))
            if source is not None
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        out = self.forward_layers(x, (last,))[last]
        return out.flatten(1) if self.plan.layers[last].kind in VECTOR_KINDS else out

    def forward_layers(self, x: torch.Tensor, wanted: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """The outputs of the layers numbered in ``wanted`` (running only as far as needed)."""
        saved: dict[int, torch.Tensor] = {}
        result: dict[int, torch.Tensor] = {}
        stop = max(wanted)
        for index, module in enumerate(self.layers[: stop + 1]):
            if isinstance(module, L.Route):
                x = module([saved[source] for source in module.layers])
            elif isinstance(module, L.Shortcut):
                x = module(x, saved[module.source])
            else:
                x = module(x)
            if index in self._kept:
                saved[index] = x
            if index in wanted:
                result[index] = x
        return result

    def fold_batch_norm(self) -> DarknetNet:
        """Fold every convolution's batch norm into its weights (inference only); returns self."""
        for module in self.layers:
            if isinstance(module, L.Convolutional):
                module.fold_batch_norm()
        return self

    def optimize_for_inference(self) -> DarknetNet:
        """Eval mode, batch norms folded, channels_last weights: the fast path for prediction
        on the CPU (the module can no longer be trained or written to a .weights file)."""
        self.eval()
        self.fold_batch_norm()
        return self.to(memory_format=torch.channels_last)

    def __repr__(self) -> str:
        c, h, w = self.plan.input_shape
        return f"DarknetNet({self.plan.cfg.source!r}, input={c}x{h}x{w}, layers={len(self.layers)})"


def build_network(
    cfg: DarknetCfg | str | os.PathLike[str],
    *,
    height: int | None = None,
    width: int | None = None,
    logits: bool = False,
) -> DarknetNet:
    """Build the module of a cfg (random initial weights; load Darknet's with load_weights)."""
    return DarknetNet(plan_network(cfg, height=height, width=width), logits=logits)
