"""COCO detection metrics, computed by pycocotools (the reference implementation, not ours).

    from cnnlab.detect.metrics import coco_evaluate, plot_precision_recall
    result = coco_evaluate(predictions, data.test, data.classes)
    result.map, result.map50, result.per_class     # AP@[.5:.95], AP@0.5, {name: (AP, AP50)}
    plot_precision_recall(result, "pr.png")

``predictions`` holds one tensor (K, 6) per image: x1, y1, x2, y2, score, class in the image's
pixels (what ``cnnlab.detect.Detector.detect`` returns). Ground truth and predictions become
COCO dicts in memory (bbox = [x1, y1, x2 - x1, y2 - y1], category id = class + 1) and run
through ``COCOeval`` with iouType "bbox": 10 IoU thresholds .50:.05:.95, 101 recall points,
at most 100 detections per image. pycocotools is imported here only, when it is used.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

INSTALL_HINT = "pip install pycocotools (or pip install 'cnnlab[detect]')"
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


@dataclass(frozen=True)
class DetectionMetrics:
    """What ``COCOeval`` reports, per class and over all classes.

    ``precision`` is pycocotools' (T=10 IoUs, R=101 recall points, K classes) array for all
    areas at 100 detections; -1 where a class has no ground truth. ``per_class`` maps a class
    to (AP@[.5:.95], AP@0.5), None for a class without ground truth objects.
    """

    map: float  # AP@[.5:.95]
    map50: float
    map75: float
    map_small: float | None  # None: no ground truth object of that size (COCO's -1)
    map_medium: float | None
    map_large: float | None
    mar100: float
    per_class: dict[str, tuple[float | None, float | None]]
    precision: np.ndarray
    images: int
    objects: int
    detections: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "map_small": self.map_small,
            "map_medium": self.map_medium,
            "map_large": self.map_large,
            "mar100": self.mar100,
            "per_class": {
                name: {"ap": ap, "ap50": ap50} for name, (ap, ap50) in self.per_class.items()
            },
            "images": self.images,
            "objects": self.objects,
            "detections": self.detections,
            "computed_by": "pycocotools COCOeval (bbox)",
        }


def _pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError(
            f"COCO mAP needs pycocotools, which is not installed: {INSTALL_HINT}"
        ) from None
    return COCO, COCOeval


# COCO's results rule (and COCOeval's largest maxDets): at most 100 detections per image, the
# best by score; detectors' evaluations (Detectron's, MMDetection's) keep as many.
MAX_DETECTIONS = 100


def coco_evaluate(
    predictions: Sequence[torch.Tensor | np.ndarray],
    targets: Any,
    classes: Sequence[str],
) -> DetectionMetrics:
    """COCO mAP of ``predictions`` (one (K, 6) per image) against ``targets`` (a
    ``DetectionSet``, or a sequence of (boxes (M, 4), labels (M,)) pairs per image)."""
    COCO, COCOeval = _pycocotools()
    truth = _ground_truth(targets)
    if len(predictions) != len(truth):
        raise ValueError(
            f"predictions must hold one (K, 6) tensor per image: {len(truth)} images. "
            f"Received: {len(predictions)} tensors"
        )
    images = [{"id": i + 1, "width": 1, "height": 1} for i in range(len(truth))]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    gt = COCO()
    gt.dataset = {
        "images": images,
        "categories": categories,
        "annotations": _annotations(truth, len(classes), scored=False),
    }
    rows = [(_rows(p, i, len(classes)), None) for i, p in enumerate(predictions)]
    dt = COCO()
    dt.dataset = {
        "images": images,
        "categories": categories,
        "annotations": _annotations(rows, len(classes), scored=True),
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt.createIndex()
        evaluation = COCOeval(gt, dt, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [float(v) for v in evaluation.stats]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (T, R, K): all areas, 100 dets
    per_class = {}
    for k, name in enumerate(classes):
        ap, ap50 = precision[:, :, k], precision[0, :, k]
        per_class[name] = (
            float(ap[ap > -1].mean()) if (ap > -1).any() else None,
            float(ap50[ap50 > -1].mean()) if (ap50 > -1).any() else None,
        )
    return DetectionMetrics(
        map=stats[0],
        map50=stats[1],
        map75=stats[2],
        map_small=_defined(stats[3]),
        map_medium=_defined(stats[4]),
        map_large=_defined(stats[5]),
        mar100=stats[8],
        per_class=per_class,
        precision=np.array(precision),
        images=len(truth),
        objects=len(gt.dataset["annotations"]),
        detections=len(dt.dataset["annotations"]),
    )


def _defined(value: float) -> float | None:
    return None if value < 0 else value


def _ground_truth(targets: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    if hasattr(targets, "boxes_of"):
        return [
            (targets.boxes_of(i).cpu().numpy(), targets.labels_of(i).cpu().numpy())
            for i in range(len(targets))
        ]
    return [(np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(c)) for b, c in targets]


def _rows(prediction: torch.Tensor | np.ndarray, index: int, classes: int) -> np.ndarray:
    """The (K, 6) rows of one image; beyond ``MAX_DETECTIONS``, its best ones by score (in the
    order of a stable sort, as COCOeval's), the others dropped: COCO's rule for results."""
    rows = prediction.detach().cpu().numpy() if isinstance(prediction, torch.Tensor) else prediction
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError(
            f"predictions[{index}] must be (K, 6): x1, y1, x2, y2, score, class. "
            f"Received: shape {rows.shape}"
        )
    if len(rows) <= MAX_DETECTIONS:
        return rows
    return rows[np.sort(np.argsort(-rows[:, 4], kind="mergesort")[:MAX_DETECTIONS])]


def _annotations(
    per_image: list[tuple[np.ndarray, np.ndarray | None]], classes: int, *, scored: bool
) -> list[dict[str, Any]]:
    """COCO annotation dicts: ground truth (boxes, labels) or prediction rows (K, 6)."""
    annotations: list[dict[str, Any]] = []
    kind = "predictions" if scored else "targets"
    for index, (boxes, labels) in enumerate(per_image):
        boxes = np.asarray(boxes, dtype=np.float64)
        scores = None
        if scored:
            boxes, scores, labels = boxes[:, :4], boxes[:, 4], boxes[:, 5]
        labels = np.asarray(labels)
        wrong = (labels != np.floor(labels)) | (labels < 0) | (labels >= classes)
        if wrong.any():
            k = int(np.flatnonzero(wrong)[0])
            raise ValueError(
                f"{kind}[{index}] row {k}: class {labels[k]} is not a class id 0..{classes - 1}"
            )
        infinite = ~np.isfinite(boxes).all(axis=1)
        if infinite.any():
            k = int(np.flatnonzero(infinite)[0])
            raise ValueError(f"image {index} row {k}: box {boxes[k].tolist()} is not finite")
        sizes = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.0)
        columns = zip(
            boxes[:, :2].tolist(),
            sizes.tolist(),
            (sizes[:, 0] * sizes[:, 1]).tolist(),
            labels.astype(np.int64).tolist(),
            scores.tolist() if scored else [None] * len(boxes),
            strict=True,
        )
        for (x1, y1), (width, height), area, label, score in columns:
            annotation = {
                "id": len(annotations) + 1,
                "image_id": index + 1,
                "category_id": label + 1,
                "bbox": [x1, y1, width, height],
                "area": area,
                "iscrowd": 0,
            }
            if scored:
                annotation["score"] = score
            annotations.append(annotation)
    return annotations


def plot_precision_recall(
    metrics: DetectionMetrics, classes: Sequence[str], out: str | os.PathLike[str]
) -> Path:
    """Precision against recall: per class at IoU 0.5 (left); the mean over classes at each
    IoU threshold .50..95 (right), whose areas average to mAP@[.5:.95]."""
    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(out, name="out")
    recall = np.linspace(0.0, 1.0, metrics.precision.shape[1])
    figure = new_figure((11, 4.8))
    left, right = figure.subplots(1, 2, sharey=True)
    colours = _colours(len(classes))
    for k, name in enumerate(classes):
        curve = metrics.precision[0, :, k]
        if (curve > -1).any():
            ap50 = metrics.per_class[name][1]
            left.plot(
                recall,
                np.clip(curve, 0, None),
                color=colours[k],
                lw=1.2,
                label=f"{name} {ap50:.3f}",
            )
    left.set_title(f"per class at IoU 0.5 (mAP@0.5 {metrics.map50:.3f})")
    left.legend(fontsize=7, loc="lower left", title="AP@0.5", title_fontsize=7)
    shades = _colours(len(IOU_THRESHOLDS), "viridis")
    for t, threshold in enumerate(IOU_THRESHOLDS):
        curve = _class_mean(metrics.precision[t])
        right.plot(recall, curve, color=shades[t], lw=1.2, label=f"IoU {threshold:.2f}")
    right.set_title(f"mean over classes (mAP@[.5:.95] {metrics.map:.3f})")
    right.legend(fontsize=7, loc="lower left", ncols=2)
    for axes in (left, right):
        axes.set_xlabel("recall")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
    left.set_ylabel("precision")
    return save_png(figure, out)


def _class_mean(precision: np.ndarray) -> np.ndarray:
    """Mean precision over the classes with ground truth, per recall point (R, K) -> (R,)."""
    valid = precision > -1
    total = np.where(valid, precision, 0).sum(axis=1)
    return total / np.maximum(valid.sum(axis=1), 1)


def _colours(count: int, name: str | None = None) -> list[Any]:
    """``count`` distinct colours: a qualitative map for up to 20 classes, else a gradient."""
    from matplotlib import colormaps

    colour_map = colormaps[
        name or ("tab10" if count <= 10 else "tab20" if count <= 20 else "turbo")
    ]
    if colour_map.N <= 20:  # qualitative: one entry per class
        return [colour_map(k) for k in range(count)]
    return [colour_map(k / max(count - 1, 1)) for k in range(count)]
