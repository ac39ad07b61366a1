"""What every model of the baselines board is trained and scored on, and what it yields.

``subsample`` draws the seeded, stratified ``limit_train``/``limit_test`` subsets;
``BaselineSplit`` holds them (and the whole training set's size); a ``BaselineRow`` is one
model's line on the board. ``SLIDE_BEST`` is the lecture's best semester score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SLIDE_BEST = {
    "score": 0.97369,
    "data": "mnist",
    "model": "KNeighborsClassifier(algorithm='ball_tree', n_neighbors=4, weights='distance')",
    "note": "the slide's best semester score (Qd MNIST Search Quest II): KNN 0.97369 on MNIST",
}


@dataclass(frozen=True)
class BaselineRow:
    """One model on the board. ``parameters`` is None where a count is not defined (KNN...)."""

    name: str
    kind: str  # "classical" or "cnn"
    accuracy: float
    train_seconds: float
    predict_seconds: float
    parameters: int | None
    notes: str = ""
    expected_seconds: float | None = None  # the estimate said before it started, if any

    def __repr__(self) -> str:
        params = "-" if self.parameters is None else f"{self.parameters:,}"
        return (
            f"BaselineRow({self.name!r}, {self.kind}, accuracy={self.accuracy:.4f}, "
            f"train={self.train_seconds:.2f} s, predict={self.predict_seconds:.2f} s, "
            f"params={params})"
        )


def subsample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``limit`` samples, stratified by label (seeded); all when it is None
    or at least the set's size. Falls back to a plain seeded draw when stratifying cannot
    work (fewer samples than classes, or a class with one sample)."""
    from sklearn.model_selection import train_test_split

    count = len(labels)
    if limit is None or limit >= count:
        return np.arange(count)
    indices = np.arange(count)
    try:
        chosen, _ = train_test_split(
            indices, train_size=limit, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError:
        chosen = np.random.default_rng(seed).choice(count, size=limit, replace=False)
    return np.sort(chosen)


@dataclass(frozen=True)
class BaselineSplit:
    """The images every model of a board trains and is scored on (a subsample, maybe)."""

    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_total: int  # the whole training set's size

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) flattened to (N, C*H*W) float32 in [0, 1]."""
        return tuple(  # type: ignore[return-value]
            images.reshape(len(images), -1).numpy().astype(np.float32) / 255
            for images in (self.train_images, self.test_images)
        )
