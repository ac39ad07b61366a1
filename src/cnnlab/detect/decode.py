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


def threshold_scores(
    objectness: torch.Tensor, probabilities: torch.Tensor, thresh: float
) -> torch.Tensor:
    """(..., C) objectness * p(class) where the objectness and the product both exceed
    ``thresh``, else 0 (get_region_detections / get_yolo_detections)."""
    scores = objectness[..., None] * probabilities
    keep = (objectness[..., None] > thresh) & (scores > thresh)
    return torch.where(keep, scores, torch.zeros_like(scores))


@dataclass(frozen=True)
class Decoded:
    """A batch of decoded predictions, M = every anchor of every cell of every head:
    ``boxes`` (N, M, 4) centre x, y, width, height relative to the network input,
    ``objectness`` (N, M) and ``probabilities`` (N, M, C), each class's activated value."""

    boxes: torch.Tensor
    objectness: torch.Tensor
    probabilities: torch.Tensor

    def scores(self, thresh: float) -> torch.Tensor:
        """(N, M, C) thresholded class scores (``threshold_scores``)."""
        return threshold_scores(self.objectness, self.probabilities, thresh)


def _check_channels(head: DetectionHead, raw: torch.Tensor) -> None:
    if raw.shape[-3] != len(head.anchors) * head.entries:
        raise ValueError(
            f"layer {head.layer}: expected {len(head.anchors)} x {head.entries} channels, "
            f"got {raw.shape[-3]}"
        )


def _decode_entries(
    head: DetectionHead,
    entries: torch.Tensor,
    where: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grid: tuple[int, int],
    net_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (K, 4), objectness (K,) and class probabilities (K, C) of K raw entry vectors
    (K, 5 + C) at ``where`` = (anchor, row, column) of a ``grid`` = (H, W) map."""
    anchor, row, col = where
    height, width = grid
    scale_h, scale_w = grid if head.kind is HeadKind.region else net_size
    anchors = torch.tensor(head.anchors, dtype=torch.float32, device=entries.device)[anchor]
    x = (col + torch.sigmoid(entries[:, 0])) / width
    y = (row + torch.sigmoid(entries[:, 1])) / height
    w = torch.exp(entries[:, 2]) * anchors[:, 0] / scale_w
    h = torch.exp(entries[:, 3]) * anchors[:, 1] / scale_h
    logits = entries[:, 5:]
    classes = logits.softmax(dim=1) if head.softmax else torch.sigmoid(logits)
    return torch.stack((x, y, w, h), dim=1), torch.sigmoid(entries[:, 4]), classes


def decode_head(head: DetectionHead, raw: torch.Tensor, net_size: tuple[int, int]) -> Decoded:
    """Decode every anchor of one head's raw map (N, A * (5 + C), H, W) for a network input of
    ``net_size`` = (height, width); M = A * H * W, anchor-major, then row, then column."""
    _check_channels(head, raw)
    n, _, height, width = raw.shape
    count = len(head.anchors)
    maps = raw.float().reshape(n, count, head.entries, height, width)
    entries = maps.permute(0, 1, 3, 4, 2).reshape(-1, head.entries)  # (N * M, 5 + C)
    index = torch.arange(count * height * width, device=raw.device).repeat(n)
    where = (index // (height * width), index // width % height, index % width)
    boxes, objectness, probabilities = _decode_entries(
        head, entries, where, (height, width), net_size
    )
    return Decoded(
        boxes.reshape(n, -1, 4),
        objectness.reshape(n, -1),
        probabilities.reshape(n, -1, head.classes),
    )


def head_detections(
    head: DetectionHead, raw: torch.Tensor, net_size: tuple[int, int], thresh: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's boxes (K, 4) and thresholded scores (K, C) from a head's map
    (A * (5 + C), H, W), decoding only the K anchors whose objectness exceeds ``thresh``
    (the others score 0 in Darknet too): the fast path of ``Detector``."""
    _check_channels(head, raw)
    height, width = raw.shape[-2:]
    maps = raw.float().reshape(len(head.anchors), head.entries, height, width)
    where = torch.nonzero(torch.sigmoid(maps[:, 4]) > thresh, as_tuple=True)
    entries = maps.permute(0, 2, 3, 1)[where]  # (K, 5 + C)
    boxes, objectness, probabilities = _decode_entries(
        head, entries, where, (height, width), net_size
    )
    return boxes, threshold_scores(objectness, probabilities, thresh)


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
