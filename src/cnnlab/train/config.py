"""``TrainConfig``: everything a training run depends on, validated once, stored in checkpoints.

A run is fully described by its config (plus the code and the data), which is why ``resume``
needs nothing but the run folder: the checkpoint holds ``dataclasses.asdict(config)``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cnnlab.models import get_model_spec
from cnnlab.runtime.validate import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_positive_int,
    is_integer,
)


class Optimizer(str, Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(str, Enum):
    CONSTANT = "constant"  # the learning rate stays at lr
    ONECYCLE = "onecycle"  # warm up to lr over 30% of the steps, then anneal (Smith & Topin 2019)
    COSINE = "cosine"  # anneal from lr to 0 along a half cosine (Loshchilov & Hutter 2017)


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast to bfloat16; the weights and optimizer state stay float32
    FP16 = "fp16"  # autocast to float16, with loss scaling on CUDA


_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


MAX_EPOCHS = 1_000_000  # beyond this a run would not end in a lifetime, even on tiny data
THREADS_PER_CPU = 4  # more threads than this per usable CPU only make them wait for each other


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), not all the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(name: str, value: Any) -> None:
    """``value`` is None or from 1 to 4 threads per usable CPU (a typo like 1000 is refused)."""
    high = THREADS_PER_CPU * usable_cpus()
    if value is None or (is_integer(value) and 1 <= value <= high):
        return
    raise ValueError(
        f"{name} must be an integer from 1 to {high} ({THREADS_PER_CPU} per CPU this process may "
        f"use: {usable_cpus()}). Received: {name}={value!r}"
    )


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Start from :func:`cnnlab.train.default_config` for a model's recipe."""

    model: str
    data: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    epochs: int = 10
    steps: int | None = None  # a cap on the total optimizer steps, for quick runs and benchmarks
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    augment: bool = False
    val_split: float = 0.0  # the fraction of the training set held out for validation (seeded)
    patience: int | None = None  # early stopping: epochs without a better val accuracy
    grad_clip: float | None = None  # clip the global gradient norm to this value
    precision: str = "fp32"
    # channels_last memory format for conv models: None = on when the model has a Conv2d.
    # On this project's 2-core CPU it makes LeNet-like steps about 1.5x faster (avg-pooling and
    # the convolutions' backward pass are vectorised over channels).
    channels_last: bool | None = None
    device: str = "auto"
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    out: str | None = None  # the run folder; None = runs/<model>-<data>-<YYYYmmdd-HHMMSS>
    eval_batch_size: int = 1024
    # Several processes (torchrun): batch norm over the global batch (torch.nn.SyncBatchNorm,
    # CUDA only) instead of each process's share of it.
    sync_bn: bool = False

    def __post_init__(self) -> None:
        for name in ("model", "data"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty name. Received: {name}={value!r}")
        get_model_spec(self.model)  # an unknown model lists the registered ones
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(
                f"model_kwargs must be a dict. Received: model_kwargs={self.model_kwargs!r}"
            )
        for name in ("data_dir", "out"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a path or None. Received: {name}={value!r}")
        for name in ("optimizer", "schedule", "precision"):
            options = {"optimizer": Optimizer, "schedule": Schedule, "precision": Precision}[name]
            object.__setattr__(self, name, check_choice(name, getattr(self, name), options))

        check_int("epochs", self.epochs, low=1, high=MAX_EPOCHS)
        check_positive_int("steps", self.steps, optional=True)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        check_positive_int("patience", self.patience, optional=True)
        check_threads("threads", self.threads)
        if not is_integer(self.seed) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32). Received: seed={self.seed!r}")
        check_number("lr", self.lr, 0.0, math.inf, "a positive number", open_low=True)
        check_number("momentum", self.momentum, 0.0, 1.0, "in [0, 1)")
        check_number("weight_decay", self.weight_decay, 0.0, math.inf, "a number >= 0")
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0, "in [0, 1)")
        check_number("val_split", self.val_split, 0.0, 1.0, "a fraction in [0, 1)")
        if self.grad_clip is not None:
            expected = "a positive number or None"
            check_number("grad_clip", self.grad_clip, 0.0, math.inf, expected, open_low=True)
        for name in ("nesterov", "augment", "sync_bn"):
            check_bool(name, getattr(self, name))
        if self.channels_last not in (None, True, False):
            raise ValueError(
                "channels_last must be True, False or None (automatic). "
                f"Received: channels_last={self.channels_last!r}"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError(
                "nesterov needs optimizer='sgd' with momentum > 0. Received: "
                f"nesterov=True, optimizer={self.optimizer!r}, momentum={self.momentum!r}"
            )
        if self.patience is not None and self.val_split == 0:
            raise ValueError(
                "patience (early stopping on validation accuracy) needs a validation set: "
                f"set val_split > 0. Received: patience={self.patience!r}, val_split=0"
            )
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(
                f"device must be auto, cpu, cuda, cuda:N or mps. Received: device={self.device!r}"
            )

    def __repr__(self) -> str:
        extra = f", steps={self.steps}" if self.steps else ""
        return (
            f"TrainConfig({self.model!r}, data={self.data!r}, epochs={self.epochs}{extra}, "
            f"batch_size={self.batch_size}, {self.optimizer} lr={self.lr:g} {self.schedule}, "
            f"precision={self.precision}, device={self.device!r}, seed={self.seed})"
        )
