"""What `cnnlab train` and `cnnlab bench run` say about a run: steps as well as epochs, and a
warning (with what to try) when other processes shared the CPUs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cnnlab.cli.train
from cnnlab.cli import app

runner = CliRunner()


@pytest.fixture
def busy_cpus(monkeypatch):
    """Other processes took 60% of the CPUs during the run, the hypervisor 45% (steal)."""
    monkeypatch.setattr(cnnlab.cli.train, "others_cpu_share", lambda start, end: 0.6)
    monkeypatch.setattr(cnnlab.cli.train, "steal_cpu_share", lambda start, end: 0.45)


def test_train_stopped_by_steps_says_how_many_steps(tmp_path):
    args = ["train", "lenet-like", "--data", "digits", "--steps", "3", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "after 3 steps in 1 epoch" in result.stdout


@pytest.mark.parametrize("command", [["train"], ["bench", "run"]])
def test_a_run_on_shared_cpus_warns_and_suggests_threads(tmp_path, busy_cpus, command):
    args = [*command, "lenet-like", "--data", "digits", "--steps", "2", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--threads", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "other processes used 60%" in warnings[0]
    assert "(45% of it steal time: the hypervisor ran other virtual machines" in warnings[0]
    assert "try --threads 1 (this run used 2)" in warnings[0]


def test_a_run_on_idle_cpus_does_not_warn(tmp_path, monkeypatch):
    monkeypatch.setattr(cnnlab.cli.train, "others_cpu_share", lambda start, end: 0.0)
    args = ["train", "lenet-like", "--data", "digits", "--steps", "2", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr
