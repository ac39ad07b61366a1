"""--quiet: the commands that report progress print only their result; errors still show."""

import pytest
from typer.testing import CliRunner

import cnnlab.train.report as report
from cnnlab.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


TRAIN = ["train", "lenet-like", "--data", "digits", "--epochs", "2", "--batch-size", "256"]


def test_train_quiet_prints_the_result_only(tmp_path):
    loud = invoke(*TRAIN, "--threads", "1", "--out", tmp_path / "loud")
    quiet = invoke(*TRAIN, "--threads", "1", "--out", tmp_path / "quiet", "-q")
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    for line in ("input: digits", "epoch 1/2", "epoch 2/2"):
        assert line in loud.output
        assert line not in quiet.output
    result = [line for line in quiet.stdout.splitlines() if line.strip()]
    assert result[0].startswith("test accuracy") and result[-1].startswith("report: ")
    # The same run either way: quiet changes what is printed, not what is trained.
    assert loud.stdout.splitlines()[-3].split(" in ")[0] == result[0].split(" in ")[0]


def test_train_quiet_still_prints_errors(tmp_path):
    result = invoke(*TRAIN, "--lr", "-1", "--quiet", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--lr" in result.stderr and "Received" in result.stderr


def test_bench_crossover_quiet_drops_the_points_keeps_the_table(tmp_path):
    args = ["bench", "crossover", "--devices", "cpu", "--widths", "8", "--batch-sizes", "16"]
    args += ["--samples", "64", "--data", "synthetic"]
    loud = invoke(*args, "--out", tmp_path / "loud")
    quiet = invoke(*args, "--out", tmp_path / "quiet", "--quiet")
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    assert "cpu batch 16 n=8:" in loud.stderr
    assert "cpu batch 16 n=8:" not in quiet.stderr
    assert "batch" in quiet.stdout  # the table


def test_bench_ceilings_quiet_says_nothing_before_the_table():
    args = ["bench", "ceilings", "--device", "cpu", "--size", "64", "--buffer-mib", "1"]
    args += ["--repeats", "3", "--budget", "0.01"]
    loud, quiet = invoke(*args), invoke(*args, "-q")
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    assert "measuring matmul rates" in loud.stderr
    assert "measuring" not in quiet.stderr
    assert "matmul fp32" in quiet.stdout
