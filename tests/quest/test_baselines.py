"""`cnnlab quest baselines` on scikit-learn's bundled digits (1,437 training, 360 test images)."""

import json
from collections import Counter

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli.quest_baselines import baselines_command
from cnnlab.data import load_dataset
from cnnlab.quest import classical
from cnnlab.quest.baseline_data import subsample
from cnnlab.quest.baselines import BaselinesConfig, run_baselines
from cnnlab.quest.baselines_plot import plot_baselines
from cnnlab.quest.classical import CLASSICAL
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.data import data_fingerprint

FEATURES, CLASSES = 64, 10  # digits: 8x8 grey images of 0..9


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Every default model once on the whole of digits; the CNN for two epochs."""
    out = tmp_path_factory.mktemp("board") / "out"
    lines = []
    config = BaselinesConfig("digits", out=out, threads=2, cnn_overrides={"epochs": 2})
    result = run_baselines(config, print_fn=lines.append)
    return result, lines


def rows_by_name(result):
    return {row.name: row for row in result.rows}


@pytest.mark.parametrize("name", list(CLASSICAL))
def test_every_classical_model_learns_digits(board, name):
    row = rows_by_name(board[0])[name]
    assert row.kind == "classical"
    assert row.accuracy > 0.8
    assert row.train_seconds > 0 and row.predict_seconds > 0


def test_rows_are_ranked_by_accuracy_and_cover_the_default_models(board):
    result, _ = board
    accuracies = [row.accuracy for row in result.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert sorted(rows_by_name(result)) == sorted([*CLASSICAL, "lenet-like"])
    assert result.data["train_count"] == 1437 and result.data["test_count"] == 360
    assert result.data["features"] == FEATURES


def test_knn_is_the_slides_model():
    model = CLASSICAL["knn"].build(0, None)
    params = model.get_params()
    assert (params["algorithm"], params["n_neighbors"], params["weights"]) == (
        "ball_tree",
        4,
        "distance",
    )


def test_parameter_counts_by_hand(board):
    rows = rows_by_name(board[0])
    assert rows["logistic"].parameters == FEATURES * CLASSES + CLASSES  # 650
    hidden = 100
    assert rows["sklearn-mlp"].parameters == (FEATURES * hidden + hidden) + (
        hidden * CLASSES + CLASSES
    )  # 7,510
    for name in ("knn", "random-forest", "svm"):
        assert rows[name].parameters is None


def test_cnn_row_comes_from_the_trainer(board):
    result, lines = board
    row = rows_by_name(result)["lenet-like"]
    assert row.kind == "cnn"
    assert row.accuracy > 0.5  # two epochs on 1,437 images
    assert row.parameters == 81_194  # the slide's LeNet-like: 60 + 880 + 69,240 + 10,164 + 850
    run_dir = result.out_dir / "runs" / "lenet-like"
    checkpoint = load_checkpoint(run_dir)
    assert len(checkpoint["metrics"]) == 2
    assert "trained on all 1,437 training images" in row.notes
    assert any(line.startswith("  lenet-like: epoch 2/2") for line in lines)


def test_json_and_png_are_written_without_temporary_files(board):
    result, _ = board
    files = sorted(p.name for p in result.out_dir.iterdir())
    assert files == ["baselines.json", "baselines.png", "runs"]
    data = json.loads((result.out_dir / "baselines.json").read_text())
    assert data["format"] == "cnnlab-baselines"
    assert [row["name"] for row in data["rows"]] == [row.name for row in result.rows]
    assert data["reference"]["score"] == 0.97369
    context = data["context"]
    for key in ("sklearn_version", "torch_version", "cpu", "seed", "limit_train"):
        assert key in context
    with Image.open(result.out_dir / "baselines.png") as image:
        assert image.format == "PNG" and image.width > 600


def test_plot_rejects_a_path_without_png(board, tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        plot_baselines(board[0], tmp_path / "board.jpg")


def test_limit_train_subsamples_exactly_n_stratified():
    labels = load_dataset("digits").train_labels.numpy()
    chosen = subsample(labels, 200, seed=3)
    assert len(chosen) == len(set(chosen)) == 200
    expected = Counter(labels.tolist())
    for label, count in Counter(labels[chosen].tolist()).items():
        assert abs(count - 200 * expected[label] / len(labels)) <= 1
    assert np.array_equal(chosen, subsample(labels, 200, seed=3))  # seeded
    assert len(subsample(labels, 5, seed=0)) == 5  # fewer than classes: a plain draw
    assert len(subsample(labels, 10**6, seed=0)) == len(labels)


def test_limit_train_trains_the_cnn_on_the_classical_models_images(tmp_path, monkeypatch):
    monkeypatch.setattr(classical, "PILOT_TRAIN", 100)  # digits is too small for a pilot
    lines = []
    config = BaselinesConfig(
        "digits",
        models=("svm", "lenet-like"),
        limit_train=300,
        limit_test=120,
        out=tmp_path / "out",
        cnn_overrides={"epochs": 1},
    )
    result = run_baselines(config, print_fn=lines.append)
    assert (result.data["train_count"], result.data["test_count"]) == (300, 120)
    rows = rows_by_name(result)
    assert "support vectors" in rows["svm"].notes
    assert rows["svm"].expected_seconds is not None
    assert any(line.startswith("svm: expected ~") for line in lines)
    cnn = rows["lenet-like"]
    assert "trained on the same 300 of 1,437 training images as the classical models" in cnn.notes
    checkpoint = load_checkpoint(result.out_dir / "runs" / "lenet-like")
    assert checkpoint["global_step"] == 2  # 1 epoch of 300 images in full batches of 128
    assert checkpoint["data"]["train_count"] == 300
    digits = load_dataset("digits")
    same = digits.subset(
        train=subsample(digits.train_labels.numpy(), 300, seed=0),
        test=subsample(digits.test_labels.numpy(), 120, seed=0),
    )
    assert checkpoint["data"]["fingerprint"] == data_fingerprint(same)  # the very images


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"models": ("knn", "lenet_like")},
            r"unknown model 'lenet_like'\. Did you mean lenet-like",
        ),
        ({"models": ("svn",)}, r"Valid names: knn, random-forest, svm, logistic, sklearn-mlp"),
        ({"models": ()}, "at least one model"),
        ({"limit_train": 0}, r"limit_train must be > 0\. Received: limit_train=0"),
        ({"limit_test": -5}, "limit_test must be > 0"),
        ({"cnn_overrides": {"seed": 1}}, "set by the baselines run itself"),
        ({"cnn_overrides": {"epochs": 0}}, "epochs must be an integer from 1 to 1000000"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaselinesConfig("digits", **kwargs)


def test_an_existing_board_is_not_overwritten(board):
    config = BaselinesConfig("digits", models=("knn",), out=board[0].out_dir)
    with pytest.raises(ValueError, match="already holds a baselines run"):
        run_baselines(config)


def cli():
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    app.command("baselines")(baselines_command)
    return app


def test_cli_prints_the_board_and_json(tmp_path):
    runner = CliRunner()
    args = ["baselines", "--data", "digits", "--models", "knn,logistic", "--threads", "1"]
    shown = runner.invoke(cli(), [*args, "--out", str(tmp_path / "a")], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "knn" in shown.stdout and "logistic" in shown.stdout
    assert "0.97369" in shown.stdout and "baselines.png" in shown.stdout
    as_json = runner.invoke(cli(), [*args, "--out", str(tmp_path / "b"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert [row["name"] for row in data["rows"]] == ["knn", "logistic"]
    assert data["context"]["threads"] == 1


def test_cli_unknown_model_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(
        cli(), ["baselines", "--data", "digits", "--models", "knnn", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "unknown model 'knnn'" in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_unknown_dataset_leaves_no_folder(tmp_path):
    with pytest.raises(ValueError, match="nonsense"):
        run_baselines(BaselinesConfig("nonsense", models=("knn",), out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
