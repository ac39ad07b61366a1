"""Object detection: Darknet's YOLO decoding and NMS, detectors from cfg text, boxes drawn.

- ``decode``: raw ``[region]``/``[yolo]`` maps -> boxes and class scores, letterbox undone.
- ``nms``: per-class NMS with Darknet's ``do_nms_sort`` semantics.
- ``detector``: ``Detector`` (a Darknet network + thresholds; ``detect`` gives (K, 6) rows
  x1, y1, x2, y2, score, class in original-image pixels), ``detector_from_checkpoint``.
- ``draw``: labelled boxes on an image, written as PNG.
"""

from cnnlab.detect.decode import Decoded, DetectionHead, correct_boxes, decode, detection_heads
from cnnlab.detect.detector import Detector, ImageDetections, detector_from_checkpoint
from cnnlab.detect.nms import center_iou, do_nms_sort

__all__ = [
    "Decoded",
    "DetectionHead",
    "Detector",
    "ImageDetections",
    "center_iou",
    "correct_boxes",
    "decode",
    "detection_heads",
    "detector_from_checkpoint",
    "do_nms_sort",
]
