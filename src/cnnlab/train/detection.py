"""A detector trained by the one training loop: what differs from a classifier, in one place.

``cnnlab train yolo-scenes --data SCENES_DIR`` runs :func:`cnnlab.train.train` as for any
model; :mod:`cnnlab.train.loop` asks this module for the parts a detector needs:

- the data: a detection folder (``cnnlab data scenes``, any YOLO or COCO folder; see
  :mod:`cnnlab.detect.datasets`) read once, its uint8 images and (N, M, 5) box targets kept on
  the device (:class:`cnnlab.detect.batches.DetectionBatches`), shifted and (where
  label-safe) flipped there together with their boxes;
- the loss: YOLOv3's (:func:`cnnlab.detect.loss.yolo_loss`) on the raw head maps, through the
  same :class:`cnnlab.train.step.TrainStep` (autocast, clipping, optimizer, schedule);
- the epoch's score: COCO mAP@0.5 and mAP@[.5:.95] of the test split by pycocotools
  (:func:`cnnlab.detect.evaluate.evaluate_detector`), at Darknet's evaluation threshold;
- the report: mAP and AP per class instead of accuracy and confusion, and pr.png.

Inputs are not normalised (mean 0, std 1, as Darknet feeds [0, 1] pixels), so that the weights
exported with ``cnnlab darknet export`` mean the same to Darknet and OpenCV.
Checkpoints, resume (also after SIGKILL), NaN checks, schedules and the progress bar are the
loop's own. Not supported for detectors (refused with a message): validation splits and early
stopping, label smoothing, several processes (torchrun).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.device import Augmentation, InputAdapter, Normalization
from cnnlab.detect.batches import DetectionBatches, padded_targets, scene_flip_ok
from cnnlab.detect.datasets import DetectionSet, load_detection_data
from cnnlab.detect.loss import YoloHead, yolo_heads, yolo_loss
from cnnlab.detect.metrics import DetectionMetrics
from cnnlab.models import create_model
from cnnlab.models.detectors import DETECTOR_MODELS
from cnnlab.train.data import tensors_fingerprint

# The most boxes per image NMS looks at when a run scores an epoch (the best by class score):
# an early network passes Darknet's 0.005 threshold with nearly every anchor.
EVALUATION_CANDIDATES = 1000
# Shifts up to this fraction of the image side (16 px at 256): objects move, boxes with them.
SHIFT_FRACTION = 1 / 16


def is_detector(model: str) -> bool:
    """Whether zoo model ``model`` is a detector (trained on boxes, scored by mAP)."""
    return model in DETECTOR_MODELS


@dataclass(frozen=True)
class DetectionScore:
    """A detector's evaluation on a split during training: COCO mAP by pycocotools."""

    metrics: DetectionMetrics
    seconds: float

    @property
    def map50(self) -> float:
        return self.metrics.map50

    @property
    def map(self) -> float:
        return self.metrics.map


class YoloLoss:
    """``loss(head maps, targets (N, M, 5))``: YOLOv3's loss summed over its terms."""

    def __init__(self, heads: list[YoloHead], input_size: tuple[int, int]) -> None:
        self.heads, self.input_size = heads, input_size

    def __call__(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return yolo_loss(outputs, self.heads, targets, self.input_size).total


def check_detection_config(config: Any, distributed: bool) -> None:
    """Refuse the settings a detector's training does not apply, naming each."""
    refused = []
    if config.val_split:
        refused.append(f"val_split={config.val_split!r} (the test split is scored)")
    if config.label_smoothing:
        refused.append(f"label_smoothing={config.label_smoothing!r}")
    if distributed:
        refused.append("several processes (--nproc / torchrun)")
    if refused:
        raise ValueError(
            f"{config.model} is a detector; its training does not support "
            f"{'; '.join(refused)}: expected the defaults for a detector"
        )


def detection_fingerprint(train: DetectionSet, test: DetectionSet) -> str:
    """SHA-256 of both splits' images, boxes, classes and offsets."""
    parts = ((part.images, part.boxes, part.labels, part.offsets) for part in (train, test))
    return tensors_fingerprint(*(tensor for part in parts for tensor in part))


def load_detection_run_data(config: Any) -> Any:
    """The detection folder ``config.data`` (under ``config.data_dir`` when given)."""
    folder = Path(config.data_dir) / config.data if config.data_dir else Path(config.data)
    return load_detection_data(folder)


def detection_parts(config: Any, data: Any, device: torch.device, model_kwargs: dict) -> dict:
    """Model, input description, batches, loss and the test split on ``device``: what
    :func:`cnnlab.train.loop._build` puts in the run for a detector."""
    channels, height, width = data.train.image_shape
    if height != width:
        raise ValueError(
            f"{config.data}: the images are {height}x{width}; the zoo's detectors take square "
            "input: letterbox the images to one square size first"
        )
    kwargs = {"num_classes": len(data.classes), "in_channels": channels, "size": height}
    kwargs |= model_kwargs
    model = create_model(config.model, **kwargs)
    shape = tuple(model.cnnlab.input_shape)
    if shape != (channels, height, width):
        raise ValueError(
            f"{config.data} images are {channels}x{height}x{width} (C x H x W) but "
            f"{config.model} with {model_kwargs} takes {'x'.join(map(str, shape))}"
        )
    normalization = Normalization((0.0,) * channels, (1.0,) * channels)
    adapter = InputAdapter(shape, shape)
    augmentation = None
    if config.augment:
        flip = scene_flip_ok(Path(data.source))
        augmentation = Augmentation(max_shift=round(height * SHIFT_FRACTION), flip=flip)
    batches = DetectionBatches(
        data.train.images,
        padded_targets(data.train),
        batch_size=config.batch_size,
        device=device,
        normalization=normalization,
        adapter=adapter,
        augmentation=augmentation,
        shuffle=True,
        seed=config.seed,
        drop_last=len(data.train) > config.batch_size,
    )
    return {
        "model": model,
        "kwargs": kwargs,
        "normalization": normalization,
        "adapter": adapter,
        "batches": batches,
        "loss_fn": YoloLoss(yolo_heads(model.plan), (height, width)),
        "test": data.test.to(device),
        "augmentation": augmentation,
    }


def evaluate_detection(run: Any, part: DetectionSet) -> DetectionScore:
    """COCO mAP of the run's model (a copy, in eval mode) on ``part``."""
    from cnnlab.detect.detector import Detector
    from cnnlab.detect.evaluate import evaluate_detector

    network = copy.deepcopy(run.model).float().to("cpu", memory_format=torch.contiguous_format)
    normalization = run.normalization
    detector = Detector(
        network, list(run.data_info["classes"]), mean=normalization.mean, std=normalization.std
    )
    result = evaluate_detector(
        detector,
        part.to("cpu"),
        run.data_info["classes"],
        batch_size=run.config.eval_batch_size,
        candidates=EVALUATION_CANDIDATES,
    )
    return DetectionScore(result.metrics, result.seconds)


def detection_record(record: dict[str, Any], test: DetectionScore) -> dict[str, Any]:
    """The epoch record of a detector: the classifier's fields without accuracies, and mAP."""
    return record | {
        "train_accuracy": None,
        "test_accuracy": None,
        "test_loss": None,
        "test_map50": test.map50,
        "test_map": test.map,
    }


def detection_report_fields(test: DetectionScore) -> dict[str, Any]:
    """The report's test fields for a detector (COCO metrics by pycocotools)."""
    metrics = test.metrics
    return {
        "task": "detect",
        "test_accuracy": None,
        "test_loss": None,
        "test_map50": metrics.map50,
        "test_map": metrics.map,
        "test_detection": metrics.as_dict(),
        "per_class_accuracy": {},
        "per_class_ap": {
            name: {"ap": ap, "ap50": ap50} for name, (ap, ap50) in metrics.per_class.items()
        },
        "confusion": [],
    }


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    return "  ".join(
        [
            f"epoch {record['epoch']}/{epochs}",
            f"loss {record['loss']:.4f}",
            f"test mAP@0.5 {record['test_map50']:.2%}",
            f"mAP@[.5:.95] {record['test_map']:.2%}",
            f"lr {record['lr']:.2e}",
            f"{record['epoch_seconds']:.2f} s ({record['images_per_second']:,.0f} img/s)",
            f"eval {record['eval_seconds']:.2f} s",
        ]
    )
