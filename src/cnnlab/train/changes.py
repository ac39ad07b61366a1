"""Settings a resumed run may change: more epochs, a lower learning rate after a NaN stop, ...

A checkpoint holds a run's whole config. Resuming with changes applies them to that config
(validated as any config), says what changed, and rebuilds the learning-rate schedule for the
new plan at the step the run has reached: the schedule is the one a run started with the new
settings would follow, continued from the current step. Settings that would make the resumed
run a different experiment (the data, its order, the model, the optimizer) cannot change.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from cnnlab.train.config import TrainConfig
from cnnlab.train.recipes import build_scheduler

# What may change on resume, and what each change touches.
CHANGEABLE = ("epochs", "steps", "lr", "grad_clip", "patience", "threads", "device")
RESCHEDULING = ("epochs", "steps", "lr")  # the learning-rate schedule depends on these

# What OneCycleLR and the other schedulers store in the optimizer's parameter groups; they are
# recomputed when the schedule is rebuilt.
_SCHEDULE_KEYS = ("initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum")


def apply_changes(
    config: TrainConfig, changes: Mapping[str, Any] | None
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """``config`` with ``changes`` applied, and {field: (old, new)} for the values that differ.

    Raises ValueError naming a setting that cannot change on resume, or an invalid value.
    """
    if not changes:
        return config, {}
    refused = [name for name in changes if name not in CHANGEABLE]
    if refused:
        raise ValueError(
            f"{', '.join(refused)} cannot change when a run resumes (the resumed run would be "
            f"another experiment); these can: {', '.join(CHANGEABLE)}. "
            f"Received: {', '.join(f'{name}={changes[name]!r}' for name in refused)}"
        )
    new = dataclasses.replace(config, **changes)  # validated as every config
    changed = {
        name: (getattr(config, name), getattr(new, name))
        for name in changes
        if getattr(config, name) != getattr(new, name)
    }
    return new, changed


def describe_changes(changed: Mapping[str, tuple[Any, Any]]) -> str:
    """``epochs 3 -> 6, lr 0.1 -> 0.05``."""
    return ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())


def reschedule(run: Any) -> None:
    """Rebuild ``run``'s schedule for its config and ``total_steps``, at ``run.global_step``.

    ``run`` is a restored :class:`cnnlab.train.checkpoint.RunState`: its optimizer's state
    (momentum buffers, Adam moments) is kept; its learning rate follows the new schedule.
    """
    if run.global_step > run.total_steps:
        raise ValueError(
            f"the run has done {run.global_step:,} steps, more than the {run.total_steps:,} "
            "its new settings plan"
        )
    for group in run.optimizer.param_groups:
        for key in _SCHEDULE_KEYS:
            group.pop(key, None)
        group["lr"] = run.config.lr
    scheduler = build_scheduler(run.optimizer, run.config, run.total_steps)
    with warnings.catch_warnings():  # stepping without optimizer.step() is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(run.global_step):
            scheduler.step()
    run.scheduler = scheduler
    run.train_step.scheduler = scheduler
