"""The lecture's experiment: "When is the GPU faster than the CPU for NN?" (the sweep itself;
its results and their reading are in ``crossover_result``, the picture in ``crossover_plot``).

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
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.bench.crossover_result import (
    CrossoverPoint,
    CrossoverResult,
    crossover_notes,
    find_crossovers,
)
from cnnlab.bench.memory import check_fits
from cnnlab.data import InputAdapter, Normalization, load_dataset, preprocess
from cnnlab.models import create_model
from cnnlab.models.registry import get_model_spec
from cnnlab.runtime.contention import CpuCounters, others_cpu_share
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import device_name, resolve_device, synchronize, tf32_enabled
from cnnlab.runtime.validate import check_int, distinct_positive_ints
from cnnlab.summary import summary
from cnnlab.train.step import TrainStep

MLP_BATCH_SIZES = (32, 256)
MAX_SAMPLES = 100_000_000  # an epoch's order is a tensor of this many indices on each device
MODEL_BATCH_SIZES = (8, 32, 128, 512)
MAX_EXP = 16  # n = 65,536: 4.3e9 parameters, beyond any GPU's memory with Adam
DATA_CHOICES = ("auto", "mnist", "fashion-mnist", "synthetic")
SYNTHETIC_POOL_BYTES = 64 << 20  # distinct synthetic images held; an epoch cycles through them
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
            ("samples", 1, MAX_SAMPLES),
        ):
            check_int(name, getattr(self, name), low=low, high=high)
        check_int("warmup_steps", self.warmup_steps, low=0)
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
                object.__setattr__(self, name, distinct_positive_ints(name, getattr(self, name)))
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


def check_mlp_memory(config: CrossoverConfig, devices: Sequence[torch.device]) -> None:
    """Refuse a width whose MLP cannot train in the devices' free memory, before building it."""
    width = max(config.sweep)
    parameters = (28 * 28 + 1) * width + (width + 1) * width + (width + 1) * 10
    needed = 16 * parameters  # fp32 weights, gradients and two optimizer buffers per parameter
    argument = "widths" if config.widths is not None else "max_exp"
    value = width if config.widths is not None else config.max_exp
    for device in devices:
        check_fits(argument, value, needed, device)


def run_crossover(
    config: CrossoverConfig, *, progress: Callable[[CrossoverPoint], None] | None = None
) -> CrossoverResult:
    """Time one epoch per (swept value, batch size, device); ``progress`` sees each point."""
    devices = resolve_devices(config.devices)
    if config.model is None:
        check_mlp_memory(config, devices)
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
