"""One process of `cnnlab train --nproc N`: ``python -m cnnlab.cli.train_worker --config FILE``.

`cnnlab train --nproc N` (``cnnlab.cli.train_distributed``) starts N of these through torchrun's
agent. Each trains its share (``cnnlab.train.launch.train_or_resume``); rank 0 prints the epoch
lines. An error becomes one line for the launcher (``record_worker_error``), which prints the
failing rank's line once; a bug's traceback stays on this process's stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnlab.cli.common import describe_os_error, name_flags, print_error
from cnnlab.cli.train import TRAIN_FLAGS, training_log
from cnnlab.cli.train_distributed import WORKER_MODULE, running_distributed
from cnnlab.train import TrainConfig, TrainingDiverged, TrainingInterrupted, resume
from cnnlab.train.launch import record_worker_error, train_or_resume

# What a collective's error says when the process at the other end is gone.
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL error")


def worker_main(argv: list[str] | None = None) -> int:
    """One process of `cnnlab train --nproc N`; the exit status (2: an input error)."""
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--changes", type=Path)
    parser.add_argument("--log-stderr", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    log = training_log(args.log_stderr, args.quiet)
    progress = not args.quiet
    try:
        if args.config is not None:
            config = TrainConfig(**json.loads(args.config.read_text(encoding="utf-8")))
            train_or_resume(config, progress=progress, print_fn=log)
        else:
            changes = json.loads(args.changes.read_text(encoding="utf-8"))
            resume(args.resume, changes=changes, progress=progress, print_fn=log)
        return 0
    except TrainingInterrupted:
        return 130
    except TrainingDiverged as error:
        line, status = str(error), 1
    except ValueError as error:
        line, status = name_flags(str(error), TRAIN_FLAGS), 2
    except OSError as error:
        line, status = name_flags(describe_os_error(error), TRAIN_FLAGS), 2
    except Exception as error:
        if not lost_the_others(error):
            record_worker_error(f"{type(error).__name__}: {first_line(error)}", 1)
            raise  # a bug: its traceback on this worker's stderr
        line, status = f"lost the other processes ({first_line(error)})", 1
    if not record_worker_error(line, status):
        print_error(line)
    return status


def lost_the_others(error: Exception) -> bool:
    """A collective that failed because another process died (gloo's or nccl's words)."""
    text = str(error)
    gone = isinstance(error, RuntimeError) and any(sign in text for sign in PEER_GONE)
    return gone and running_distributed()


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(worker_main())
