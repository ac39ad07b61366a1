"""The export formats: for each, how to write fp32 and int8 files and describe their tensors.

Each format's module (``onnx_format``, ``openvino_format``, ``tflite_format``) is imported only
when that format is used, so a missing optional package fails only there, with its extra named.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cnnlab.deploy.manifest import file_entry


class ExportFormat(str, Enum):
    onnx = "onnx"
    openvino = "openvino"
    tflite = "tflite"


@dataclass(frozen=True)
class FormatSpec:
    """One format: its module and the distributions whose versions model.json records."""

    module: str
    packages: tuple[str, ...]
    weights_suffix: str | None = None  # a second file beside the model file (OpenVINO's .bin)

    def _impl(self) -> Any:
        return importlib.import_module(f"cnnlab.deploy.{self.module}")

    def export_fp32(self, model: nn.Module, example: Any, folder: Path) -> str:
        """Write the fp32 model into ``folder``; return its file name."""
        return self._impl().export_fp32(model, example, folder)

    def quantize_int8(self, folder: Path, calibration: np.ndarray, model: nn.Module) -> str:
        """Write the int8 model calibrated on ``calibration`` (float32 model inputs)."""
        return self._impl().quantize_int8(folder, calibration, model)

    def file_entry(self, folder: Path, file: str) -> dict[str, Any]:
        extra = [str(Path(file).with_suffix(self.weights_suffix))] if self.weights_suffix else []
        return file_entry(folder, file, *extra)

    def input_description(
        self, folder: Path, file: str, model_shape: tuple[int, int, int]
    ) -> dict[str, Any]:
        describe = getattr(self._impl(), "input_description", None)
        if describe is not None:
            return describe(folder / file, model_shape)
        return {
            "name": "input",
            "dtype": "float32",
            "shape": [None, *model_shape],
            "batch": "dynamic",
        }

    def output_description(self, folder: Path, file: str, classes: int) -> dict[str, Any]:
        describe = getattr(self._impl(), "output_description", None)
        if describe is not None:
            return describe(folder / file, classes)
        return {
            "name": "logits",
            "dtype": "float32",
            "shape": [None, classes],
            "meaning": "logits: softmax gives the class probabilities",
        }


FORMATS: dict[ExportFormat, FormatSpec] = {
    ExportFormat.onnx: FormatSpec("onnx_format", ("onnx", "onnxscript", "onnxruntime")),
    ExportFormat.openvino: FormatSpec("openvino_format", ("openvino", "nncf"), ".bin"),
    ExportFormat.tflite: FormatSpec("tflite_format", ("litert-torch", "ai-edge-litert")),
}
