"""Darknet's detection decoding: raw ``[region]`` and ``[yolo]`` maps to boxes and class scores.

A head's input is a convolution map (N, A * (5 + C), H, W): for each of its A anchors the
channels tx, ty, tw, th, objectness and C classes (Darknet's entry_index: anchor-major, then
entry, then cell). Both layers decode cell (i, j) and anchor (aw, ah) as (pjreddie/darknet 2018,
get_region_box / get_yolo_box)::

    x = (i + sigmoid(tx)) / W          w = exp(tw) * aw / W        (region: anchors in cells)
    y = (j + sigmoid(ty)) / H          h = exp(th) * ah / H
                                       w = exp(tw) * aw / net_w    (yolo: anchors in pixels)
                                       h = exp(th) * ah / net_h

relative to the network input. Objectness is logistic in both; classes are a softmax over the
C classes in a region layer with ``softmax=1`` (YOLOv2) and logistic otherwise and in a yolo
layer (YOLOv3). The score of class c is objectness * p(c), kept only where both the objectness
and the score exceed ``thresh`` (get_region_detections / get_yolo_detections; zero otherwise).
``correct_boxes`` undoes the letterbox (correct_region_boxes / correct_yolo_boxes). Darknet's
``hier_thresh`` only applies to hierarchical softmax trees (YOLO9000), which cnnlab refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from cnnlab.darknet.classify import letterbox_size
from cnnlab.darknet.network import LayerPlan, NetworkPlan

DARKNET_DEFAULT_BIAS = 0.5  # make_region_layer / make_yolo_layer: anchors missing from the cfg


class HeadKind(str, Enum):
    region = "region"
    yolo = "yolo"


@dataclass(frozen=True)
class DetectionHead:
    """One ``[region]`` or ``[yolo]`` layer: where it is, its anchors (mask applied; region in
    grid cells, yolo in input pixels), its class count and how its classes are activated."""

    kind: HeadKind
    layer: int
    anchors: tuple[tuple[float, float], ...]
    classes: int
    softmax: bool = False

    @property
    def entries(self) -> int:
        return 5 + self.classes

    @classmethod
    def from_plan(cls, plan: LayerPlan) -> DetectionHead:
        """The head of a planned ``[region]``/``[yolo]`` layer; refuses variants cnnlab does not
        decode (coords other than 4, background, softmax trees) naming the key."""
        section, settings = plan.section, plan.settings
        kind = HeadKind(plan.kind)
        num = settings["num"]
        flat = tuple(float(v) for v in settings.get("anchors") or ())
        if flat and len(flat) < 2 * num:
            raise section.error("anchors", f"expected {num} (w, h) pairs, got {len(flat)} numbers")
        pairs = [
            (flat[2 * n], flat[2 * n + 1]) if flat else (DARKNET_DEFAULT_BIAS,) * 2
            for n in range(num)
        ]
        if kind is HeadKind.region:
            for key, allowed in (("coords", 4), ("background", 0)):
                if section.get(key, allowed) != allowed:
                    raise section.error(key, f"cnnlab decodes only {key}={allowed}")
            if section.has("tree"):
                raise section.error("tree", "hierarchical softmax (YOLO9000) is not decoded")
            anchors, softmax = tuple(pairs), bool(section.get("softmax", 0))
        else:
            mask = settings["mask"]
            if any(not 0 <= m < num for m in mask):
                raise section.error("mask", f"expected indices of the {num} anchors, got {mask}")
            anchors, softmax = tuple(pairs[m] for m in mask), False
        return cls(kind, plan.index, anchors, settings["classes"], softmax)


def detection_heads(plan: NetworkPlan) -> tuple[DetectionHead, ...]:
    """Every ``[region]`` and ``[yolo]`` layer of a network, in order."""
    heads = tuple(
        DetectionHead.from_plan(layer)
        for layer in plan.layers
        if layer.kind in HeadKind.__members__
    )
    if not heads:
        raise ValueError(
            f"{plan.cfg.source} has no [region] or [yolo] layer: expected a detector's cfg"
        )
    if len({head.classes for head in heads}) > 1:
        raise ValueError(f"{plan.cfg.source}: its detection layers disagree on classes")
    return heads


@dataclass(frozen=True)
class Decoded:
    """A batch of decoded predictions, M = every anchor of every cell of every head:
    ``boxes`` (N, M, 4) centre x, y, width, height relative to the network input,
    ``objectness`` (N, M) and ``probabilities`` (N, M, C), each class's activated value."""

    boxes: torch.Tensor
    objectness: torch.Tensor
    probabilities: torch.Tensor

    def scores(self, thresh: float) -> torch.Tensor:
        """(N, M, C) objectness * p(class) where the objectness and the product both exceed
        ``thresh``, else 0 (get_region_detections / get_yolo_detections)."""
        scores = self.objectness[..., None] * self.probabilities
        keep = (self.objectness[..., None] > thresh) & (scores > thresh)
        return torch.where(keep, scores, torch.zeros_like(scores))


def decode_head(head: DetectionHead, raw: torch.Tensor, net_size: tuple[int, int]) -> Decoded:
    """Decode one head's raw map (N, A * (5 + C), H, W) for a network input of
    ``net_size`` = (height, width)."""
    n, channels, height, width = raw.shape
    count = len(head.anchors)
    if channels != count * head.entries:
        raise ValueError(
            f"layer {head.layer}: expected {count} x {head.entries} channels, got {channels}"
        )
    maps = raw.float().reshape(n, count, head.entries, height, width)
    anchors = torch.tensor(head.anchors, dtype=torch.float32, device=raw.device)  # (A, 2)
    if head.kind is HeadKind.region:
        scale_w, scale_h = width, height
    else:
        scale_w, scale_h = net_size[1], net_size[0]
    cols = torch.arange(width, dtype=torch.float32, device=raw.device)
    rows = torch.arange(height, dtype=torch.float32, device=raw.device)[:, None]
    x = (cols + torch.sigmoid(maps[:, :, 0])) / width  # (N, A, H, W)
    y = (rows + torch.sigmoid(maps[:, :, 1])) / height
    w = torch.exp(maps[:, :, 2]) * anchors[:, 0, None, None] / scale_w
    h = torch.exp(maps[:, :, 3]) * anchors[:, 1, None, None] / scale_h
    boxes = torch.stack((x, y, w, h), dim=-1).reshape(n, -1, 4)
    objectness = torch.sigmoid(maps[:, :, 4]).reshape(n, -1)
    logits = maps[:, :, 5:]  # (N, A, C, H, W)
    classes = logits.softmax(dim=2) if head.softmax else torch.sigmoid(logits)
    probabilities = classes.permute(0, 1, 3, 4, 2).reshape(n, -1, head.classes)
    return Decoded(boxes, objectness, probabilities)


def decode(
    heads: tuple[DetectionHead, ...], raws: list[torch.Tensor], net_size: tuple[int, int]
) -> Decoded:
    """Decode every head and join their predictions along M (heads in order)."""
    parts = [decode_head(head, raw, net_size) for head, raw in zip(heads, raws, strict=True)]
    return Decoded(
        torch.cat([p.boxes for p in parts], dim=1),
        torch.cat([p.objectness for p in parts], dim=1),
        torch.cat([p.probabilities for p in parts], dim=1),
    )


def correct_boxes(
    boxes: torch.Tensor, image_size: tuple[int, int], net_size: tuple[int, int]
) -> torch.Tensor:
    """Boxes (..., 4) relative to the letterboxed network input -> relative to the original
    image of ``image_size`` = (height, width) (Darknet's correct_yolo_boxes, relative=1)."""
    net_h, net_w = net_size
    new_w, new_h = letterbox_size(image_size[1], image_size[0], net_w, net_h)
    x = (boxes[..., 0] - (net_w - new_w) / 2.0 / net_w) / (new_w / net_w)
    y = (boxes[..., 1] - (net_h - new_h) / 2.0 / net_h) / (new_h / net_h)
    w = boxes[..., 2] * (net_w / new_w)
    h = boxes[..., 3] * (net_h / new_h)
    return torch.stack((x, y, w, h), dim=-1)


def to_pixel_corners(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Relative centre boxes (..., 4) -> x1, y1, x2, y2 in image pixels, clipped to the image
    as Darknet's print_cocos writes its COCO results."""
    height, width = image_size
    x, y, w, h = boxes.unbind(-1)
    corners = torch.stack(((x - w / 2) * width, (y - h / 2) * height,
                           (x + w / 2) * width, (y + h / 2) * height), dim=-1)  # fmt: skip
    limit = torch.tensor([width, height, width, height], dtype=corners.dtype)
    return torch.minimum(corners.clamp(min=0), limit.to(corners.device))
