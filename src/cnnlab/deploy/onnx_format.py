"""ONNX: export with ``torch.onnx.export`` (the dynamo exporter, dynamic batch), int8 by ONNX
Runtime's static quantisation (QDQ, per-channel weights, activations calibrated on real
images), and an ONNX Runtime session to run either.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.deploy.extras import require

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPSET = 18  # the dynamo exporter's default; Resize with antialias needs >= 18


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines: the library never prints."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_fp32(model: nn.Module, example: torch.Tensor, folder: Path) -> str:
    """``model.onnx``: the network on float32 input (N, C', H', W') with a dynamic batch."""
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export (torch.onnx's dynamo exporter)")
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with quiet():
            torch.onnx.export(
                model,
                (example,),
                str(folder / FP32_FILE),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
    except Exception as error:  # the exporter raises many types; the message is what matters
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"torch.onnx.export could not export the model: {first}") from None
    return FP32_FILE


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over model inputs, in batches."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 32) -> None:
        self._batches = iter(
            [inputs[i : i + batch_size] for i in range(0, inputs.shape[0], batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # part of the protocol; one pass is all MinMax needs
        pass


def quantize_int8(folder: Path, calibration: np.ndarray, model: nn.Module | None = None) -> str:
    """``model.int8.onnx``: static QDQ int8 (weights per channel, activations per tensor, both
    signed int8), ranges from ``calibration`` (float32 model inputs, real images) by MinMax.

    ``model`` is not needed: ONNX Runtime quantises the exported graph in ``folder``."""
    require("onnxruntime", "int8 quantisation of an ONNX model")
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = folder / "model.prep.onnx"
    source = folder / FP32_FILE
    try:
        with quiet():
            # shape inference and graph optimisation first, as ONNX Runtime's docs advise
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    except Exception:  # an optimisation it cannot do is not fatal: quantise the export as is
        prepared = source
    try:
        with quiet():
            quantize_static(
                str(prepared),
                str(folder / INT8_FILE),
                _Calibration(calibration.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    finally:
        if prepared != source:
            prepared.unlink(missing_ok=True)
    return INT8_FILE


class OnnxRuntimeBackend:
    """An ONNX Runtime CPU session: float32 model input -> float32 logits."""

    name = "onnxruntime"

    def __init__(self, file: Path, *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "running an ONNX model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.file = file
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        self.input_name = self.session.get_inputs()[0].name

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(inputs)})[0]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "providers": self.session.get_providers()}

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.file.name!r}, threads={self.threads})"
