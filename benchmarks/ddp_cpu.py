"""One training run on this machine's CPU, two ways: 1 process x 2 threads against 2 processes x
1 thread (DistributedDataParallel over gloo, ``cnnlab train --nproc 2``), at global batch 64
and 512; with ``--device cuda``, 1 GPU against all of them (nccl).

    python benchmarks/ddp_cpu.py [--steps 150] [--repeats 1] [--out benchmarks/results]
    python benchmarks/ddp_cpu.py --device cuda [--out DIR]
    python benchmarks/ddp_cpu.py --dry-run [--out DIR]

Each run is ``cnnlab train lenet-like --data fashion-mnist --steps S --batch-size B`` in its own
subprocess, as users run it; images/s is the run's own figure (training steps only, the device
synchronised at each clock read; loading, start-up, evaluation and the report excluded), so the
two setups are compared on the same work: the same global batch, the same steps. Prints a table
and writes JSON with the context (versions, CPU, threads, and the share of the CPUs other
processes took during each run: this project's machines are shared).

``--dry-run`` runs the same code in seconds, so that CI keeps the script working: a few steps
at batch 64 only, on scikit-learn's bundled digits (no download), the JSON into a temporary
folder (or ``--out``), never into benchmarks/results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _dry_run import RESULTS, refuse_recorded_results  # benchmarks/ is on sys.path

# Idle OpenMP threads spin by default: on a shared machine two threads of one process then wait
# for each other whenever another process holds a core (see infer_cpu.py). Passive waiting for
# every run, inherited by the subprocesses and recorded in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
NAME = "ddp_cpu.json"
MODEL = "lenet-like"
DATA, OFFLINE_DATA = "fashion-mnist", "digits"
REAL_RUN = {"steps": 150, "batch_sizes": (64, 512)}
DRY_RUN = {"steps": 3, "batch_sizes": (64,)}


@dataclass(frozen=True)
class Setup:
    """How one run is spread: ``processes`` x ``threads`` each (None: torch's default)."""

    name: str
    processes: int
    threads: int | None
    device: str

    def flags(self) -> list[str]:
        flags = ["--device", self.device]
        flags += ["--threads", str(self.threads)] if self.threads else []
        return flags + (["--nproc", str(self.processes)] if self.processes > 1 else [])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="seconds, tiny sizes, same code")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setup and batch")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for {NAME}")
    args = parser.parse_args(argv)
    refuse_recorded_results(parser, args.dry_run, args.out)
    for name in ("steps", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1. Received: --{name} {value}")
    return args


def setups(device: str) -> list[Setup]:
    """CPU: the same 2 cores as 1 x 2 threads or 2 x 1 thread; CUDA: 1 GPU or all."""
    if device == "cpu":
        return [
            Setup("1 process x 2 threads", 1, 2, "cpu"),
            Setup("2 processes x 1 thread", 2, 1, "cpu"),
        ]
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 1:
        raise SystemExit("--device cuda: no CUDA device here")
    return [Setup("1 GPU", 1, None, "cuda"), Setup(f"{gpus} GPUs", gpus, None, "cuda")]


def cpu_seconds() -> tuple[float, float, float]:
    """(all CPUs busy, all CPUs total, this process and its waited-for children), in seconds."""
    from cnnlab.runtime.contention import CpuCounters

    counters, times = CpuCounters.read(), os.times()
    mine = times.user + times.system + times.children_user + times.children_system
    if counters is None:
        return float("nan"), float("nan"), mine
    return counters.busy, counters.total, mine


def run_once(setup: Setup, data: str, batch: int, steps: int, folder: Path) -> dict:
    """One `cnnlab train` subprocess; its JSON result and the CPU share others took."""
    out = folder / f"{setup.processes}x{setup.threads}-{batch}-{len(list(folder.iterdir()))}"
    command = [
        *(sys.executable, "-m", "cnnlab", "train", MODEL, "--data", data),
        *("--steps", str(steps), "--batch-size", str(batch), "--seed", "0"),
        *setup.flags(),
        *("--out", str(out), "--quiet", "--json"),
    ]
    before = cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = cpu_seconds()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    busy, total = after[0] - before[0], after[1] - before[1]
    others = (busy - (after[2] - before[2])) / total if total > 0 else None
    return {
        "images_per_second": result["images_per_second"],
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "test_accuracy": result["test_accuracy"],
        "others_cpu_share": None if others is None else min(1.0, max(0.0, others)),
    }


def measure(setup: Setup, data: str, batch: int, steps: int, repeats: int, folder: Path) -> dict:
    runs = [run_once(setup, data, batch, steps, folder) for _ in range(repeats)]
    return {
        "setup": setup.name,
        "processes": setup.processes,
        "threads_per_process": setup.threads,
        "device": setup.device,
        "batch_size": batch,
        "batch_per_process": batch // setup.processes,
        "images_per_second": statistics.median(r["images_per_second"] for r in runs),
        "runs": runs,
    }


def print_table(rows: list[dict]) -> None:
    print(
        f"{'setup':<24} {'global batch':>12} {'per process':>11} {'images/s':>10} {'vs first':>9}"
    )
    first = {}
    for row in rows:
        base = first.setdefault(row["batch_size"], row["images_per_second"])
        ratio = row["images_per_second"] / base
        shares = [r["others_cpu_share"] for r in row["runs"] if r["others_cpu_share"] is not None]
        busy = f"  (others took {max(shares):.0%} of the CPUs)" if shares else ""
        print(
            f"{row['setup']:<24} {row['batch_size']:>12} {row['batch_per_process']:>11} "
            f"{row['images_per_second']:>10,.0f} {ratio:>8.2f}x{busy}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = DRY_RUN if args.dry_run else REAL_RUN
    steps = args.steps or plan["steps"]
    data = OFFLINE_DATA if args.dry_run else DATA
    chosen = setups(args.device)
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="ddp_cpu-dry-run-")) if args.dry_run else RESULTS
    with tempfile.TemporaryDirectory(prefix="ddp_cpu-") as folder:
        rows = [
            measure(setup, data, batch, steps, args.repeats, Path(folder))
            for batch in plan["batch_sizes"]
            for setup in chosen
        ]
    print_table(rows)
    from cnnlab.runtime.context import software_context
    from cnnlab.runtime.devices import cpu_name
    from cnnlab.runtime.files import write_json

    context = {
        **software_context(),
        "benchmark": "ddp_cpu",
        "dry_run": args.dry_run,
        "model": MODEL,
        "data": data,
        "steps_per_run": steps,
        "repeats": args.repeats,
        "batch_sizes": list(plan["batch_sizes"]),
        "device": args.device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "excluded": "images_per_second counts the training steps only (cnnlab's training "
        "clock): process start-up, the rendezvous, loading the data, evaluation and the "
        "report are excluded",
    }
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / NAME, {"context": context, "results": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
