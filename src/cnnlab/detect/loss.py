"""The YOLOv3 training loss: anchor assignment and the four terms, on raw ``[yolo]`` maps.

A ``[yolo]`` layer's input is a convolution map (N, A * (5 + C), H, W) for the A anchors its
``mask`` selects. For anchor a in cell (i, j) the channels are tx, ty, tw, th, objectness and C
class logits; the box they describe, in input pixels, is::

    x = (sigmoid(tx) + i) * stride_x        w = exp(tw) * anchor_w
    y = (sigmoid(ty) + j) * stride_y        h = exp(th) * anchor_h

Assignment (as Darknet's ``forward_yolo_layer``): each ground-truth box goes to the one anchor,
over every head's anchors, whose shape (w, h, both centred) overlaps it best, in the cell holding
its centre; only the head whose mask holds that anchor trains on it. With a head's
``iou_thresh`` below 1 (AlexeyAB's Darknet, e.g. 0.213 in yolov4.cfg) every other anchor of the
head whose shape overlaps the box by more than it trains on the box too. Terms, summed over the
batch and divided by its size:

- coordinates: squared error of sigmoid(tx), sigmoid(ty) against the centre's offset in its
  cell, and of tw, th against log(w / anchor_w), log(h / anchor_h), each weighted by
  ``2 - w * h / (input area)`` (small boxes count more);
- objectness: binary cross-entropy, 1 where a box is assigned, 0 elsewhere, except predictions
  whose decoded box already overlaps a ground truth by more than ``ignore_thresh`` (IoU), which
  are not pushed towards 0 (Darknet's ignore rule);
- classes: binary cross-entropy of each class logit (sigmoid, not softmax: YOLOv3) where a box
  is assigned, times the head's ``cls_normalizer`` (AlexeyAB's Darknet's [yolo] key, default 1:
  it scales the class deltas the same way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TW_LIMIT = 8.0  # exp(8) ~ 3,000 anchor widths: beyond any image, and no overflow in fp16/fp32


@dataclass(frozen=True)
class YoloHead:
    """One ``[yolo]`` layer: every anchor of the network (w, h in input pixels), the indices of
    this head's anchors (``mask``), the number of classes, the ignore threshold, the shape
    overlap above which an anchor that is not the best one trains on a box too (1: never), and
    the weight of the class term."""

    anchors: tuple[tuple[float, float], ...]
    mask: tuple[int, ...]
    classes: int
    ignore_thresh: float = 0.7
    iou_thresh: float = 1.0
    cls_normalizer: float = 1.0

    def __post_init__(self) -> None:
        if not self.anchors or any(w <= 0 or h <= 0 for w, h in self.anchors):
            raise ValueError(
                f"anchors must be positive (w, h) pairs. Received: anchors={self.anchors!r}"
            )
        if not self.mask or any(not 0 <= m < len(self.anchors) for m in self.mask):
            raise ValueError(
                f"mask must index the {len(self.anchors)} anchors. Received: mask={self.mask!r}"
            )
        if self.classes < 1:
            raise ValueError(f"classes must be at least 1. Received: classes={self.classes!r}")
        if not self.cls_normalizer >= 0:
            raise ValueError(
                "cls_normalizer must be a number >= 0. "
                f"Received: cls_normalizer={self.cls_normalizer!r}"
            )


@dataclass(frozen=True)
class LossParts:
    """The loss terms of one batch (each already divided by the batch size)."""

    coordinates: torch.Tensor
    objectness: torch.Tensor
    classes: torch.Tensor
    assigned: int  # ground-truth boxes that a head trained on

    @property
    def total(self) -> torch.Tensor:
        return self.coordinates + self.objectness + self.classes


def shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (M, 2) and anchors (A, 2) when both are centred at the same point: (M, A)."""
    inter = torch.minimum(wh[:, None, 0], anchors[None, :, 0]) * torch.minimum(
        wh[:, None, 1], anchors[None, :, 1]
    )
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes a (..., P, 4) and b (..., M, 4): (..., P, M).

    Computed coordinate by coordinate on (..., P, M) tensors, in place where it can be (the
    loss's ignore rule calls it on every anchor of a batch against every box: 1.2 million
    pairs a yolo-scenes step)."""
    a_x1, a_y1, a_x2, a_y2 = (a[..., k, None] for k in range(4))  # (..., P, 1)
    b_x1, b_y1, b_x2, b_y2 = (b[..., None, :, k] for k in range(4))  # (..., 1, M)
    inter = torch.minimum(a_x2, b_x2).sub_(torch.maximum(a_x1, b_x1)).clamp_(min=0)
    inter.mul_(torch.minimum(a_y2, b_y2).sub_(torch.maximum(a_y1, b_y1)).clamp_(min=0))
    area_a = (a_x2 - a_x1).clamp_(min=0).mul_((a_y2 - a_y1).clamp_(min=0))
    area_b = (b_x2 - b_x1).clamp_(min=0).mul_((b_y2 - b_y1).clamp_(min=0))
    union = (area_a + area_b).sub_(inter).clamp_(min=1e-12)
    return inter.div_(union)


def yolo_loss(
    outputs: Sequence[torch.Tensor],
    heads: Sequence[YoloHead],
    targets: Sequence[torch.Tensor],
    input_size: tuple[int, int],
) -> LossParts:
    """The loss of raw ``[yolo]`` maps ``outputs`` (one per head) for ``targets``.

    ``targets`` holds per image a tensor (M, 5): class, x1, y1, x2, y2 in input pixels (M may
    be 0: a scene without objects), or is one (N, M, 5) tensor whose padding rows have class -1.
    ``input_size`` is the network's (height, width).
    """
    if len(outputs) != len(heads):
        raise ValueError(f"got {len(outputs)} output maps for {len(heads)} yolo heads")
    batch = outputs[0].shape[0]
    if len(targets) != batch:
        raise ValueError(f"got targets for {len(targets)} images, but a batch of {batch}")
    device = outputs[0].device
    in_h, in_w = input_size
    truth = _padded_targets(targets, device)  # (N, M, 5), class -1 for padding
    valid = truth[..., 0] >= 0
    boxes = truth[..., 1:]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    all_anchors = torch.tensor(heads[0].anchors, dtype=torch.float32, device=device)
    # (N, M, all anchors): the overlap of each box's shape with each anchor's, and the best
    shapes = shape_iou(size.reshape(-1, 2), all_anchors).reshape(*valid.shape, -1)
    best = F.one_hot(shapes.argmax(-1), len(heads[0].anchors)).bool()
    zero = outputs[0].new_zeros(())
    coordinates, objectness, classes, assigned = zero, zero, zero, 0
    for output, head in zip(outputs, heads, strict=True):
        n, channels, grid_h, grid_w = output.shape
        anchors = len(head.mask)
        if channels != anchors * (5 + head.classes):
            raise ValueError(
                f"a yolo head with {anchors} anchors and {head.classes} classes needs "
                f"{anchors * (5 + head.classes)} channels; its input has {channels}"
            )
        p = output.float().view(n, anchors, 5 + head.classes, grid_h, grid_w)
        p = p.permute(0, 1, 3, 4, 2)  # (N, A, H, W, 5 + C)
        stride = torch.tensor([in_w / grid_w, in_h / grid_h], device=device)
        mask = list(head.mask)
        head_anchors = all_anchors[mask]  # (A, 2)

        # Which predictions to leave alone: already overlapping a ground truth enough (a mask,
        # no gradient: decoded without autograd's bookkeeping).
        if valid.any():
            with torch.no_grad():
                predicted = _decode(p, stride, head_anchors)  # (N, A, H, W, 4) corners
                iou = box_iou(predicted.reshape(n, -1, 4), boxes)  # (N, P, M)
            iou = iou.masked_fill(~valid[:, None, :], 0.0)
            ignore = (iou.max(-1).values > head.ignore_thresh).view(n, anchors, grid_h, grid_w)
        else:
            ignore = torch.zeros(p.shape[:4], dtype=torch.bool, device=device)

        # The boxes this head trains on, with which of its anchors, and where.
        mine = best[..., mask] | (shapes[..., mask] > head.iou_thresh)
        image, box, a = (mine & valid[..., None]).nonzero(as_tuple=True)
        cell = centre[image, box] / stride
        i = cell[:, 0].floor().long().clamp(0, grid_w - 1)
        j = cell[:, 1].floor().long().clamp(0, grid_h - 1)
        chosen = p[image, a, j, i]  # (K, 5 + C)
        obj_target = torch.zeros(p.shape[:4], device=device)
        obj_target[image, a, j, i] = 1.0
        weight = (~ignore).float()
        weight[image, a, j, i] = 1.0
        objectness = (
            objectness
            + (
                F.binary_cross_entropy_with_logits(p[..., 4], obj_target, reduction="none") * weight
            ).sum()
        )
        if image.numel():
            wh = size[image, box]
            scale = 2.0 - wh[:, 0] * wh[:, 1] / (in_w * in_h)
            offset = cell - torch.stack([i, j], 1).float()
            log_wh = torch.log(wh / head_anchors[a])
            xy_error = (chosen[:, :2].sigmoid() - offset).pow(2).sum(1)
            wh_error = (chosen[:, 2:4] - log_wh).pow(2).sum(1)
            coordinates = coordinates + ((xy_error + wh_error) * scale).sum()
            one_hot = F.one_hot(truth[image, box, 0].long(), head.classes).float()
            classes = classes + head.cls_normalizer * F.binary_cross_entropy_with_logits(
                chosen[:, 5:], one_hot, reduction="sum"
            )
            assigned += int(image.numel())
    return LossParts(coordinates / batch, objectness / batch, classes / batch, assigned)


def _decode(p: torch.Tensor, stride: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Corner boxes (N, A, H, W, 4) in input pixels of raw predictions (N, A, H, W, 5 + C)."""
    _, _, grid_h, grid_w, _ = p.shape
    j, i = torch.meshgrid(
        torch.arange(grid_h, device=p.device), torch.arange(grid_w, device=p.device), indexing="ij"
    )
    cells = torch.stack([i, j], -1).float()  # (H, W, 2) as (x, y)
    centre = (p[..., :2].sigmoid() + cells) * stride
    size = p[..., 2:4].clamp(max=TW_LIMIT).exp() * anchors[None, :, None, None, :]
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def _padded_targets(targets: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Per-image (M_k, 5) targets as one (N, max M_k, 5) tensor; padding rows have class -1.
    A (N, M, 5) tensor already padded so (what the trainer's batches hold) is used as it is."""
    if isinstance(targets, torch.Tensor) and targets.dim() == 3:
        if targets.shape[2] != 5:
            raise ValueError(
                "padded targets must be (N, M, 5): class (-1 for padding), x1, y1, x2, y2. "
                f"Received: shape {tuple(targets.shape)}"
            )
        return targets.to(device, torch.float32)
    most = max((int(t.shape[0]) for t in targets), default=0)
    out = torch.full((len(targets), max(most, 1), 5), -1.0, device=device)
    out[..., 1:] = 0.0
    for k, target in enumerate(targets):
        target = torch.as_tensor(target, dtype=torch.float32, device=device)
        if target.numel() and (target.dim() != 2 or target.shape[1] != 5):
            raise ValueError(
                "targets must hold per image a (M, 5) tensor: class, x1, y1, x2, y2. "
                f"Received: shape {tuple(target.shape)} for image {k}"
            )
        if target.numel():
            out[k, : target.shape[0]] = target
    if math.isnan(float(out.sum())):
        raise ValueError("targets hold NaN")
    return out


def yolo_heads(plan) -> list[YoloHead]:
    """The ``[yolo]`` layers of a planned network (``cnnlab.darknet.network.NetworkPlan``) as
    loss heads: all anchors, the mask, classes, ``ignore_thresh``, ``iou_thresh`` and
    ``cls_normalizer`` of each, in order."""
    heads = []
    for layer in plan.layers:
        if layer.kind == "region":
            raise ValueError(
                f"{plan.cfg.source} has a [region] head (YOLOv2): cnnlab trains [yolo] heads "
                "(YOLOv3's loss) only; expected a YOLOv3-style detector such as yolo-scenes "
                "or yolov3-tiny"
            )
        if layer.kind != "yolo":
            continue
        settings = layer.settings
        flat = [float(v) for v in settings["anchors"]]
        anchors = tuple((flat[2 * n], flat[2 * n + 1]) for n in range(len(flat) // 2))
        ignore = float(layer.section.get("ignore_thresh", 0.5))  # Darknet's default
        iou = float(layer.section.get("iou_thresh", 1.0))  # AlexeyAB's Darknet's default: off
        cls = float(layer.section.get("cls_normalizer", 1.0))  # AlexeyAB's default
        mask, classes = tuple(settings["mask"]), settings["classes"]
        heads.append(YoloHead(anchors, mask, classes, ignore, iou, cls))
    if not heads:
        raise ValueError(f"{plan.cfg.source} has no [yolo] layer: expected a YOLOv3 detector")
    return heads
