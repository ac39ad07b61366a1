"""Per-class non-maximum suppression with Darknet's ``do_nms_sort`` semantics, in torch.

Darknet (pjreddie/darknet 2018, box.c) keeps, for each detection, a score per class. For each
class separately it sorts the detections by that class's score, highest first, and walks down
the list: a detection whose score is still above 0 sets to 0 the score of that class in every
later detection whose box overlaps it by an IoU above the threshold. A suppressed detection
suppresses nothing, and suppression in one class leaves the others alone: one box can report
two classes. Boxes are centre x, y, width, height (IoU is the same in any units).
"""

from __future__ import annotations

import numpy as np
import torch


def center_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Darknet's box_iou of centre boxes a (M, 4) and b (K, 4): (M, K); 0 where the boxes do
    not overlap, and where both have no area."""
    left = torch.maximum(a[:, None, 0] - a[:, None, 2] / 2, b[None, :, 0] - b[None, :, 2] / 2)
    right = torch.minimum(a[:, None, 0] + a[:, None, 2] / 2, b[None, :, 0] + b[None, :, 2] / 2)
    top = torch.maximum(a[:, None, 1] - a[:, None, 3] / 2, b[None, :, 1] - b[None, :, 3] / 2)
    bottom = torch.minimum(a[:, None, 1] + a[:, None, 3] / 2, b[None, :, 1] + b[None, :, 3] / 2)
    width, height = right - left, bottom - top
    inter = torch.where((width < 0) | (height < 0), torch.zeros_like(width), width * height)
    union = (a[:, None, 2] * a[:, None, 3]) + (b[None, :, 2] * b[None, :, 3]) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def greedy_keep(overlaps: np.ndarray, scores: np.ndarray, most: int | None = None) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps among those with a score above 0, best first (of
    equal scores the earlier box first); ``overlaps``[i, j]: box i overlaps box j above the
    threshold. With ``most``, the walk stops after ``most`` kept boxes: the first ``most`` of
    the full result, exactly (a box is kept or not by the better boxes alone)."""
    order = np.flatnonzero(scores > 0)
    order = order[np.argsort(-scores[order], kind="stable")]
    removed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for i in range(len(order)):
        if not removed[i]:
            kept.append(i)
            if most is not None and len(kept) == most:
                break
            removed[i + 1 :] |= overlaps[order[i], order[i + 1 :]]
    return order[np.asarray(kept, dtype=np.int64)]


def do_nms_sort(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    *,
    keep_per_class: int | None = None,
) -> torch.Tensor:
    """Darknet's per-class NMS: boxes (M, 4) centre form, scores (M, C) with 0 for "not this
    class"; returns the scores with every suppressed (box, class) set to 0. The overlaps of the
    boxes with any score are computed once for all classes, and the walk down each class's
    list runs in NumPy (a handful of boxes: PyTorch's per-call cost would dominate).
    ``keep_per_class`` also zeroes each class's kept boxes after its best ``keep_per_class``
    (what COCO's evaluation looks at: the walk stops there, exactly as far as it went)."""
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"nms must be an IoU threshold in [0, 1]. Received: nms={iou_threshold}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"expected boxes (M, 4) and scores (M, C), got {tuple(boxes.shape)} and "
            f"{tuple(scores.shape)}"
        )
    kept = torch.zeros_like(scores)
    scored = torch.nonzero((scores > 0).any(dim=1)).flatten()  # boxes with any class left
    if scored.numel() == 0:
        return kept
    overlaps = (center_iou(boxes[scored], boxes[scored]) > iou_threshold).cpu().numpy()
    part = scores[scored].cpu().numpy()  # (K, C)
    survivors = np.zeros_like(part)
    for cls in np.flatnonzero((part > 0).any(axis=0)):
        keep = greedy_keep(overlaps, part[:, cls], keep_per_class)
        survivors[keep, cls] = part[keep, cls]
    kept[scored] = torch.from_numpy(survivors).to(kept.device)
    return kept


def score_rows(corners: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(K, 6) rows x1, y1, x2, y2, score, class: one per (box, class) with a score above 0,
    highest score first."""
    box_index, cls = torch.nonzero(scores > 0, as_tuple=True)
    values = scores[box_index, cls]
    order = torch.argsort(values, descending=True, stable=True)
    box_index, cls, values = box_index[order], cls[order], values[order]
    return torch.cat(
        (corners[box_index].float(), values[:, None].float(), cls[:, None].float()), dim=1
    )
