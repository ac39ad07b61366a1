"""What an export starts from: a trained run folder, or a zoo model by name (its initial weights).

Either way the result is a ``Predictor`` on the CPU (the model, its classes, normalisation and
input adapter) and, when known, the dataset whose real images verify and calibrate the export.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.device import InputAdapter, Normalization, preprocess
from cnnlab.models import create_model, list_models
from cnnlab.train.predict import Predictor, load

UNTRAINED_NORMALIZATION = 0.5  # a zoo model without a run: x -> (x/255 - 0.5) / 0.5, in [-1, 1]


@dataclass(frozen=True, repr=False)
class ExportSource:
    """The PyTorch model to export, how to feed it, and the data to check it on."""

    predictor: Predictor
    kind: str  # "run" or "zoo"
    path: str | None  # the checkpoint of a run
    dataset: Dataset | None
    checkpoint_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "trained_on": self.predictor.data_name or None,
            "checkpoint_sha256": self.checkpoint_sha256,
        }

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the network's float32 input (N, C', H', W'), as in training."""
        return preprocess(images, self.predictor.normalization, self.predictor.adapter)

    def __repr__(self) -> str:
        where = self.path if self.kind == "run" else "initial weights"
        data = self.dataset.name if self.dataset is not None else "random images"
        return f"ExportSource({self.predictor.model_name!r}, {where}, checked on {data})"


def resolve_source(
    source: str | os.PathLike[str],
    *,
    data: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> ExportSource:
    """A run folder (or checkpoint file), or a zoo model name; ``data`` overrides the dataset.

    A run is checked on the data it was trained on unless ``data`` names another with the same
    classes. A zoo model gets ``data``'s shape, classes and normalisation, or, without ``data``,
    its own input shape, classes "0".."K-1" and uniform random images.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.exists():
        predictor = load(path, device="cpu")
        assert predictor.checkpoint is not None
        digest = hashlib.sha256(predictor.checkpoint.read_bytes()).hexdigest()
        name = data or predictor.data_name
        dataset = _load_data(name, data_dir) if name else None
        if dataset is not None and tuple(dataset.classes) != predictor.classes:
            raise ValueError(
                f"data={name!r} has {len(dataset.classes)} classes {list(dataset.classes)[:5]}..., "
                f"but the model was trained on {predictor.data_name!r} with "
                f"{len(predictor.classes)}: expected a dataset with the same classes"
            )
        if dataset is not None and tuple(dataset.test_images.shape[1:]) != predictor.data_shape:
            raise ValueError(
                f"data={name!r} has images of shape {tuple(dataset.test_images.shape[1:])}, but "
                f"the model was trained on {predictor.data_shape}: expected the same shape"
            )
        return ExportSource(predictor, "run", str(predictor.checkpoint), dataset, digest)
    if text not in list_models():
        if os.sep in text or text.endswith(".pt"):
            raise FileNotFoundError(f"No such run folder or checkpoint: {text}")
        create_model(text)  # raises the registry's "unknown model ... did you mean" error
    return ExportSource(_zoo_predictor(text, data, data_dir), "zoo", None, _maybe(data, data_dir))


def _zoo_predictor(name: str, data: str | None, data_dir: Any) -> Predictor:
    model = create_model(name).eval()
    info = model.cnnlab
    if data is None:
        data_shape, classes = info.input_shape, tuple(str(i) for i in range(info.num_classes))
        channels = data_shape[0]
        normalization = Normalization(
            (UNTRAINED_NORMALIZATION,) * channels, (UNTRAINED_NORMALIZATION,) * channels
        )
        data_name = ""
    else:
        dataset = _load_data(data, data_dir)
        data_shape = tuple(int(v) for v in dataset.test_images.shape[1:])
        classes = tuple(dataset.classes)
        model = create_model(name, num_classes=len(classes)).eval()
        mean, std = dataset.mean_std()
        normalization = Normalization(tuple(mean), tuple(std))
        data_name = dataset.name
    return Predictor(
        model=model,
        classes=classes,
        normalization=normalization,
        adapter=InputAdapter(data_shape, model.cnnlab.input_shape),
        data_shape=data_shape,
        device=torch.device("cpu"),
        model_name=name,
        data_name=data_name,
    )


def _maybe(data: str | None, data_dir: Any) -> Dataset | None:
    return None if data is None else _load_data(data, data_dir)


def _load_data(name: str, data_dir: Any) -> Dataset:
    return load_dataset(name, data_dir=data_dir)


def sample_images(
    source: ExportSource, count: int, *, split: str = "test", seed: int = 0
) -> torch.Tensor:
    """``count`` uint8 images (N, C, H, W): the first of the dataset's ``split`` (real data), or
    seeded uniform noise when the source has no dataset."""
    if source.dataset is not None:
        images = getattr(source.dataset, f"{split}_images")
        if split == "test":
            return images[:count]
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(images.shape[0], generator=generator)[:count]
        return images[order]
    generator = torch.Generator().manual_seed(seed + (split == "train"))
    shape = (count, *source.predictor.data_shape)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
