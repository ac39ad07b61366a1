"""The lecture's experiment: "When is the GPU faster than the CPU for NN?"

The slide trains a three-layer MLP (784-n-n-10, ReLU, dropout 0.5, Adam) on MNIST for one epoch
of 60,000 samples with ``n = 2**i`` and plots the epoch time on the CPU and on the GPU against
the number of trainable parameters. Small networks train faster on the CPU: every GPU step pays
a fixed cost (launching a dozen kernels, about 1 ms per step) whatever the width, so the GPU's
epoch time stays flat until the arithmetic outgrows that overhead. ``run_crossover`` repeats the
experiment on this machine's devices, finds the width from which the GPU stays faster (per batch
size), and ``plot_crossover`` draws it. With ``model=NAME`` it sweeps the batch size of a zoo
model instead.

Data lives on the device as uint8 and batches are index slices of a precomputed order, as in
cnnlab's trainer. The clock covers the optimizer steps only (slicing and normalising included),
after warm-up steps, with the device synchronised before each read. With ``max_seconds`` a
point stops after that long and its epoch time is extrapolated from the samples it trained.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.bench.ceilings import CpuCounters, busy_note, others_cpu_share, tf32_enabled
from cnnlab.data import InputAdapter, Normalization, load_dataset, preprocess
from cnnlab.models import create_model
from cnnlab.models.registry import get_model_spec
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import device_name, resolve_device, synchronize
from cnnlab.runtime.files import default_output_dir, write_json
from cnnlab.summary import summary
from cnnlab.train.step import TrainStep

MLP_BATCH_SIZES = (32, 256)
MODEL_BATCH_SIZES = (8, 32, 128, 512)
MAX_EXP = 16  # n = 65,536: 4.3e9 parameters, beyond any GPU's memory with Adam
DATA_CHOICES = ("auto", "mnist", "fashion-mnist", "synthetic")
SYNTHETIC_POOL_BYTES = 64 << 20  # distinct synthetic images held; an epoch cycles through them
FLAT_RATIO = 1.5  # GPU step times within this factor of the smallest model's count as flat
EXCLUDED = (
    "seconds cover one epoch of optimizer steps (batch slicing and normalisation on the device "
    "included), after the warm-up steps, with the device synchronised before each clock read; "
    "they exclude loading the data, moving it to the device, building the model and the warm-up. "
    "An extrapolated point is measured_seconds * samples / measured_samples."
)


@dataclass(frozen=True)
class CrossoverConfig:
    """One crossover experiment. ``widths`` overrides ``2**min_exp .. 2**max_exp``; with
    ``model`` the batch size is swept instead of the width (``batch_sizes`` is the x axis)."""

    min_exp: int = 4
    max_exp: int = 13
    widths: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None  # (32, 256) for the MLP, (8, 32, 128, 512) else
    devices: tuple[str, ...] | None = None  # None: cpu, plus cuda where available
    model: str | None = None
    data: str = "auto"  # auto: mnist, else fashion-mnist, else synthetic
    samples: int = 60_000  # one epoch
    max_seconds: float | None = None  # per point; the rest of the epoch is extrapolated
    warmup_steps: int = 3
    lr: float = 1e-3
    dropout: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (
            ("min_exp", 0, MAX_EXP),
            ("max_exp", 0, MAX_EXP),
            ("samples", 1, None),
        ):
            _check_int(name, getattr(self, name), low, high)
        _check_int("warmup_steps", self.warmup_steps, 0, None)
        if self.widths is None and self.min_exp > self.max_exp:
            raise ValueError(
                "min_exp..max_exp is an empty range: expected min_exp <= max_exp. "
                f"Received: min_exp={self.min_exp}, max_exp={self.max_exp}"
            )
        if self.widths is not None and self.model is not None:
            raise ValueError(
                "widths applies to the MLP sweep only; with model= the batch size is swept. "
                f"Received: widths={self.widths!r}, model={self.model!r}"
            )
        for name in ("widths", "batch_sizes"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _positive_ints(name, getattr(self, name)))
        if self.devices is not None:
            object.__setattr__(self, "devices", _device_names(self.devices))
        if self.model is not None:
            get_model_spec(self.model)  # an unknown name lists the registered ones
        if self.data not in DATA_CHOICES:
            raise ValueError(
                f"data must be one of {', '.join(DATA_CHOICES)}. Received: data={self.data!r}"
            )
        if self.max_seconds is not None and not (
            isinstance(self.max_seconds, (int, float)) and self.max_seconds > 0
        ):
            raise ValueError(
                "max_seconds must be > 0 (or None for whole epochs). "
                f"Received: max_seconds={self.max_seconds!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={self.dropout!r}")

    @property
    def sweep(self) -> tuple[int, ...]:
        """The x values: widths for the MLP, batch sizes for a model."""
        if self.model is not None:
            return self.batch_sizes_or_default
        return self.widths or tuple(2**i for i in range(self.min_exp, self.max_exp + 1))

    @property
    def batch_sizes_or_default(self) -> tuple[int, ...]:
        default = MLP_BATCH_SIZES if self.model is None else MODEL_BATCH_SIZES
        return tuple(sorted(self.batch_sizes or default))


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high and value > high)
    ):
        expected = f"from {low} to {high}" if high else f">= {low}"
        raise ValueError(f"{name} must be an integer {expected}. Received: {name}={value!r}")


def _positive_ints(name: str, values: Any) -> tuple[int, ...]:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"{name} must be positive integers (at least one). Received: {name}={values!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value. Received: {name}={values!r}")
    return tuple(sorted(values))


def _device_names(devices: Sequence[str]) -> tuple[str, ...]:
    names = tuple(devices)
    for name in names:
        try:
            kind = torch.device(name).type if isinstance(name, str) else None
        except RuntimeError:
            kind = None
        if kind not in ("cpu", "cuda", "mps"):
            raise ValueError(
                f"devices must be cpu, cuda, cuda:N or mps. Received: devices={list(names)!r}"
            )
    if not names or len(set(names)) != len(names):
        raise ValueError(f"devices must name each device once. Received: devices={list(names)!r}")
    return names


def resolve_devices(devices: Sequence[str] | None) -> tuple[torch.device, ...]:
    """The devices to time, the CPU first: cpu plus cuda by default, where CUDA exists."""
    if devices is None:
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    resolved = []
    for name in devices:
        if torch.device(name).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"CUDA is not available: devices={list(devices)!r} asks for {name!r}, but this "
                f"torch ({torch.__version__}) sees no CUDA GPU. Expected cpu here."
            )
        resolved.append(resolve_device(name))
    return tuple(sorted(resolved, key=lambda d: d.type != "cpu"))


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


@dataclass(frozen=True, eq=False)
class _Data:
    name: str
    images: torch.Tensor  # uint8 (pool, C, H, W) on the CPU
    labels: torch.Tensor  # int64 (pool,)
    num_classes: int
    normalization: Normalization
    source: str
    note: str


def _load_data(config: CrossoverConfig, shape: tuple[int, int, int], classes: int) -> _Data:
    """Real MNIST-shaped data where asked for or found (``auto``); else synthetic of ``shape``."""
    names = {"auto": ("mnist", "fashion-mnist"), "synthetic": ()}.get(config.data, (config.data,))
    if config.model is not None and config.data == "auto":
        names = ()  # a zoo model gets synthetic data of its own input shape
    for name in names:
        try:
            dataset = load_dataset(name, download=config.data != "auto")
        except FileNotFoundError:
            if config.data != "auto":
                raise
            continue
        pool = min(config.samples, dataset.train_images.shape[0])
        return _Data(
            name,
            dataset.train_images[:pool],
            dataset.train_labels[:pool],
            len(dataset.classes),
            Normalization(*dataset.mean_std()),
            dataset.source,
            f"{name} training images ({pool:,} distinct)",
        )
    generator = torch.Generator().manual_seed(config.seed)
    per_image = math.prod(shape)
    pool = min(
        config.samples, max(max(config.batch_sizes_or_default), SYNTHETIC_POOL_BYTES // per_image)
    )
    why = (
        "asked for"
        if config.data == "synthetic"
        else f"the input shape of {config.model}"
        if config.model is not None
        else "no MNIST or Fashion-MNIST found; `cnnlab data fetch mnist` gets it"
    )
    return _Data(
        "synthetic",
        torch.randint(0, 256, (pool, *shape), dtype=torch.uint8, generator=generator),
        torch.randint(0, classes, (pool,), generator=generator),
        classes,
        Normalization((0.5,) * shape[0], (0.5 / math.sqrt(3),) * shape[0]),  # uniform 0..1
        "generated",
        f"synthetic: random uint8 images {'x'.join(map(str, shape))} with random labels "
        f"({pool:,} distinct; {why}). Timings do not depend on the pixel values.",
    )


class _DeviceData:
    """The pool on one device (uint8) and one epoch's sample order, sliced per step."""

    def __init__(self, data: _Data, device: torch.device, samples: int, seed: int) -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        generator = torch.Generator().manual_seed(seed)
        pool = data.images.shape[0]
        rounds = [torch.randperm(pool, generator=generator) for _ in range(-(-samples // pool))]
        self.order = torch.cat(rounds)[:samples].to(device)


def _time_point(
    build: Callable[[], torch.nn.Module],
    data: _Data,
    on_device: _DeviceData,
    adapter: InputAdapter,
    device: torch.device,
    batch_size: int,
    config: CrossoverConfig,
) -> tuple[int, int, int, int, float, float | None]:
    """(parameters, steps per epoch, measured steps, measured samples, seconds, the share of the
    CPUs other processes used meanwhile)."""
    torch.manual_seed(config.seed)
    model = build().to(device).train()
    parameters = sum(p.numel() for p in model.parameters())
    train_step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=config.lr))
    order, steps = on_device.order, math.ceil(config.samples / batch_size)

    def step(number: int) -> None:
        index = order[number * batch_size : (number + 1) * batch_size]
        inputs = preprocess(on_device.images[index], data.normalization, adapter)
        train_step(inputs, on_device.labels[index])

    for number in range(min(config.warmup_steps, steps)):
        step(number)
    synchronize(device)
    counters, start = CpuCounters.read(), time.perf_counter()
    done = 0
    while done < steps:
        step(done)
        done += 1
        if config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds:
            break
    synchronize(device)
    seconds = time.perf_counter() - start
    share = others_cpu_share(counters, CpuCounters.read())
    return parameters, steps, done, min(done * batch_size, config.samples), seconds, share


def run_crossover(
    config: CrossoverConfig, *, progress: Callable[[CrossoverPoint], None] | None = None
) -> CrossoverResult:
    """Time one epoch per (swept value, batch size, device); ``progress`` sees each point."""
    devices = resolve_devices(config.devices)
    name = config.model or "mlp"
    spec = get_model_spec(name)
    data = _load_data(config, spec.input_shape, spec.num_classes)
    adapter = InputAdapter(tuple(data.images.shape[1:]), spec.input_shape)
    resident = {
        device: _DeviceData(data, device, config.samples, config.seed) for device in devices
    }
    start, counters = time.perf_counter(), CpuCounters.read()
    flops: dict[int | None, int | None] = {}
    points = []
    for x in config.sweep:
        width = None if config.model else x
        kwargs = {"num_classes": data.num_classes}
        if width is not None:
            kwargs.update(width=width, dropout=config.dropout)

        def build(kwargs: dict[str, Any] = kwargs) -> torch.nn.Module:
            return create_model(name, **kwargs)

        if width not in flops:
            flops[width] = summary(build(), spec.input_shape).training_flops
        for batch_size in [x] if width is None else config.batch_sizes_or_default:
            for device in devices:
                timing = _time_point(
                    build, data, resident[device], adapter, device, batch_size, config
                )
                parameters, steps, measured_steps, measured_samples, seconds, share = timing
                point = CrossoverPoint(
                    device=str(device),
                    batch_size=batch_size,
                    width=width,
                    parameters=parameters,
                    samples=config.samples,
                    steps=steps,
                    measured_steps=measured_steps,
                    measured_samples=measured_samples,
                    measured_seconds=seconds,
                    seconds=seconds * config.samples / measured_samples,
                    flops_per_sample=flops[width],
                    warmup_steps=min(config.warmup_steps, steps),
                    others_cpu_share=share,
                )
                points.append(point)
                if progress is not None:
                    progress(point)
    result = CrossoverResult(
        config=config,
        model=name,
        devices=tuple(str(d) for d in devices),
        data={"name": data.name, "source": data.source, "note": data.note},
        points=tuple(points),
        crossovers=(),
        notes=(),
        context={
            **_context(config, devices),
            "wall_seconds": time.perf_counter() - start,
            "others_cpu_share": others_cpu_share(counters, CpuCounters.read()),
        },
    )
    crossovers = find_crossovers(result)
    notes = crossover_notes(result, config.devices is None)
    return dataclasses.replace(result, crossovers=crossovers, notes=notes)


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


def _context(config: CrossoverConfig, devices: Sequence[torch.device]) -> dict[str, Any]:
    return {
        **software_context(),
        "devices": {str(d): device_name(d) for d in devices},
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "cuda_tf32": tf32_enabled(),
        "optimizer": f"Adam(lr={config.lr})",
        "batch_sizes": list(config.batch_sizes_or_default),
        "samples_per_epoch": config.samples,
        "seed": config.seed,
        "excluded": EXCLUDED,
    }


def plot_crossover(result: CrossoverResult, path: str | Path) -> Path:
    """Epoch time against parameters (or batch size), log-log: one line per device and batch
    size, hollow markers where extrapolated, each crossover marked; written atomically."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(path)
    by_width = result.config.model is None
    figure = new_figure((9.0, 6.0))
    ax = figure.add_subplot()
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    keys = result.config.batch_sizes_or_default if by_width else result.devices
    colours = {key: palette[i % len(palette)] for i, key in enumerate(keys)}
    names = result.context.get("devices", {})
    for (device, batch_size), points in result.series().items():
        xs = [p.parameters if by_width else p.batch_size for p in points]
        colour = colours[batch_size if by_width else device]
        cpu = device == "cpu"
        label = f"{device}: {_short(names.get(device, device))}"
        label += f", batch {batch_size}" if batch_size is not None else ""
        ax.plot(xs, [p.seconds for p in points], "-" if cpu else "--", color=colour, label=label)
        for extrapolated in (False, True):
            chosen = [i for i, p in enumerate(points) if p.extrapolated == extrapolated]
            if chosen:
                ax.scatter(
                    [xs[i] for i in chosen],
                    [points[i].seconds for i in chosen],
                    marker="o" if cpu else "s",
                    s=28,
                    color=colour,
                    facecolors="white" if extrapolated else colour,
                    zorder=3,
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for crossover in result.crossovers:
        if crossover.at is None:
            continue
        width = crossover.at if by_width else None
        batch = crossover.batch_size if by_width else crossover.at
        point = result.point(crossover.accelerator, batch, width)
        unit = "n" if by_width else "batch"
        where = f"\n(batch {batch})" if by_width else ""
        ax.annotate(
            f"{crossover.accelerator} faster from {unit}={crossover.at}{where}",
            xy=(point.parameters if by_width else point.batch_size, point.seconds),
            xytext=(-10, 40),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "black"},
            bbox={"boxstyle": "round", "fc": "lightyellow", "ec": "grey"},
        )
    remarks = ["filled markers: a whole epoch timed; hollow: extrapolated from part of it"]
    remarks += [c.message for c in result.crossovers if c.at is None]
    if all(device == "cpu" for device in result.devices):
        remarks.insert(0, "no GPU measured on this machine: CPU times only")
    figure.supxlabel("\n".join(remarks), fontsize=8, color="dimgrey")
    ax.set_ylabel(f"seconds per epoch ({result.config.samples:,} samples)")
    seconds = FuncFormatter(lambda value, _: f"{value:g} s")
    ax.yaxis.set_major_formatter(seconds)
    ax.yaxis.set_minor_formatter(seconds)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.tick_params(axis="both", which="both", labelsize=8)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if by_width:
        ax.set_xlabel("trainable parameters")
        counts = FuncFormatter(lambda value, _: _count(value))
        ax.xaxis.set_major_formatter(counts)
        ax.xaxis.set_minor_formatter(counts)
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        widths = sorted({p.width: p.parameters for p in result.points}.items())
        top = ax.twiny()
        top.set_xscale("log")
        top.set_xlim(ax.get_xlim())
        top.xaxis.set_major_locator(FixedLocator([params for _, params in widths]))
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticklabels([str(n) for n, _ in widths], fontsize=8)
        top.set_xlabel("hidden width n")
        title = (
            "When is the GPU faster than the CPU? 784-n-n-10 MLP, dropout 0.5, Adam "
            f"(data: {result.data['name']})"
        )
    else:
        ax.set_xlabel("batch size")
        ax.xaxis.set_major_locator(FixedLocator(list(result.config.sweep)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(b) for b in result.config.sweep])
        title = f"{result.model}: epoch time against batch size (data: {result.data['name']})"
    ax.set_title(title, fontsize=10)
    return save_png(figure, out)


def _count(value: float) -> str:
    """20000 -> "20k", 3000000 -> "3M": tick labels for parameter counts."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _short(name: str) -> str:
    return name if len(name) <= 28 else name[:27] + "…"


def default_out_dir() -> Path:
    """``runs/crossover-YYYYmmdd-HHMMSS`` (a new folder each run, never an old one)."""
    return default_output_dir("crossover")


def write_crossover(result: CrossoverResult, directory: str | Path) -> dict[str, Path]:
    """crossover.json and crossover.png in ``directory`` (created), each written atomically."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"directory must be a folder. Received: directory={str(folder)!r} (an existing file)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_crossover(result, folder / "crossover.png")
    data = {**result.to_dict(), "files": {"plot": png.name}}
    return {"json": write_json(folder / "crossover.json", data), "png": png}
