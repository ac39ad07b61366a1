"""The data a run trains on: data given in memory turned into a Dataset, the fingerprint that
ties a checkpoint to its data, and the seeded validation split."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from cnnlab.data import Dataset


def as_dataset(data: Any, *, name: str) -> Dataset | None:
    """``data`` as a Dataset: a Dataset as it is, Keras-style arrays converted, None as None."""
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return Dataset.from_arrays(data[0], data[1], name=name)
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return Dataset.from_arrays((data[0], data[1]), (data[2], data[3]), name=name)
    raise ValueError(
        "data must be a cnnlab.data.Dataset or arrays ((x_train, y_train), (x_test, y_test)). "
        f"Received: data of type {type(data).__name__}"
    )


def data_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the images and labels (train, then test): the same data, the same digest."""
    return tensors_fingerprint(
        dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels
    )


def tensors_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 of each tensor's shape and bytes, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def split_validation(dataset: Any, fraction: float, seed: int) -> tuple[Any, Any, Any]:
    """Hold out ``fraction`` of the training set for validation, by a seeded permutation."""
    images, labels = dataset.train_images, dataset.train_labels
    if fraction == 0:
        return images, labels, None
    count = labels.shape[0]
    held = round(fraction * count)
    if not 0 < held < count:
        raise ValueError(
            f"val_split={fraction!r} of {count} training images leaves {held} for validation "
            f"and {count - held} for training; both must be at least one"
        )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    val_index, train_index = order[:held].sort().values, order[held:].sort().values
    return images[train_index], labels[train_index], (images[val_index], labels[val_index])
