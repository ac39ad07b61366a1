"""The YOLOv3 loss: assignment and every term against hand-computed values, and training."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab.detect.loss import YoloHead, box_iou, shape_iou, yolo_heads, yolo_loss
from cnnlab.models.detectors import DarknetDetector, scenes_cfg, yolov3_tiny

# A 64x64 input, one head on a 4x4 grid (stride 16), two anchors, three classes.
HEAD = YoloHead(anchors=((10.0, 10.0), (30.0, 30.0)), mask=(0, 1), classes=3)
BIG = 30.0  # a logit whose sigmoid is 1 to float precision


def logit(p):
    return math.log(p / (1 - p))


def perfect_map(box_class=2):
    """The raw map that predicts a 28x28 box centred at (40, 24), class 2, and nothing else.

    Its anchor is 30x30 (shape IoU 784/900 against 100/784 for 10x10); its cell (2, 1), where
    the centre's offset is (40/16 - 2, 24/16 - 1) = (0.5, 0.5), so tx = ty = logit(0.5) = 0,
    and tw = th = log(28/30).
    """
    p = torch.full((1, 2, 5 + 3, 4, 4), 0.0)
    p[:, :, 4] = -BIG  # no object anywhere ...
    a, j, i = 1, 1, 2
    p[0, a, 0, j, i] = 0.0
    p[0, a, 1, j, i] = 0.0
    p[0, a, 2, j, i] = math.log(28 / 30)
    p[0, a, 3, j, i] = math.log(28 / 30)
    p[0, a, 4, j, i] = BIG  # ... but here
    p[0, a, 5:, j, i] = -BIG
    p[0, a, 5 + box_class, j, i] = BIG
    return p.reshape(1, 2 * 8, 4, 4)


TARGET = [torch.tensor([[2.0, 26.0, 10.0, 54.0, 38.0]])]  # class 2, corners of 28x28 at (40, 24)


def test_shape_iou_picks_the_closest_anchor():
    iou = shape_iou(torch.tensor([[28.0, 28.0]]), torch.tensor(HEAD.anchors))
    assert iou[0].tolist() == pytest.approx([100 / 784, 784 / 900])


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])


def test_box_iou_of_batches_equals_each_pair_by_hand():
    torch.manual_seed(0)
    corners = torch.rand(2, 5, 2) * 50
    a = torch.cat([corners, corners + torch.rand(2, 5, 2) * 30], -1)  # (N, P, 4)
    b = torch.cat([corners[:, :3] + 5, corners[:, :3] + 25], -1)  # (N, M, 4)
    b[1, 2] = torch.tensor([7.0, 7.0, 7.0, 9.0])  # no area: IoU 0, not NaN
    iou = box_iou(a, b)
    assert iou.shape == (2, 5, 3)
    for n, p, m in itertools.product(range(2), range(5), range(3)):
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a[n, p].tolist(), b[n, m].tolist()
        inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        assert iou[n, p, m].item() == pytest.approx(inter / union, abs=1e-6)


def test_a_perfect_prediction_costs_nothing():
    parts = yolo_loss([perfect_map()], [HEAD], TARGET, (64, 64))
    assert parts.assigned == 1
    assert parts.coordinates.item() == pytest.approx(0.0, abs=1e-10)
    assert parts.objectness.item() == pytest.approx(0.0, abs=1e-10)
    assert parts.classes.item() == pytest.approx(0.0, abs=1e-10)


def test_each_term_by_hand():
    raw = perfect_map().view(1, 2, 8, 4, 4)
    raw[0, 1, 0, 1, 2] = 1.0  # tx: sigmoid(1) instead of 0.5
    raw[0, 1, 2, 1, 2] = 0.0  # tw: log(30/30) instead of log(28/30)
    raw[0, 1, 5 + 2, 1, 2] = 0.0  # the right class at probability 0.5
    raw[0, 0, 4, 3, 3] = 0.0  # an object guessed far away, probability 0.5
    parts = yolo_loss([raw.reshape(1, 16, 4, 4)], [HEAD], TARGET, (64, 64))
    scale = 2 - 28 * 28 / (64 * 64)
    expected = scale * ((1 / (1 + math.exp(-1)) - 0.5) ** 2 + math.log(28 / 30) ** 2)
    assert parts.coordinates.item() == pytest.approx(expected, rel=1e-6)
    assert parts.classes.item() == pytest.approx(math.log(2), rel=1e-6)
    assert parts.objectness.item() == pytest.approx(math.log(2), rel=1e-6)
    assert parts.total.item() == pytest.approx(expected + 2 * math.log(2), rel=1e-6)


def test_the_ignore_rule_spares_good_unassigned_guesses():
    raw = perfect_map().view(1, 2, 8, 4, 4)
    # The small anchor of the same cell guesses the same box (IoU 1 with the truth), unsure.
    raw[0, 0, 2, 1, 2] = math.log(28 / 10)
    raw[0, 0, 3, 1, 2] = math.log(28 / 10)
    raw[0, 0, 4, 1, 2] = 0.0
    spared = yolo_loss([raw.reshape(1, 16, 4, 4)], [HEAD], TARGET, (64, 64))
    strict = YoloHead(HEAD.anchors, HEAD.mask, HEAD.classes, ignore_thresh=1.0)
    pushed = yolo_loss([raw.reshape(1, 16, 4, 4)], [strict], TARGET, (64, 64))
    assert spared.objectness.item() == pytest.approx(0.0, abs=1e-10)
    assert pushed.objectness.item() == pytest.approx(math.log(2), rel=1e-6)


def test_only_the_head_holding_the_best_anchor_trains_on_a_box():
    small = YoloHead(HEAD.anchors, mask=(0,), classes=3)
    large = YoloHead(HEAD.anchors, mask=(1,), classes=3)
    maps = [torch.zeros(1, 8, 8, 8), perfect_map().view(1, 2, 8, 4, 4)[:, 1]]
    parts = yolo_loss(maps, [small, large], TARGET, (64, 64))
    assert parts.assigned == 1  # the 30x30 anchor's head, not the 8x8 grid of the 10x10 one
    # The small head has no box: every one of its 64 cells is pushed to "no object".
    assert parts.objectness.item() == pytest.approx(64 * math.log(2), rel=1e-6)
    assert parts.classes.item() == pytest.approx(0.0, abs=1e-10)


def test_iou_thresh_lets_every_anchor_that_overlaps_enough_train_on_a_box():
    # A 20x20 box against anchors 10x10 (shape IoU 100/400 = 0.25) and 30x30 (400/900 = 0.44):
    # the 30x30 one is best; with iou_thresh 0.2 the 10x10 one trains on it too, even in the
    # other head (AlexeyAB's rule), and at 0.3 it does not.
    target = [torch.tensor([[1.0, 30.0, 14.0, 50.0, 34.0]])]  # centre (40, 24): cell (2, 1)
    maps = [torch.zeros(1, 8, 8, 8), torch.zeros(1, 8, 4, 4)]
    for thresh, assigned in ((1.0, 1), (0.3, 1), (0.2, 2)):
        small = YoloHead(HEAD.anchors, mask=(0,), classes=3, iou_thresh=thresh)
        large = YoloHead(HEAD.anchors, mask=(1,), classes=3, iou_thresh=thresh)
        parts = yolo_loss(maps, [small, large], target, (64, 64))
        assert parts.assigned == assigned, thresh
        # All-zero maps: each assigned box costs 3 * log(2) of class cross-entropy.
        assert parts.classes.item() == pytest.approx(assigned * 3 * math.log(2), rel=1e-6)
    # The small head's anchor trains in its own cell (5, 3) of the 8x8 grid: its offset
    # (40/8 - 5, 24/8 - 3) = (0, 0) and log(20/10) make its coordinate error.
    parts = yolo_loss(maps, [small, large], target, (64, 64))
    scale = 2 - 400 / 4096
    small_error = scale * (2 * 0.5**2 + 2 * math.log(2) ** 2)
    large_error = scale * (2 * (0.5 - 0.5) ** 2 + 2 * math.log(20 / 30) ** 2)
    assert parts.coordinates.item() == pytest.approx(small_error + large_error, rel=1e-6)


def test_cls_normalizer_weighs_the_class_term_and_nothing_else():
    raw = perfect_map().view(1, 2, 8, 4, 4)
    raw[0, 1, 0, 1, 2] = 1.0  # a coordinate error ...
    raw[0, 1, 5 + 2, 1, 2] = 0.0  # ... the right class at probability 0.5 (log 2) ...
    raw[0, 0, 4, 3, 3] = 0.0  # ... and an objectness error, as in test_each_term_by_hand
    raw = raw.reshape(1, 16, 4, 4)
    plain = yolo_loss([raw], [HEAD], TARGET, (64, 64))
    heavy = YoloHead(HEAD.anchors, HEAD.mask, HEAD.classes, cls_normalizer=2.5)
    parts = yolo_loss([raw], [heavy], TARGET, (64, 64))
    assert parts.classes.item() == pytest.approx(2.5 * math.log(2), rel=1e-6)
    assert plain.classes.item() == pytest.approx(math.log(2), rel=1e-6)
    assert parts.coordinates.item() == pytest.approx(plain.coordinates.item(), rel=1e-9)
    assert parts.objectness.item() == pytest.approx(plain.objectness.item(), rel=1e-9)


def test_yolo_heads_read_alexeyabs_keys_from_the_cfg():
    # pjreddie's cfg files have neither key: both default to off (1).
    heads = yolo_heads(yolov3_tiny(num_classes=3, size=64).plan)
    assert {(h.iou_thresh, h.cls_normalizer) for h in heads} == {(1, 1)}
    text = scenes_cfg(classes=3, channels=1, size=64)
    assert "iou_thresh=0.5" in text and "cls_normalizer=2.0" in text
    text = text.replace("cls_normalizer=2.0", "cls_normalizer=3.5")
    heads = yolo_heads(DarknetDetector(text, "test").plan)
    assert [(h.iou_thresh, h.cls_normalizer, h.classes) for h in heads] == [(0.5, 3.5, 3)] * 2


def test_an_empty_scene_trains_objectness_only():
    parts = yolo_loss([torch.zeros(2, 16, 4, 4)], [HEAD], [torch.zeros(0, 5)] * 2, (64, 64))
    assert parts.assigned == 0 and parts.coordinates.item() == 0.0
    assert parts.objectness.item() == pytest.approx(32 * math.log(2), rel=1e-6)  # 64 / batch 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="needs 16 channels; its input has 15"):
        yolo_loss([torch.zeros(1, 15, 4, 4)], [HEAD], TARGET, (64, 64))
    with pytest.raises(ValueError, match=r"\(M, 5\) tensor.*shape \(4,\)"):
        yolo_loss([torch.zeros(1, 16, 4, 4)], [HEAD], [torch.zeros(4)], (64, 64))
    with pytest.raises(ValueError, match="mask must index the 2 anchors"):
        YoloHead(HEAD.anchors, mask=(2,), classes=3)
    with pytest.raises(ValueError, match=r"cls_normalizer must be a number >= 0.*=-1"):
        YoloHead(HEAD.anchors, mask=(0,), classes=3, cls_normalizer=-1)


def test_gradient_descent_finds_the_box():
    torch.manual_seed(0)
    raw = (0.01 * torch.randn(1, 16, 4, 4)).requires_grad_()
    optimizer = torch.optim.Adam([raw], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        yolo_loss([raw], [HEAD], TARGET, (64, 64)).total.backward()
        optimizer.step()
    p = raw.detach().view(2, 8, 4, 4)
    assert p[:, 4].argmax().item() == 1 * 16 + 1 * 4 + 2  # anchor 1, row 1, column 2
    tx, ty, tw, th = p[1, :4, 1, 2]
    x, y = (tx.sigmoid() + 2) * 16, (ty.sigmoid() + 1) * 16
    w, h = tw.exp() * 30, th.exp() * 30
    found = torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2])[None]
    assert box_iou(found, TARGET[0][:, 1:]).item() > 0.95
    assert F.softmax(p[1, 5:, 1, 2], 0).argmax().item() == 2
