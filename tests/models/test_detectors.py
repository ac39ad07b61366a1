"""The zoo's detectors: their cfg text plans the same network as Debian's Darknet files, and
they build with other class counts, input channels and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.mark.parametrize("name", ["yolo-scenes", "yolov3-tiny"])
def test_an_untrained_detector_starts_from_few_objects_and_no_class(name):
    # The prior biases: 8 objects per image spread over each head's cells, class 0.6 / 9.01.
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, size=256).eval()
    with torch.no_grad():
        maps = model(torch.rand(2, 3, 256, 256))
    for raw in maps:
        n, _, grid_h, grid_w = raw.shape
        p = raw.view(n, 3, 15, grid_h, grid_w).sigmoid()
        prior = 8 / (grid_h * grid_w)  # 0.125 on an 8x8 grid, 0.0078 on 32x32
        assert p[:, :, 4].mean().item() == pytest.approx(prior, rel=0.5)
        assert p[:, :, 5:].mean().item() == pytest.approx(0.6 / 9.01, rel=0.5)
    # Without the priors the same network expects one object per anchor at probability 0.5.
    head = model.layers[model.head_layers[0] - 1].conv
    with torch.no_grad():
        head.bias.zero_()
        raw = model(torch.rand(2, 3, 256, 256))[0]
    assert raw.view(2, 3, 15, *raw.shape[2:])[:, :, 4].sigmoid().mean() > 0.3


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolo-scenes", "yolov2-tiny"])
def test_the_darknet_style_summary_names_the_heads_as_darknet_does(name):
    # `cnnlab summary --style darknet` prints a [yolo]/[region] row as Darknet's table does
    # (it said "passthrough", the class of the module that returns the raw maps).
    from cnnlab.summary import format_darknet, summarize

    plan = create_model(name).plan
    heads = [(layer.index, layer.kind) for layer in plan.layers if layer.kind in ("yolo", "region")]
    rows = format_darknet(summarize(name)).splitlines()[1:]
    for index, kind in heads:
        assert rows[index].split()[:2] == [str(index), kind], rows[index]
    assert not any("passthrough" in row for row in rows)
