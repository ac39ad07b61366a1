"""``bench_run(config)``: one training run, measured: throughput, FLOP/s, utilisation, energy,
``mu`` = FLOP/s per dollar and ``eta`` = FLOP/s per watt (the lecture's effectiveness measures).

The run is ``cnnlab.train.train`` itself (one code path, data on the device); around it an
``EnergyMeter`` reads every energy counter this machine has. What cannot be measured here is
reported as "not measurable here (why)", never estimated.

How energy is apportioned. The trainer's clock (``train_seconds``) counts the optimizer steps
only, but no callback brackets them: the meter covers the whole ``train()`` call (loading the
data, building the model, the steps, evaluation after each epoch, checkpoints, the report and
the plots). So the report gives the measured joules of that whole interval and, labelled
*apportioned*, the training share ``joules x train_seconds / metered_seconds``, which assumes
the mean power of the whole interval held during training; joules per image divide that share
by the images trained. ``eta`` = achieved FLOP/s / mean watts of the run's device is the same
figure as training FLOPs / apportioned joules, so it rests on the same assumption.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.bench.energy import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_POWERCAP_ROOT,
    EnergyMeter,
    EnergyReport,
    not_measurable,
)
from cnnlab.runtime.devices import device_name, resolve_device
from cnnlab.runtime.files import write_json
from cnnlab.runtime.formatting import format_si
from cnnlab.runtime.threads import torch_threads
from cnnlab.train import TrainConfig, TrainResult, train

PrintFn = Callable[[str], None]
BENCH_NAME = "bench.json"
BENCH_FORMAT = "cnnlab-bench-run"
QUICK_CEILING_SECONDS = 1.0  # the timing budget of the ceiling measured when no file is given
METERED = (
    "the whole train() call: loading the data, building the model, the optimizer steps, "
    "evaluation after each epoch, checkpoints, report.json and the plots"
)
APPORTIONED = (
    "training share = measured joules x train_seconds / metered_seconds (assumes the mean power "
    "of the metered interval held during training); joules per image = training share / images "
    "trained"
)


@dataclass(frozen=True, repr=False)
class Quantity:
    """One number of the benchmark with where it comes from, or why there is none."""

    value: float | None
    unit: str
    source: str = ""
    missing: str | None = None  # "not measurable here (why)", "no price: pass price_usd=USD", ...

    def __post_init__(self) -> None:
        assert (self.value is None) != (self.missing is None), "a value or a reason, not both"

    def describe(self) -> str:
        """The value in readable units, or why it is missing."""
        if self.value is None:
            return str(self.missing)
        value, unit = self.value, self.unit
        if unit in ("FLOP/image", "FLOP/s", "FLOP/s per USD", "FLOP/s per W"):
            return f"{format_si(value)}{unit}"
        if unit == "images/s":
            return f"{value:,.0f} {unit}"
        if unit == "%":
            return f"{value:.3g} %"
        if unit == "USD":
            return f"${value:,.4g}"
        return f"{value:.4g} {unit}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "missing": self.missing,
        }

    def __repr__(self) -> str:
        return f"Quantity({self.describe()!r})"


def _missing(unit: str, why: str) -> Quantity:
    return Quantity(None, unit, missing=why)


def _positive_or_none(name: str, value: Any, what: str, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name}: {what}. Received: {name}={value!r}")


@dataclass(frozen=True)
class BenchRunConfig:
    """A measured training run: ``train`` is the run; the rest says how to price and meter it."""

    train: TrainConfig
    price_usd: float | None = None  # the device's price, for mu; None = the catalogue's
    usd_per_hour: float | None = None  # what the machine costs per hour, for the run's cost
    ceilings: str | None = None  # a ceilings JSON (or its folder) from `cnnlab bench ceilings`
    measure_ceiling: bool = True  # without a ceilings file, measure one quickly (else none)
    powercap_root: str = DEFAULT_POWERCAP_ROOT  # where the RAPL zones are (tests: a fake tree)
    energy_interval_seconds: float = DEFAULT_INTERVAL_SECONDS  # RAPL samples, for wraps

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ValueError(
                "train must be a TrainConfig (see cnnlab.train.default_config). "
                f"Received: train={self.train!r}"
            )
        _positive_or_none("price_usd", self.price_usd, "a price must be positive")
        _positive_or_none(
            "usd_per_hour", self.usd_per_hour, "a cost per hour must be >= 0", zero_ok=True
        )
        for name in ("ceilings", "powercap_root"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif (value is not None or name == "powercap_root") and (
                not isinstance(value, str) or not value
            ):
                raise ValueError(f"{name} must be a path. Received: {name}={value!r}")
        if not isinstance(self.measure_ceiling, bool):
            raise ValueError(
                f"measure_ceiling must be True or False. Received: {self.measure_ceiling!r}"
            )
        _positive_or_none(
            "energy_interval_seconds",
            self.energy_interval_seconds,
            "the sampling interval must be a positive number of seconds",
        )
        if self.energy_interval_seconds is None:
            raise ValueError("energy_interval_seconds must be a number. Received: None")


@dataclass(frozen=True, repr=False)
class BenchRunResult:
    """What a measured run achieved; ``bench_json`` holds the same as ``to_dict()``."""

    config: BenchRunConfig
    train: TrainResult
    device: str
    device_name: str
    images_trained: int
    train_seconds: float
    metered_seconds: float
    training_flops_per_image: Quantity
    images_per_second: Quantity
    achieved_flops_per_second: Quantity
    ceiling_flops_per_second: Quantity
    utilisation: Quantity  # percent of the ceiling
    energy: EnergyReport
    energy_joules: Quantity  # the whole metered interval, all measured sources
    mean_watts: Quantity
    training_joules: Quantity  # apportioned
    joules_per_image: Quantity  # apportioned
    price_usd: Quantity
    mu: Quantity  # achieved FLOP/s per USD
    eta: Quantity  # achieved FLOP/s per W
    cost_usd: Quantity
    context: dict[str, Any]
    bench_json: Path

    def quantities(self) -> dict[str, Quantity]:
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if isinstance(getattr(self, field.name), Quantity)
        }

    def missing(self) -> list[str]:
        """``name: why`` for every figure this machine could not give, and every energy source."""
        lines = [f"{name}: {q.missing}" for name, q in self.quantities().items() if q.missing]
        return lines + self.energy.reasons()

    def to_dict(self) -> dict[str, Any]:
        train_config = self.config.train
        return {
            "format": BENCH_FORMAT,
            "version": 1,
            "model": train_config.model,
            "data": train_config.data,
            "device": self.device,
            "device_name": self.device_name,
            "precision": train_config.precision,
            "batch_size": train_config.batch_size,
            "epochs_run": self.train.epochs_run,
            "images_trained": self.images_trained,
            "train_seconds": self.train_seconds,
            "metered_seconds": self.metered_seconds,
            "test_accuracy": self.train.test_accuracy,
            **{name: q.to_dict() for name, q in self.quantities().items()},
            "energy": self.energy.to_dict(),
            "energy_metered": METERED,
            "energy_apportioned": APPORTIONED,
            "bench_config": {
                **{
                    f.name: getattr(self.config, f.name)
                    for f in dataclasses.fields(self.config)
                    if f.name != "train"
                },
            },
            "train_config": dataclasses.asdict(train_config),
            "run_dir": str(self.train.run_dir),
            "report": str(self.train.report),
            "context": self.context,
        }

    def __repr__(self) -> str:
        config = self.config.train
        return (
            f"BenchRunResult({config.model!r} on {config.data!r}, {self.device}, "
            f"{self.images_per_second.describe()}, {self.achieved_flops_per_second.describe()}, "
            f"utilisation {self.utilisation.describe()}, energy {self.energy_joules.describe()})"
        )


def _ceilings_file(path: Path, device: torch.device) -> Path:
    """A ceilings JSON, or the folder `cnnlab bench ceilings --out` wrote it into."""
    from cnnlab.bench.ceilings import ceilings_filename

    if path.is_dir():
        path = path / ceilings_filename(str(device))
    if not path.is_file():
        raise FileNotFoundError(
            f"ceilings: no such file {str(path)!r}; write one with "
            f"`cnnlab bench ceilings --device {device} --out FOLDER`"
        )
    return path


def _ceiling_from_file(config: BenchRunConfig, device: torch.device, name: str) -> Quantity:
    from cnnlab.bench.ceilings import ceiling_for, load_ceilings

    path = _ceilings_file(Path(str(config.ceilings)), device)
    try:
        ceilings = load_ceilings(path)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"ceilings: {path} is not a ceilings file ({error})") from None
    if torch.device(ceilings.device).type != device.type or ceilings.device_name != name:
        raise ValueError(
            f"ceilings: {path} was measured on {ceilings.device} ({ceilings.device_name}), but "
            f"this run is on {device} ({name}); measure this device with "
            f"`cnnlab bench ceilings --device {device}`"
        )
    flops = ceiling_for(ceilings, config.train.precision)
    if flops is None:
        measured = ", ".join(ceilings.matmul) or "none"
        return _missing(
            "FLOP/s",
            not_measurable(
                f"{path} has no matmul rate for {config.train.precision} (it has: {measured})"
            ),
        )
    note = f"from {path}"
    threads = ceilings.context.get("threads")
    if device.type == "cpu" and threads is not None and threads != torch.get_num_threads():
        note += f" (measured with {threads} threads; this run uses {torch.get_num_threads()})"
    return Quantity(flops, "FLOP/s", note)


def _measured_ceiling(config: BenchRunConfig, device: torch.device, log: PrintFn) -> Quantity:
    from cnnlab.bench.ceilings import PRECISION_DTYPES, ceiling_for, device_dtypes, measure_ceilings

    dtype = PRECISION_DTYPES[config.train.precision]
    if dtype not in device_dtypes(device):
        return _missing(
            "FLOP/s", not_measurable(f"no {dtype} matmul ceiling is measured on {device.type}")
        )
    # fp32 training on CUDA bounds at the TF32 rate when torch allows TF32: measure both.
    dtypes = [dtype, "tf32"] if device.type == "cuda" and dtype == "fp32" else [dtype]
    log(
        f"ceiling: no ceilings file given, measuring the {'/'.join(dtypes)} matmul rate of "
        f"{device} now (quick: {QUICK_CEILING_SECONDS:g} s budget per dtype)"
    )
    ceilings = measure_ceilings(
        str(device), dtypes=dtypes, bandwidth=False, budget_seconds=QUICK_CEILING_SECONDS
    )
    flops = ceiling_for(ceilings, config.train.precision)
    assert flops is not None
    size = next(iter(ceilings.matmul.values())).size
    source = (
        f"measured now: {'/'.join(dtypes)} matmul {size}x{size}, quick "
        f"({QUICK_CEILING_SECONDS:g} s budget); `cnnlab bench ceilings` measures it fully"
    )
    return Quantity(flops, "FLOP/s", source)


def _ceiling(config: BenchRunConfig, device: torch.device, name: str, log: PrintFn) -> Quantity:
    if config.ceilings is not None:
        return _ceiling_from_file(config, device, name)
    if config.measure_ceiling:
        return _measured_ceiling(config, device, log)
    return _missing("FLOP/s", "not measured: no ceilings file, and measuring one was turned off")


def _device_spec(name: str) -> Any | None:
    from cnnlab.bench.catalog import match_device

    return match_device(name)


def _price(config: BenchRunConfig, spec: Any | None, name: str) -> Quantity:
    if config.price_usd is not None:
        return Quantity(float(config.price_usd), "USD", f"given (price_usd={config.price_usd:g})")
    if spec is None:
        return _missing("USD", f"no price: pass price_usd=USD ({name} is not in the catalogue)")
    if spec.price_usd is None:
        return _missing(
            "USD", f"no price: pass price_usd=USD (the catalogue has none for {spec.name})"
        )
    return Quantity(float(spec.price_usd), "USD", f"catalogue: {spec.name} launch price")


def _ratio(numerator: Quantity, denominator: Quantity, unit: str, source: str) -> Quantity:
    """``numerator / denominator``, missing with the first one's reason when either is."""
    for part in (numerator, denominator):
        if part.value is None:
            return _missing(unit, str(part.missing))
    assert numerator.value is not None and denominator.value is not None
    if denominator.value == 0:
        return _missing(unit, not_measurable(f"division by zero ({denominator.source})"))
    return Quantity(numerator.value / denominator.value, unit, source)


def _device_power(
    energy: EnergyReport, device: torch.device, spec: Any | None, name: str
) -> Quantity:
    """The run's device's mean power, measured; else its datasheet TDP, labelled as such."""
    kind = "nvml" if device.type == "cuda" else "rapl"
    watts = energy.mean_watts(kind)
    if watts == 0:  # counters that did not advance (a run shorter than their update period)
        return _missing("W", not_measurable(f"the {kind} counters did not advance (0 J)"))
    if watts is not None:
        sources = [
            r.source for r in energy.readings if r.kind == kind and r.measured and r.in_total
        ]
        return Quantity(watts, "W", f"measured: mean power of {' + '.join(sources)}")
    if spec is not None and spec.tdp_w is not None:
        return Quantity(float(spec.tdp_w), "W", f"datasheet TDP of {spec.name}, not measured")
    reasons = "; ".join(r.reason for r in energy.readings if r.kind == kind and r.reason)
    datasheet = "no datasheet TDP" + (
        f" for {spec.name}" if spec is not None else f" ({name} is not in the catalogue)"
    )
    return _missing("W", not_measurable(f"{reasons}; and {datasheet}"))


def _speed(result: TrainResult) -> tuple[Quantity, Quantity, Quantity]:
    """Training FLOPs per image, images per second and FLOP/s, from the run's result."""
    images, seconds = result.images_trained, result.train_seconds
    if seconds <= 0:
        raise ValueError(f"the run trained for {seconds} s: nothing to measure")
    throughput = Quantity(
        images / seconds, "images/s", f"{images:,} images in {seconds:.4g} s of optimizer steps"
    )
    per_image = result.training_flops_per_image
    if not per_image:
        why = not_measurable("FlopCounterMode could not count this model's FLOPs")
        return _missing("FLOP/image", why), throughput, _missing("FLOP/s", why)
    flops = Quantity(float(per_image), "FLOP/image", "FlopCounterMode: forward + backward")
    achieved = Quantity(
        per_image * images / seconds,
        "FLOP/s",
        "training FLOPs per image x images trained / train_seconds",
    )
    return flops, throughput, achieved


def _energy_figures(
    energy: EnergyReport, train_seconds: float, images: int
) -> tuple[Quantity, Quantity, Quantity, Quantity]:
    """Joules of the metered interval, mean watts, and the training share (apportioned)."""
    total = energy.joules()
    if total is None:
        why = not_measurable("no energy counter is readable; each source says why")
        return _missing("J", why), _missing("W", why), _missing("J", why), _missing("J/image", why)
    sources = " + ".join(r.source for r in energy.readings if r.measured and r.in_total)
    joules = Quantity(total, "J", f"measured: {sources}, over {METERED}")
    watts = Quantity(total / energy.seconds, "W", f"measured: {sources}, joules / metered seconds")
    share = min(train_seconds / energy.seconds, 1.0)
    training = Quantity(
        total * share,
        "J",
        f"apportioned: {share:.1%} of the measured joules (train_seconds / metered seconds)",
    )
    per_image = Quantity(
        total * share / images, "J/image", "apportioned training joules / images trained"
    )
    return joules, watts, training, per_image


def _cost(config: BenchRunConfig, seconds: float) -> Quantity:
    if config.usd_per_hour is None:
        return _missing("USD", "not given: pass usd_per_hour=USD")
    hours = seconds / 3600
    source = f"{config.usd_per_hour:g} USD/h x {hours:.4g} h (the metered train() call)"
    return Quantity(config.usd_per_hour * hours, "USD", source)


def bench_run(
    config: BenchRunConfig, *, progress: bool = True, print_fn: PrintFn | None = None
) -> BenchRunResult:
    """Train ``config.train`` once with every meter this machine has; write ``bench.json``."""
    log = print_fn or (lambda text: None)
    device = resolve_device(config.train.device)  # cuda without CUDA: a clear error, now
    name = device_name(device)
    spec = _device_spec(name)
    with torch_threads(config.train.threads):
        ceiling = _ceiling(config, device, name, log)
    meter = EnergyMeter(
        device, powercap_root=config.powercap_root, interval_seconds=config.energy_interval_seconds
    )
    with meter:
        result = train(config.train, progress=progress, print_fn=print_fn)
    energy = meter.report
    assert energy is not None
    images, seconds = result.images_trained, result.train_seconds
    flops_per_image, throughput, achieved = _speed(result)
    utilisation = _ratio(achieved, ceiling, "%", "achieved / ceiling")
    if utilisation.value is not None:
        utilisation = dataclasses.replace(utilisation, value=100 * utilisation.value)
    joules, watts, training_joules, joules_per_image = _energy_figures(energy, seconds, images)
    price = _price(config, spec, name)
    power = _device_power(energy, device, spec, name)
    bench_context = {
        "metered_seconds": energy.seconds,
        "metered": METERED,
        "apportioned": APPORTIONED,
        "ceiling": ceiling.source or ceiling.missing,
        "price": price.source or price.missing,
        "power_for_eta": power.source or power.missing,
    }
    bench = BenchRunResult(
        config=config,
        train=result,
        device=str(device),
        device_name=name,
        images_trained=images,
        train_seconds=seconds,
        metered_seconds=energy.seconds,
        training_flops_per_image=flops_per_image,
        images_per_second=throughput,
        achieved_flops_per_second=achieved,
        ceiling_flops_per_second=ceiling,
        utilisation=utilisation,
        energy=energy,
        energy_joules=joules,
        mean_watts=watts,
        training_joules=training_joules,
        joules_per_image=joules_per_image,
        price_usd=price,
        mu=_ratio(achieved, price, "FLOP/s per USD", f"achieved / price ({price.source})"),
        eta=_ratio(achieved, power, "FLOP/s per W", f"achieved / power ({power.source})"),
        cost_usd=_cost(config, energy.seconds),
        context={**result.context, "bench": bench_context},
        bench_json=Path(result.run_dir) / BENCH_NAME,
    )
    write_json(bench.bench_json, bench.to_dict())
    return bench
