"""OpenVINO: ``openvino.convert_model`` from PyTorch (dynamic batch), int8 by NNCF's post-training
quantisation on real calibration images, and a CPU ``CompiledModel`` to run either.

Two defaults are overridden on purpose. ``save_model`` compresses weights to fp16 unless told
not to: the files keep fp32 weights (``compress_to_fp16=False``). The CPU plugin computes in
bf16 where the processor supports it (AMX, AVX512-BF16): ``INFERENCE_PRECISION_HINT`` is set to
``f32`` so that fp32 means fp32 (an int8 model's quantised layers still run in int8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.deploy.extras import require
from cnnlab.deploy.onnx_format import INPUT_NAME, OUTPUT_NAME, quiet

FP32_FILE = "model.xml"  # weights in model.bin beside it
INT8_FILE = "model.int8.xml"


def export_fp32(model: nn.Module, example: torch.Tensor, folder: Path) -> str:
    """``model.xml`` + ``model.bin``: the network on float32 (N, C', H', W'), any N."""
    ov = require("openvino", "OpenVINO export")
    try:
        with quiet():
            converted = ov.convert_model(model, example_input=example)
    except Exception as error:  # the converter raises many types; the message is what matters
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"openvino.convert_model could not convert the model: {first}") from None
    shape = [-1, *example.shape[1:]]
    converted.reshape({converted.inputs[0]: ov.PartialShape(shape)})
    converted.inputs[0].get_tensor().set_names({INPUT_NAME})
    converted.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov.save_model(converted, str(folder / FP32_FILE), compress_to_fp16=False)
    return FP32_FILE


def quantize_int8(folder: Path, calibration: np.ndarray, model: nn.Module | None = None) -> str:
    """``model.int8.xml``: NNCF's post-training int8 of the fp32 OpenVINO model, its ranges
    from ``calibration`` (float32 model inputs of real images, one per calibration step).

    ``model`` is not needed: NNCF quantises the OpenVINO model in ``folder``."""
    ov = require("openvino", "OpenVINO int8")
    nncf = require("nncf", "OpenVINO int8 (NNCF's post-training quantisation)")
    fp32 = ov.Core().read_model(str(folder / FP32_FILE))
    samples = [calibration[i : i + 1] for i in range(calibration.shape[0])]
    with quiet():
        quantized = nncf.quantize(
            fp32,
            nncf.Dataset(samples),
            subset_size=len(samples),
            preset=nncf.QuantizationPreset.PERFORMANCE,
        )
    ov.save_model(quantized, str(folder / INT8_FILE), compress_to_fp16=False)
    return INT8_FILE


class OpenVinoBackend:
    """An OpenVINO CPU compiled model, f32 inference precision (never bf16 behind our back)."""

    name = "openvino"

    def __init__(self, file: Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        ov = require("openvino", "running an OpenVINO model")
        self.file = file
        self.precision = precision
        self.threads = threads or torch.get_num_threads()
        core = ov.Core()
        self.config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(core.read_model(str(file)), "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(inputs, dtype=np.float32)})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "config": {k: str(v) for k, v in self.config.items()}}

    def __repr__(self) -> str:
        return f"OpenVinoBackend({self.file.name!r}, threads={self.threads}, f32 inference)"
