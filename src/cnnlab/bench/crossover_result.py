"""What a crossover sweep found: its timed points, where the GPU starts to beat the CPU, and
the notes a reader needs (the data used, a missing GPU, a shared CPU, why GPU times are flat).

A "crossover" is the smallest swept value (the MLP's width n, or a zoo model's batch size)
from which the accelerator is faster at every larger value: a single lucky point below that
does not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.runtime.contention import busy_note

if TYPE_CHECKING:
    from cnnlab.bench.crossover import CrossoverConfig

FLAT_RATIO = 1.5  # GPU step times within this factor of the smallest model's count as flat


@dataclass(frozen=True)
class CrossoverPoint:
    """One (device, batch size, width or model) timing of one epoch."""

    device: str
    batch_size: int
    width: int | None  # the MLP's n; None when a zoo model's batch size is swept
    parameters: int
    samples: int  # one epoch
    steps: int  # optimizer steps per epoch
    measured_steps: int
    measured_samples: int
    measured_seconds: float
    seconds: float  # one epoch: measured, or extrapolated from the measured steps
    flops_per_sample: int | None  # forward + backward (FlopCounterMode), optimizer excluded
    warmup_steps: int
    others_cpu_share: float | None = None  # of all CPUs' time while timed, by other processes

    @property
    def x(self) -> int:
        """The swept value: the width, or the batch size when a zoo model is swept."""
        return self.batch_size if self.width is None else self.width

    @property
    def extrapolated(self) -> bool:
        return self.measured_samples < self.samples

    @property
    def seconds_per_step(self) -> float:
        return self.measured_seconds / self.measured_steps

    @property
    def achieved_flops_per_second(self) -> float | None:
        if self.flops_per_sample is None:
            return None
        return self.flops_per_sample * self.samples / self.seconds

    def describe_seconds(self) -> str:
        """``"72.5 s"``, or ``"72.5 s (extrapolated from 120 steps)"``."""
        text = f"{self.seconds:.3g} s" if self.seconds < 100 else f"{self.seconds:,.0f} s"
        if not self.extrapolated:
            return text
        steps = f"{self.measured_steps} step{'' if self.measured_steps == 1 else 's'}"
        return f"{text} (extrapolated from {steps})"

    def __repr__(self) -> str:
        width = "" if self.width is None else f", n={self.width}"
        return (
            f"CrossoverPoint({self.device!r}, batch={self.batch_size}{width}, "
            f"params={self.parameters:,}, {self.describe_seconds()})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "extrapolated": self.extrapolated,
            "seconds_per_step": self.seconds_per_step,
            "achieved_flops_per_second": self.achieved_flops_per_second,
        }


@dataclass(frozen=True)
class Crossover:
    """Where ``accelerator`` starts to beat the CPU (for one batch size, in the MLP sweep)."""

    accelerator: str
    batch_size: int | None  # None when the batch size is the swept value
    at: int | None  # the smallest swept value from which the accelerator stays faster
    kind: str  # "crossover", "always-faster" or "none"
    message: str


def find_crossover(
    xs: Sequence[int], cpu_seconds: Sequence[float], gpu_seconds: Sequence[float]
) -> int | None:
    """The smallest x from which the GPU is faster at every larger x (xs ascending); None when
    the CPU is as fast or faster at the largest x."""
    at = None
    for x, cpu, gpu in reversed(list(zip(xs, cpu_seconds, gpu_seconds, strict=True))):
        if not gpu < cpu:
            break
        at = x
    return at


def describe_crossover(
    xs: Sequence[int], at: int | None, *, accelerator: str, label: str, unit: str
) -> tuple[str, str]:
    """(kind, message) for a crossover found by ``find_crossover``; ``unit`` is "n" or "batch"."""
    if at is None:
        return "none", (
            f"{label}: no crossover in range: the CPU is as fast or faster than {accelerator} "
            f"at the largest {unit}={xs[-1]}"
        )
    if at == xs[0]:
        return "always-faster", f"{label}: {accelerator} is faster throughout, from {unit}={at}"
    return "crossover", f"{label}: {accelerator} is faster from {unit}={at} on"


@dataclass(frozen=True)
class CrossoverResult:
    """The points of a sweep, the crossovers found in them, and what produced them."""

    config: CrossoverConfig
    model: str
    devices: tuple[str, ...]
    data: dict[str, str]  # name, source, note
    points: tuple[CrossoverPoint, ...]
    crossovers: tuple[Crossover, ...]
    notes: tuple[str, ...]
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def swept(self) -> str:
        """What the x axis sweeps: "width" for the MLP, "batch_size" for a zoo model."""
        return "batch_size" if self.config.model is not None else "width"

    def series(self) -> dict[tuple[str, int | None], list[CrossoverPoint]]:
        """Points by (device, batch size; None when the batch size is swept), in sweep order."""
        groups: dict[tuple[str, int | None], list[CrossoverPoint]] = {}
        for point in self.points:
            key = (point.device, None if point.width is None else point.batch_size)
            groups.setdefault(key, []).append(point)
        return {key: sorted(points, key=lambda p: p.x) for key, points in groups.items()}

    def point(self, device: str, batch_size: int, width: int | None = None) -> CrossoverPoint:
        for p in self.points:
            if (p.device, p.batch_size, p.width) == (device, batch_size, width):
                return p
        raise KeyError((device, batch_size, width))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "cnnlab-crossover",
            "version": 1,
            "model": self.model,
            "swept": self.swept,
            "config": asdict(self.config),
            "devices": list(self.devices),
            "data": dict(self.data),
            "points": [p.to_dict() for p in self.points],
            "crossovers": [asdict(c) for c in self.crossovers],
            "notes": list(self.notes),
            "context": dict(self.context),
        }

    def __repr__(self) -> str:
        return (
            f"CrossoverResult({self.model!r}, devices={list(self.devices)}, "
            f"points={len(self.points)}, data={self.data['name']!r}, "
            f"crossovers={[c.at for c in self.crossovers]})"
        )


def find_crossovers(result: CrossoverResult) -> tuple[Crossover, ...]:
    """One crossover per accelerator (and batch size, in the MLP sweep), against the CPU."""
    series = result.series()
    unit = "batch" if result.config.model is not None else "n"
    found = []
    for (device, batch_size), points in series.items():
        cpu = series.get(("cpu", batch_size))
        if device == "cpu" or cpu is None:
            continue
        xs = [p.x for p in points]
        at = find_crossover(xs, [p.seconds for p in cpu], [p.seconds for p in points])
        label = result.model if batch_size is None else f"batch {batch_size}"
        kind, message = describe_crossover(xs, at, accelerator=device, label=label, unit=unit)
        found.append(Crossover(device, batch_size, at, kind, message))
    return tuple(found)


def crossover_notes(result: CrossoverResult, devices_by_default: bool = True) -> tuple[str, ...]:
    """What to tell the reader: the data used, a missing GPU, and why flat GPU times are flat."""
    notes = [f"data: {result.data['note']}"]
    if all(device == "cpu" for device in result.devices):
        if not torch.cuda.is_available():
            notes.append(
                "no GPU: CUDA is not available on this machine "
                f"(torch {torch.__version__}), so only the CPU side was measured"
            )
        elif not devices_by_default:
            notes.append("only the CPU was measured (devices=cpu); add cuda to compare")
    busy = busy_note(result.context.get("others_cpu_share"))
    if busy is not None:
        shares = [p.others_cpu_share or 0.0 for p in result.points if p.device == "cpu"]
        worst = max(shares, default=0.0)
        notes.append(f"{busy} (up to {worst:.0%} while a CPU point was timed)")
    unit = "batch" if result.config.model is not None else "n"
    for (device, batch_size), points in result.series().items():
        if device == "cpu":
            continue
        first = points[0].seconds_per_step
        flat = []
        for point in points:
            if point.seconds_per_step > FLAT_RATIO * first:
                break
            flat.append(point)
        if len(flat) >= 2 and flat[-1].x >= 4 * flat[0].x:
            label = "" if batch_size is None else f", batch {batch_size}"
            notes.append(
                f"{device}{label}: a step takes about {first * 1e3:.2g} ms from {unit}="
                f"{flat[0].x} to {unit}={flat[-1].x}, whatever the size: each step pays a fixed "
                "cost (launching its kernels, ~1 ms) that small models cannot hide, so the GPU "
                "only wins once the arithmetic outgrows that overhead. That is the lecture's "
                "answer to 'When is the GPU faster than the CPU?'"
            )
    return tuple(notes)
