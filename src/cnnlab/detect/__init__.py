"""Object detection: Darknet's YOLO decoding and NMS, detectors from cfg text, boxes drawn.

- ``decode``: raw ``[region]``/``[yolo]`` maps -> boxes and class scores, letterbox undone.
- ``nms``: per-class NMS with Darknet's ``do_nms_sort`` semantics.
- ``detector``: ``Detector`` (a Darknet network + thresholds; ``detect`` gives (K, 6) rows
  x1, y1, x2, y2, score, class in original-image pixels), ``detector_from_checkpoint``.
- ``draw``: labelled boxes on an image, written as PNG.
- ``scenes``/``scene_files``: ``SceneConfig``, ``make_scenes``: detection scenes made from a
  classification set, written as YOLO/Darknet files and COCO json.
- ``datasets``: ``load_detection_data`` (a YOLO or COCO folder, checked) -> ``DetectionData``
  of ``DetectionSet``s (uint8 images, boxes, classes; ``targets`` for a batch).
- ``metrics``: ``coco_evaluate`` (COCO mAP by pycocotools, imported when used),
  ``plot_precision_recall``; ``evaluate``: ``evaluate_detector`` (a detector on a set).
"""

from cnnlab.detect.datasets import DetectionData, DetectionSet, load_detection_data
from cnnlab.detect.decode import Decoded, DetectionHead, correct_boxes, decode, detection_heads
from cnnlab.detect.detector import Detector, ImageDetections, detector_from_checkpoint
from cnnlab.detect.evaluate import evaluate_detector
from cnnlab.detect.metrics import DetectionMetrics, coco_evaluate, plot_precision_recall
from cnnlab.detect.nms import center_iou, do_nms_sort
from cnnlab.detect.scene_files import make_scenes
from cnnlab.detect.scenes import SceneConfig

__all__ = [
    "Decoded",
    "DetectionData",
    "DetectionHead",
    "DetectionMetrics",
    "DetectionSet",
    "Detector",
    "ImageDetections",
    "SceneConfig",
    "center_iou",
    "coco_evaluate",
    "correct_boxes",
    "decode",
    "detection_heads",
    "detector_from_checkpoint",
    "do_nms_sort",
    "evaluate_detector",
    "load_detection_data",
    "make_scenes",
    "plot_precision_recall",
]
