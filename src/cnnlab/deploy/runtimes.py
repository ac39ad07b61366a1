"""Run an exported model: ``load_export(folder)`` -> ``ExportedModel``.

The exported network takes the preprocessed float32 input; cnnlab's own ``preprocess`` (the one
training used) turns uint8 images into it. ``ExportedModel.predictor`` is a ``Predictor`` whose
model is the runtime's session wrapped as a module, so ``cnnlab predict`` and ``evaluate`` run
an export through the very code that runs a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cnnlab.data.device import InputAdapter, Normalization, preprocess
from cnnlab.deploy.manifest import ExportManifest, read_manifest
from cnnlab.train.predict import Predictor


class Backend(Protocol):
    """One runtime's session: float32 model input (N, C', H', W') -> float32 logits (N, K)."""

    name: str

    def run(self, inputs: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def open_backend(
    runtime: str, file: Path, *, precision: str = "fp32", threads: int | None = None
) -> Backend:
    """The session of ``runtime`` ("onnx", "openvino", "tflite") over a model file."""
    if runtime == "onnx":
        from cnnlab.deploy.onnx_format import OnnxRuntimeBackend

        return OnnxRuntimeBackend(file, threads=threads)
    if runtime == "openvino":
        from cnnlab.deploy.openvino_format import OpenVinoBackend

        return OpenVinoBackend(file, precision=precision, threads=threads)
    if runtime == "tflite":
        from cnnlab.deploy.tflite_format import TfliteBackend

        return TfliteBackend(file, threads=threads)
    raise ValueError(f"runtime must be onnx, openvino or tflite. Received: runtime={runtime!r}")


class RuntimeModule(nn.Module):
    """A runtime's session as a PyTorch module (CPU tensors in and out), for code that expects
    a model: ``evaluate_model``, ``Predictor``."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        array = inputs.detach().cpu().to(torch.float32).numpy()
        return torch.from_numpy(np.asarray(self.backend.run(array), dtype=np.float32))

    def extra_repr(self) -> str:
        return repr(self.backend)


@dataclass(frozen=True, repr=False)
class ExportedModel:
    """An export folder loaded on its runtime: ``predict(uint8 images)`` like a ``Predictor``."""

    folder: Path
    manifest: ExportManifest
    precision: str
    backend: Backend
    predictor: Predictor

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return self.manifest.data_shape

    @property
    def file(self) -> Path:
        return self.folder / self.manifest.files[self.precision]["file"]

    def predict(self, images: torch.Tensor | np.ndarray, *, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities (N, classes) for uint8 images (N, C, H, W) of ``data_shape``."""
        return self.predictor.predict(images, batch_size=batch_size)

    def logits(self, images: torch.Tensor | np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Raw logits (N, classes) float32 for uint8 images (N, C, H, W)."""
        batch = torch.as_tensor(images)
        if (
            batch.dtype != torch.uint8
            or batch.dim() != 4
            or tuple(batch.shape[1:]) != self.data_shape
        ):
            c, h, w = self.data_shape
            raise ValueError(
                f"images must be uint8 of shape (N, {c}, {h}, {w}), like the training data. "
                f"Received: dtype={batch.dtype}, shape={tuple(batch.shape)}"
            )
        normalization, adapter = self.predictor.normalization, self.predictor.adapter
        chunks = [
            self.backend.run(preprocess(batch[i : i + batch_size], normalization, adapter).numpy())
            for i in range(0, batch.shape[0], batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)), np.float32)

    def top_k(self, images: torch.Tensor | np.ndarray, k: int = 5) -> list[list[tuple[float, str]]]:
        """The ``k`` most probable classes of each image, as (probability, class name)."""
        return self.predictor.top_k(images, k)

    def __repr__(self) -> str:
        return (
            f"ExportedModel({self.manifest.model.get('name')!r}, {self.manifest.runtime} "
            f"{self.precision}, {len(self.classes)} classes, folder={str(self.folder)!r})"
        )


def load_export(
    path: str | os.PathLike[str],
    *,
    precision: str | None = None,
    threads: int | None = None,
) -> ExportedModel:
    """An export folder written by ``export_model`` (or ``cnnlab export``), on its runtime.

    ``precision`` picks one of the folder's files ("fp32", "int8"); default: the one
    ``model.json`` names. ``threads``: the runtime's thread count (default: torch's).
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    chosen = precision or manifest.precision
    if chosen not in manifest.files:
        raise ValueError(
            f"precision must be one of the export's {', '.join(sorted(manifest.files))}. "
            f"Received: precision={chosen!r}"
        )
    file = folder / manifest.files[chosen]["file"]
    backend = open_backend(manifest.runtime, file, precision=chosen, threads=threads)
    preprocessing = manifest.preprocessing
    predictor = Predictor(
        model=RuntimeModule(backend).eval(),
        classes=manifest.classes,
        normalization=Normalization(tuple(preprocessing["mean"]), tuple(preprocessing["std"])),
        adapter=InputAdapter(manifest.data_shape, manifest.model_shape),
        data_shape=manifest.data_shape,
        device=torch.device("cpu"),
        model_name=str(manifest.model.get("name", "")),
        data_name=str(manifest.source.get("trained_on") or ""),
        checkpoint=file,
    )
    return ExportedModel(folder, manifest, chosen, backend, predictor)
