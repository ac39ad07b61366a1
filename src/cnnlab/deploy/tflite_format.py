"""TFLite (LiteRT): ``litert_torch.convert`` from PyTorch, full int8 by PT2E static quantisation,
and the LiteRT interpreter to run either.

The batch is fixed at conversion (the example's). The int8 model is *full* int8, what an Edge
TPU needs: weights (per channel) and activations int8, and int8 input and output tensors; the
input's ``scale`` and ``zero_point`` (``q = round(x / scale) + zero_point``) are in the file and
in model.json. The backend quantises the float input and dequantises the logits itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.deploy.extras import require
from cnnlab.deploy.onnx_format import quiet

FP32_FILE = "model.tflite"
INT8_FILE = "model.int8.tflite"


def export_fp32(model: nn.Module, example: torch.Tensor, folder: Path) -> str:
    """``model.tflite``: the network on float32 (B, C', H', W'), B = the example's batch."""
    litert_torch = require("litert-torch", "TFLite export")
    try:
        with quiet():
            litert_torch.convert(model.eval(), (example,)).export(str(folder / FP32_FILE))
    except Exception as error:  # the converter raises many types; the message is what matters
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"litert_torch.convert could not convert the model: {first}") from None
    return FP32_FILE


def quantize_int8(folder: Path, calibration: np.ndarray, model: nn.Module) -> str:
    """``model.int8.tflite``: PT2E static int8 (symmetric per-channel weights), activation ranges
    observed on ``calibration`` (float32 model inputs of real images), int8 input and output."""
    litert_torch = require("litert-torch", "TFLite int8")
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    batch = TfliteBackend(folder / FP32_FILE).batch
    inputs = torch.from_numpy(calibration)
    example = inputs[:batch]
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    with quiet():
        graph = torch.export.export(model.eval(), (example,)).module()
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for first in range(0, inputs.shape[0] - batch + 1, batch):
                prepared(inputs[first : first + batch])  # the observers record the ranges
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        config = quant_config.QuantConfig(pt2e_quantizer=quantizer)
        edge = litert_torch.convert(converted, (example,), quant_config=config)
        edge.export(str(folder / INT8_FILE))
    return INT8_FILE


def _quantization(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32:
        return {}
    return {"scale": float(scale), "zero_point": int(zero_point)}


def input_description(file: Path, model_shape: tuple[int, int, int]) -> dict[str, Any]:
    detail = TfliteBackend(file).input
    batch = int(detail["shape"][0])
    return {
        "name": "input",
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [batch, *model_shape],
        "batch": batch,
        **_quantization(detail),
    }


def output_description(file: Path, classes: int) -> dict[str, Any]:
    backend = TfliteBackend(file)
    detail = backend.output
    return {
        "name": "logits",
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [backend.batch, classes],
        "meaning": "logits: softmax gives the class probabilities",
        **_quantization(detail),
    }


class TfliteBackend:
    """The LiteRT interpreter (XNNPACK on the CPU). Any N runs as chunks of the fixed batch (the
    last one padded); an int8 model's input is quantised and its logits dequantised here."""

    name = "tflite"

    def __init__(self, file: Path, *, threads: int | None = None) -> None:
        litert = require("litert", "running a TFLite model (the LiteRT interpreter)")
        self.file = file
        self.threads = threads or torch.get_num_threads()
        with quiet():
            self.interpreter = litert.Interpreter(model_path=str(file), num_threads=self.threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        detail = self.input
        if detail["dtype"] != np.float32:
            scale, zero_point = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            chunk = np.clip(np.round(chunk / scale) + zero_point, info.min, info.max)
        self.interpreter.set_tensor(detail["index"], chunk.astype(detail["dtype"]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return np.asarray(out, dtype=np.float32)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        count = inputs.shape[0]
        if count == self.batch:
            return self._invoke(inputs)
        outputs = []
        for first in range(0, count, self.batch):
            chunk = inputs[first : first + self.batch]
            missing = self.batch - chunk.shape[0]
            if missing:  # pad the last chunk to the fixed batch; the padding is dropped
                chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self._invoke(chunk)[: self.batch - missing])
        return np.concatenate(outputs)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "batch": self.batch, "input": str(self.input["dtype"])}

    def __repr__(self) -> str:
        return f"TfliteBackend({self.file.name!r}, batch={self.batch}, threads={self.threads})"
