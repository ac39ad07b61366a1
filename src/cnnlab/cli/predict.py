"""`cnnlab predict` and `cnnlab evaluate`: use a trained model on image files or on a dataset."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.markup import escape

import cnnlab.train.predict as prediction
from cnnlab.cli.common import (
    USAGE_EXIT,
    QuietOption,
    WholeTable,
    out,
    output_errors,
    print_error,
    print_json,
    user_errors,
)
from cnnlab.data import load_dataset
from cnnlab.data.device import InputAdapter
from cnnlab.deploy import is_export_folder, load_export
from cnnlab.train.evaluate import evaluate_model

CONFUSION_MAX_CLASSES = 20  # larger matrices go to --json only; they do not fit a terminal

DeviceOption = Annotated[
    str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class Split(str, Enum):
    test = "test"
    train = "train"


@user_errors(flags={"batch_size": "--batch-size", "top": "--top"})
def predict_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="A run folder, its checkpoint.pt, or an export folder.")
    ],
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files (PNG, JPEG, BMP, ...) or folders of them."),
    ],
    top: Annotated[int, typer.Option(min=1, help="How many classes to list per image.")] = 5,
    invert: Annotated[
        bool,
        typer.Option(
            help="Invert the images: dark drawings on light paper, for light-on-dark data (MNIST)."
        ),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Images per forward pass; a time per image is then the pass's share.",
        ),
    ] = 64,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write path,label,class,probability,error per image to this CSV and print a "
            "summary instead of every image.",
        ),
    ] = None,
    quiet: QuietOption = False,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Classify image files, Darknet-style: the top classes and the time of each forward pass."""
    predictor = _load(checkpoint, device)
    start = time.perf_counter()
    results = prediction.predict_files(
        predictor, images, top=top, invert=invert, batch_size=batch_size
    )
    seconds = time.perf_counter() - start
    failed = [result for result in results if not result.ok]
    written = None
    if csv_file is not None:
        with output_errors("--csv", csv_file):
            written = prediction.write_file_predictions(results, predictor.classes, csv_file)
    if json_output:
        print_json([result.to_dict() for result in results])
    elif written is not None:
        for result in failed:
            print_error(result.error or "")
        if not quiet:
            done = len(results) - len(failed)
            out.print(
                f"classified {done:,} image{'s' if done != 1 else ''} in {seconds:.2f} s "
                f"({done / seconds:,.0f} images/s, batches of up to {batch_size}, "
                f"{predictor.device})"
                + (f"; {len(failed):,} could not be read" if failed else "")
                + f"; wrote {written}",
                markup=False,
            )
    else:
        for result in results:
            if not result.ok:
                print_error(result.error or "")
                continue
            out.print(f"{result.path}: Predicted in {result.seconds:f} seconds.", markup=False)
            for probability, name in result.top:
                out.print(f"{100 * probability:5.2f}%: {name}", markup=False)
    if failed:
        raise typer.Exit(USAGE_EXIT)  # a file that is not an image is bad input


def _trained_detection_folder(run: Path) -> str | None:
    """The detection folder a detector's run trained on, from its report (small; the checkpoint
    is read once, later); None for a classifier's run or a bare checkpoint file."""
    import json

    from cnnlab.train.checkpoint import REPORT_NAME, checkpoint_file

    try:
        report = json.loads((checkpoint_file(run).parent / REPORT_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    data = report.get("data") if isinstance(report, dict) else None
    if isinstance(data, dict) and data.get("task") == "detect":
        return data.get("source")
    return None


@user_errors(flags={"data_dir": "--data-dir", "batch_size": "--batch-size"})
def evaluate_command(
    run: Annotated[
        Path, typer.Argument(help="A run folder, a checkpoint file, or an export folder.")
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="Dataset name; default: the one the model was trained on. For a detector, a "
            "detection folder (what `cnnlab data scenes` writes, YOLO or COCO)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="A folder that holds the dataset's files.")
    ] = None,
    split: Annotated[Split, typer.Option(help="Which part of the dataset to score.")] = Split.test,
    write_predictions: Annotated[
        Path | None,
        typer.Option(help="Write the predicted labels as a leaderboard CSV (id,label)."),
    ] = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per forward pass (a detector: at most 32).")
    ] = 1024,
    json_output: JsonOption = False,
) -> None:
    """Score a trained model on a dataset: accuracy, per-class accuracy, confusion matrix. A
    detector on a detection folder: COCO mAP@[.5:.95], mAP@0.5 and AP per class computed by
    pycocotools, metrics.json and a precision-recall PNG in RUN/evaluate-DATA-SPLIT/."""
    from cnnlab.detect.datasets import is_detection_folder

    trained_on = _trained_detection_folder(run)  # a detector's own scenes; None for a classifier
    if trained_on is not None and not Path(data or trained_on).is_dir():
        given = f"--data={data}" if data is not None else f"no --data, and {trained_on} is gone"
        raise ValueError(
            f"{run} holds a detector: --data must be a folder of detection data (what "
            f"`cnnlab data scenes` writes, YOLO or COCO), like the {trained_on} it trained "
            f"on. Received: {given}"
        )
    data = trained_on if data is None else data
    if trained_on is not None or (data is not None and is_detection_folder(data)):
        from cnnlab.cli.detect_evaluate import evaluate_detection

        evaluate_detection(run, Path(data), split.value, min(batch_size, 32), json_output)
        return
    predictor = _load(run, device)
    name = data or predictor.data_name
    dataset = load_dataset(name, data_dir=data_dir)
    if tuple(dataset.classes) != predictor.classes:
        raise ValueError(
            f"--data {name} has the classes {_names(dataset.classes)}, but the model in "
            f"{predictor.checkpoint} was trained on {predictor.data_name} with "
            f"{_names(predictor.classes)}: expected a dataset with the same classes"
        )
    images = torch.as_tensor(getattr(dataset, f"{split.value}_images"))
    labels = torch.as_tensor(getattr(dataset, f"{split.value}_labels"))
    adapter = predictor.adapter
    if tuple(images.shape[1:]) != predictor.data_shape:
        adapter = InputAdapter(tuple(images.shape[1:]), adapter.model_shape)
    result = evaluate_model(
        predictor.model,
        images,
        labels,
        normalization=predictor.normalization,
        adapter=adapter,
        device=predictor.device,
        batch_size=batch_size,
        num_classes=len(predictor.classes),
    )
    written = None
    if write_predictions is not None:
        with output_errors("--write-predictions", write_predictions):
            written = prediction.write_predictions(result.predictions, write_predictions)
    report = _report(predictor, dataset.name, split.value, result, written)
    if json_output:
        print_json(report)
        return
    _print_report(report, adapter)


def _load(path: Path, device: str) -> prediction.Predictor:
    """A run folder or checkpoint on PyTorch, or an export folder (cnnlab export) on its runtime."""
    if not is_export_folder(path):
        return prediction.load(path, device=device)
    if device not in ("auto", "cpu"):
        raise ValueError(
            f"an export folder runs on its runtime's CPU session: --device must be auto or cpu. "
            f"Received: --device {device}"
        )
    return load_export(path).predictor


def _report(
    predictor: prediction.Predictor, data: str, split: str, result: Any, written: Path | None
) -> dict[str, Any]:
    samples = result.confusion.sum(axis=1)
    return {
        "checkpoint": str(predictor.checkpoint),
        "model": predictor.model_name,
        "trained_on": predictor.data_name,
        "data": data,
        "split": split,
        "samples": result.samples,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "seconds": result.seconds,
        "device": str(predictor.device),
        "per_class": [
            {
                "class": name,
                "samples": int(count),
                "correct": int(result.confusion[i, i]),
                "accuracy": None if np.isnan(acc) else float(acc),
            }
            for i, (name, count, acc) in enumerate(
                zip(predictor.classes, samples, result.per_class_accuracy, strict=True)
            )
        ],
        "confusion": result.confusion,
        "predictions_file": str(written) if written else None,
    }


def _print_report(report: dict[str, Any], adapter: InputAdapter) -> None:
    out.print(
        f"{report['model']} on {report['data']} ({report['split']}, {report['samples']:,} images, "
        f"{report['device']}): accuracy {100 * report['accuracy']:.2f}%, "
        f"loss {report['loss']:.4f}, {report['seconds']:.2f} s",
        markup=False,
    )
    out.print(f"input: {adapter.description}", markup=False)
    table = WholeTable(title="per-class accuracy", title_justify="left")
    table.add_column("class")
    for header in ("images", "correct", "accuracy"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in report["per_class"]:
        accuracy = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
        table.add_row(escape(row["class"]), f"{row['samples']:,}", f"{row['correct']:,}", accuracy)
    out.print(table)
    confusion = report["confusion"]
    if len(confusion) <= CONFUSION_MAX_CLASSES:
        out.print(_confusion_table([row["class"] for row in report["per_class"]], confusion))
    else:
        out.print(f"confusion matrix: {len(confusion)} classes, see --json", markup=False)
    if report["predictions_file"]:
        out.print(f"predictions written to {report['predictions_file']}", markup=False)


def _confusion_table(classes: list[str], confusion: np.ndarray) -> WholeTable:
    """Rows are the true classes, columns the predicted ones (numbered as the rows)."""
    table = WholeTable(
        title="confusion matrix (rows: true class, columns: predicted)", title_justify="left"
    )
    table.add_column("true \\ predicted", justify="left")
    for i in range(len(classes)):
        table.add_column(str(i), justify="right", no_wrap=True)
    for i, (name, row) in enumerate(zip(classes, confusion, strict=True)):
        cells = [
            f"[bold]{v:,}[/]" if j == i else (f"{v:,}" if v else ".") for j, v in enumerate(row)
        ]
        label = name if name == str(i) else f"{i} {name}"
        table.add_row(escape(label), *cells)
    return table


def _names(classes: Any, limit: int = 6) -> str:
    names = [str(c) for c in classes]
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"[{shown}] ({len(names)})"
