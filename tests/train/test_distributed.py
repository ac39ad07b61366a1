"""Training on several processes: torchrun + DistributedDataParallel, on the CPU with gloo.

The end-to-end tests share one uninterrupted two-process run (two torchrun launchers on
loopback, ``--nnodes 2``), made once per session even under pytest-xdist (a file lock): the
one-process run with the same global batch must end within float rounding of it, and a run
whose worker is killed and restarted must end with exactly its weights. Every process uses
one thread; the runs are LeNet-like on scikit-learn's bundled digits, 3 epochs of 22 steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from cnnlab.cli import main
from cnnlab.cli.train_worker import worker_main
from cnnlab.data import load_dataset
from cnnlab.data.device import Augmentation, DeviceBatches, InputAdapter, Normalization
from cnnlab.train import default_config, load_checkpoint, report, train
from cnnlab.train.distributed import RankBatches, Ranks
from cnnlab.train.launch import (
    ERRORS_VARIABLE,
    RESTART_VARIABLE,
    WorkersFailed,
    _Failure,
    describe_failure,
    launch_workers,
)

# The run every end-to-end test trains: 1437 training images, global batch 64 -> 22 steps/epoch.
RUN = ["lenet-like", "--data", "digits", "--epochs", "3", "--batch-size", "64", "--threads", "1"]
STEPS = 66
# Two processes against one, same global batch, 66 AdamW steps: measured 6.9e-7 (float rounding
# of a sum split in two halves); a wrong split or unaveraged gradients differ by 1e-2 and more.
TOLERANCE = 1e-5
TIMEOUT = 300  # seconds for a launch; a hang fails instead of stalling CI


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_environment() -> dict[str, str]:
    """This process's environment without torchrun's variables (tests may run under one)."""
    drop = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    return {k: v for k, v in os.environ.items() if k not in drop} | {"OMP_NUM_THREADS": "1"}


def train_on_two_launchers(out: Path) -> list[str]:
    """`torchrun --nnodes 2 --nproc-per-node 1 -m cnnlab train ...` twice, as two machines
    would run it, meeting on a c10d rendezvous on loopback; their outputs."""
    port = free_port()
    launchers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run"),
                *("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node)),
                *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"),
                *("--rdzv-id", f"test-{port}", "--rdzv-conf", f"is_host={int(node == 0)}"),
                *("-m", "cnnlab", "train", *RUN, "--out", str(out)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=worker_environment(),
        )
        for node in (0, 1)
    ]
    outputs = []
    try:
        for launcher in launchers:
            outputs.append(launcher.communicate(timeout=TIMEOUT)[0])
    finally:
        for launcher in launchers:
            launcher.kill()
    for launcher, output in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, output
    return outputs


@pytest.fixture(scope="session")
def two_node_run(tmp_path_factory, worker_id) -> Path:
    """The uninterrupted two-process run, once for all xdist workers of the session."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    run = shared / "ddp-two-nodes"
    with FileLock(str(shared / "ddp-two-nodes.lock")):
        if not (run / "report.json").exists():
            outputs = train_on_two_launchers(run)
            (shared / "ddp-two-nodes.log").write_text("\n".join(outputs), encoding="utf-8")
    return run


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["state_dict"]


# ---- the share of each process, without processes --------------------------------------------


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_the_ranks_batches_together_are_the_one_process_batch(augment):
    data = load_dataset("digits")
    common = {
        "batch_size": 64,
        "device": "cpu",
        "normalization": Normalization((0.3,), (0.4,)),
        "adapter": InputAdapter((1, 8, 8), (1, 8, 8)),
        "augmentation": Augmentation(max_shift=2) if augment else None,
        "seed": 7,
        "drop_last": True,
    }
    whole = DeviceBatches(data.train_images, data.train_labels, **common)
    ranks = [
        RankBatches(DeviceBatches(data.train_images, data.train_labels, **common), r, 4)
        for r in range(4)
    ]
    assert len(whole) == 1437 // 64 == 22 and all(len(r) == 22 for r in ranks)
    for epoch, start in ((0, 0), (3, 5)):
        shares = [list(rank.epoch(epoch, start_step=start)) for rank in ranks]
        for step, (inputs, labels) in enumerate(whole.epoch(epoch, start_step=start)):
            parts = [share[step] for share in shares]
            assert all(p[0].shape[0] == 16 for p in parts)  # 64 / 4 images each
            torch.testing.assert_close(torch.cat([p[0] for p in parts]), inputs, rtol=0, atol=0)
            assert torch.equal(torch.cat([p[1] for p in parts]), labels)
        assert len(shares[0]) == 22 - start


def test_a_global_batch_that_does_not_split_is_refused_with_the_numbers():
    ranks = Ranks(rank=0, world_size=3, backend="gloo")
    with pytest.raises(ValueError, match=r"multiple of 3\. Received: batch_size=64"):
        ranks.check_batches(64, 1437)
    with pytest.raises(ValueError, match=r"batch_size=1500 is more than the 1437 training"):
        ranks.check_batches(1500, 1437)
    ranks.check_batches(63, 1437)
    Ranks().check_batches(64, 10)  # one process: a partial batch is fine


def test_sync_bn_is_refused_on_the_cpu_by_name():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    with pytest.raises(
        ValueError, match=r"sync_bn needs CUDA.*Received: sync_bn=True, device='cpu'"
    ):
        Ranks(world_size=2, backend="gloo").model_to_train(model, torch.device("cpu"), sync_bn=True)


def test_the_failure_line_names_the_cause_first():
    killed = _Failure(rank=1, exit_status=-9, signal="SIGKILL", pid=4242)
    stopped = _Failure(rank=0, exit_status=-15, signal="SIGTERM", pid=4241)
    lost = _Failure(rank=0, exit_status=1, signal=None, pid=4241)
    gone = {"rank": 0, "time": 10.0, "line": "lost the other processes (...)", "exit_status": 1}
    usage = {"rank": 1, "time": 11.0, "line": "create_model: bad argument", "exit_status": 2}
    # An input error wins: it is the same on every rank and the user's to fix.
    assert describe_failure([lost], [gone, usage], 0) == ("create_model: bad argument", 2)
    # A rank killed by a signal is why the others lost it, whenever they noticed.
    assert describe_failure([stopped, killed, lost], [gone], 1) == (
        "rank 1 (pid 4242) was killed by SIGKILL (after 1 restart)",
        1,
    )
    # Else the earliest recorded error, then the exit status.
    late = {**gone, "rank": 1, "time": 12.0, "line": "RuntimeError: boom"}
    assert describe_failure([lost], [late, gone], 0) == (
        "rank 0: lost the other processes (...)",
        1,
    )
    assert describe_failure([lost], [], 2) == ("rank 0 exited with status 1 (after 2 restarts)", 1)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--max-restarts", "1"], "--max-restarts restarts the processes --nproc starts"),
        (["--nproc", "2", "--batch-size", "63"], "multiple of 2. Received: --batch-size 63"),
        (["--nproc", "0"], "--nproc"),
        (["--nproc", "2", "--sync-bn", "--device", "cpu"], "--sync-bn needs CUDA"),
    ],
    ids=["restarts-without-nproc", "batch-does-not-split", "no-processes", "sync-bn-on-cpu"],
)
def test_launch_flags_are_checked_before_any_process_starts(flags, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "lenet-like", "--data", "digits", *flags, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and len(error.splitlines()) == 1, error
    assert expected in error
    assert not (tmp_path / "r").exists()


# ---- end to end: processes ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_launchers_on_loopback_train_one_run(two_node_run):
    report = load_checkpoint(two_node_run)
    assert report["finished"] and report["global_step"] == STEPS
    # Every epoch saw each of the 1,408 images of its 22 global batches once, over both ranks.
    assert [m["images"] for m in report["metrics"]] == [22 * 64] * 3
    context = (two_node_run / "report.json").read_text(encoding="utf-8")
    assert '"processes": 2' in context and '"distributed_backend": "gloo"' in context


@pytest.mark.slow
def test_two_processes_end_where_one_process_ends_with_the_same_global_batch(
    two_node_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])  # not what is tested
    config = default_config(
        "lenet-like", "digits", epochs=3, batch_size=64, threads=1, out=str(tmp_path / "one")
    )
    one = train(config, progress=False)
    single, double = weights(one.run_dir), weights(two_node_run)
    moved = max((single[k] - weights_at_start()[k]).abs().max().item() for k in single)
    apart = max((single[k] - double[k]).abs().max().item() for k in single)
    assert apart < TOLERANCE < moved / 1000, (apart, moved)
    # The loss, accuracies and test loss were all-reduced over the ranks: the same numbers.
    for mine, theirs in zip(one.metrics, load_checkpoint(two_node_run)["metrics"], strict=True):
        assert mine["images"] == theirs["images"]
        for key in ("loss", "train_accuracy", "test_accuracy", "test_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key


def weights_at_start() -> dict[str, torch.Tensor]:
    from cnnlab.models import create_model

    torch.manual_seed(0)  # the loop seeds the initial weights with the run's seed
    return create_model("lenet-like").state_dict()


def worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the `cnnlab train --nproc` workers whose parent is ``parent``."""
    found = {}
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            stat = (folder / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                continue
            if b"cnnlab.cli.train_worker" not in (folder / "cmdline").read_bytes():
                continue
            variables = (folder / "environ").read_bytes().split(b"\0")
            rank = next(v.split(b"=", 1)[1] for v in variables if v.startswith(b"RANK="))
            found[int(rank)] = int(folder.name)
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds workers in /proc")
def test_a_killed_worker_restarts_the_group_which_ends_with_the_uninterrupted_weights(
    two_node_run, tmp_path, capfd
):
    run = tmp_path / "restarted"
    killed: list[int] = []

    def kill_rank_1_after_the_first_epoch() -> None:
        deadline = time.monotonic() + TIMEOUT
        metrics = run / "metrics.jsonl"
        while time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text(encoding="utf-8").count("\n") >= 1:
                pid = worker_pids(os.getpid()).get(1)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_rank_1_after_the_first_epoch, daemon=True)
    killer.start()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *RUN, "--nproc", "2", "--max-restarts", "1", "--out", str(run)])
    killer.join(timeout=5)
    out, err = capfd.readouterr()
    assert exit_info.value.code == 0, err
    assert killed, "rank 1 was never killed"
    assert f"rank 1 (pid {killed[0]}) was killed by SIGKILL: restarting the 2 processes" in err
    assert f"resuming {run} at epoch 2, step 0" in out  # from the checkpoint after epoch 1
    assert "Traceback" not in err
    restarted, uninterrupted = weights(run), weights(two_node_run)
    assert all(torch.equal(restarted[k], uninterrupted[k]) for k in uninterrupted)
    assert load_checkpoint(run)["global_step"] == STEPS


def test_a_worker_records_its_input_error_for_the_launcher_and_prints_nothing(
    tmp_path, monkeypatch, capsys
):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", RESTART_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ERRORS_VARIABLE, str(tmp_path))
    config = default_config("lenet-like", "digits", model_kwargs={"bogus": 1}, steps=1)
    file = tmp_path / "config.json"
    file.write_text(json.dumps(dataclasses.asdict(config)), encoding="utf-8")
    assert worker_main(["--config", str(file), "--quiet"]) == 2
    record = json.loads((tmp_path / "rank-0.json").read_text(encoding="utf-8"))
    assert record["line"] == (
        "create_model('lenet-like'): unexpected argument(s) bogus. "
        "Accepted: num_classes, in_channels"
    )
    assert (record["rank"], record["restart"], record["exit_status"]) == (0, 0, 2)
    assert capsys.readouterr() == ("", "")  # the launcher prints it, once


# Workers that stand in for training processes (no torch to import): each behaves by its rank
# and restart as torchrun's agent numbers them, and records an error as record_worker_error does.
STAND_IN = """
import json, os, signal, sys, time
rank, restart = int(os.environ["RANK"]), int(os.environ["TORCHELASTIC_RESTART_COUNT"])
case = sys.argv[1]
if case == "input-error":
    record = {"rank": rank, "restart": restart, "time": time.time(),
              "line": "batch_size must be a positive integer. Received: --batch-size 0",
              "exit_status": 2}
    with open(os.path.join(os.environ["CNNLAB_WORKER_ERRORS"], f"rank-{rank}.json"), "w") as f:
        json.dump(record, f)
    sys.exit(2)
if rank == 1 and (case == "killed" or restart == 0):
    os.kill(os.getpid(), signal.SIGKILL)
if case == "killed":
    time.sleep(60)  # until the agent stops this survivor
"""


@pytest.mark.parametrize(
    ("case", "restarts", "expected"),
    [
        ("input-error", 0, ("batch_size must be a positive integer. Received: --batch-size 0", 2)),
        ("killed", 0, (r"rank 1 \(pid \d+\) was killed by SIGKILL", 1)),
        ("killed", 1, (r"rank 1 \(pid \d+\) was killed by SIGKILL \(after 1 restart\)", 1)),
    ],
    ids=["input-error-on-both-ranks", "killed", "killed-again-after-a-restart"],
)
def test_a_failed_group_is_one_line_naming_the_cause(case, restarts, expected):
    notes: list[str] = []
    with pytest.raises(WorkersFailed) as failure:
        launch_workers(
            ["-c", STAND_IN, case], nproc=2, max_restarts=restarts, print_fn=notes.append
        )
    line, status = expected
    assert re.fullmatch(line if case != "input-error" else re.escape(line), str(failure.value))
    assert failure.value.exit_status == status
    assert len(notes) == restarts


def test_a_restarted_group_that_succeeds_says_so_once():
    notes: list[str] = []
    launch_workers(["-c", STAND_IN, "restart"], nproc=2, max_restarts=1, print_fn=notes.append)
    assert len(notes) == 1
    assert re.fullmatch(
        r"rank 1 \(pid \d+\) was killed by SIGKILL: restarting the 2 processes from the last "
        r"checkpoint \(restart 1 of 1\)",
        notes[0],
    )


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_processes_use_nccl_and_sync_bn(tmp_path, capfd):
    gpus = min(torch.cuda.device_count(), 2)  # one process per GPU
    run = tmp_path / "cuda"
    args = ["resnet18", "--data", "digits", "--steps", "4", "--batch-size", str(16 * gpus)]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                *args,
                "--device",
                "cuda",
                "--nproc",
                str(gpus),
                "--sync-bn",
                "--out",
                str(run),
            ]
        )
    assert exit_info.value.code == 0, capfd.readouterr().err
    context = load_checkpoint(run)["config"], (run / "report.json").read_text(encoding="utf-8")
    assert context[0]["sync_bn"] is True
    assert f'"processes": {gpus}' in context[1] and '"distributed_backend": "nccl"' in context[1]
