"""`cnnlab train`: train a zoo model on a dataset with its recipe, or resume a run.

Every option defaults to "not given": the model's recipe (``cnnlab.train.default_config``)
supplies the value, and only the flags the user typed override it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.common import (
    INTERRUPTED_EXIT,
    QuietOption,
    err,
    out,
    output_errors,
    print_error,
    print_json,
    print_warning,
    user_errors,
)
from cnnlab.cli.train_distributed import (
    check_launch,
    launch_training,
    prints_result,
    running_distributed,
)
from cnnlab.runtime.contention import (
    CpuCounters,
    busy_note,
    others_cpu_share,
    steal_cpu_share,
)
from cnnlab.runtime.files import RUNS_FOLDER
from cnnlab.train import (
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    default_config,
    load_checkpoint,
    resume,
)
from cnnlab.train.changes import CHANGEABLE
from cnnlab.train.config import Optimizer, Precision, Schedule
from cnnlab.train.launch import train_or_resume

DIVERGED_EXIT = 1

# Options that `cnnlab train` shares with `cnnlab bench run` (which trains once, measured).
DataOption = Annotated[
    str | None, typer.Option("--data", help="Dataset name (see `cnnlab data list`).")
]
TrainDataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Dataset name (see `cnnlab data list`); for a detector, a detection folder.",
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="Passes over the training set.")]
StepsOption = Annotated[
    int | None, typer.Option(help="Stop after this many optimizer steps in all.")
]
BatchSizeOption = Annotated[int | None, typer.Option("--batch-size", help="Images per step.")]
PrecisionOption = Annotated[
    Precision | None,
    typer.Option(
        help="fp32, or bf16/fp16 autocast. Default: fp32; for a detector bf16 where the device "
        "computes bf16 in hardware (AMX/AVX-512 BF16 CPUs, recent GPUs)."
    ),
]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed: weights, order, augmentation.")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads for torch.")]
RunDirOption = Annotated[
    Path | None,
    typer.Option("--out", help="Run folder (default runs/MODEL-DATA-YYYYmmdd-HHMMSS)."),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder that holds the dataset's files.")
]


# TrainConfig's fields as the options that set them: the library names its Python arguments.
TRAIN_FLAGS = {
    "epochs": "--epochs",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "label_smoothing": "--label-smoothing",
    "val_split": "--val-split",
    "patience": "--patience",
    "grad_clip": "--grad-clip",
    "seed": "--seed",
    "threads": "--threads",
    "device": "--device",
    "out": "--out",
    "model_kwargs": "--model-arg",
    "data_dir": "--data-dir",
}


def option_name(field: str) -> str:
    """The option that sets a TrainConfig field: ``batch_size`` -> ``--batch-size``."""
    return TRAIN_FLAGS.get(field) or f"--{field.replace('_', '-')}"


def training_log(json_output: bool, quiet: bool = False) -> Callable[[str], None] | None:
    """Epoch lines to stdout, or to stderr when stdout is for JSON; none under --quiet."""
    if quiet:
        return None
    console = err if json_output else out

    def log(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    return log


@contextlib.contextmanager
def training_exits() -> Iterator[None]:
    """Ctrl-C (the library said how to resume) exits 130; a diverged run exits 1 with advice."""
    try:
        yield
    except TrainingInterrupted:
        raise typer.Exit(INTERRUPTED_EXIT) from None
    except TrainingDiverged as error:
        print_error(str(error))
        raise typer.Exit(DIVERGED_EXIT) from None


def warn_if_cpus_shared(start: CpuCounters | None, device: str, threads: object) -> None:
    """After a run on the CPU: a one-line warning when other processes took a large share of
    the CPUs meanwhile (the timings are then slow and noisy), with what to try."""
    if not device.startswith("cpu"):
        return
    end = CpuCounters.read()
    note = busy_note(others_cpu_share(start, end), steal_cpu_share(start, end))
    if note is not None:
        print_warning(
            f"{note}. Next to a busy process fewer threads are often faster: try --threads 1 "
            f"(this run used {threads})",
            UserWarning,
            "",
            0,
        )


def run_folder_errors(out_dir: Path | None) -> contextlib.AbstractContextManager[None]:
    """A run folder that cannot be written (read-only, full disk) as one line naming --out."""
    if out_dir is None:
        return output_errors("--out", Path(RUNS_FOLDER), given=False)
    return output_errors("--out", out_dir)


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """``["width=512", "dropout=0.2"]`` to ``{"width": 512, "dropout": 0.2}``."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-arg expects KEY=VALUE, like width=512. Received: {item!r}")
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            kwargs[key.strip()] = lowered == "true"
            continue
        try:
            kwargs[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key.strip()] = text
    return kwargs


@user_errors(flags=TRAIN_FLAGS)
def train_command(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="A model of the zoo (see `cnnlab models`)."),
    ] = None,
    data: TrainDataOption = None,
    epochs: EpochsOption = None,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = None,
    optimizer: Annotated[Optimizer | None, typer.Option(help="The optimizer.")] = None,
    lr: Annotated[float | None, typer.Option(help="(Peak) learning rate.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum.")] = None,
    nesterov: Annotated[
        bool | None, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (SGD).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="Weight decay.")
    ] = None,
    schedule: Annotated[Schedule | None, typer.Option(help="Learning-rate schedule.")] = None,
    label_smoothing: Annotated[
        float | None, typer.Option("--label-smoothing", help="Label smoothing, in [0, 1).")
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help="Random shifts (and flips where they fit)."),
    ] = None,
    val_split: Annotated[
        float | None,
        typer.Option("--val-split", help="Fraction of the training set held out for validation."),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Early stopping: epochs without a better val accuracy (needs --val-split)."
        ),
    ] = None,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", help="Clip the gradient norm to this value.")
    ] = None,
    precision: PrecisionOption = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="channels_last memory format (default: on for models with convolutions).",
        ),
    ] = None,
    device: DeviceOption = None,
    seed: SeedOption = None,
    threads: ThreadsOption = None,
    out_dir: RunDirOption = None,
    data_dir: DataDirOption = None,
    quiet: QuietOption = False,
    model_arg: Annotated[
        list[str] | None,
        typer.Option("--model-arg", help="KEY=VALUE for the model builder, e.g. width=512."),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            "--sync-bn",
            help="On several processes with CUDA: batch norm over the global batch "
            "(SyncBatchNorm), not each process's share.",
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Train on N local processes (torchrun + DistributedDataParallel); "
            "--batch-size is the global batch, split over them.",
        ),
    ] = None,
    max_restarts: Annotated[
        int | None,
        typer.Option(
            "--max-restarts",
            help="With --nproc: restart all processes up to K times when one fails; they "
            "continue from the last checkpoint.",
        ),
    ] = None,
    resume_dir: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the run in this folder from its checkpoint; with --epochs, --steps, "
            "--lr, --grad-clip, --patience, --threads or --device changed if given.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train MODEL on --data NAME, or continue a run with --resume RUN_DIR. A detector
    (yolo-scenes, yolov3-tiny) trains on a detection folder: --data DIR as `cnnlab data scenes`
    writes it (or any YOLO or COCO folder), scored by COCO mAP."""
    given = {
        "epochs": epochs,
        "steps": steps,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "momentum": momentum,
        "nesterov": nesterov,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "label_smoothing": label_smoothing,
        "augment": augment,
        "val_split": val_split,
        "patience": patience,
        "grad_clip": grad_clip,
        "precision": precision,
        "channels_last": channels_last,
        "device": device,
        "seed": seed,
        "threads": threads,
        "out": str(out_dir) if out_dir is not None else None,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "model_kwargs": parse_model_args(model_arg) or None,
        "sync_bn": sync_bn,
    }
    given = {key: value for key, value in given.items() if value is not None}
    log = training_log(json_output, quiet)
    with training_exits():
        check_launch(nproc, max_restarts)
        launch = {"nproc": nproc, "max_restarts": max_restarts, "json_output": json_output}
        if resume_dir is not None:
            fixed = [key for key in given if key not in CHANGEABLE]
            if fixed or data is not None:
                flags = [option_name(key) for key in fixed]
                flags += ["--data"] if data is not None else []
                allowed = ", ".join(option_name(key) for key in CHANGEABLE)
                raise ValueError(
                    f"--resume continues the run's checkpoint with its own settings; "
                    f"{', '.join(flags)} cannot change (the run would be another experiment); "
                    f"on --resume only {allowed} can. Received: --resume {resume_dir}"
                )
            if model is not None:
                load_checkpoint(resume_dir, expect_model=model)
            with output_errors("--resume", resume_dir):
                if nproc is not None:
                    result = launch_training(
                        resume_dir=resume_dir, changes=given, quiet=quiet, **launch
                    )
                else:
                    result = resume(resume_dir, changes=given, progress=not quiet, print_fn=log)
        else:
            if model is None:
                raise ValueError(
                    "cnnlab train needs a MODEL (see `cnnlab models`) or --resume RUN_DIR"
                )
            if data is None:
                raise ValueError(
                    f"cnnlab train {model} needs --data NAME (see `cnnlab data list`), "
                    "e.g. --data digits"
                )
            config = default_config(model, data, **given)
            with run_folder_errors(out_dir):
                start = CpuCounters.read()
                if nproc is not None:
                    result = launch_training(config=config, quiet=quiet, **launch)
                else:
                    result = train_or_resume(config, progress=not quiet, print_fn=log)
            if nproc is None and not running_distributed():  # other ranks are no "others"
                device = result.context.get("device", "")
                warn_if_cpus_shared(start, device, config.threads or "all")
    if not prints_result():
        return  # under torchrun, rank 0 prints
    plots = result_plots(result)
    if json_output:
        print_json(result.to_dict())
        return
    print_result(result, plots)


def result_plots(result: TrainResult) -> list[str]:
    return [path.name for path in result.plots]


def print_result(result: TrainResult, plots: list[str]) -> None:
    val = result.best_val_accuracy
    best = f" (best val accuracy {val:.2%})" if val is not None else ""
    # Steps first: a run stopped by --steps may end inside its first epoch.
    steps = f"{result.steps:,} step{'s' if result.steps != 1 else ''}"
    epochs = f"{result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''}"
    out.print(f"{result.headline} after {steps} in {epochs}{best}")
    out.print(
        f"time: training {result.train_seconds:.2f} s ({result.images_per_second:,.0f} images/s), "
        f"evaluation {result.eval_seconds:.2f} s"
    )
    out.print(f"report: {result.report}", markup=False)
    if plots:
        out.print(f"plots: {', '.join(plots)} in {result.run_dir}", markup=False)
