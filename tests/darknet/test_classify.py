"""Darknet's classifier: preprocessing by hand, and the top-5 lines of Debian's darknet binary."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.darknet import build_network, load_weights, randomize_weights, save_weights
from cnnlab.darknet.classify import (
    classify,
    format_prediction,
    letterbox_image,
    read_names,
    resize_image,
    top_k,
)

from .conftest import CFG_DIR, DARKNET_BIN, DATA_DIR, needs_darknet_binary, needs_darknet_cfgs

runner = CliRunner()


def test_resize_is_darknets_corner_aligned_bilinear():
    image = np.arange(2 * 3, dtype=np.float32).reshape(1, 2, 3)  # rows [0 1 2], [3 4 5]
    resized = resize_image(image, 5, 3)
    # columns at 0, .5, 1, 1.5, 2 of the old ones; rows at 0, .5, 1
    np.testing.assert_allclose(resized[0, 0], [0, 0.5, 1, 1.5, 2])
    np.testing.assert_allclose(resized[0, 1], [1.5, 2, 2.5, 3, 3.5])
    np.testing.assert_allclose(resized[0, 2], [3, 3.5, 4, 4.5, 5])


def test_letterbox_keeps_the_aspect_on_grey():
    boxed = letterbox_image(np.ones((3, 10, 20), dtype=np.float32), 8, 8)
    assert boxed.shape == (3, 8, 8)
    assert (
        (boxed[:, 2:6] == 1).all() and (boxed[:, :2] == 0.5).all() and (boxed[:, 6:] == 0.5).all()
    )


def test_top_k_keeps_the_earlier_of_equal_values_and_formats_like_printf():
    assert top_k(np.array([0.1, 0.3, 0.3, 0.2], dtype=np.float32), 3) == [1, 2, 3]
    assert format_prediction(0.6468, "mountain bike") == "64.68%: mountain bike"
    assert format_prediction(0.05, "x") == " 5.00%: x"


def small_setup(small_cfg, tmp_path):
    model = randomize_weights(build_network(small_cfg), seed=4)
    weights = save_weights(model, tmp_path / "small.weights")
    picture = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    png = tmp_path / "picture.png"
    Image.fromarray(picture).save(png)
    return weights, png


def darknet_top(cfg, weights, names, image, top=5) -> list[str]:
    data = weights.parent / "classify.data"
    data.write_text(f"names={names}\ntop={top}\n")
    result = subprocess.run(
        [DARKNET_BIN, "classifier", "predict", str(data), str(cfg), str(weights), str(image)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout.splitlines()


@needs_darknet_binary
def test_small_classifier_top5_equals_darknet(small_cfg, ten_names, tmp_path):
    weights, png = small_setup(small_cfg, tmp_path)
    model = build_network(small_cfg)
    load_weights(model, weights)
    for image in (png, DATA_DIR / "dog.jpg"):
        (ours,) = classify(model.optimize_for_inference(), [image], read_names(ten_names))
        assert ours.lines()[1:] == darknet_top(small_cfg, weights, ten_names, image)


@pytest.mark.slow
@needs_darknet_binary
def test_darknet19_top5_on_dog_equals_darknet(tmp_path):
    cfg, names = CFG_DIR / "darknet19.cfg", DATA_DIR / "imagenet.shortnames.list"
    weights = save_weights(randomize_weights(build_network(cfg), seed=3), tmp_path / "d19.weights")
    result = runner.invoke(
        app,
        [
            "darknet",
            "classify",
            str(cfg),
            str(weights),
            str(DATA_DIR / "dog.jpg"),
            "--names",
            str(names),
            "--no-table",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{DATA_DIR / 'dog.jpg'}: Predicted in ")
    assert lines[1:] == darknet_top(cfg, weights, names, DATA_DIR / "dog.jpg")


def test_cli_classify_json_gives_both_clocks(small_cfg, ten_names, tmp_path):
    weights, png = small_setup(small_cfg, tmp_path)
    result = runner.invoke(
        app,
        [
            "darknet",
            "classify",
            str(small_cfg),
            str(weights),
            str(png),
            "--names",
            str(ten_names),
            "--top",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert len(row["top"]) == 3 and row["wall_seconds"] > 0 and row["cpu_seconds"] >= 0
    probabilities = [entry["probability"] for entry in row["top"]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_cli_bad_input_is_one_line(small_cfg, ten_names, tmp_path):
    weights, png = small_setup(small_cfg, tmp_path)
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:-4])
    result = runner.invoke(
        app,
        ["darknet", "classify", str(small_cfg), str(short), str(png), "--names", str(ten_names)],
    )
    assert result.exit_code == 2 and "expected" in result.output and "(-4 bytes)" in result.output
    result = runner.invoke(app, ["darknet", "table", str(tmp_path)])
    assert result.exit_code == 2 and "not a folder" in result.output


@needs_darknet_cfgs
def test_cli_table_equals_summary_for_darknet19():
    ours = runner.invoke(app, ["darknet", "table", str(CFG_DIR / "darknet19.cfg")])
    summary = runner.invoke(app, ["summary", "darknet19", "--style", "darknet"])
    assert ours.exit_code == 0 and ours.output == summary.output
    data = json.loads(
        runner.invoke(app, ["darknet", "table", str(CFG_DIR / "darknet19.cfg"), "--json"]).output
    )
    assert data["total_bflops"] == 7.291 and len(data["layers"]) == 26
