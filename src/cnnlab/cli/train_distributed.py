"""`cnnlab train --nproc N`: the launcher, and the worker it starts on each process.

The launcher checks everything it can before a process starts (the flags, the run folder, that
the global batch splits over N processes), writes the run's TrainConfig to a temporary JSON
file, and runs ``python -m cnnlab.cli.train_worker --config FILE`` on N processes through
torchrun's agent (``cnnlab.train.launch``). Rank 0 prints the epoch lines; the launcher prints
the result from the run's report, or one line for the rank that failed.

Under ``torchrun ... -m cnnlab train ...`` this module is not involved: `cnnlab train` itself
runs in every process (``cnnlab.train.launch.train_or_resume``) and only rank 0 prints.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import typer

from cnnlab.cli.common import USAGE_EXIT, err, print_error
from cnnlab.runtime.files import write_json
from cnnlab.runtime.validate import check_int, check_positive_int
from cnnlab.train import TrainConfig, TrainResult, load_checkpoint, resume
from cnnlab.train.checkpoint import new_run_dir
from cnnlab.train.distributed import current_ranks, launched_by_torchrun
from cnnlab.train.launch import WorkersFailed, launch_workers

WORKER_MODULE = "cnnlab.cli.train_worker"  # what each process runs


def check_launch(nproc: int | None, max_restarts: int | None) -> None:
    """--nproc N (N >= 1) and --max-restarts K (K >= 0, with --nproc), outside torchrun."""
    if nproc is None:
        if max_restarts is not None:
            raise ValueError(
                "--max-restarts restarts the processes --nproc starts: give --nproc N too "
                f"(under torchrun, use torchrun's --max-restarts). Received: --max-restarts "
                f"{max_restarts}"
            )
        return
    check_positive_int("--nproc", nproc)
    check_int("--max-restarts", 0 if max_restarts is None else max_restarts, low=0, high=100)
    if launched_by_torchrun():
        raise ValueError(
            "--nproc starts its own processes, but this one was started by torchrun; drop "
            f"--nproc (torchrun's --nproc-per-node sets the processes). Received: --nproc {nproc}"
        )


def check_split(config: TrainConfig, nproc: int) -> None:
    """What the processes would refuse on their own, refused once before they start."""
    if config.batch_size % nproc:
        raise ValueError(
            f"--batch-size is the global batch, split evenly over the --nproc {nproc} "
            f"processes: it must be a multiple of {nproc}. Received: --batch-size "
            f"{config.batch_size}"
        )
    on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if config.sync_bn and on_cpu:
        raise ValueError(
            "--sync-bn needs CUDA: torch.nn.SyncBatchNorm runs on GPUs only, and this run "
            f"trains on the CPU. Received: --sync-bn, --device {config.device}"
        )


def launch_training(
    *,
    config: TrainConfig | None = None,
    resume_dir: Path | None = None,
    changes: Mapping[str, Any] | None = None,
    nproc: int,
    max_restarts: int | None,
    json_output: bool,
    quiet: bool,
) -> TrainResult:
    """Train ``config`` (or continue ``resume_dir``) on ``nproc`` local processes; the result."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-launch-") as folder:
        if config is not None:
            check_split(config, nproc)
            run_dir = new_run_dir(config.out, model=config.model, data=config.data)
            config = dataclasses.replace(config, out=str(run_dir))
            file = write_json(Path(folder) / "config.json", dataclasses.asdict(config))
            args = ["--config", str(file)]
        else:
            assert resume_dir is not None
            stored = TrainConfig(**load_checkpoint(resume_dir)["config"])
            check_split(dataclasses.replace(stored, **(changes or {})), nproc)
            run_dir = Path(resume_dir)
            file = write_json(Path(folder) / "changes.json", dict(changes or {}))
            args = ["--resume", str(run_dir), "--changes", str(file)]
        args += ["--log-stderr"] if json_output else []
        args += ["--quiet"] if quiet else []
        try:
            launch_workers(
                ["-m", WORKER_MODULE, *args],
                nproc=nproc,
                max_restarts=max_restarts or 0,
                print_fn=print_note,
            )
        except WorkersFailed as failure:
            if failure.exit_status == USAGE_EXIT:  # the workers' own input error
                raise ValueError(str(failure)) from None
            print_error(str(failure))
            raise typer.Exit(failure.exit_status) from None
    return resume(run_dir)  # finished: its stored result


def print_note(text: str) -> None:
    err.print(text, markup=False, highlight=False)


def running_distributed() -> bool:
    """True in a process that trained as one rank of several (torchrun's)."""
    return current_ranks().distributed


def prints_result() -> bool:
    """In a process torchrun started, only rank 0 prints the result."""
    return current_ranks().main
