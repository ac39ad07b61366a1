"""Detection models built from Darknet cfg text: ``yolov2-tiny``, ``yolov3-tiny`` and
``yolo-scenes`` (a two-head tiny YOLOv3 for 256x256 scenes of 16-64 px objects).

The cfg text is written here section by section, with the layer sequence, anchors and settings
of Darknet's ``cfg/yolov2-tiny.cfg`` and ``cfg/yolov3-tiny.cfg`` (pjreddie/darknet); the tests
check that the planned networks equal the ones Debian's files give. ``num_classes`` sets the
classes of every head (and the filters of the convolution before it), ``in_channels`` the
input. ``forward`` returns the raw map of each ``[region]``/``[yolo]`` head, in order (what the
YOLO loss and ``cnnlab.detect`` decode).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from cnnlab.darknet.cfg import parse_cfg
from cnnlab.darknet.network import DarknetNet, plan_network
from cnnlab.models.registry import ModelInfo, register_model

# Darknet's anchors: YOLOv2 in grid cells of the 13x13 map, YOLOv3 in input pixels.
YOLOV2_TINY_ANCHORS = (
    (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434),
    (7.88282, 3.52778), (9.77052, 9.16828),
)  # fmt: skip
YOLOV3_TINY_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
# Fashion-MNIST-sized objects of 16..64 px on 256x256 scenes: small ones on the stride-8 head.
SCENES_ANCHORS = ((16, 16), (22, 22), (30, 30), (38, 38), (48, 48), (62, 62))
# yolo-scenes trains every anchor whose shape overlaps a box by more than 0.5 on it (AlexeyAB's
# Darknet's iou_thresh; its yolov4.cfg has 0.213 for anchors 12..459 px), not only the best one:
# these anchors are 1.3x apart, so a box trains the best one and its neighbours, 2-3 of the 6.
# Its class term counts twice (AlexeyAB's cls_normalizer): what the network misses on these
# scenes is telling shirts, T-shirts, pullovers and coats apart, not finding them; in 6-epoch
# runs of the same scenes it gave mAP@0.5 0.887 against 0.876 (mAP@[.5:.95] 0.656 against 0.667).
MULTI = {"iou_thresh": 0.5, "cls_normalizer": 2.0}


def _section(kind: str, **options: object) -> str:
    lines = [f"[{kind}]"]
    for key, value in options.items():
        if isinstance(value, tuple):
            value = ", ".join(
                str(v) for pair in value for v in (pair if isinstance(pair, tuple) else (pair,))
            )
        lines.append(f"{key}={value}")
    return "\n".join(lines)


def _conv(
    filters: int,
    size: int = 3,
    activation: str = "leaky",
    normalize: bool = True,
    stride: int = 1,
) -> str:
    options = {"batch_normalize": 1} if normalize else {}
    return _section(
        "convolutional", **options, filters=filters, size=size, stride=stride, pad=1,
        activation=activation,
    )  # fmt: skip


def _head_conv(anchors: int, classes: int) -> str:
    return _conv(anchors * (classes + 5), size=1, activation="linear", normalize=False)


def _net(size: int, channels: int) -> str:
    return _section("net", batch=1, subdivisions=1, width=size, height=size, channels=channels)


def _yolo(mask: tuple[int, ...], anchors: tuple, classes: int, **extra: object) -> str:
    return _section(
        "yolo", mask=mask, anchors=anchors, classes=classes, num=len(anchors), jitter=0.3,
        ignore_thresh=0.7, truth_thresh=1, random=1, **extra,
    )  # fmt: skip


def yolov2_tiny_cfg(classes: int = 80, channels: int = 3, size: int = 416) -> str:
    """Darknet's YOLOv2-tiny (COCO): six conv/max-pool stages, a stride-1 pool, a region head."""
    stages = []
    for index, filters in enumerate((16, 32, 64, 128, 256, 512)):
        stride = 1 if index == 5 else 2
        stages += [_conv(filters), _section("maxpool", size=2, stride=stride)]
    region = _section(
        "region", anchors=YOLOV2_TINY_ANCHORS, bias_match=1, classes=classes, coords=4,
        num=len(YOLOV2_TINY_ANCHORS), softmax=1, jitter=0.2, rescore=0, object_scale=5,
        noobject_scale=1, class_scale=1, coord_scale=1, absolute=1, thresh=0.6, random=1,
    )  # fmt: skip
    tail = [_conv(1024), _conv(512), _head_conv(len(YOLOV2_TINY_ANCHORS), classes), region]
    return "\n\n".join([_net(size, channels), *stages, *tail]) + "\n"


def tiny_yolov3_cfg(
    classes: int,
    channels: int,
    size: int,
    widths: tuple[int, ...],
    anchors: tuple,
    pools: int,
) -> str:
    """A tiny YOLOv3: conv/max-pool stages of ``widths`` (the first ``pools`` stride 2, then one
    stride 1), a head on the last map, and a second head on the map two times finer (the
    last stride-2 stage's features, route -> upsample -> concatenate)."""
    *stages, deep = widths
    layers: list[str] = []
    skip = None
    for index, filters in enumerate(stages):
        layers.append(_conv(filters))
        if index == pools - 1:
            skip = len(layers) - 1  # the finer head's features, before the last stride-2 pool
        stride = 2 if index < pools else 1
        layers.append(_section("maxpool", size=2, stride=stride))
    half = deep // 4
    layers += [_conv(deep), _conv(half, size=1), _conv(half * 2)]
    layers += [_head_conv(3, classes), _yolo((3, 4, 5), anchors, classes)]
    layers += [_section("route", layers=-4), _conv(half // 2, size=1)]
    layers += [_section("upsample", stride=2), _section("route", layers=f"-1, {skip}")]
    layers += [_conv(half), _head_conv(3, classes), _yolo((0, 1, 2), anchors, classes)]
    return "\n\n".join([_net(size, channels), *layers]) + "\n"


def scenes_cfg(classes: int = 10, channels: int = 3, size: int = 256) -> str:
    """yolo-scenes: a tiny YOLOv3 sized for a 2-core CPU. Three stride-2 convolutions bring
    256x256 down to 32x32 at a fraction of the cost of conv + max-pool stages at full
    resolution (which would spend most of the time on 16-channel maps of 256x256); a fourth,
    96-filter convolution gives the stride-8 head its features; a max-pool and a 192-filter
    convolution the stride-16 head's (receptive field 103 px, beyond the largest 64 px object),
    whose 48-channel summary, upsampled, joins the stride-8 features for the small objects.
    In bf16 on this project's 2-core Xeon the 96/48 widths cost ~15% more time per step than
    64/24 (0.57 against 0.35 GFLOPs a grey scene) and gave +1.4 mAP@0.5 and +2.0 mAP@[.5:.95]
    after 6 epochs of the same scenes."""
    deep, wide = 192, 96
    layers = [_conv(16, stride=2), _conv(32, stride=2), _conv(64, stride=2), _conv(wide)]
    skip = len(layers) - 1  # the stride-8 features
    layers += [_section("maxpool", size=2, stride=2), _conv(deep)]
    layers += [_conv(deep // 4, size=1), _conv(deep // 2)]
    layers += [_head_conv(3, classes), _yolo((3, 4, 5), SCENES_ANCHORS, classes, **MULTI)]
    layers += [_section("route", layers=-4), _conv(deep // 4, size=1)]
    layers += [_section("upsample", stride=2), _section("route", layers=f"-1, {skip}")]
    layers += [
        _conv(wide),
        _head_conv(3, classes),
        _yolo((0, 1, 2), SCENES_ANCHORS, classes, **MULTI),
    ]
    return "\n\n".join([_net(size, channels), *layers]) + "\n"


class DarknetDetector(DarknetNet):
    """A Darknet detection network whose ``forward`` returns each head's raw map.

    The convolution before each ``[yolo]`` head starts from biases that say "few objects, no
    class yet" (:func:`prior_yolo_biases`) instead of probability 0.5 everywhere."""

    def __init__(self, cfg_text: str, source: str) -> None:
        super().__init__(plan_network(parse_cfg(cfg_text, source)))
        self.head_layers = tuple(
            layer.index for layer in self.plan.layers if layer.kind in ("region", "yolo")
        )
        prior_yolo_biases(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.forward_layers(x, self.head_layers)
        return [outputs[index] for index in self.head_layers]

    @property
    def cnnlab(self) -> ModelInfo:
        return self._cnnlab_info

    @cnnlab.setter
    def cnnlab(self, info: ModelInfo) -> None:
        classes = self.plan.layers[self.head_layers[0]].settings["classes"]
        self._cnnlab_info = replace(
            info, input_shape=self.plan.input_shape, num_classes=classes, output="detections"
        )


def prior_yolo_biases(model: DarknetDetector, objects: float = 8.0, hit: float = 0.6) -> None:
    """Start each ``[yolo]`` head's objectness at ``objects`` per image spread over its grid
    cells, and its class scores at ``hit`` spread over the classes (the priors YOLOv5 starts
    from, after RetinaNet's): an untrained network then predicts ~0 objects instead of one per
    anchor at probability 0.5, whose loss (0.69 per anchor, thousands per image) otherwise takes
    the first epoch to unlearn."""
    for index in model.head_layers:
        layer = model.plan.layers[index]
        conv = getattr(model.layers[index - 1], "conv", None)
        if layer.kind != "yolo" or conv is None or conv.bias is None:
            continue
        classes = int(layer.settings["classes"])
        anchors = len(layer.settings["mask"])
        _, grid_h, grid_w = layer.output_shape
        if conv.out_channels != anchors * (5 + classes):
            continue
        with torch.no_grad():
            bias = conv.bias.view(anchors, 5 + classes)
            bias[:, 4] = math.log(objects / (grid_h * grid_w))
            if classes > 1:
                bias[:, 5:] = math.log(hit / (classes - 0.99))


YOLO_REFERENCE = "J. Redmon, A. Farhadi, YOLO9000 (2017) and YOLOv3 (2018); pjreddie/darknet cfg/"


@register_model(
    "yolov2-tiny",
    input_shape=(3, 416, 416),
    num_classes=80,
    description="Tiny YOLOv2 detector (Darknet cfg): one region head, 13x13x5 anchors",
    reference=YOLO_REFERENCE,
)
def yolov2_tiny(num_classes: int = 80, in_channels: int = 3, size: int = 416) -> DarknetDetector:
    """Darknet's cfg/yolov2-tiny.cfg (COCO's 80 classes by default)."""
    return DarknetDetector(yolov2_tiny_cfg(num_classes, in_channels, size), "yolov2-tiny")


@register_model(
    "yolov3-tiny",
    input_shape=(3, 416, 416),
    num_classes=80,
    description="Tiny YOLOv3 detector (Darknet cfg): yolo heads at strides 32 and 16",
    reference=YOLO_REFERENCE,
)
def yolov3_tiny(num_classes: int = 80, in_channels: int = 3, size: int = 416) -> DarknetDetector:
    """Darknet's cfg/yolov3-tiny.cfg (COCO's 80 classes by default)."""
    cfg = tiny_yolov3_cfg(
        num_classes, in_channels, size, (16, 32, 64, 128, 256, 512, 1024), YOLOV3_TINY_ANCHORS, 5
    )
    return DarknetDetector(cfg, "yolov3-tiny")


@register_model(
    "yolo-scenes",
    input_shape=(3, 256, 256),
    num_classes=10,
    description="Tiny YOLOv3 for 256x256 scenes (cnnlab data scenes): heads at strides 16 and 8",
    reference=YOLO_REFERENCE,
)
def yolo_scenes(num_classes: int = 10, in_channels: int = 3, size: int = 256) -> DarknetDetector:
    """A tiny YOLOv3 with its heads at 16x16 and 32x32 for 256x256 input, anchors 16-62 px
    (``scenes_cfg``)."""
    return DarknetDetector(scenes_cfg(num_classes, in_channels, size), "yolo-scenes")


# The zoo's detectors: trained on boxes and scored by mAP (cnnlab.train.detection).
DETECTOR_MODELS = ("yolov2-tiny", "yolov3-tiny", "yolo-scenes")
