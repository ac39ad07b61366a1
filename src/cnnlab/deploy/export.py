"""``export_model(config)``: a trained run (or a zoo model) as an ONNX, OpenVINO or TFLite model
in a folder with its ``model.json``, checked against PyTorch before anything is written.

The check runs the exported model on its runtime over real test images (the first
``verify_images`` of the dataset's test split) and compares with PyTorch on the same inputs:
fp32 must agree within ``atol + rtol * max|logit|`` or nothing is written
(``ExportMismatchError``); int8 reports its top-1 agreement with fp32 PyTorch and the test-set
accuracy change. The folder appears whole or not at all (built beside it, then renamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.deploy import formats
from cnnlab.deploy.extras import versions
from cnnlab.deploy.manifest import (
    MANIFEST_NAME,
    ExportManifest,
    is_export_folder,
    write_manifest,
)
from cnnlab.deploy.runtimes import RuntimeModule, open_backend
from cnnlab.deploy.source import ExportSource, resolve_source, sample_images
from cnnlab.runtime.files import default_output_dir
from cnnlab.runtime.validate import check_bool, check_choice, check_positive_int
from cnnlab.runtime.version import __version__
from cnnlab.train.evaluate import evaluate_model

PrintFn = Callable[[str], None]


class ExportMismatchError(ValueError):
    """The exported fp32 model's outputs disagree with PyTorch's: nothing was written."""


@dataclass(frozen=True)
class ExportConfig:
    """One export: what, to which format, where, and how it is checked."""

    source: str  # a run folder, a checkpoint file, or a zoo model name
    format: str = "onnx"  # onnx | openvino | tflite
    int8: bool = False  # also quantise to int8 (static, calibrated); the int8 model is the default
    calibration: int = 512  # training images that calibrate the int8 ranges
    out: str | None = None  # the export folder; None = runs/export-<model>-<format>-<time>
    data: str | None = None  # the dataset to check on; default: the run's own
    data_dir: str | None = None
    verify_images: int = 256  # test images compared with PyTorch
    eval_images: int | None = None  # test images for the accuracies; None = the whole test split
    atol: float = 1e-4  # fp32 tolerance: |ours - torch| <= atol + rtol * max|torch logit|
    rtol: float = 1e-3
    tflite_batch: int = 1  # TFLite's batch is fixed at conversion
    seed: int = 0  # which training images calibrate

    def __post_init__(self) -> None:
        for name in ("source", "out", "data", "data_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(
                f"source must be a run folder or a model name. Received: source={self.source!r}"
            )
        object.__setattr__(
            self, "format", check_choice("format", self.format, formats.ExportFormat)
        )
        check_bool("int8", self.int8)
        for name in ("calibration", "verify_images", "tflite_batch"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("eval_images", self.eval_images, optional=True)
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")


@dataclass(frozen=True, repr=False)
class Verification:
    """An exported model against PyTorch fp32 on the same real inputs."""

    precision: str
    images: int  # compared image by image
    data: str  # "fashion-mnist test" or "random images"
    max_abs_logit_diff: float
    tolerance: float | None  # fp32 only: the largest difference accepted
    top1_agreement: float  # share of images whose top-1 class equals PyTorch's
    eval_images: int | None = None  # images behind the accuracies
    accuracy_torch: float | None = None  # PyTorch fp32 on the test images
    accuracy: float | None = None  # this model on the same images

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.max_abs_logit_diff <= self.tolerance

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy is None or self.accuracy_torch is None:
            return None
        return self.accuracy - self.accuracy_torch

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "images": self.images,
            "data": self.data,
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "tolerance": self.tolerance,
            "top1_agreement": self.top1_agreement,
            "passed": self.passed,
            "eval_images": self.eval_images,
            "accuracy_torch": self.accuracy_torch,
            "accuracy": self.accuracy,
            "accuracy_change": self.accuracy_change,
        }

    def describe(self) -> str:
        text = (
            f"{self.precision}: max |logit diff| {self.max_abs_logit_diff:.3g}"
            + (f" (tolerance {self.tolerance:.3g})" if self.tolerance is not None else "")
            + f", top-1 agreement {100 * self.top1_agreement:.2f}% on {self.images} {self.data}"
        )
        if self.accuracy is not None and self.accuracy_torch is not None:
            change = 100 * (self.accuracy - self.accuracy_torch)
            text += (
                f"; accuracy {100 * self.accuracy:.2f}% vs PyTorch {100 * self.accuracy_torch:.2f}%"
                f" ({change:+.2f} points, {self.eval_images} test images)"
            )
        return text

    def __repr__(self) -> str:
        return f"Verification({self.describe()})"


@dataclass(frozen=True, repr=False)
class ExportResult:
    """What ``export_model`` wrote and what its checks measured."""

    folder: Path
    manifest: ExportManifest
    verifications: tuple[Verification, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), **self.manifest.to_dict()}

    def __repr__(self) -> str:
        return f"ExportResult({str(self.folder)!r}, {self.manifest!r})"


def export_model(config: ExportConfig, *, print_fn: PrintFn | None = None) -> ExportResult:
    """Export, check against PyTorch, quantise when asked, and write the folder with model.json."""
    say = print_fn or (lambda _: None)
    source = resolve_source(config.source, data=config.data, data_dir=config.data_dir)
    name = source.predictor.model_name
    out = Path(config.out) if config.out else default_output_dir(f"export-{name}-{config.format}")
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    building.chmod(0o755)  # mkdtemp's 0700 would make the export private to this user
    try:
        manifest, checks = _build(config, source, building, say)
        write_manifest(building, manifest)
        if out.exists():
            shutil.rmtree(out)  # an earlier export (checked by _check_out): replaced whole
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ExportResult(out, manifest, checks)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder; {out} is a file. Received: out={str(out)!r}")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise ValueError(
            f"out must be a new or empty folder, or an earlier export to replace; {out} holds "
            f"other files. Received: out={str(out)!r}"
        )
    if out.is_dir() and any(out.iterdir()) and not is_export_folder(out):
        raise ValueError(f"out: {out} is not an export folder. Received: out={str(out)!r}")


def _build(
    config: ExportConfig, source: ExportSource, folder: Path, say: PrintFn
) -> tuple[ExportManifest, tuple[Verification, ...]]:
    fmt = formats.FORMATS[formats.ExportFormat(config.format)]
    predictor = source.predictor
    batch = config.tflite_batch if config.format == "tflite" else 2
    example = source.model_input(sample_images(source, batch, split="train", seed=config.seed))
    say(f"exporting {predictor.model_name} to {config.format} ...")
    files = {"fp32": fmt.export_fp32(predictor.model, example, folder)}
    verify = sample_images(source, config.verify_images)
    data = f"{source.dataset.name} test images" if source.dataset else "random images"
    with torch.inference_mode():
        reference = predictor.model(source.model_input(verify)).float().numpy()
    checks = [_verify(config, source, folder, files["fp32"], "fp32", verify, reference, data)]
    if not checks[0].passed:
        raise ExportMismatchError(
            f"the exported {config.format} fp32 model disagrees with PyTorch: max |logit "
            f"difference| {checks[0].max_abs_logit_diff:.3g} > tolerance "
            f"{checks[0].tolerance:.3g} (atol={config.atol}, rtol={config.rtol}) on "
            f"{checks[0].images} {data}; top-1 agreement {100 * checks[0].top1_agreement:.2f}%. "
            "Nothing was written"
        )
    if config.int8:
        count = config.calibration
        calibration = source.model_input(
            sample_images(source, count, split="train", seed=config.seed)
        )
        say(f"quantising to int8, calibrated on {count} training images ...")
        files["int8"] = fmt.quantize_int8(folder, calibration.numpy(), predictor.model)
        checks.append(
            _verify(config, source, folder, files["int8"], "int8", verify, reference, data)
        )
    entries = {precision: fmt.file_entry(folder, file) for precision, file in files.items()}
    precision = "int8" if config.int8 else "fp32"
    manifest = ExportManifest(
        runtime=config.format,
        precision=precision,
        files=entries,
        model={
            "name": predictor.model_name,
            "kwargs": dict(getattr(predictor.model.cnnlab, "kwargs", {})),
            "input_shape": list(predictor.adapter.model_shape),
            "num_classes": len(predictor.classes),
        },
        input=fmt.input_description(folder, files[precision], predictor.adapter.model_shape),
        output=fmt.output_description(folder, files[precision], len(predictor.classes)),
        preprocessing=_preprocessing(source),
        classes=predictor.classes,
        source=source.to_dict(),
        verification={check.precision: check.to_dict() for check in checks},
        exporter={"cnnlab": __version__, **versions("torch", *fmt.packages)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return manifest, tuple(checks)


def _verify(
    config: ExportConfig,
    source: ExportSource,
    folder: Path,
    file: str,
    precision: str,
    images: torch.Tensor,
    reference: np.ndarray,
    data: str,
) -> Verification:
    backend = open_backend(config.format, folder / file, precision=precision)
    ours = np.concatenate(
        [
            backend.run(source.model_input(images[i : i + 256]).numpy())
            for i in range(0, images.shape[0], 256)
        ]
    )
    difference = float(np.max(np.abs(ours - reference))) if reference.size else 0.0
    agreement = float(np.mean(ours.argmax(axis=1) == reference.argmax(axis=1)))
    tolerance = config.atol + config.rtol * float(np.max(np.abs(reference)))
    accuracy_torch = accuracy = count = None
    if precision == "int8" and source.dataset is not None:
        count = config.eval_images or int(source.dataset.test_labels.shape[0])
        accuracy_torch = _accuracy(source, source.predictor.model, count)
        accuracy = _accuracy(source, RuntimeModule(backend), count)
    return Verification(
        precision=precision,
        images=int(images.shape[0]),
        data=data,
        max_abs_logit_diff=difference,
        tolerance=tolerance if precision == "fp32" else None,
        top1_agreement=agreement,
        eval_images=count,
        accuracy_torch=accuracy_torch,
        accuracy=accuracy,
    )


def _accuracy(source: ExportSource, model: torch.nn.Module, count: int) -> float:
    assert source.dataset is not None
    predictor = source.predictor
    result = evaluate_model(
        model,
        source.dataset.test_images[:count],
        source.dataset.test_labels[:count],
        normalization=predictor.normalization,
        adapter=predictor.adapter,
        device="cpu",
        num_classes=len(predictor.classes),
        batch_size=256,
    )
    return result.accuracy


def _preprocessing(source: ExportSource) -> dict[str, Any]:
    """model.json's recipe from uint8 images to the network's input (see manifest's docstring)."""
    predictor = source.predictor
    adapter = predictor.adapter
    (c, h, w), (c2, h2, w2) = adapter.data_shape, adapter.model_shape
    padding = getattr(adapter, "padding", None)
    if (h, w) == (h2, w2):
        spatial: dict[str, Any] = {"rule": "same"}
    elif padding is not None:
        spatial = {"rule": "pad", "padding": list(padding), "value": 0}
    else:
        spatial = {"rule": "resize", "mode": "bilinear", "antialias": h2 < h or w2 < w}
    channels = "same" if c == c2 else ("repeat" if c == 1 else "luminance")
    return {
        "data_shape": list(adapter.data_shape),
        "dtype": "uint8",
        "scale": 1 / 255,
        "mean": list(predictor.normalization.mean),
        "std": list(predictor.normalization.std),
        "adapter": {**spatial, "channels": channels},
        "description": adapter.description,
    }
