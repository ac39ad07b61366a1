"""COCO mAP through pycocotools against cases computed by hand, and the precision-recall PNG."""

import sys

import numpy as np
import pycocotools  # noqa: F401  (the dev extra; cnnlab imports it when it scores)
import pytest
import torch
from PIL import Image

from cnnlab.detect.datasets import DetectionSet
from cnnlab.detect.metrics import coco_evaluate, plot_precision_recall


def truth(*boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.zeros(len(boxes), dtype=torch.int64) if labels is None else torch.tensor(labels)
    return boxes, labels


def rows(*values):
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 6)


def test_one_perfect_box_is_ap_one():
    result = coco_evaluate([rows([0, 0, 20, 20, 0.9, 0])], [truth([0, 0, 20, 20])], ["a"])
    assert result.map == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)
    assert result.per_class == {"a": (pytest.approx(1.0), pytest.approx(1.0))}


def test_a_box_at_iou_04_misses_at_05():
    # ground truth 10x10; prediction 4x10 inside it: IoU = 40 / 100 = 0.4
    result = coco_evaluate([rows([0, 0, 4, 10, 0.9, 0])], [truth([0, 0, 10, 10])], ["a"])
    assert result.map50 == 0.0 and result.map == 0.0


def test_a_box_at_iou_062_counts_at_three_of_ten_thresholds():
    # IoU 620 / 1000 = 0.62 >= .50, .55, .60 and < .65 ... .95: mAP@[.5:.95] = 3 / 10
    result = coco_evaluate([rows([0, 0, 62, 10, 0.9, 0])], [truth([0, 0, 100, 10])], ["a"])
    assert result.map50 == pytest.approx(1.0)
    assert result.map == pytest.approx(0.3)
    assert result.map75 == 0.0


def test_a_ranked_list_by_hand():
    """Three objects; detections by score: hit, miss, hit, miss, hit.

    precision 1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1; made monotone from the
    right: 1, 2/3, 2/3, 3/5, 3/5. COCO samples it at recall 0, .01, ..., 1: 34 points up to 1/3
    read 1, 33 points up to 2/3 read 2/3, 34 points up to 1 read 3/5.
    AP = (34 * 1 + 33 * 2/3 + 34 * 3/5) / 101 = 76.4 / 101.
    """
    objects = truth([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10])
    ranked = rows(
        [0, 0, 10, 10, 0.9, 0],
        [100, 100, 110, 110, 0.8, 0],
        [20, 0, 30, 10, 0.7, 0],
        [100, 0, 110, 10, 0.6, 0],
        [40, 0, 50, 10, 0.5, 0],
    )
    result = coco_evaluate([ranked], [objects], ["a"])
    assert result.map50 == pytest.approx(76.4 / 101, abs=1e-12)
    assert result.map == pytest.approx(76.4 / 101, abs=1e-12)  # exact boxes: every IoU level
    assert result.detections == 5 and result.objects == 3


def test_per_class_ap_and_a_class_without_objects():
    objects = truth([0, 0, 10, 10], [50, 50, 70, 70], labels=[0, 1])
    predicted = rows([0, 0, 10, 10, 0.9, 0], [50, 50, 70, 70, 0.8, 2])  # class 1 called 2
    result = coco_evaluate([predicted], [objects], ["a", "b", "c"])
    assert result.per_class["a"] == (pytest.approx(1.0), pytest.approx(1.0))
    assert result.per_class["b"] == (0.0, 0.0)
    assert result.per_class["c"] == (None, None)  # no object of class c: no AP, not 0
    assert result.map == pytest.approx(0.5)  # the mean over the classes with objects
    assert result.as_dict()["per_class"]["c"] == {"ap": None, "ap50": None}


def test_an_image_without_predictions():
    objects = [truth([0, 0, 10, 10]), truth([5, 5, 25, 25])]
    result = coco_evaluate([rows([0, 0, 10, 10, 0.9, 0]), torch.zeros(0, 6)], objects, ["a"])
    assert result.map50 == pytest.approx(51 / 101)  # recall points 0..0.50 read precision 1


def test_a_detection_set_as_ground_truth():
    part = DetectionSet(
        images=torch.zeros((2, 1, 8, 8), dtype=torch.uint8),
        boxes=torch.tensor([[0.0, 0, 4, 4], [4, 4, 8, 8], [1, 1, 3, 3]]),
        labels=torch.tensor([0, 1, 1]),
        offsets=torch.tensor([0, 2, 3]),
        files=("x", "y"),
    )
    predicted = [rows([4, 4, 8, 8, 0.9, 1], [0, 0, 4, 4, 0.8, 0]), rows([1, 1, 3, 3, 0.7, 1])]
    assert coco_evaluate(predicted, part, ["a", "b"]).map == pytest.approx(1.0)
    predicted[1] = rows([1, 1, 3, 3, 0.7, 0])  # the right box, the wrong class
    result = coco_evaluate(predicted, part, ["a", "b"])
    assert result.per_class["b"][0] == pytest.approx(51 / 101)  # 1 of 2 objects of b found


def test_wrong_prediction_shapes_and_classes_are_refused():
    with pytest.raises(ValueError, match=r"predictions\[0\] must be \(K, 6\)"):
        coco_evaluate([torch.zeros(1, 5)], [truth([0, 0, 1, 1])], ["a"])
    with pytest.raises(ValueError, match="one \\(K, 6\\) tensor per image: 1 images"):
        coco_evaluate([], [truth([0, 0, 1, 1])], ["a"])
    with pytest.raises(ValueError, match=r"predictions\[0\] row 0: class 3\.0 is not a class id"):
        coco_evaluate([rows([0, 0, 1, 1, 0.5, 3])], [truth([0, 0, 1, 1])], ["a"])


def test_without_pycocotools_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match=r"pip install pycocotools"):
        coco_evaluate([rows()], [truth()], ["a"])


def test_precision_recall_png(tmp_path):
    objects = [truth([0, 0, 10, 10], [20, 20, 40, 40], labels=[0, 1])]
    predicted = [rows([0, 0, 10, 10, 0.9, 0], [20, 20, 38, 40, 0.8, 1], [60, 60, 70, 70, 0.7, 1])]
    classes = ["a", "b"]
    result = coco_evaluate(predicted, objects, classes)
    path = plot_precision_recall(result, classes, tmp_path / "pr.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 800
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels.std(axis=(0, 1)) > 10).all()  # drawn, not blank
    with pytest.raises(ValueError, match=r"out must end in \.png"):
        plot_precision_recall(result, classes, tmp_path / "pr.jpg")


def test_boxes_reach_coco_as_x_y_width_height():
    # a 40x40 box far from the origin has area 1,600: COCO's "medium" (32^2 .. 96^2); were its
    # corners passed as width and height it would be 140x140, "large"
    result = coco_evaluate(
        [rows([100, 100, 140, 140, 0.9, 0])], [truth([100, 100, 140, 140])], ["a"]
    )
    assert result.map_medium == pytest.approx(1.0)
    assert result.map_small is None and result.map_large is None


def test_only_the_100_best_detections_of_an_image_are_scored_as_cocos_rule_says():
    generator = torch.Generator().manual_seed(5)
    truth_boxes = torch.tensor([[10.0, 10, 40, 40], [50, 50, 90, 80], [5, 60, 30, 95]])
    truth = [(truth_boxes.numpy(), np.array([0, 1, 1]))] * 2
    predictions = []
    for _ in range(2):
        corner = torch.rand(400, 2, generator=generator) * 70
        size = 10 + torch.rand(400, 2, generator=generator) * 30
        score = torch.rand(400, 1, generator=generator).round(decimals=2)  # ties too
        label = (torch.rand(400, 1, generator=generator) < 0.3).float()
        predictions.append(torch.cat([corner, corner + size, score, label], 1))
    capped = coco_evaluate(predictions, truth, ["a", "b"])
    assert capped.detections == 2 * 100
    best = []
    for rows in predictions:  # by hand: the 100 highest scores, ties in row order
        order = sorted(range(len(rows)), key=lambda i: -float(rows[i, 4]))[:100]
        best.append(rows[sorted(order)])
    by_hand = coco_evaluate(best, truth, ["a", "b"])
    assert (capped.map, capped.map50, capped.mar100) == (by_hand.map, by_hand.map50, by_hand.mar100)
    everything = coco_evaluate([p[:100] for p in predictions], truth, ["a", "b"])
    assert everything.map50 != capped.map50  # which 100 are kept matters: the best ones
