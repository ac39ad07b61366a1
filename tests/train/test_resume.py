"""resume(): a run stopped by SIGKILL or Ctrl-C continues to exactly the uninterrupted weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import cnnlab.train.loop as loop
import cnnlab.train.report as report
from cnnlab.train import (
    TrainingInterrupted,
    default_config,
    load_checkpoint,
    resume,
    train,
)

# `cnnlab train ...` in a fresh process (the command is mounted here if the CLI lacks it).
DRIVER = """
import sys
from cnnlab.cli import app
if not any(command.name == "train" for command in app.registered_commands):
    from cnnlab.cli.train import train_command
    app.command("train")(train_command)
app(args=sys.argv[1:], prog_name="cnnlab")
"""
# An MLP with dropout (torch's generator), shifted digits (seeded per step) and a validation
# split: everything resume has to restore. About a second per epoch of 323 steps.
RUN_ARGS = [
    "mlp",
    "--data",
    "digits",
    "--model-arg",
    "width=256",
    "--epochs",
    "3",
    "--batch-size",
    "4",
    "--augment",
    "--val-split",
    "0.1",
    "--threads",
    "1",
    "--seed",
    "7",
]


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def weights(run_dir):
    return load_checkpoint(run_dir)["state_dict"]


def config(out, **overrides):
    settings = {"epochs": 3, "batch_size": 128, "threads": 1, "val_split": 0.1, "seed": 5}
    settings.update(overrides)
    return default_config("mlp", "digits", out=str(out), model_kwargs={"width": 32}, **settings)


def interrupt_at(monkeypatch, global_step):
    """Deliver a real SIGINT to this process while step ``global_step`` (0-based) runs."""
    real_step, fired = loop._train_step, []

    def step(run, inputs, labels):
        if run.global_step == global_step and not fired:
            fired.append(global_step)
            signal.raise_signal(signal.SIGINT)
        return real_step(run, inputs, labels)

    monkeypatch.setattr(loop, "_train_step", step)


@pytest.mark.parametrize("global_step", [13, 9, 0])  # mid-epoch 2, last of epoch 1, first
def test_ctrl_c_saves_at_the_step_boundary_and_resume_is_exact(tmp_path, monkeypatch, global_step):
    reference = train(config(tmp_path / "reference"), progress=False)
    interrupt_at(monkeypatch, global_step)
    lines = []
    with pytest.raises(TrainingInterrupted) as caught:
        train(config(tmp_path / "run"), progress=False, print_fn=lines.append)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert f"cnnlab train --resume {tmp_path / 'run'}" in lines[-1]
    checkpoint = load_checkpoint(tmp_path / "run")
    steps_per_epoch = 10  # 1,293 training images in batches of 128, the remainder dropped
    done = global_step + 1
    assert (checkpoint["epoch"], checkpoint["step"]) == divmod(done, steps_per_epoch)
    assert checkpoint["global_step"] == done and not checkpoint["finished"]
    result = resume(tmp_path / "run", progress=False)
    assert same_weights(weights(tmp_path / "run"), weights(reference.run_dir))
    assert result.epochs_run == 3 and result.test_accuracy == reference.test_accuracy
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["context"]["resumed"]


def test_resume_of_a_finished_run_says_so_and_does_nothing(tmp_path):
    first = train(config(tmp_path / "run", epochs=1), progress=False)
    files = {p.name: p.stat().st_mtime_ns for p in first.run_dir.iterdir()}
    lines = []
    again = resume(tmp_path / "run", progress=False, print_fn=lines.append)
    assert "already finished" in lines[0] and "nothing to resume" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in first.run_dir.iterdir()} == files
    assert again.test_accuracy == first.test_accuracy
    assert again.metrics == first.metrics and again.epochs_run == 1


def test_resume_of_a_finished_run_without_report_writes_it(tmp_path):
    first = train(config(tmp_path / "run", epochs=1), progress=False)
    first.report.unlink()  # as if killed between the last checkpoint and the report
    again = resume(tmp_path / "run", progress=False)
    assert first.report.exists() and again.test_accuracy == first.test_accuracy


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such run folder"):
        resume(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No checkpoint\.pt in"):
        resume(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "checkpoint.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint.pt is not a cnnlab checkpoint"):
        resume(tmp_path / "notes")


def test_resume_refuses_a_checkpoint_whose_weights_do_not_fit(tmp_path):
    train(config(tmp_path / "run", epochs=1), progress=False)
    checkpoint = load_checkpoint(tmp_path / "run")
    checkpoint["finished"] = False
    checkpoint["model"]["kwargs"]["width"] = 16  # weights of width 32 for a model of width 16
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="does not fit mlp"):
        resume(tmp_path / "run", progress=False)


def test_resume_removes_temporary_files_of_a_killed_write(tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 5)
    with pytest.raises(TrainingInterrupted):
        train(config(tmp_path / "run", epochs=1), progress=False)
    stale = tmp_path / "run" / ".checkpoint.pt.12345.deadbeef.tmp"
    stale.write_bytes(b"half a checkpoint")
    resume(tmp_path / "run", progress=False)
    assert not stale.exists()


def cnnlab_train(*args, env):
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, "train", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process, timeout=600):  # a hang fails; a busy machine is only slow
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def wait_for_epochs(process, run_dir, epochs, timeout=600):
    """Poll metrics.jsonl until it records ``epochs`` epochs."""
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= epochs:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {finish(process)}")
        time.sleep(0.01)
    process.kill()
    raise AssertionError(f"no epoch {epochs} after {timeout} s")


@pytest.fixture(scope="module")
def subprocess_env(tmp_path_factory):
    return {**os.environ, "CNNLAB_HOME": str(tmp_path_factory.getbasetemp() / "cnnlab-home")}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, subprocess_env):
    """The uninterrupted run, started once and shared; it runs beside the interrupted ones."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    process = cnnlab_train(*RUN_ARGS, "--out", run_dir, env=subprocess_env)
    yield lambda: (finish(process), run_dir)[1]
    if process.poll() is None:
        process.kill()


def interrupted_run(tmp_path, env, send):
    """Start the run, wait for epoch 1 and a few steps of epoch 2, then ``send(process)``."""
    run_dir = tmp_path / "run"
    process = cnnlab_train(*RUN_ARGS, "--out", run_dir, env=env)
    wait_for_epochs(process, run_dir, 1)
    time.sleep(0.1)  # an epoch is about a second
    send(process)
    code, output = finish(process)
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["epoch"] == 1 and not checkpoint["finished"], output
    return run_dir, code, output, checkpoint


@pytest.mark.slow
def test_sigkill_in_epoch_2_then_resume_gives_the_uninterrupted_weights(
    tmp_path, subprocess_env, reference_run
):
    run_dir, code, _, checkpoint = interrupted_run(tmp_path, subprocess_env, lambda p: p.kill())
    assert code == -signal.SIGKILL
    assert checkpoint["step"] == 0  # the end-of-epoch-1 checkpoint survived the kill
    code, output = finish(cnnlab_train("--resume", run_dir, env=subprocess_env))
    assert code == 0, output
    assert "resuming" in output and "test accuracy" in output
    reference = reference_run()
    assert same_weights(weights(run_dir), weights(reference))
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == [1, 2, 3]


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_exits_130_and_resumes_exactly(
    tmp_path, subprocess_env, reference_run
):
    run_dir, code, output, checkpoint = interrupted_run(
        tmp_path, subprocess_env, lambda p: p.send_signal(signal.SIGINT)
    )
    assert code == 130, output
    assert f"cnnlab train --resume {run_dir}" in output
    steps_per_epoch = json.loads((run_dir / "metrics.jsonl").read_text())["steps"]
    assert checkpoint["global_step"] == steps_per_epoch + checkpoint["step"]
    code, output = finish(cnnlab_train("--resume", run_dir, env=subprocess_env))
    assert code == 0, output
    reference = reference_run()
    assert same_weights(weights(run_dir), weights(reference))
    assert load_checkpoint(run_dir)["finished"]
