"""`cnnlab export`: a trained run (or a zoo model) as ONNX, OpenVINO or TFLite, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import QuietOption, err, out, output_errors, print_json, user_errors
from cnnlab.deploy import ExportConfig, ExportFormat, export_model

FLAGS = {
    "source": "SOURCE",
    "out": "--out",
    "calibration": "--calibration",
    "verify_images": "--verify-images",
    "eval_images": "--eval-images",
    "tflite_batch": "--batch",
    "data": "--data",
}


@user_errors(flags=FLAGS)
def export_command(
    source: Annotated[str, typer.Argument(help="A run folder, a checkpoint, or a zoo model name.")],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="onnx, openvino or tflite.")
    ] = ExportFormat.onnx,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also quantise to int8, calibrated on training images.")
    ] = False,
    calibration: Annotated[
        int, typer.Option(help="Training images that calibrate the int8 ranges.")
    ] = 512,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="The export folder (default: runs/export-MODEL-FORMAT-TIME)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Dataset to check on (default: the run's own).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="A folder that holds the dataset's files.")
    ] = None,
    verify_images: Annotated[
        int, typer.Option(help="Test images compared with PyTorch, image by image.")
    ] = 256,
    eval_images: Annotated[
        int | None,
        typer.Option(help="Test images behind the int8 accuracy (default: the whole test set)."),
    ] = None,
    batch: Annotated[
        int, typer.Option(help="TFLite only: the batch size fixed at conversion.")
    ] = 1,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print model.json.")] = False,
) -> None:
    """Export a model, check it against PyTorch on real test images, and write model.json.

    A fp32 model whose outputs disagree with PyTorch's is refused (nothing is written).
    """
    config = ExportConfig(
        source=source,
        format=format.value,
        int8=int8,
        calibration=calibration,
        out=None if out_dir is None else str(out_dir),
        data=data,
        data_dir=None if data_dir is None else str(data_dir),
        verify_images=verify_images,
        eval_images=eval_images,
        tflite_batch=batch,
    )
    with output_errors("--out", out_dir or Path("runs"), given=out_dir is not None):
        result = export_model(config, print_fn=None if json_output or quiet else _progress)
    if json_output:
        print_json(result.to_dict())
        return
    for check in result.verifications:
        out.print(f"checked {check.describe()}", markup=False)
    manifest = result.manifest
    for precision, entry in manifest.files.items():
        out.print(
            f"{precision}: {result.folder / entry['file']} ({entry['bytes']:,} bytes)", markup=False
        )
    out.print(
        f"exported {manifest.model['name']} to {result.folder} ({manifest.runtime}, default "
        f"{manifest.precision}); run it with: cnnlab predict {result.folder} IMAGE...",
        markup=False,
    )


def _progress(message: str) -> None:
    err.print(message, markup=False)
