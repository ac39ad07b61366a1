"""Per-class NMS against a brute-force transcription of Darknet's do_nms_sort, and by hand."""

from __future__ import annotations

import pytest
import torch

from cnnlab.detect import center_iou, do_nms_sort
from cnnlab.detect.nms import score_rows


def reference_iou(a: list[float], b: list[float]) -> float:
    """box.c's box_iou in plain Python floats: overlap of the centre intervals."""

    def overlap(x1: float, w1: float, x2: float, w2: float) -> float:
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)

    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes: list[list[float]], scores: list[list[float]], thresh: float):
    """do_nms_sort literally: per class, sort by that class's score, each still-scored box
    zeroes the later boxes it overlaps by more than ``thresh``."""
    scores = [row[:] for row in scores]
    for cls in range(len(scores[0])):
        order = sorted(range(len(boxes)), key=lambda i: -scores[i][cls])
        for rank, i in enumerate(order):
            if scores[i][cls] == 0:
                continue
            for j in order[rank + 1 :]:
                if reference_iou(boxes[i], boxes[j]) > thresh:
                    scores[j][cls] = 0.0
    return scores


def random_detections(seed: int, count: int = 60, classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 2, generator=generator)
    sizes = torch.rand(count, 2, generator=generator) * 0.4 + 0.02
    boxes = torch.cat((centres, sizes), dim=1).double()
    scores = torch.rand(count, classes, generator=generator).double()
    scores[scores < 0.5] = 0  # Darknet's thresholded scores: many zeros
    return boxes, scores


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("thresh", [0.3, 0.45])
def test_nms_equals_brute_force(seed, thresh):
    boxes, scores = random_detections(seed)
    ours = do_nms_sort(boxes, scores, thresh)
    expected = reference_nms(boxes.tolist(), scores.tolist(), thresh)
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))
    assert 0 < (ours > 0).sum() < (scores > 0).sum()  # something kept, something suppressed


def test_iou_equals_reference():
    boxes, _ = random_detections(3, count=30)
    expected = [[reference_iou(a, b) for b in boxes.tolist()] for a in boxes.tolist()]
    torch.testing.assert_close(
        center_iou(boxes, boxes), torch.tensor(expected, dtype=torch.float64)
    )


def test_iou_by_hand():
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])  # corners (0, 0)-(2, 2)
    b = torch.tensor([[2.0, 1.0, 2.0, 2.0], [5.0, 5.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    # half overlapping: 2 / (4 + 4 - 2); apart; a point box inside: 0 / 4
    torch.testing.assert_close(center_iou(a, b), torch.tensor([[1 / 3, 0.0, 0.0]]))


def test_suppressed_box_suppresses_nothing_and_classes_are_separate():
    # A overlaps B (IoU 1/3), B overlaps C (1/3), A and C do not touch
    boxes = torch.tensor([[1.0, 1, 2, 2], [2, 1, 2, 2], [3, 1, 2, 2]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.7, 0.0]])
    kept = do_nms_sort(boxes, scores, 0.3)
    # class 0: A keeps, B is dropped, C stays (only B overlapped it); class 1: B alone stays
    torch.testing.assert_close(kept, torch.tensor([[0.9, 0.0], [0.0, 0.7], [0.7, 0.0]]))
    # at nms 0.35 the overlaps of 1/3 are not above it: nothing is dropped
    torch.testing.assert_close(do_nms_sort(boxes, scores, 0.35), scores)


def test_rows_are_one_per_box_and_class_best_first():
    corners = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2]])
    scores = torch.tensor([[0.6, 0.0], [0.7, 0.9]])
    rows = score_rows(corners, scores)
    expected = [[1, 0, 3, 2, 0.9, 1], [1, 0, 3, 2, 0.7, 0], [0, 0, 2, 2, 0.6, 0]]
    torch.testing.assert_close(rows, torch.tensor(expected))


def test_bad_threshold_and_shapes_are_refused():
    boxes, scores = random_detections(0, count=4)
    with pytest.raises(ValueError, match=r"nms must be an IoU threshold in \[0, 1\]"):
        do_nms_sort(boxes, scores, 1.5)
    with pytest.raises(ValueError, match=r"expected boxes \(M, 4\)"):
        do_nms_sort(boxes[:, :3], scores, 0.45)


@pytest.mark.parametrize("most", [1, 3, 10])
def test_keep_per_class_is_the_best_of_the_full_result(most):
    """Stopping each class's walk after ``most`` kept boxes gives exactly the ``most`` best
    boxes the full NMS keeps, and nothing else (what COCO's 100 detections per class need)."""
    generator = torch.Generator().manual_seed(11)
    boxes = torch.cat(
        [
            torch.rand(300, 2, generator=generator),
            0.05 + 0.2 * torch.rand(300, 2, generator=generator),
        ],
        1,
    ).double()
    scores = torch.rand(300, 4, generator=generator) * (
        torch.rand(300, 4, generator=generator) < 0.6
    )
    full = do_nms_sort(boxes, scores, 0.45)
    capped = do_nms_sort(boxes, scores, 0.45, keep_per_class=most)
    for cls in range(4):
        kept = torch.nonzero(full[:, cls]).flatten()
        best = kept[torch.argsort(-full[kept, cls], stable=True)][:most]
        expected = torch.zeros(300, dtype=scores.dtype)
        expected[best] = full[best, cls]
        torch.testing.assert_close(capped[:, cls], expected)
        assert (full[:, cls] > 0).sum() > most  # the cap did cut something
