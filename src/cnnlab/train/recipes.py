"""Training recipes: defaults per model, so that ``cnnlab train lenet5 --data mnist`` just works,
and the optimizer and learning-rate schedule a config names.

A recipe is a set of ``TrainConfig`` field values. The CLI starts from the model's recipe and
overrides only the flags the user gave; Python users do the same with ``default_config``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn

from cnnlab.models import get_model_spec
from cnnlab.runtime.devices import fast_bf16, resolve_device
from cnnlab.train.config import TrainConfig

# Small models train in seconds per epoch: AdamW with a one-cycle schedule converges in a few
# epochs without tuning.
SMALL_CNN = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "schedule": "onecycle",
    "batch_size": 128,
    "epochs": 10,
    "weight_decay": 5e-4,
    "augment": False,
}
# The hardware slide's MLP as it is usually trained: plain Adam, constant learning rate.
MLP = {
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "constant",
    "batch_size": 128,
    "epochs": 10,
    "weight_decay": 0.0,
    "augment": False,
}
# ImageNet-style networks: SGD with Nesterov momentum, cosine annealing, weight decay,
# shifts (and flips where the data allows them).
LARGE_CNN = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "schedule": "cosine",
    "batch_size": 128,
    "epochs": 30,
    "weight_decay": 5e-4,
    "augment": True,
}
# Without batch normalisation (AlexNet, VGG) lr 0.1 diverges from the default initialisation;
# 0.01 is what those papers started from.
LARGE_CNN_NO_BATCHNORM = {**LARGE_CNN, "lr": 0.01}

# Detectors (cnnlab.train.detection): AdamW with a one-cycle schedule, small batches of
# scenes, boxes shifted (and flipped where label-safe) with their pixels; bf16 autocast where
# the device computes bf16 in hardware (default_config), which made yolo-scenes' steps 1.8x
# faster than float32 on this project's 2-core Xeon (AMX). Batch 16 gives twice the updates
# of 32 at ~6% fewer scenes/s there; 6 epochs of yolo-scenes reached mAP@0.5 0.868 at batch
# 16 against 0.858 at 32 (lr 2e-3 both), and 0.876 with lr 3e-3. 9 epochs reached mAP@0.5
# 0.903 / mAP@[.5:.95] 0.681 in 645 s of training there; 10 reached 0.907 / 0.686 in 863 s and,
# hours later, in 916 s: the results repeat to the last digit but the host's speed does not
# (the same 500 steps took 56 to 148 s), and 9 keeps the 15 minutes the scenes' target allows
# on a 2-core CPU also on a slow hour.
DETECTOR = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "schedule": "onecycle",
    "batch_size": 16,
    "epochs": 9,
    "weight_decay": 5e-4,
    "augment": True,
}

RECIPES: dict[str, dict[str, Any]] = {
    "lenet-like": SMALL_CNN,
    "lenet5": SMALL_CNN,
    "lenet5-1998": SMALL_CNN,
    "mlp": MLP,
    "alexnet": LARGE_CNN_NO_BATCHNORM,
    "vgg11": LARGE_CNN_NO_BATCHNORM,
    "vgg13": LARGE_CNN_NO_BATCHNORM,
    "vgg16": LARGE_CNN_NO_BATCHNORM,
    "vgg19": LARGE_CNN_NO_BATCHNORM,
    "yolov2-tiny": DETECTOR,
    "yolov3-tiny": DETECTOR,
    "yolo-scenes": DETECTOR,
}


def recipe(model: str) -> dict[str, Any]:
    """The default ``TrainConfig`` values for ``model``; unlisted models get the large-CNN one."""
    get_model_spec(model)  # an unknown model lists the registered ones
    return dict(RECIPES.get(model, LARGE_CNN))


def default_config(model: str, data: str, **overrides: Any) -> TrainConfig:
    """The recipe for ``model`` on ``data`` with ``overrides`` applied (``TrainConfig`` fields).

    Choosing another optimizer than the recipe's SGD turns Nesterov momentum off, unless
    ``nesterov`` is given too (and then it is an error, as for any config). A detector trains
    in bf16 autocast where its device computes bf16 in hardware, else in fp32, unless
    ``precision`` is given.
    """
    known = {f.name for f in fields(TrainConfig)} - {"model", "data"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"default_config: unknown setting(s) {', '.join(unknown)}. "
            f"Expected TrainConfig fields: {', '.join(sorted(known))}"
        )
    values = recipe(model)
    if RECIPES.get(model) is DETECTOR and "precision" not in overrides:
        try:
            device = resolve_device(overrides.get("device", "auto"))
        except ValueError:
            device = torch.device("cpu")  # the config's own check names a bad device
        values["precision"] = "bf16" if fast_bf16(device) else "fp32"
    if overrides.get("optimizer", values["optimizer"]) != "sgd" and "nesterov" not in overrides:
        values.pop("nesterov", None)
    values.update(overrides)
    return TrainConfig(model=model, data=data, **values)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over all of the model's parameters."""
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay
        )
    # The fused kernels update every parameter in one pass: ~5% of a LeNet-like step on CPU.
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, **fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay, **fused)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per optimizer step over ``total_steps``."""
    schedulers = torch.optim.lr_scheduler
    if config.schedule == "onecycle":
        # OneCycleLR also cycles momentum (0.95 -> 0.85 -> 0.95) unless told not to: that would
        # silently replace SGD's configured momentum (even momentum=0). Adam's beta1, which no
        # config field sets, keeps Smith's cycle.
        return schedulers.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total_steps,
            cycle_momentum=config.optimizer != "sgd",
        )
    if config.schedule == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=total_steps)
    return schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0)
