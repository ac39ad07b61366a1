"""`cnnlab train` as a user types it: the result, its files, JSON, one clear line per mistake."""

import json

import pytest
import typer
from typer.testing import CliRunner

import cnnlab.train.report as report
from cnnlab.cli import app as cnnlab_app
from cnnlab.cli.train import parse_model_args, train_command

runner = CliRunner()
QUICK = ["--data", "digits", "--epochs", "2", "--batch-size", "256", "--threads", "1"]


def cli_app():
    """The real `cnnlab` app once it mounts `train`; until then one made for the tests."""
    if any(command.name == "train" for command in cnnlab_app.registered_commands):
        return cnnlab_app
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    app.command("train")(train_command)
    return app


def run(*args, code=0):
    result = runner.invoke(cli_app(), ["train", *map(str, args)])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path_factory, monkeypatch, request):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    if "with_plots" not in request.fixturenames:
        monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


@pytest.fixture
def with_plots():
    """Keep the real plots (they take a second or two)."""


@pytest.fixture
def finished_run(tmp_path):
    run("lenet-like", *QUICK, "--out", tmp_path / "run")
    return tmp_path / "run"


def test_train_prints_accuracy_time_report_and_plots(tmp_path, with_plots):
    output = run("lenet-like", *QUICK, "--out", tmp_path / "run").stdout
    assert "adapted to lenet-like 1x32x32" in output
    assert "epoch 1/2" in output and "epoch 2/2" in output
    assert "test accuracy" in output
    assert "time: training" in output and "evaluation" in output
    assert f"report: {tmp_path / 'run' / 'report.json'}" in output
    assert "plots: curves.png, confusion.png, kernels.png, features.png" in output
    for name in ("checkpoint.pt", "metrics.jsonl", "report.json", "curves.png", "features.png"):
        assert (tmp_path / "run" / name).exists()


def test_json_output_is_the_result(tmp_path):
    result = run("lenet5", *QUICK, "--lr", "0.01", "--out", tmp_path / "run", "--json")
    data = json.loads(result.stdout)
    assert data["epochs_run"] == 2
    assert data["report"] == str(tmp_path / "run" / "report.json")
    assert [record["epoch"] for record in data["metrics"]] == [1, 2]
    assert "epoch 1/2" in result.stderr  # the progress lines stay off stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    # stdout is the run's result: the same accuracy as the report and the last epoch's record
    assert data["test_accuracy"] == report["test_accuracy"] == data["metrics"][-1]["test_accuracy"]
    assert report["config"]["lr"] == 0.01 and report["config"]["optimizer"] == "adamw"


def test_resume_of_a_finished_run_says_so(finished_run):
    before = (finished_run / "checkpoint.pt").stat().st_mtime_ns
    output = run("--resume", finished_run).stdout
    assert "already finished" in output and "test accuracy" in output
    assert (finished_run / "checkpoint.pt").stat().st_mtime_ns == before


def test_resume_with_the_same_model_name_is_accepted(finished_run):
    assert "already finished" in run("lenet-like", "--resume", finished_run).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["lenet-like", *QUICK, "--batch-size", "0"], "Received: --batch-size=0"),
        (["lenet-like", *QUICK, "--epochs", "0"], "--epochs must be an integer from 1 to 1000000"),
        (["lenet-like", *QUICK, "--val-split", "1.5"], "Received: --val-split=1.5"),
        (["lenet-like", *QUICK, "--patience", "2"], "needs a validation set"),
        (["lenet-like", *QUICK, "--device", "tpu"], "Received: --device='tpu'"),
        (["lenet-like", *QUICK, "--model-arg", "width"], "--model-arg expects KEY=VALUE"),
        (["lenet-like", *QUICK, "--model-arg", "depth=3"], "unexpected argument(s) depth"),
        (["lenet", *QUICK], "Unknown model: name='lenet'"),
        (["lenet-like"], "needs --data NAME"),
        ([], "needs a MODEL"),
        (["lenet-like", "--data", "no-such-data", "--epochs", "1"], "no-such-data"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args, code=2)
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_an_output_path_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = run("lenet-like", *QUICK, "--out", tmp_path / "taken", code=2)
    assert "is an existing file" in result.stderr
    assert (tmp_path / "taken").read_text() == "mine"


def test_resume_of_another_model_or_with_settings(finished_run):
    assert "holds a checkpoint of model 'lenet-like', not 'mlp'" in (
        run("mlp", "--resume", finished_run, code=2).stderr
    )
    refused = run(
        "--resume", finished_run, "--batch-size", "64", "--seed", "3", "--lr", "1", code=2
    )
    assert "--batch-size, --seed cannot change" in refused.stderr  # --lr can: not named
    assert f"Received: --resume {finished_run}" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_resume_of_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert "is not a cnnlab checkpoint" in run("--resume", tmp_path / "notes.txt", code=2).stderr
    assert "No checkpoint.pt in" in run("--resume", tmp_path, code=2).stderr


def test_divergence_exits_1_with_advice(tmp_path):
    result = run("lenet-like", *QUICK, "--lr", "1e6", "--out", tmp_path / "run", code=1)
    assert "NaN or infinite at epoch 1" in result.stderr and "--lr" in result.stderr


def test_parse_model_args():
    assert parse_model_args(["width=512", "dropout=0.25", "name=wide", "bias=false"]) == {
        "width": 512,
        "dropout": 0.25,
        "name": "wide",
        "bias": False,
    }
    assert parse_model_args(None) == {}
