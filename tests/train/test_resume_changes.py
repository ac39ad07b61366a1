"""resume(changes=...) and `cnnlab train --resume RUN --epochs N --lr X`: what may change, what
it does to the schedule, and that everything else stays the run's own."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import cnnlab.train.loop as loop
import cnnlab.train.report as report
from cnnlab.cli import app
from cnnlab.train import default_config, load_checkpoint, resume, train

runner = CliRunner()


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


def config(out, **overrides):
    # digits: 1,437 training images; batch 256 with drop_last gives 5 steps per epoch.
    settings = {"epochs": 1, "batch_size": 256, "threads": 1, "seed": 3, "schedule": "constant"}
    settings.update(overrides)
    return default_config("mlp", "digits", out=str(out), model_kwargs={"width": 32}, **settings)


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_more_epochs_continue_a_finished_run_to_the_weights_of_a_longer_run(tmp_path):
    longer = train(config(tmp_path / "longer", epochs=3), progress=False)
    train(config(tmp_path / "run", epochs=1), progress=False)
    lines = []
    result = resume(tmp_path / "run", changes={"epochs": 3}, progress=False, print_fn=lines.append)
    assert result.epochs_run == 3 and result.steps == longer.steps == 15
    # A constant rate: the resumed run is the 3-epoch run, bit for bit.
    assert same_weights(
        load_checkpoint(tmp_path / "run")["state_dict"],
        load_checkpoint(tmp_path / "longer")["state_dict"],
    )
    assert result.test_accuracy == longer.test_accuracy
    assert any("changed on resume: epochs 1 -> 3 (after 1 epoch, 5 steps" in line for line in lines)
    saved = load_checkpoint(tmp_path / "run")
    assert saved["config"]["epochs"] == 3  # a later resume continues the new plan
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]


def captured_run(monkeypatch):
    """Make resume() stop before training and hand over its restored RunState."""
    runs = []

    def fit(run, **kwargs):
        runs.append(run)
        return None

    monkeypatch.setattr(loop, "_fit", fit)
    return runs


def onecycle_lr(step, total, max_lr, pct=0.3, div=25.0, final_div=1e4):
    """torch's OneCycleLR (cosine annealing) at ``step``, written out."""
    initial, low = max_lr / div, max_lr / div / final_div
    up = pct * total - 1
    if step <= up:
        start, end, t = initial, max_lr, step / up
    else:
        start, end, t = max_lr, low, (step - up) / (total - 1 - up)
    return end + (start - end) / 2 * (1 + math.cos(math.pi * t))


def test_a_new_lr_and_length_rebuild_the_one_cycle_at_the_step_reached(tmp_path, monkeypatch):
    train(config(tmp_path / "run", epochs=2, schedule="onecycle", lr=0.1), progress=False)
    before = load_checkpoint(tmp_path / "run")
    runs = captured_run(monkeypatch)
    resume(tmp_path / "run", changes={"epochs": 6, "lr": 0.02}, progress=False)
    (run,) = runs
    assert run.total_steps == 30 and run.global_step == 10 and not run.finished
    # The schedule of a 30-step one-cycle with max_lr 0.02, at step 10 (not the old cycle's end).
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(onecycle_lr(10, 30, 0.02))
    assert run.optimizer.param_groups[0]["max_lr"] == 0.02
    assert run.train_step.scheduler is run.scheduler
    # The optimizer's own state (Adam's moments, its step count) is the checkpoint's, untouched.
    state = run.optimizer.state_dict()["state"]
    assert state.keys() == before["optimizer"]["state"].keys() and state
    for key, saved in before["optimizer"]["state"].items():
        assert saved.keys() == state[key].keys() and "exp_avg" in saved
        assert all(torch.equal(state[key][name], saved[name]) for name in saved)


def test_grad_clip_and_threads_change_without_touching_the_schedule(tmp_path, monkeypatch):
    train(config(tmp_path / "run", epochs=1, schedule="cosine"), progress=False)
    saved_lr = load_checkpoint(tmp_path / "run")["optimizer"]["param_groups"][0]["lr"]
    runs = captured_run(monkeypatch)
    with pytest.raises(ValueError, match="leave nothing to train"):
        resume(tmp_path / "run", changes={"grad_clip": 0.5}, progress=False)
    resume(tmp_path / "run", changes={"grad_clip": 0.5, "steps": 7, "epochs": 2}, progress=False)
    (run,) = runs
    assert run.train_step.grad_clip == 0.5 and run.total_steps == 7
    # cosine over the new 7 steps, at step 5
    expected = 0.5 * run.config.lr * (1 + math.cos(math.pi * 5 / 7))
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert saved_lr == pytest.approx(0.0, abs=1e-12)  # the old cosine had ended at 0


def test_settings_that_make_another_experiment_are_refused(tmp_path):
    train(config(tmp_path / "run"), progress=False)
    with pytest.raises(
        ValueError, match=r"batch_size, seed cannot change.*Received: batch_size=64"
    ):
        resume(tmp_path / "run", changes={"batch_size": 64, "seed": 1}, progress=False)
    with pytest.raises(ValueError, match=r"lr must be"):
        resume(tmp_path / "run", changes={"lr": -1.0, "epochs": 2}, progress=False)
    # Nothing was touched by the refusals: the run is still finished after 1 epoch.
    assert load_checkpoint(tmp_path / "run")["config"]["epochs"] == 1


def test_cli_resume_with_more_epochs_and_a_lower_rate(tmp_path):
    quick = ["--data", "digits", "--batch-size", "256", "--threads", "1", "--schedule", "constant"]
    first = runner.invoke(app, ["train", "mlp", *quick, "--epochs", "1", "--out", str(tmp_path)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(
        app, ["train", "--resume", str(tmp_path), "--epochs", "2", "--lr", "0.01"]
    )
    assert again.exit_code == 0, again.output
    assert "changed on resume: epochs 1 -> 2, lr" in again.stdout
    assert "-> 0.01" in again.stdout
    assert "after 10 steps in 2 epochs" in again.stdout
    nothing = runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "2"])
    assert nothing.exit_code == 0 and "already finished" in nothing.stdout  # unchanged: as before
    fewer = runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "1"])
    assert fewer.exit_code == 2
    assert "leave nothing to train" in fewer.stderr
