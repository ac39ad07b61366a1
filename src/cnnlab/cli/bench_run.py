"""`cnnlab bench run MODEL --data NAME`: one training run, measured (speed, FLOP/s, utilisation,
energy, mu, eta, cost), with every figure this machine cannot give said so, and why.

The training options are those of `cnnlab train` that shape the work measured; every one left
out keeps the model's recipe (``cnnlab.train.default_config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cnnlab.bench.run import BenchRunConfig, BenchRunResult, bench_run
from cnnlab.cli.common import QuietOption, name_flags, out, print_json, user_errors
from cnnlab.cli.train import (
    TRAIN_FLAGS,
    BatchSizeOption,
    DataDirOption,
    DataOption,
    DeviceOption,
    EpochsOption,
    PrecisionOption,
    RunDirOption,
    SeedOption,
    StepsOption,
    ThreadsOption,
    run_folder_errors,
    training_exits,
    training_log,
    warn_if_cpus_shared,
)
from cnnlab.runtime.contention import CpuCounters
from cnnlab.train import default_config

# The library's notes and errors name BenchRunConfig's fields; the command names its options.
BENCH_FLAGS = {
    **TRAIN_FLAGS,
    "price_usd": "--price-usd",
    "usd_per_hour": "--usd-per-hour",
    "out": "--out",
    "data_dir": "--data-dir",
}


@user_errors(flags=BENCH_FLAGS)
def bench_run_command(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="A model of the zoo (see `cnnlab models`).")
    ],
    data: DataOption = None,
    epochs: EpochsOption = None,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = None,
    precision: PrecisionOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    out_dir: RunDirOption = None,
    price_usd: Annotated[
        float | None,
        typer.Option(
            "--price-usd",
            help="The device's price in USD, for mu (default: the catalogue's, if it has one).",
        ),
    ] = None,
    usd_per_hour: Annotated[
        float | None,
        typer.Option("--usd-per-hour", help="What the machine costs per hour, for the run's cost."),
    ] = None,
    ceilings: Annotated[
        Path | None,
        typer.Option(
            "--ceilings",
            help="A ceilings JSON (or its folder) from `cnnlab bench ceilings --out`; "
            "default: measure a quick matmul ceiling now.",
        ),
    ] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train MODEL on --data NAME once and measure it: throughput, FLOP/s, utilisation of the
    device's ceiling, energy (RAPL, NVML), mu = FLOP/s per USD, eta = FLOP/s per W, cost."""
    if data is None:
        raise ValueError(
            f"cnnlab bench run {model} needs --data NAME (see `cnnlab data list`), "
            "e.g. --data digits"
        )
    given = {
        "epochs": epochs,
        "steps": steps,
        "batch_size": batch_size,
        "precision": precision,
        "device": device,
        "threads": threads,
        "seed": seed,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "out": str(out_dir) if out_dir is not None else None,
    }
    train_config = default_config(
        model, data, **{key: value for key, value in given.items() if value is not None}
    )
    config = BenchRunConfig(
        train=train_config,
        price_usd=price_usd,
        usd_per_hour=usd_per_hour,
        ceilings=str(ceilings) if ceilings is not None else None,
    )
    with training_exits(), run_folder_errors(out_dir):
        start = CpuCounters.read()
        result = bench_run(config, progress=not quiet, print_fn=training_log(json_output, quiet))
    warn_if_cpus_shared(start, result.device, result.context.get("threads"))
    if json_output:
        print_json(result.to_dict())
        return
    print_bench(result)


def print_bench(result: BenchRunResult) -> None:
    """The measured figures, one per line: the value, then its source or why it is missing."""
    config = result.config.train
    length = f"{result.train.epochs_run} epoch{'s' if result.train.epochs_run != 1 else ''}"
    if config.steps is not None:
        length += f" (at most {config.steps} steps)"
    out.print(
        f"bench run: {config.model} on {config.data}, {length}, batch {config.batch_size}, "
        f"{config.precision} on {result.device} ({result.device_name}), "
        f"{_threads(result.context.get('threads'))}; "
        f"test accuracy {result.train.test_accuracy:.2%}",
        markup=False,
    )
    rows = [
        ("throughput", result.images_per_second),
        ("training FLOPs", result.training_flops_per_image),
        ("achieved", result.achieved_flops_per_second),
        ("ceiling", result.ceiling_flops_per_second),
        ("utilisation", result.utilisation),
        ("energy", result.energy_joules),
        ("mean power", result.mean_watts),
        ("training energy", result.training_joules),
        ("energy per image", result.joules_per_image),
        ("price", result.price_usd),
        ("mu (FLOP/s per $)", result.mu),
        ("eta (FLOP/s per W)", result.eta),
        ("cost of the run", result.cost_usd),
    ]
    width = max(len(label) for label, _ in rows)
    for label, quantity in rows:
        line = f"{label:<{width}}  {escape(name_flags(quantity.describe(), BENCH_FLAGS))}"
        if quantity.value is not None:
            line += f"  [dim]{escape(name_flags(quantity.source, BENCH_FLAGS))}[/]"
        out.print(line)
        if label == "energy":
            for reading in result.energy.readings:
                out.print(f"  {escape(reading.source):<{width - 2}}  {escape(reading.describe())}")
    out.print(f"bench.json: {result.bench_json}", markup=False)


def _threads(count: int | None) -> str:
    return "threads unknown" if count is None else f"{count} thread{'s' if count != 1 else ''}"
