"""``darknetcfg``: any Darknet classifier ``.cfg`` as a zoo model, so that checkpoints of
imported Darknet models (``cnnlab darknet import``) rebuild with ``create_model``.

The cfg's text is the model's argument (``cfg=TEXT``), so a checkpoint's ``model.kwargs``
carries the whole architecture; ``num_classes`` resizes the classifier layer and
``in_channels`` the input, as for every zoo model. Without ``cfg`` it builds a small
CIFAR-sized Darknet classifier.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from cnnlab.darknet.cfg import adapt_cfg, parse_cfg
from cnnlab.darknet.network import VECTOR_KINDS, DarknetNet, NetworkPlan, plan_network
from cnnlab.models.registry import ModelInfo, register_model

SOURCE = "darknetcfg"

# Darknet's classifier layout at 32x32: conv-BN-leaky stages, a 1x1 classifier, global average.
DEFAULT_CFG = """[net]
height=32
width=32
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=10
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
"""


class DarknetCfgModel(DarknetNet):
    """A Darknet classifier returning logits (N, classes), its input size taken from its cfg.

    The registry declares one input shape per model name; a cfg has its own, so the
    ``ModelInfo`` that ``create_model`` attaches is corrected to the cfg's shape and classes.
    """

    def __init__(self, plan: NetworkPlan) -> None:
        super().__init__(plan, logits=True)
        self.flatten = nn.Flatten()  # Darknet's (N, K, 1, 1) vector -> logits (N, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        return self.flatten(self.forward_layers(x, (last,))[last])

    @property
    def cnnlab(self) -> ModelInfo:
        return self._cnnlab_info

    @cnnlab.setter
    def cnnlab(self, info: ModelInfo) -> None:
        classes = self.plan.output.output_shape[0]
        self._cnnlab_info = replace(info, input_shape=self.plan.input_shape, num_classes=classes)


@register_model(
    "darknetcfg",
    input_shape=(3, 32, 32),
    num_classes=10,
    description="any Darknet classifier .cfg (cfg=TEXT), e.g. from `cnnlab darknet import`",
    reference="J. Redmon, Darknet: Open Source Neural Networks in C, 2013-2016; "
    "the .cfg format of pjreddie/darknet (src/parser.c)",
)
def darknet_cfg(
    cfg: str = DEFAULT_CFG, num_classes: int | None = None, in_channels: int | None = None
) -> DarknetCfgModel:
    """The classifier written in ``cfg`` (Darknet's .cfg text), with optional overrides."""
    if not isinstance(cfg, str) or not cfg.strip():
        raise ValueError(f"cfg must be the text of a Darknet .cfg file. Received: cfg={cfg!r:.60}")
    parsed = adapt_cfg(parse_cfg(cfg, SOURCE), channels=in_channels, classes=num_classes)
    plan = plan_network(parsed)
    last = [layer for layer in plan.layers if layer.kind != "cost"][-1]
    if last.kind not in VECTOR_KINDS:
        raise ValueError(
            f"cfg must describe a classifier (ending in softmax, avgpool or connected), but its "
            f"last layer {last.index} is [{last.kind}] with a "
            f"{'x'.join(map(str, last.output_shape))} output; the zoo's detectors are "
            "yolov2-tiny, yolov3-tiny and yolo-scenes"
        )
    return DarknetCfgModel(plan)
