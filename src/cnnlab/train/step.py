"""One optimizer step, the same everywhere a model is trained or a step is timed.

``TrainStep`` is what the trainer runs for every batch, what ``cnnlab bench crossover`` times
per batch size, and what the quest baselines time to estimate a CNN's training: autocast to the
run's precision, cross-entropy (with label smoothing) in float32, backward (through the loss
scaler for fp16 on CUDA), gradient clipping, the optimizer and the learning-rate schedule.
Timing a step that differs from the trained one would measure something nobody runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.runtime.devices import AUTOCAST_DTYPES


@dataclass(eq=False)
class TrainStep:
    """``step(inputs, labels)`` trains ``model`` on one batch; returns (loss, logits), detached.

    ``inputs`` are the preprocessed float batch on the model's device, ``labels`` int64 class
    ids. The loss and logits stay on the device (no synchronisation), so a loop can add them
    up without waiting for each step. ``last_lr`` is the learning rate the last step used.
    ``loss_fn(outputs, labels)`` replaces the cross-entropy (a detector's YOLO loss on its head
    maps, ``labels`` then its targets); it is computed in float32 as the cross-entropy is.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None  # loss scaling, for fp16 on CUDA
    precision: str = "fp32"  # fp32, bf16 or fp16: the autocast dtype of the forward pass
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # the global gradient norm is clipped to this
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    last_lr: float = math.nan

    def __post_init__(self) -> None:
        if self.precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"precision must be one of {', '.join(AUTOCAST_DTYPES)}. "
                f"Received: precision={self.precision!r}"
            )

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(inputs.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.model(inputs)
        if self.loss_fn is not None:
            loss = self.loss_fn(logits, labels)
        else:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        if self.scaler is None:
            loss.backward()
            self._clip()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        if isinstance(logits, torch.Tensor):
            return loss.detach(), logits.detach()
        return loss.detach(), [output.detach() for output in logits]  # a detector's head maps

    def _clip(self) -> None:
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
