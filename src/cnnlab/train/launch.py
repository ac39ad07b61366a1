"""Training on several local processes through torchrun's agent, and what a restarted worker does.

``launch_workers`` is ``torchrun --standalone --nproc-per-node N --max-restarts K`` run from
Python (``torch.distributed.launcher.elastic_launch``, the function behind torchrun): it starts
the workers, restarts the whole group when one dies (at most K times), and when the group fails
for good turns the failures into one line: :class:`WorkersFailed`. Each worker that fails
writes its error's line with :func:`record_worker_error` into the folder the launcher names,
so the line the user reads is the failing rank's own message, not torchrun's report.

``train_or_resume`` is what a worker runs: ``train(config)`` the first time, and after torchrun
restarted the group, ``resume(config.out)``, so the run continues from its last checkpoint
and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.runtime.files import write_json
from cnnlab.train.checkpoint import CHECKPOINT_NAME
from cnnlab.train.config import TrainConfig, usable_cpus
from cnnlab.train.distributed import join_process_group
from cnnlab.train.loop import resume, train
from cnnlab.train.result import TrainResult

ERRORS_VARIABLE = "CNNLAB_WORKER_ERRORS"  # the folder where failing workers write their line
RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun's agent in every worker
MAX_RESTARTS_VARIABLE = "TORCHELASTIC_MAX_RESTARTS"
# With gloo, a restarted group cannot rendezvous on the agent's shared TCP store; each group
# then makes its own (pytorch/pytorch#135712). It must be in the launcher's environment.
LAUNCHER_ENVIRONMENT = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
USAGE_EXIT = 2  # the exit status of an input error (cnnlab.cli.common)


class WorkersFailed(RuntimeError):
    """The worker group failed and no restart was left; ``str(error)`` is the one line to show."""

    def __init__(self, line: str, exit_status: int):
        super().__init__(line)
        self.exit_status = exit_status


def train_or_resume(config: TrainConfig, **options: Any) -> TrainResult:
    """``train(config, **options)``, or in a worker torchrun restarted, ``resume(config.out)``
    when the run's checkpoint is there: the group continues where the last checkpoint stopped."""
    restarts = _environment_count(RESTART_VARIABLE)
    if config.out is None and _environment_count(MAX_RESTARTS_VARIABLE) > 0:
        raise ValueError(
            "out must name the run folder when torchrun may restart the workers "
            f"(--max-restarts {_environment_count(MAX_RESTARTS_VARIABLE)}): a restarted group "
            "continues the checkpoint it finds there. Received: out=None"
        )
    if restarts > 0:
        ranks = join_process_group()
        folder = Path(str(config.out))
        if ranks.from_main(lambda: (folder / CHECKPOINT_NAME).exists()):
            return resume(folder, **options)
    return train(config, **options)


def _environment_count(name: str) -> int:
    text = os.environ.get(name, "0")
    return int(text) if text.isdigit() else 0


def record_worker_error(line: str, exit_status: int) -> bool:
    """Write this worker's error line for the launcher (False when no launcher asked for it)."""
    folder = os.environ.get(ERRORS_VARIABLE)
    if not folder:
        return False
    rank = os.environ.get("RANK", "0")
    record = {
        "rank": int(rank),
        "restart": _environment_count(RESTART_VARIABLE),
        "time": time.time(),
        "line": " ".join(line.split()),
        "exit_status": exit_status,
    }
    write_json(Path(folder) / f"rank-{rank}.json", record)
    return True


@dataclass(frozen=True)
class _Failure:
    rank: int
    exit_status: int  # the process's exit status; negative: killed by that signal
    signal: str | None
    pid: int | None


def launch_workers(
    args: Sequence[str],
    *,
    nproc: int,
    max_restarts: int = 0,
    environment: Mapping[str, str] | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> None:
    """Run ``python ARGS...`` on ``nproc`` local processes under torchrun's agent (a standalone
    rendezvous on localhost), restarting the group up to ``max_restarts`` times.

    Returns when every worker ended well; raises :class:`WorkersFailed` (one line, and the exit
    status to use) when the group failed and no restart was left, and KeyboardInterrupt when
    the launcher was interrupted (the workers are stopped). ``environment`` is added to the
    workers'; OMP_NUM_THREADS defaults to the usable CPUs shared out among the workers.
    torchrun's own log lines are replaced by ``print_fn``'s one line per restart.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="cnnlab-workers-") as folder:
        errors = Path(folder) / "errors"
        errors.mkdir()
        threads = str(max(1, usable_cpus() // nproc))
        added = {
            **LAUNCHER_ENVIRONMENT,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
            **(environment or {}),
            ERRORS_VARIABLE: str(errors),
        }
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=nproc,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=max_restarts,
            logs_specs=DefaultLogsSpecs(log_dir=str(Path(folder) / "logs")),
        )
        notes = _RestartNotes(print_fn, nproc, max_restarts)
        with _environment(added), _agent_log(notes), _signal_handlers_kept():
            try:
                elastic_launch(config, sys.executable)(*args)
            except ChildFailedError as error:
                failures = [
                    _Failure(rank, f.exitcode, f.signal_name() if f.exitcode < 0 else None, f.pid)
                    for rank, f in error.failures.items()
                ]
                line, status = describe_failure(failures, _read_errors(errors), max_restarts)
                raise WorkersFailed(line, status) from None
            except SignalException:
                raise KeyboardInterrupt from None


@contextlib.contextmanager
def _environment(added: Mapping[str, str]) -> Iterator[None]:
    """``added`` in os.environ for the block (the agent gives its environment to the workers)."""
    before = {name: os.environ.get(name) for name in added}
    os.environ.update(added)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _RestartNotes(logging.Handler):
    """Takes torchrun's agent log records: a worker's failure and a restart become one line."""

    def __init__(self, print_fn: Callable[[str], None] | None, nproc: int, max_restarts: int):
        super().__init__(logging.INFO)
        self.print_fn, self.nproc, self.max_restarts = print_fn, nproc, max_restarts
        self.restarts, self.failed = 0, "a process failed"

    def emit(self, record: logging.LogRecord) -> None:
        message, args = str(record.msg), record.args
        if message.startswith("failed (exitcode") and isinstance(args, tuple) and len(args) >= 3:
            status, rank, pid = args[:3]
            how = _exit_description(status)
            self.failed = f"rank {rank} (pid {pid}) {how}"
        elif "will restart worker group" in message and self.print_fn is not None:
            self.restarts += 1
            self.print_fn(
                f"{self.failed}: restarting the {self.nproc} processes from the last "
                f"checkpoint (restart {self.restarts} of {self.max_restarts})"
            )


def _exit_description(status: Any) -> str:
    if isinstance(status, int) and status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


@contextlib.contextmanager
def _agent_log(handler: logging.Handler) -> Iterator[None]:
    """torchrun's agent logs to ``handler`` only, for the block (its loggers set as they were)."""
    loggers = [
        logging.getLogger(name)
        for name in (
            "torch.distributed.elastic.agent.server.api",
            "torch.distributed.elastic.multiprocessing.api",
            "torch.distributed.elastic.agent.server.local_elastic_agent",
            "torch.distributed.launcher.api",
        )
    ]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """The agent installs its own handlers (SIGINT raises in it); put ours back after."""
    numbers = [
        getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n)
    ]
    main_thread = threading.current_thread() is threading.main_thread()
    kept = {number: signal.getsignal(number) for number in numbers} if main_thread else {}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)


def _read_errors(folder: Path) -> list[dict[str, Any]]:
    """The workers' error records of the last attempt (a restart overwrites the earlier)."""
    records = []
    for file in sorted(folder.glob("rank-*.json")):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(file.read_text(encoding="utf-8")))
    last = max((r["restart"] for r in records), default=0)
    return [r for r in records if r["restart"] == last]


def describe_failure(
    failures: Sequence[_Failure], records: Sequence[dict[str, Any]], max_restarts: int
) -> tuple[str, int]:
    """One line for the user, and the exit status, from the processes that failed and the
    error lines the workers recorded. The cause goes first: an input error (the same on every
    rank), then a rank killed by a signal (the others then fail to reach it), then the
    earliest error a rank recorded, then the first exit status."""
    after = f" (after {max_restarts} restart{'s' if max_restarts != 1 else ''})"
    after = after if max_restarts else ""
    user = sorted((r for r in records if r["exit_status"] == USAGE_EXIT), key=_time)
    if user:
        return user[0]["line"], USAGE_EXIT
    # SIGTERM is how the agent stops the survivors: a rank killed by another signal came first.
    killed = sorted(
        (f for f in failures if f.signal is not None), key=lambda f: (f.signal == "SIGTERM", f.rank)
    )
    if killed:
        first = killed[0]
        pid = f" (pid {first.pid})" if first.pid else ""
        return f"rank {first.rank}{pid} {_exit_description(first.exit_status)}{after}", 1
    recorded = sorted(records, key=_time)
    if recorded:
        first_record = recorded[0]
        return f"rank {first_record['rank']}: {first_record['line']}{after}", int(
            first_record["exit_status"]
        )
    first_failure = min(failures, key=lambda f: f.rank)
    return f"rank {first_failure.rank} exited with status {first_failure.exit_status}{after}", 1


def _time(record: dict[str, Any]) -> float:
    value = record.get("time")
    return float(value) if isinstance(value, (int, float)) else math.inf
