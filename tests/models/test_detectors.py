"""The zoo's detectors: their cfg text plans the same network as Debian's Darknet files, and
they build with other class counts, input channels and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.darknet import plan_network
from cnnlab.darknet.table import format_table
from cnnlab.detect import detection_heads
from cnnlab.models import create_model

CFG_DIR = Path("/usr/share/darknet/cfg")


@pytest.mark.requires(not CFG_DIR.is_dir(), "Debian's darknet package (/usr/share/darknet)")
@pytest.mark.parametrize("name", ["yolov2-tiny", "yolov3-tiny"])
def test_zoo_cfg_plans_debians_network(name):
    ours, theirs = create_model(name).plan, plan_network(CFG_DIR / f"{name}.cfg")
    assert len(ours.layers) == len(theirs.layers)
    for mine, debian in zip(ours.layers, theirs.layers, strict=True):
        assert (mine.kind, mine.input_shape, mine.output_shape, mine.flops) == (
            debian.kind, debian.input_shape, debian.output_shape, debian.flops,
        ), mine.index  # fmt: skip
        assert mine.settings == debian.settings, mine.index  # anchors, mask, classes, ...
    assert format_table(ours) == format_table(theirs)


def test_yolo_scenes_heads_sit_at_strides_16_and_8():
    model = create_model("yolo-scenes", num_classes=3, in_channels=1)
    heads = detection_heads(model.plan)
    assert [model.plan.layers[h.layer].output_shape for h in heads] == [(24, 16, 16), (24, 32, 32)]
    assert heads[0].anchors == ((38, 38), (48, 48), (62, 62))  # mask 3,4,5: the large ones
    assert heads[1].anchors == ((16, 16), (22, 22), (30, 30))
    assert model.plan.input_shape == (1, 256, 256) and model.cnnlab.num_classes == 3


def test_size_argument_resizes_the_maps():
    model = create_model("yolov3-tiny", size=320)
    heads = detection_heads(model.plan)
    assert [model.plan.layers[h.layer].output_shape[1:] for h in heads] == [(10, 10), (20, 20)]
