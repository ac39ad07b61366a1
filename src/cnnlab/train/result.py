"""What training returns or raises: ``TrainResult``, ``TrainingInterrupted``, ``TrainingDiverged``.

A ``TrainResult`` is complete: accuracy, loss, per-class accuracy and confusion, images and
steps trained, FLOPs, speed, the plots written and the per-epoch metrics, so that no caller
has to read report.json back (the report holds the same numbers plus the run's context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.train.checkpoint import REPORT_NAME


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved at a step boundary; resume continues."""

    def __init__(self, run_dir: Path, epoch: int, step: int) -> None:
        self.run_dir, self.epoch, self.step = Path(run_dir), epoch, step
        super().__init__(
            f"interrupted at epoch {epoch + 1}, step {step}; the checkpoint is saved. "
            f"Resume with: cnnlab train --resume {run_dir} "
            f"(in Python: cnnlab.resume({str(run_dir)!r}))"
        )


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept.

    ``epoch`` and ``step`` (within the epoch) count from 1, as in the message.
    """

    def __init__(self, message: str, *, run_dir: Path, epoch: int, step: int) -> None:
        super().__init__(message)
        self.run_dir, self.epoch, self.step = Path(run_dir), epoch, step


@dataclass(frozen=True, repr=False)
class TrainResult:
    """What a run achieved: the numbers of its report.json, its plots and per-epoch metrics."""

    run_dir: Path
    test_accuracy: float | None  # None for a detector, scored by test_map50 and test_map
    best_val_accuracy: float | None
    epochs_run: int
    train_seconds: float  # optimizer steps only
    eval_seconds: float  # validation and test evaluations
    images_per_second: float  # training images per second of train_seconds
    metrics: tuple[dict[str, Any], ...]  # one dict per epoch, as in metrics.jsonl
    report: Path
    early_stopped: bool = False
    test_loss: float | None = None
    steps: int = 0  # optimizer steps, over all epochs
    images_trained: int = 0  # training images seen, counted once per epoch they were seen in
    training_flops_per_image: int | None = None  # forward + backward, FlopCounterMode
    training_flops_total: int | None = None
    achieved_flops_per_second: float | None = None  # training FLOPs / train_seconds
    classes: tuple[str, ...] = ()
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()  # rows = true class, columns = predicted
    plots: tuple[Path, ...] = ()  # the PNGs written into run_dir
    wall_seconds: float | None = None  # this process's whole time (see the report's context)
    context: dict[str, Any] = field(default_factory=dict)  # versions, device, seed, threads...
    test_map50: float | None = None  # a detector's COCO mAP@0.5 on the test split
    test_map: float | None = None  # and its mAP@[.5:.95] (pycocotools)

    @classmethod
    def from_checkpoint(
        cls,
        run_dir: Path,
        checkpoint: dict[str, Any],
        *,
        test_accuracy: float | None = None,
        extra_eval_seconds: float = 0.0,
    ) -> TrainResult:
        """The numbers a checkpoint alone records; the report adds the rest (``from_report``)."""
        metrics, best = checkpoint["metrics"], checkpoint["best"]
        if test_accuracy is None:
            restored = best is not None and best["restored"]
            test_accuracy = best["test_accuracy"] if restored else metrics[-1]["test_accuracy"]
        seconds = sum(record["epoch_seconds"] for record in metrics)
        images = sum(record["images"] for record in metrics)
        patience = checkpoint["config"]["patience"]
        stopped = (
            checkpoint["finished"]
            and patience is not None
            and best is not None
            and metrics[-1]["epoch"] - best["epoch"] >= patience
        )
        return cls(
            run_dir=Path(run_dir),
            test_accuracy=test_accuracy,
            best_val_accuracy=None if best is None else best["val_accuracy"],
            epochs_run=len(metrics),
            train_seconds=seconds,
            eval_seconds=sum(record["eval_seconds"] for record in metrics) + extra_eval_seconds,
            images_per_second=images / seconds if seconds > 0 else 0.0,
            metrics=tuple(metrics),
            report=Path(run_dir) / REPORT_NAME,
            early_stopped=bool(stopped),
            steps=int(checkpoint["global_step"]),
            images_trained=int(images),
        )

    @classmethod
    def from_report(
        cls, run_dir: str | Path, report: dict[str, Any], metrics: list[dict[str, Any]]
    ) -> TrainResult:
        """The result of a finished run from its report dict and its per-epoch metrics."""
        run_dir = Path(run_dir)
        return cls(
            run_dir=run_dir,
            test_accuracy=report["test_accuracy"],
            best_val_accuracy=report["best_val_accuracy"],
            epochs_run=report["epochs_run"],
            train_seconds=report["train_seconds"],
            eval_seconds=report["eval_seconds"],
            images_per_second=report["images_per_second"],
            metrics=tuple(metrics),
            report=run_dir / REPORT_NAME,
            early_stopped=report["early_stopped"],
            test_loss=report["test_loss"],
            steps=report["steps"],
            images_trained=report["images_trained"],
            training_flops_per_image=report["training_flops_per_image"],
            training_flops_total=report["training_flops_total"],
            achieved_flops_per_second=report["achieved_flops_per_second"],
            classes=tuple(report["classes"]),
            per_class_accuracy=dict(report["per_class_accuracy"]),
            confusion=tuple(tuple(row) for row in report["confusion"]),
            plots=tuple(run_dir / name for name in report["files"]["plots"]),
            wall_seconds=report["context"].get("wall_seconds"),
            context=dict(report["context"]),
            test_map50=report.get("test_map50"),
            test_map=report.get("test_map"),
        )

    @property
    def headline(self) -> str:
        """The test score in words: accuracy, or a detector's mAP."""
        if self.test_map50 is not None:
            return f"test mAP@0.5 {self.test_map50:.2%}, mAP@[.5:.95] {self.test_map:.2%}"
        return f"test accuracy {self.test_accuracy:.2%}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): every field, paths as strings."""
        return {
            "run_dir": str(self.run_dir),
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "test_map50": self.test_map50,
            "test_map": self.test_map,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            "images_trained": self.images_trained,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "wall_seconds": self.wall_seconds,
            "images_per_second": self.images_per_second,
            "training_flops_per_image": self.training_flops_per_image,
            "training_flops_total": self.training_flops_total,
            "achieved_flops_per_second": self.achieved_flops_per_second,
            "early_stopped": self.early_stopped,
            "classes": list(self.classes),
            "per_class_accuracy": dict(self.per_class_accuracy),
            "confusion": [list(row) for row in self.confusion],
            "report": str(self.report),
            "plots": [str(path) for path in self.plots],
            "context": dict(self.context),
            "metrics": list(self.metrics),
        }

    def __repr__(self) -> str:
        val = "" if self.best_val_accuracy is None else f", best_val={self.best_val_accuracy:.4f}"
        if self.test_map50 is not None:
            score = f"test_map50={self.test_map50:.4f}, test_map={self.test_map:.4f}"
        else:
            score = f"test_accuracy={self.test_accuracy:.4f}"
        return (
            f"TrainResult({str(self.run_dir)!r}, {score}{val}, "
            f"epochs={self.epochs_run}, steps={self.steps}, images={self.images_trained:,}, "
            f"train={self.train_seconds:.2f} s, eval={self.eval_seconds:.2f} s, "
            f"{self.images_per_second:,.0f} img/s)"
        )
