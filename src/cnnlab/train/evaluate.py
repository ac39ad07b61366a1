"""``evaluate_model``: accuracy, per-class accuracy and the confusion matrix of a model on a set;
and the device helpers training shares with it (``resolve_device``, ``synchronize``).

The images stay uint8 until a batch is on the device; normalisation and the input adapter run
there, exactly as in training (``cnnlab.data.device.preprocess``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.device import InputAdapter, Normalization, preprocess
from cnnlab.runtime.devices import AUTOCAST_DTYPES, synchronize


@dataclass(frozen=True, repr=False)
class EvalResult:
    """A model's predictions on a labelled set and what they add up to."""

    accuracy: float
    loss: float  # mean cross-entropy
    per_class_accuracy: np.ndarray  # (classes,) float64; nan for a class with no samples
    confusion: np.ndarray  # (classes, classes) int64; rows = true class, columns = predicted
    predictions: np.ndarray  # (N,) int64
    probabilities: np.ndarray | None  # (N, classes) float32 when asked for
    seconds: float

    @classmethod
    def from_counts(
        cls,
        confusion: np.ndarray,
        *,
        loss_sum: float,
        predictions: np.ndarray,
        seconds: float,
        probabilities: np.ndarray | None = None,
    ) -> EvalResult:
        """The result from its confusion matrix and the summed cross-entropy (also how the
        slices that several processes scored add up)."""
        total = max(int(confusion.sum()), 1)
        per_class = confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class_accuracy = np.where(per_class > 0, np.diag(confusion) / per_class, np.nan)
        return cls(
            accuracy=float(np.trace(confusion) / total),
            loss=loss_sum / total,
            per_class_accuracy=per_class_accuracy.astype(np.float64),
            confusion=confusion.astype(np.int64),
            predictions=predictions.astype(np.int64),
            probabilities=probabilities,
            seconds=seconds,
        )

    @property
    def samples(self) -> int:
        return int(self.predictions.shape[0])

    def __repr__(self) -> str:
        return (
            f"EvalResult(accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
            f"samples={self.samples}, classes={self.confusion.shape[0]}, "
            f"seconds={self.seconds:.3f})"
        )


def evaluate_model(
    model: nn.Module,
    images_uint8: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalization: Normalization,
    adapter: InputAdapter,
    device: torch.device | str,
    num_classes: int,
    batch_size: int = 1024,
    precision: str = "fp32",
    probabilities: bool = False,
) -> EvalResult:
    """Run ``model`` over ``images_uint8`` (N, C, H, W) in inference mode and score it.

    The model's train/eval mode is restored afterwards. ``seconds`` covers the whole
    evaluation, with the device synchronised before the clock stops.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(
            "images_uint8 must be a uint8 tensor of shape (N, C, H, W). Received: "
            f"dtype={images_uint8.dtype}, shape={tuple(images_uint8.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != images_uint8.shape[0]:
        raise ValueError(
            f"labels must have shape ({images_uint8.shape[0]},), one per image. "
            f"Received: shape={tuple(labels.shape)}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: {num_classes!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(
            f"precision must be one of {', '.join(AUTOCAST_DTYPES)}. "
            f"Received: precision={precision!r}"
        )
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}). Received: labels from "
            f"{int(labels.min())} to {int(labels.max())}"
        )
    device = torch.device(device)
    dtype = AUTOCAST_DTYPES[precision]
    was_training = model.training
    model.eval()
    synchronize(device)
    start = time.perf_counter()
    predictions, kept, loss_sum = [], [], torch.zeros((), device=device)
    try:
        with torch.inference_mode():
            for first in range(0, images_uint8.shape[0], batch_size):
                batch = images_uint8[first : first + batch_size].to(device, non_blocking=True)
                target = labels[first : first + batch_size].to(device, non_blocking=True)
                inputs = preprocess(batch, normalization, adapter)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = model(inputs)
                logits = logits.float()  # (n, classes)
                loss_sum += F.cross_entropy(logits, target, reduction="sum")
                predictions.append(logits.argmax(dim=1))
                if probabilities:
                    kept.append(logits.softmax(dim=1))
            predicted = torch.cat(predictions) if predictions else torch.zeros(0, device=device)
            target = labels.to(device)
            cells = target * num_classes + predicted.long()
            confusion = torch.bincount(cells, minlength=num_classes * num_classes)
            confusion = confusion.view(num_classes, num_classes).cpu().numpy()
            predicted = predicted.long().cpu().numpy()
            loss = loss_sum.item()
            probs = torch.cat(kept).cpu().numpy() if probabilities and kept else None
    finally:
        model.train(was_training)
    synchronize(device)
    seconds = time.perf_counter() - start
    return EvalResult.from_counts(
        confusion, loss_sum=loss, predictions=predicted, probabilities=probs, seconds=seconds
    )
