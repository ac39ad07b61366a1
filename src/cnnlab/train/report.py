"""What a run tells its user: the progress bar, one line per epoch, and at the end
``report.json`` (accuracy, confusion, speed, FLOPs, context) and the plots.

Every number carries its context (DESIGN principle 6): cnnlab version and git commit, torch
version, device name, precision, batch size, seed, threads, wall time and what the training
clock excludes.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.data.device import preprocess
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import device_name
from cnnlab.runtime.files import write_json
from cnnlab.train.checkpoint import REPORT_NAME, RunState
from cnnlab.train.result import TrainResult

PrintFn = Callable[[str], None]
REPORT_FORMAT = "cnnlab-train-report"
EXCLUDED_FROM_TRAINING_CLOCK = (
    "train_seconds counts the optimizer steps only (the device synchronised before each clock "
    "read); it excludes loading the data, building the model, evaluation (eval_seconds), "
    "checkpoints, the report and the plots. wall_seconds is all the time this process took, "
    "from the call of train/resume to the final evaluation (before the report and plots)."
)


def run_context(
    device: torch.device,
    config: Any,
    *,
    wall_seconds: float,
    resumed: bool,
    processes: int = 1,
    backend: str | None = None,
) -> dict[str, Any]:
    """What produced the numbers; ``wall_seconds`` is this process's (a resumed run's last).
    ``processes`` trained together (torchrun), each on batch_size / processes images a step."""
    return {
        **software_context(),
        "device": str(device),
        "device_name": device_name(device),
        "precision": config.precision,
        "parameter_dtype": "float32",
        "batch_size": config.batch_size,
        "seed": config.seed,
        "threads": torch.get_num_threads(),  # per process
        "processes": processes,
        "distributed_backend": backend,
        "wall_seconds": wall_seconds,
        "resumed": resumed,
        "excluded": EXCLUDED_FROM_TRAINING_CLOCK,
    }


def training_flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """Forward + backward FLOPs per image (FlopCounterMode via ``cnnlab.summary``)."""
    from cnnlab.summary import summary

    try:
        return int(summary(model, input_shape).training_flops)
    except ValueError:
        return None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def build_report(
    *,
    checkpoint: dict[str, Any],
    test: Any,
    result: dict[str, Any],
    flops_per_image: int | None,
    context: dict[str, Any],
) -> dict[str, Any]:
    """The report dict; ``test`` is the final EvalResult, ``result`` the TrainResult as a dict."""
    classes = list(checkpoint["data"]["classes"])
    images = sum(record["images"] for record in checkpoint["metrics"])
    if checkpoint["data"].get("task") == "detect":
        from cnnlab.train.detection import detection_report_fields

        scores = detection_report_fields(test)
    else:
        scores = {
            "test_accuracy": test.accuracy,
            "test_loss": test.loss,
            "per_class_accuracy": {
                name: _finite_or_none(value)
                for name, value in zip(classes, test.per_class_accuracy, strict=True)
            },
            "confusion": test.confusion.tolist(),  # rows = true class, columns = predicted
        }
    total_flops = flops_per_image * images if flops_per_image is not None else None
    seconds = result["train_seconds"]
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "model": checkpoint["model"],
        "data": checkpoint["data"],
        "config": checkpoint["config"],
        **scores,
        "best_val_accuracy": result["best_val_accuracy"],
        "best": checkpoint["best"],
        "early_stopped": result["early_stopped"],
        "classes": classes,
        "epochs_run": result["epochs_run"],
        "steps": checkpoint["global_step"],
        "images_trained": images,
        "train_seconds": seconds,
        "eval_seconds": result["eval_seconds"],
        "images_per_second": result["images_per_second"],
        "training_flops_per_image": flops_per_image,
        "training_flops_total": total_flops,
        "achieved_flops_per_second": total_flops / seconds if total_flops and seconds else None,
        "context": context,
        "files": {"checkpoint": "checkpoint.pt", "metrics": "metrics.jsonl", "plots": []},
    }


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    val = record["val_accuracy"]
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"loss {record['loss']:.4f}",
        f"train {record['train_accuracy']:.2%}",
        *([f"val {val:.2%}"] if val is not None else []),
        f"test {record['test_accuracy']:.2%}",
        f"lr {record['lr']:.2e}",
        f"{record['epoch_seconds']:.2f} s ({record['images_per_second']:,.0f} img/s)",
        f"eval {record['eval_seconds']:.2f} s",
    ]
    return "  ".join(parts)


def write_run_report(
    run: RunState, test: Any, result: TrainResult, *, wall_seconds: float, log: PrintFn
) -> dict[str, Any]:
    """report.json, then the plots (and report.json again, listing them); the report dict."""
    checkpoint = run.checkpoint()
    report = build_report(
        checkpoint=checkpoint,
        test=test,
        result=result.to_dict(),
        flops_per_image=training_flops_per_image(run.model, tuple(run.model.cnnlab.input_shape)),
        context=run_context(
            run.device,
            run.config,
            wall_seconds=wall_seconds,
            resumed=run.resumed,
            processes=run.ranks.world_size,
            backend=run.ranks.backend_for(run.device),
        ),
    )
    path = write_json(run.run_dir / REPORT_NAME, report)
    detector = run.task == "detect"
    images = run.test.images if detector else run.test[0]
    image = preprocess(images[:1], run.normalization, run.adapter)[0]  # (C, H, W)
    plots = write_plots(
        run.run_dir,
        metrics=run.metrics,
        confusion=None if detector else test.confusion,
        classes=run.data_info["classes"],
        model=run.model,
        image=image,
        log=log,
        detection=test.metrics if detector else None,
    )
    if plots:
        report["files"]["plots"] = plots
        write_json(path, report)
    return report


def write_plots(
    run_dir: Path,
    *,
    metrics: list[dict[str, Any]],
    confusion: np.ndarray | None,
    classes: list[str],
    model: nn.Module,
    image: torch.Tensor,
    log: PrintFn,
    detection: Any = None,
) -> list[str]:
    """curves.png, confusion.png, kernels.png, features.png; the file names written. A
    detector's run (``detection``: its test DetectionMetrics) has mAP curves and pr.png, the
    precision-recall curves, instead of the confusion matrix."""
    try:
        from cnnlab.train import plots
    except ImportError as error:
        log(f"plots skipped: cnnlab.train.plots is not available ({error})")
        return []
    run_dir = Path(run_dir)
    if detection is not None:
        from cnnlab.detect.metrics import plot_precision_recall

        scores = (
            ("curves.png", lambda path: plots.plot_curves(metrics, path, metric="map50")),
            ("pr.png", lambda path: plot_precision_recall(detection, classes, path)),
        )
    else:
        scores = (
            ("curves.png", lambda path: plots.plot_curves(metrics, path)),
            ("confusion.png", lambda path: plots.plot_confusion(confusion, classes, path)),
        )
    jobs = (
        *scores,
        ("kernels.png", lambda path: plots.plot_kernels(model, path)),
        ("features.png", lambda path: plots.plot_features(model, image, path)),
    )
    written = []
    for name, plot in jobs:
        try:
            written.append(plot(run_dir / name))
        except ValueError as reason:  # a plot that does not apply, e.g. kernels of an MLP
            log(f"{name} skipped: {reason}")
    return [Path(path).name for path in written]


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    console = Console(stderr=True)
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        yield bar
