"""`cnnlab detect`: Darknet's lines, the PNG with its boxes, --json's fields, run folders, and
bad input as one line with exit status 2. The detector is the one-cell yolo of tiny_detector:
one box at x 16..48, y 4..36 of a 64 x 40 image, class 1 at 0.675 (class 0 at 0.45)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.detect.draw import class_color, draw_boxes
from cnnlab.models import create_model
from cnnlab.train.checkpoint import CHECKPOINT_NAME

from .tiny_detector import write_tiny_detector

runner = CliRunner()
NAMES = "T-shirt/top\nAnkle boot\n"


def invoke(*args: object, code: int = 0):
    result = runner.invoke(app, ["detect", *map(str, args)])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    cfg, weights = write_tiny_detector(tmp_path, "yolo")
    names = tmp_path / "fashion.names"
    names.write_text(NAMES)
    images = tmp_path / "images"
    images.mkdir()
    generator = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        pixels = generator.integers(0, 256, (40, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name)
    return {"cfg": cfg, "weights": weights, "names": names, "images": images, "tmp": tmp_path}


def test_lines_and_png(files):
    image, out = files["images"] / "a.png", files["tmp"] / "drawn"
    result = invoke(files["cfg"], files["weights"], image, "--names", files["names"], "--out", out)
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(str(image))}: Predicted in \d+\.\d{{6}} seconds\.", lines[0])
    assert lines[1:] == ["Ankle boot: 68%", f"Wrote {out / 'a.png'}"]
    drawn = np.asarray(Image.open(out / "a.png").convert("RGB"))
    original = np.asarray(Image.open(image).convert("RGB"))
    assert drawn.shape == original.shape == (40, 64, 3)
    # the box's left edge at x = 16 and its bottom edge at y = 36 in class 1's colour (Darknet's
    # ramp: class 1 of 2 sits halfway between cyan and green); inside the box the image
    assert class_color(1, 2) == (0, 255, 128)
    assert tuple(drawn[30, 16]) == tuple(drawn[36, 40]) == (0, 255, 128)
    np.testing.assert_array_equal(drawn[25:34, 20:46], original[25:34, 20:46])


def test_ext_output_and_threshold(files):
    image = files["images"] / "a.png"
    args = (files["cfg"], files["weights"], image, "--names", files["names"], "--out", files["tmp"])
    lines = invoke(*args, "--ext-output", "--thresh", "0.4").stdout.splitlines()
    box = "\t(left_x:   16   top_y:    4   width:   32   height:   32)"
    assert lines[1:3] == [f"Ankle boot: 68%{box}", f"T-shirt/top: 45%{box}"]


def test_folder_gives_fps_and_a_png_per_image(files):
    out = files["tmp"] / "drawn"
    result = invoke(files["cfg"], files["weights"], files["images"], "--out", out)
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if "Predicted" in line] == [
        str(files["images"] / "a.png"),
        str(files["images"] / "b.jpg"),
    ]
    assert "1: 68%" in lines  # no --names: class numbers
    assert re.fullmatch(r"2 images in [\d.]+ s: [\d.]+ FPS end to end .*", lines[-1])
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_json_has_darknets_result_fields(files):
    image = files["images"] / "a.png"
    args = (files["cfg"], files["weights"], image, "--names", files["names"], "--out", files["tmp"])
    frames = json.loads(invoke(*args, "--json").stdout)
    assert len(frames) == 1 and frames[0]["frame_id"] == 1
    assert frames[0]["filename"] == str(image)
    (found,) = frames[0]["objects"]
    assert found["class_id"] == 1 and found["name"] == "Ankle boot"
    assert found["confidence"] == pytest.approx(0.675, abs=1e-6)
    # box 16..48 x 4..36 of 64 x 40
    assert found["relative_coordinates"] == pytest.approx(
        {"center_x": 0.5, "center_y": 0.5, "width": 0.5, "height": 0.8}
    )


def test_run_folder_of_a_zoo_detector(files):
    """A checkpoint dict as cnnlab train writes it: model name + kwargs, data classes."""
    model = create_model("yolo-scenes", num_classes=4)
    with torch.no_grad():  # every anchor of every cell: objectness and class 3 certain
        for index in model.head_layers:
            conv = model.layers[index - 1].conv
            conv.weight.zero_()
            conv.bias.zero_()
            conv.bias.view(3, 9)[:, 4] = 10.0
            conv.bias.view(3, 9)[:, 5 + 3] = 10.0
    run = files["tmp"] / "run"
    run.mkdir()
    checkpoint = {
        "format": "cnnlab-checkpoint",
        "version": 1,
        "model": {"name": "yolo-scenes", "kwargs": {"num_classes": 4}},
        "state_dict": model.state_dict(),
        "data": {
            "name": "scenes",
            "classes": ["zero", "one", "two", "Bag"],
            "normalization": {"mean": [0.0], "std": [1.0]},
        },
    }
    checkpoint.update(dict.fromkeys(("optimizer", "scheduler", "scaler", "rng", "config"), None))
    checkpoint.update(epoch=1, step=0, global_step=1, metrics=[], best=None, finished=True)
    checkpoint["cnnlab_version"] = "test"
    torch.save(checkpoint, run / CHECKPOINT_NAME)
    lines = invoke(run, files["images"] / "a.png", "--out", files["tmp"]).stdout.splitlines()
    assert "Predicted in" in lines[0]
    assert set(lines[1:-1]) == {"Bag: 100%"}  # one per anchor shape left after NMS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("{cfg}", "{weights}", "{tmp}/missing.png"), "No such image: .*missing.png"),
        (("{cfg}", "{weights}", "{images}", "--thresh", "2"), r"thresh must be .*2"),
        (("{cfg}", "{weights}", "{images}", "--nms", "-1"), r"nms must be .*-1"),
        (("{names}", "{images}"), "expected a run folder, a checkpoint .* or a Darknet .cfg"),
        (("{cfg}",), "expected its .weights file and images"),
        (("{cfg}", "{weights}"), "expected at least one image"),
        (("{cfg}", "{weights}", "{images}", "--names", "{tmp}/none"), "No such names file"),
        (("{cfg}", "{cfg}", "{images}"), "tiny-yolo.cfg does not fit .* expected 128 bytes"),
    ],
)
def test_bad_input_is_one_line_exit_2(files, args, message):
    result = invoke(*(arg.format(**files) for arg in args), code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def test_names_too_few_for_the_classes(files):
    one = files["tmp"] / "one.names"
    one.write_text("only\n")
    result = invoke(files["cfg"], files["weights"], files["images"], "--names", one, code=2)
    assert (
        "--names" in result.stderr and "1 names" in result.stderr and "2 classes" in result.stderr
    )


def test_a_label_at_the_right_edge_is_moved_left_to_be_read_whole():
    black = Image.new("RGB", (100, 60))
    rows = torch.tensor([[88.0, 30.0, 99.0, 50.0, 0.73, 1.0]])  # a narrow box at the right edge
    drawn = np.asarray(draw_boxes(black, rows, ["a", "a long name"], 2))
    color = class_color(1, 2)
    band = np.flatnonzero((drawn[22] == color).all(-1))  # the label's band, above the box
    assert band.max() == 99 and band.min() < 60  # ends at the edge, starts well left of the box
    assert (drawn[22, band.min() : 100] != 0).any(-1).all()  # one unbroken band
