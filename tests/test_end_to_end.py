"""A user's whole day on the real Fashion-MNIST: train, evaluate, write predictions, predict.

Runs in CI, which installs Debian's dataset-fashion-mnist; skipped where that data is absent.
"""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import load_dataset

SYSTEM_COPY = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires(
        not SYSTEM_COPY.is_dir(), "the real Fashion-MNIST (apt install dataset-fashion-mnist)"
    ),
]
runner = CliRunner()


def test_one_epoch_of_lenet_like_on_real_fashion_mnist(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "lenet-like", "--data", "fashion-mnist", "--epochs", "1", "--threads", "1",
         "--out", str(run_dir), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["test_accuracy"] >= 0.80
    for name in ("checkpoint.pt", "metrics.jsonl", "curves.png", "confusion.png", "kernels.png",
                 "features.png"):  # fmt: skip
        assert (run_dir / name).stat().st_size > 0

    predictions = tmp_path / "predictions.csv"
    result = runner.invoke(
        app, ["evaluate", str(run_dir), "--write-predictions", str(predictions), "--json"]
    )
    assert result.exit_code == 0, result.output
    with predictions.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "label"]
    assert [int(r[0]) for r in rows[1:]] == list(range(10_000))

    data = load_dataset("fashion-mnist")
    labels = data.test_labels.tolist()
    accuracy = sum(int(r[1]) == labels[i] for i, r in enumerate(rows[1:])) / len(labels)
    assert accuracy == pytest.approx(report["test_accuracy"], abs=1e-9)

    # A test image saved as a PNG comes back as the class the evaluation gave it.
    image = tmp_path / "item.png"
    Image.fromarray(data.test_images[0, 0].numpy()).save(image)
    result = runner.invoke(app, ["predict", str(run_dir), str(image), "--top", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{image}: Predicted in ")
    assert lines[1].endswith(data.classes[int(rows[1][1])])
