"""Mutations: one training option silently switched off inside torch, for a pytest session.

``CNNLAB_MUTATION=<name> pytest tests/train/test_options.py`` runs the tests against a torch
that ignores one option; ``tests/conftest.py`` registers this plugin only when the variable is
set. The option's tests must then fail, and ``tests/mutations/run.py`` checks that each
mutation is killed. Only torch is changed, never cnnlab, so the loop runs its own code: a
mutation stands for a loop that forgot to pass the option on.

Each patch counts the calls it changed; the count is printed at the end of the session
("... changed N calls"), so that a kill can be told from a mutation the tests never reach.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import pytest

ENV = "CNNLAB_MUTATION"
SUMMARY_PREFIX = "cnnlab mutation"

Hit = Callable[[], None]


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    apply: Callable[[pytest.MonkeyPatch, Hit], None]


def freeze_lr_schedules(patch: pytest.MonkeyPatch, hit: Hit) -> None:
    """After the step a scheduler's constructor takes, ``scheduler.step()`` does nothing."""
    import torch

    scheduler_class = torch.optim.lr_scheduler.LRScheduler
    original = scheduler_class.step
    started = weakref.WeakSet()

    def step(self, *args, **kwargs):
        if self in started:
            hit()
            return None
        started.add(self)
        return original(self, *args, **kwargs)

    patch.setattr(scheduler_class, "step", step)


def skip_grad_clipping(patch: pytest.MonkeyPatch, hit: Hit) -> None:
    """``clip_grad_norm_`` returns the total norm but leaves the gradients as they are."""
    import torch

    def clip_grad_norm_(
        parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None
    ):
        hit()
        tensors = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        norms = [torch.linalg.vector_norm(p.grad, norm_type) for p in tensors if p.grad is not None]
        if not norms:
            return torch.tensor(0.0)
        return torch.linalg.vector_norm(torch.stack(norms), norm_type)

    patch.setattr(torch.nn.utils, "clip_grad_norm_", clip_grad_norm_)
    patch.setattr(torch.nn.utils.clip_grad, "clip_grad_norm_", clip_grad_norm_)


def drop_label_smoothing(patch: pytest.MonkeyPatch, hit: Hit) -> None:
    """``F.cross_entropy`` ignores ``label_smoothing`` (patched on torch.nn.functional, which
    is what ``F.cross_entropy`` looks up at each call)."""
    import torch.nn.functional as F

    original = F.cross_entropy
    position = 7  # (input, target, weight, size_average, ignore_index, reduce, reduction, ...)

    def cross_entropy(*args, **kwargs):
        smoothing = kwargs.pop("label_smoothing", args[position] if len(args) > position else 0)
        if smoothing:
            hit()
        return original(*args[:position], **kwargs)

    patch.setattr(F, "cross_entropy", cross_entropy)


def force_optimizer_default(key: str, value: object) -> Callable[[pytest.MonkeyPatch, Hit], None]:
    """Every optimizer is built with ``defaults[key] = value``, whatever it was given."""

    def apply(patch: pytest.MonkeyPatch, hit: Hit) -> None:
        import torch

        original = torch.optim.Optimizer.__init__

        def __init__(self, params, defaults):
            if key in defaults and defaults[key] != value:
                hit()
                defaults = {**defaults, key: value}
            original(self, params, defaults)

        patch.setattr(torch.optim.Optimizer, "__init__", __init__)

    return apply


def drop_channels_last(patch: pytest.MonkeyPatch, hit: Hit) -> None:
    """``Tensor.to`` and ``Tensor.contiguous`` ignore a channels-last ``memory_format``;
    ``Module.to`` converts its parameters through ``Tensor.to``."""
    import torch

    layouts = (torch.channels_last, torch.channels_last_3d)
    to, contiguous = torch.Tensor.to, torch.Tensor.contiguous

    def layout_dropped(kwargs: dict) -> dict:
        if kwargs.get("memory_format") in layouts:
            hit()
            kwargs = {k: v for k, v in kwargs.items() if k != "memory_format"}
        return kwargs

    patch.setattr(torch.Tensor, "to", lambda self, *a, **kw: to(self, *a, **layout_dropped(kw)))
    patch.setattr(
        torch.Tensor, "contiguous", lambda self, **kw: contiguous(self, **layout_dropped(kw))
    )


def disable_autocast(patch: pytest.MonkeyPatch, hit: Hit) -> None:
    """``torch.autocast`` (and ``torch.amp.autocast``) is always built with enabled=False."""
    import torch

    class autocast(torch.amp.autocast_mode.autocast):
        def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
            if enabled:
                hit()
            super().__init__(device_type, dtype=dtype, enabled=False, cache_enabled=cache_enabled)

    patch.setattr(torch, "autocast", autocast)
    patch.setattr(torch.amp, "autocast", autocast)


MUTATIONS = {
    m.name: m
    for m in (
        Mutation("lr-schedule", "the LR scheduler never steps", freeze_lr_schedules),
        Mutation("grad-clip", "clip_grad_norm_ does not clip", skip_grad_clipping),
        Mutation("label-smoothing", "cross_entropy ignores label_smoothing", drop_label_smoothing),
        Mutation(
            "weight-decay",
            "optimizers get weight_decay=0",
            force_optimizer_default("weight_decay", 0.0),
        ),
        Mutation("channels-last", "Tensor.to/contiguous ignore channels_last", drop_channels_last),
        Mutation("autocast", "torch.autocast is always disabled", disable_autocast),
        Mutation("nesterov", "SGD gets nesterov=False", force_optimizer_default("nesterov", False)),
        Mutation("momentum", "SGD gets momentum=0", force_optimizer_default("momentum", 0.0)),
    )
}


class MutationPlugin:
    """Applies one mutation at session start and undoes it at the end."""

    def __init__(self, name: str) -> None:
        if name not in MUTATIONS:
            raise pytest.UsageError(
                f"{ENV} must name a mutation: {', '.join(MUTATIONS)}. Received: {ENV}={name!r}"
            )
        self.mutation = MUTATIONS[name]
        self.patch = pytest.MonkeyPatch()
        self.hits = 0

    def hit(self) -> None:
        self.hits += 1

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"{SUMMARY_PREFIX} {self.mutation.name}: {self.mutation.description}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.mutation.apply(self.patch, self.hit)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.patch.undo()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_line(
            f"{SUMMARY_PREFIX} {self.mutation.name}: changed {self.hits} calls"
        )


def plugin_from_environment() -> MutationPlugin | None:
    """The plugin for ``$CNNLAB_MUTATION``, or None when it is not set."""
    name = os.environ.get(ENV)
    return MutationPlugin(name) if name else None
