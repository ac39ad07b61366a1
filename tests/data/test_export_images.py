"""`cnnlab data export-images`: real test images as PNG, labelled, for predict and explain."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import load_dataset

runner = CliRunner()


def test_export_writes_the_first_test_images_with_their_labels(tmp_path):
    out = tmp_path / "samples"
    result = runner.invoke(
        app, ["data", "export-images", "digits", "--count", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = load_dataset("digits")
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,label" and len(lines) == 4
    for index, line in enumerate(lines[1:]):
        name, label = line.split(",")
        assert label == data.classes[int(data.test_labels[index])]
        assert name == f"test-{index:04d}-{label}.png"
        with Image.open(out / name) as image:
            np.testing.assert_array_equal(np.asarray(image), data.test_images[index, 0].numpy())


def test_export_refuses_a_count_of_zero_and_writes_nothing(tmp_path):
    out = tmp_path / "samples"
    result = runner.invoke(
        app, ["data", "export-images", "digits", "--count", "0", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --count must be an integer from 1 to 10000. Received: --count=0"
    ]
    assert not out.exists()
