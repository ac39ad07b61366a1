"""A detector scored on a detection set: batched detections, COCO mAP, and the files.

    from cnnlab.detect.evaluate import evaluate_detector
    result = evaluate_detector(detector, data.test, data.classes, out="runs/eval")
    result.metrics.map50, result.images_per_second

Detection for mAP uses a low score threshold, as Darknet's ``validate_detector`` does (0.005,
NMS 0.45): a ranked list that runs far down the scores is what average precision measures.
The images go through the network in batches; each image's rows are what
``Detector.detect_array`` gives for it alone.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.detect.datasets import DetectionSet
from cnnlab.detect.metrics import (
    MAX_DETECTIONS,
    DetectionMetrics,
    coco_evaluate,
    plot_precision_recall,
)
from cnnlab.runtime.files import write_json
from cnnlab.runtime.validate import check_positive_int

EVALUATION_THRESH = 0.005  # validate_detector's thresh in Darknet's examples/detector.c
GREY = (0.299, 0.587, 0.114)  # PIL's L, the detector's own grey conversion


@dataclass(frozen=True)
class DetectorEvaluation:
    metrics: DetectionMetrics
    predictions: list[torch.Tensor]
    seconds: float
    thresh: float
    nms: float
    files: dict[str, str]

    @property
    def images_per_second(self) -> float:
        return self.metrics.images / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return self.metrics.as_dict() | {
            "thresh": self.thresh,
            "nms": self.nms,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
            "files": self.files,
        }


def predict_set(detector: Any, part: DetectionSet, *, batch_size: int = 32) -> list[torch.Tensor]:
    """``detector``'s (K, 6) rows for every image of ``part``, in the images' pixels."""
    check_positive_int("batch_size", batch_size)
    height, width = part.image_shape[1:]
    rows: list[torch.Tensor] = []
    for start in range(0, len(part), batch_size):
        images = part.images[start : start + batch_size].cpu().float() / 255  # (B, C, H, W)
        images = _channels(images, detector.channels)
        if (height, width) != tuple(detector.net_size):  # Darknet's letterbox, image by image
            images = torch.stack([detector.letterbox(image.numpy()) for image in images])
        raws = detector.raw_outputs(images)
        rows += detector.postprocess(raws, [(height, width)] * len(images))
    return rows


def _channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor(GREY).reshape(1, 3, 1, 1)
        return ((images * 255 * weights).sum(1, keepdim=True).round() / 255).clamp(0, 1)
    raise ValueError(f"the detector takes {channels} channels; the images have {images.shape[1]}")


def evaluate_detector(
    detector: Any,
    part: DetectionSet,
    classes: tuple[str, ...] | list[str],
    *,
    out: str | os.PathLike[str] | None = None,
    thresh: float = EVALUATION_THRESH,
    batch_size: int = 32,
    candidates: int | None = None,
) -> DetectorEvaluation:
    """Detect in every image of ``part`` at score threshold ``thresh``, then COCO mAP by
    pycocotools; with ``out``, write ``metrics.json`` and ``pr.png`` there.

    NMS keeps the best ``MAX_DETECTIONS`` boxes per image, all that COCO's rule scores (its
    walk stops after as many per class: the same numbers, sooner). ``candidates`` also limits
    the boxes NMS sees per image to the best ones by any class score: an untrained network
    passes the 0.005 threshold with nearly every anchor, and NMS over thousands of boxes per
    image takes minutes per evaluation; training evaluates with a limit, ``cnnlab evaluate``
    without."""
    if detector.classes != len(classes):
        raise ValueError(
            f"the detector has {detector.classes} classes and the data {len(classes)}: "
            f"expected the data it was trained for"
        )
    evaluating = copy.copy(detector)
    evaluating.thresh = thresh
    evaluating.keep_per_class = MAX_DETECTIONS
    evaluating.candidates = candidates
    start = time.perf_counter()
    predictions = predict_set(evaluating, part, batch_size=batch_size)
    seconds = time.perf_counter() - start
    metrics = coco_evaluate(predictions, part, classes)
    files = {}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        files["pr"] = str(plot_precision_recall(metrics, classes, folder / "pr.png"))
        files["metrics"] = str(folder / "metrics.json")
    result = DetectorEvaluation(metrics, predictions, seconds, thresh, detector.nms, files)
    if out is not None:
        write_json(files["metrics"], result.as_dict())
    return result
