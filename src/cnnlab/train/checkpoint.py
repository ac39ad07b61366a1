"""Checkpoints and run files: atomic writes, the checkpoint format, RNG states, run state.

A checkpoint is one ``torch.save``d dict (see ``CHECKPOINT_KEYS``) holding everything a run
needs to continue exactly where it stopped: weights, optimizer, scheduler, loss scaler, every
random-number generator the loop uses, the position (epoch, step) and the config. Files are
written to a temporary name in the same folder, fsynced, then renamed over the old one, so a
crash or a kill at any moment leaves either the previous checkpoint or the new one, never half.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.runtime.files import (
    atomic_write,
    default_output_dir,
)
from cnnlab.runtime.version import __version__
from cnnlab.train.distributed import Ranks

FORMAT = "cnnlab-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # the best weights by validation accuracy, kept when early stopping is on
METRICS_NAME = "metrics.jsonl"
REPORT_NAME = "report.json"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive: its first local file header

CHECKPOINT_KEYS = (
    "format",
    "version",
    "model",  # {"name", "kwargs", "input_shape", "num_classes"}
    "state_dict",
    "optimizer",
    "scheduler",
    "scaler",  # GradScaler state, or None
    "rng",  # {"torch", "cuda" (or None), "numpy", "python"}
    "epoch",  # completed epochs
    "step",  # steps done in the current (next) epoch
    "global_step",
    "config",  # dataclasses.asdict(TrainConfig)
    "data",  # {"name", "shape", "normalization": {"mean", "std"}, "classes", "adaptation"}
    "metrics",  # the per-epoch dicts of metrics.jsonl
    "best",  # {"epoch", "val_accuracy", "test_accuracy", "restored"} or None
    "finished",
    "cnnlab_version",
)


def new_run_dir(out: str | os.PathLike[str] | None, *, model: str, data: str) -> Path:
    """The folder for a new run (not created yet): not a file, not holding another run."""
    path = default_output_dir(f"{model}-{data}") if out is None else Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"out must be a folder for the run, but {path} is an existing file. "
            f"Received: out={os.fspath(out)!r}"
        )
    held = [name for name in (CHECKPOINT_NAME, METRICS_NAME, REPORT_NAME) if (path / name).exists()]
    if held:
        raise ValueError(
            f"out={str(path)!r} already holds a run ({', '.join(held)}): continue it with "
            f"resume({str(path)!r}) (`cnnlab train --resume {path}`) or choose another out"
        )
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"out={str(path)!r} cannot be created: {parent} is a file")
    return path.resolve()


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> Path:
    """``torch.save`` the checkpoint dict atomically; its keys must be exactly CHECKPOINT_KEYS."""
    assert tuple(checkpoint) == CHECKPOINT_KEYS, sorted(set(checkpoint) ^ set(CHECKPOINT_KEYS))
    return atomic_write(path, lambda file: torch.save(checkpoint, file))


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The checkpoint of a run folder, or ``path`` itself when it is a file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not path.exists():
            raise FileNotFoundError(
                f"No {CHECKPOINT_NAME} in {path.parent}: expected a run folder written by "
                "cnnlab train (it holds checkpoint.pt, metrics.jsonl and, when done, report.json)"
            )
    elif not path.exists():
        raise FileNotFoundError(f"No such run folder or checkpoint: {path}")
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect_model: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint (a file, or a run folder's checkpoint.pt) and check its format.

    Only tensors and plain containers are unpickled (``weights_only=True``): a checkpoint is
    data, never code. ``expect_model`` refuses a checkpoint of another model.
    """
    file = checkpoint_file(path)
    if not zipfile.is_zipfile(file):
        with open(file, "rb") as stream:
            zip_start = stream.read(4) == ZIP_MAGIC
        if zip_start:  # torch.save's zip, cut short: a copy or a write that did not finish
            raise ValueError(
                f"{file} is a truncated or damaged cnnlab checkpoint: it begins as torch.save "
                f"writes it but its end is missing ({file.stat().st_size:,} bytes); expected a "
                "complete checkpoint (copy it again, or use the run folder it came from)"
            )
        raise ValueError(f"{file} is not a cnnlab checkpoint: torch.save did not write it")
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{file} is not a cnnlab checkpoint: it holds Python objects, not only tensors and "
            "plain data, so it is not loaded (torch.load weights_only=True)"
        ) from None
    except Exception as error:  # torch.load raises many types for a damaged file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{file} is not a readable cnnlab checkpoint: torch.load failed ({reason})"
        ) from None
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
    if found != FORMAT:
        raise ValueError(
            f"{file} is not a cnnlab checkpoint: expected format={FORMAT!r}, found {found!r}"
        )
    if checkpoint.get("version") != VERSION:
        raise ValueError(
            f"{file} is a cnnlab checkpoint of version {checkpoint.get('version')!r}; "
            f"this cnnlab reads version {VERSION}"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"{file} is an incomplete cnnlab checkpoint: missing {', '.join(missing)}")
    name = checkpoint["model"]["name"]
    if expect_model is not None and name != expect_model:
        raise ValueError(
            f"{file} holds a checkpoint of model {name!r}, not {expect_model!r}. "
            f"Received: model={expect_model!r}"
        )
    return checkpoint


def rebuild_model(checkpoint: dict[str, Any], file: str | os.PathLike[str]) -> nn.Module:
    """The zoo model a checkpoint read by ``load_checkpoint`` (from ``file``) names, built with
    its arguments and holding its weights; clear errors where they do not fit."""
    try:
        name, kwargs = checkpoint["model"]["name"], dict(checkpoint["model"]["kwargs"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{file} is an incomplete cnnlab checkpoint: cannot read its model description "
            f"({type(error).__name__}: {error})"
        ) from None
    try:
        model = create_model(name, **kwargs)
    except ValueError as error:
        raise ValueError(f"{file}: cannot rebuild its model: {error}") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as error:
        detail = str(error).strip().splitlines()
        reason = " ".join(line.strip() for line in detail[1:3]) or type(error).__name__
        reason = reason if len(reason) <= 400 else reason[:400] + " ..."
        raise ValueError(
            f"{file} is from another model: its weights do not fit {name!r} "
            f"(built with {kwargs or 'the default arguments'}): {reason}"
        ) from None
    return model


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Every generator a training step may draw from (dropout, augmentation in user code)."""
    keys, position, has_gauss, cached_gauss = np.random.get_state()[1:]
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        # Plain lists and numbers, so that weights_only loading accepts them.
        "numpy": [keys.tolist(), int(position), int(has_gauss), float(cached_gauss)],
        "python": [version, list(state), gauss],
    }


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    """Put back the states :func:`capture_rng` took."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
    keys, position, has_gauss, cached_gauss = rng["numpy"]
    np.random.set_state(
        ("MT19937", np.array(keys, dtype=np.uint32), position, has_gauss, cached_gauss)
    )
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))


@dataclass(eq=False)
class RunState:
    """A run in progress: what it trains with and where it stands; ``checkpoint()`` saves it."""

    config: Any  # TrainConfig
    run_dir: Path
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    batches: Any  # cnnlab.data.device.DeviceBatches
    normalization: Any  # cnnlab.data.device.Normalization
    adapter: Any  # cnnlab.data.device.InputAdapter
    data_info: dict[str, Any]  # the checkpoint's "data" entry
    val: tuple[torch.Tensor, torch.Tensor] | None  # uint8 images and labels, on the device
    test: tuple[torch.Tensor, torch.Tensor]
    total_steps: int
    epoch: int = 0  # completed epochs
    step: int = 0  # steps done in epoch ``epoch``
    global_step: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] | None = None  # the best weights, with early stopping
    finished: bool = False
    train_step: Any = None  # cnnlab.train.step.TrainStep over model, optimizer, scheduler
    saved_at: tuple[int, int] = (0, 0)  # (epoch, step) of the checkpoint on disk
    resumed: bool = False  # this process continues a checkpoint
    ranks: Ranks = field(default_factory=Ranks)  # the processes training together (or one)
    task: str = "classify"  # or "detect": a detector's boxes, YOLO loss and mAP

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict, keys in the order of CHECKPOINT_KEYS."""
        info = self.model.cnnlab
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {
                "name": info.name,
                "kwargs": dict(info.kwargs),
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
            },
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": capture_rng(self.device),
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "config": asdict(self.config),
            "data": self.data_info,
            "metrics": list(self.metrics),
            "best": None if self.best is None else dict(self.best),
            "finished": self.finished,
            "cnnlab_version": __version__,
        }

    def restore(self, checkpoint: dict[str, Any], source: Path) -> None:
        """Continue from ``checkpoint`` (read from ``source``): weights, optimizer, RNG, step."""
        try:
            self.model.load_state_dict(checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as error:
            detail = " ".join(str(error).split())  # PyTorch's list of mismatches, on one line
            detail = detail if len(detail) <= 400 else detail[:400] + " ..."
            raise ValueError(
                f"{source} does not fit {self.config.model} built from its own description: "
                f"{detail}"
            ) from None
        if self.scaler is not None and checkpoint["scaler"] is not None:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
        self.global_step = checkpoint["global_step"]
        self.metrics = list(checkpoint["metrics"])
        self.best, self.finished = checkpoint["best"], checkpoint["finished"]
        self.saved_at, self.resumed = (self.epoch, self.step), True
        best_file = self.run_dir / BEST_NAME
        if self.config.patience is not None and self.best is not None and best_file.exists():
            self.best_state = torch.load(best_file, map_location=self.device, weights_only=True)
        restore_rng(checkpoint["rng"], self.device)
