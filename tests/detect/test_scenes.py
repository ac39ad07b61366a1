"""Scene generation: boxes hold exactly the pasted pixels, the IoU limit, the source's splits
kept apart, determinism, the two file formats, and a folder that is never left half-made."""

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import Dataset
from cnnlab.detect import scene_files
from cnnlab.detect.datasets import load_detection_data
from cnnlab.detect.scene_files import encode_png, make_scenes, yolo_lines
from cnnlab.detect.scenes import SceneConfig, box_overlap, generate_split, parse_scale, tight_boxes


def blob_dataset(train_value: int = 200, test_value: int = 100) -> Dataset:
    """28x28 images each holding one filled rectangle at a random place: train images have
    pixel value ``train_value`` and classes 0 or 1, test images ``test_value`` and class 2."""
    rng = np.random.default_rng(0)

    def images(n: int, value: int) -> torch.Tensor:
        out = np.zeros((n, 1, 28, 28), dtype=np.uint8)
        for image in out:
            y, x = rng.integers(0, 14, size=2)
            h, w = rng.integers(6, 14, size=2)
            image[0, y : y + h, x : x + w] = value
        return torch.from_numpy(out)

    return Dataset(
        name="blobs",
        classes=("a", "b", "c"),
        train_images=images(60, train_value),
        train_labels=torch.from_numpy(rng.integers(0, 2, size=60)),
        test_images=images(30, test_value),
        test_labels=torch.full((30,), 2, dtype=torch.int64),
        source="test",
        flip_ok=True,
    )


def scenes(config: SceneConfig, split: str = "train", count: int = 30):
    data = blob_dataset()
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    return [
        s
        for batch in generate_split(images, labels, count, config, split)
        for s in (batch.scene(i) for i in range(len(batch)))
    ]


def test_pasted_pixels_lie_inside_their_boxes_and_the_boxes_are_tight():
    config = SceneConfig(size=96, scale=(8, 40), max_objects=6, min_objects=2, max_iou=0.3)
    for image, boxes, _ in scenes(config):
        assert 2 <= len(boxes) <= 6
        inside = np.zeros(image.shape[1:], dtype=bool)
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
            inside[y1:y2, x1:x2] = True
            ink = image[0, y1:y2, x1:x2] > 0  # each edge row and column of the box has ink
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
        assert not image[0][~inside].any()  # no pasted pixel outside every box
        assert image[0][inside].any()


@pytest.mark.parametrize(("max_iou", "max_cover"), [(0.1, 1.0), (0.3, 0.25)])
def test_boxes_overlap_at_most_max_iou_and_max_cover_and_counts_stay_in_range(max_iou, max_cover):
    config = SceneConfig(
        size=64, scale=(6, 30), max_objects=8, max_iou=max_iou, max_cover=max_cover
    )
    seen_counts, worst = set(), np.zeros(2)
    for _, boxes, _ in scenes(config, count=40):
        seen_counts.add(len(boxes))
        overlaps = np.stack(box_overlap(boxes[:, None].astype(float), boxes[None].astype(float)))
        overlaps[:, np.arange(len(boxes)), np.arange(len(boxes))] = 0
        worst = np.maximum(worst, overlaps.max(axis=(1, 2), initial=0))
    assert worst[0] <= max_iou + 1e-12 and worst[1] <= max_cover + 1e-12
    binding = 0 if max_cover == 1.0 else 1  # the tighter limit is approached: it was tested
    assert worst[binding] > (max_iou, max_cover)[binding] / 2
    assert min(seen_counts) >= 1 and max(seen_counts) <= 8 and len(seen_counts) > 2


def test_too_little_room_for_min_objects_is_an_error_naming_the_settings():
    config = SceneConfig(size=32, scale=(28, 32), min_objects=3, max_objects=3, max_iou=0.05)
    with pytest.raises(
        ValueError, match=r"could not place min_objects=3 objects with max_iou=0\.05"
    ):
        scenes(config, count=2)


def test_box_overlap_by_hand():
    big, small, apart = np.array([0, 0, 10, 10]), np.array([2, 2, 4, 4]), np.array([20, 0, 30, 5])
    assert box_overlap(big, small) == (0.04, 1.0)  # 4 / 100; all of the smaller box
    assert box_overlap(big, np.array([5, 0, 15, 10])) == (50 / 150, 0.5)
    assert box_overlap(big, apart) == (0.0, 0.0)


def test_train_scenes_use_train_images_only_and_test_scenes_test_images_only():
    config = SceneConfig(size=64, scale=(20, 28), max_objects=3)
    for split, classes, value in (("train", {0, 1}, 200), ("test", {2}, 100)):
        made = scenes(config, split, count=12)
        assert set(np.concatenate([labels for _, _, labels in made]).tolist()) <= classes
        assert max(int(image.max()) for image, _, _ in made) == value


def test_tight_boxes_by_hand():
    patch = np.zeros((2, 1, 6, 5), dtype=np.uint8)
    patch[0, 0, 1, 2] = patch[0, 0, 4, 3] = 7  # rows 1..4, columns 2..3
    assert tight_boxes(patch).tolist() == [[2, 1, 4, 5], [0, 0, 0, 0]]


@pytest.mark.parametrize("channels", [1, 3])
def test_encode_png_reads_back_through_pillow(channels):
    image = np.random.default_rng(channels).integers(0, 256, (channels, 7, 11), dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(image))) as decoded:
        assert decoded.mode == ("L" if channels == 1 else "RGB")
        pixels = np.asarray(decoded)
    np.testing.assert_array_equal(pixels.reshape(7, 11, channels).transpose(2, 0, 1), image)


def test_yolo_lines_normalise_centre_and_size():
    text = yolo_lines(np.array([[10, 20, 30, 60]]), np.array([4]), width=100, height=200)
    assert text == "4 0.200000 0.200000 0.200000 0.200000\n"


@pytest.mark.parametrize(
    ("text", "expected"), [("16..64", (16, 64)), ("32", (32, 32)), (" 8 .. 9 ", (8, 9))]
)
def test_parse_scale(text, expected):
    assert parse_scale(text) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scale": (64, 16)}, "scale must be two integers MIN..MAX"),
        ({"scale": (16, 300)}, "MAX <= size (256)"),
        ({"min_objects": 11}, "min_objects must be an integer from 0 to 10"),
        ({"count": 1}, "count must be an integer from 2"),
        ({"count": 4, "test_fraction": 0.01}, "leave 4 train and 0 test scenes"),
        ({"max_iou": 1.0}, "max_iou must be a number from 0 up to"),
    ],
)
def test_bad_configs_are_refused_naming_the_argument(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SceneConfig(**changes)


def small_config(**changes) -> SceneConfig:
    values = {"source": "blobs", "count": 10, "size": 48, "scale": (10, 20), "max_objects": 4}
    return SceneConfig(**(values | changes))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "scenes.json"
    }


def test_same_seed_same_files_and_another_seed_other_scenes(tmp_path):
    data = blob_dataset()
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_scenes(small_config(seed=seed, noise=20, clutter=2), tmp_path / name, dataset=data)
    first, second, other = (folder_bytes(tmp_path / name) for name in "abc")
    assert first == second
    assert first.keys() == other.keys() and first != other
    assert len([name for name in first if name.startswith("train/images/")]) == 8
    assert len([name for name in first if name.startswith("test/images/")]) == 2


def test_yolo_labels_and_coco_json_say_the_same(tmp_path):
    data = blob_dataset()
    make_scenes(small_config(count=12), tmp_path / "s", dataset=data)
    yolo = load_detection_data(tmp_path / "s")
    for split in ("train", "test"):
        shutil.rmtree(tmp_path / "s" / split / "labels")
    coco = load_detection_data(tmp_path / "s")
    assert (coco.format, yolo.format) == ("coco", "yolo")
    assert coco.classes == yolo.classes == ("a", "b", "c")
    for a, b in ((coco.train, yolo.train), (coco.test, yolo.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.offsets, b.offsets)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
    first = json.loads((tmp_path / "s" / "scenes.json").read_text())
    assert first["scenes"] == {"train": 10, "test": 2} and "nonzero pixels" in first["box_rule"]


def test_an_error_midway_leaves_no_folder_behind(tmp_path, monkeypatch):
    calls = []
    real = scene_files._write_scene

    def failing(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(scene_files, "_write_scene", failing)
    with pytest.raises(OSError, match="No space left"):
        make_scenes(small_config(), tmp_path / "out", dataset=blob_dataset())
    assert list(tmp_path.iterdir()) == []  # neither out nor its staging folder


def test_an_existing_folder_with_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="out must be a new or empty folder, not a folder with"):
        make_scenes(small_config(), tmp_path / "out", dataset=blob_dataset())
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="out must be a new or empty folder, not a file"):
        make_scenes(small_config(), tmp_path / "out" / "keep.txt", dataset=blob_dataset())
    (tmp_path / "empty").mkdir()  # an empty folder is replaced by the finished one
    make_scenes(small_config(), tmp_path / "empty", dataset=blob_dataset())
    assert (tmp_path / "empty" / "train" / "labels").is_dir()


@pytest.mark.slow
def test_cli_writes_digits_scenes_and_refuses_a_bad_scale(tmp_path):
    runner = CliRunner()
    out = tmp_path / "scenes"
    args = ["data", "scenes", "digits", "--out", str(out), "--count", "6", "--size", "40"]
    result = runner.invoke(app, [*args, "--scale", "8..16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["scenes"] == {"train": 5, "test": 1} and len(report["classes"]) == 10
    assert (out / "names.txt").read_text().splitlines()[:2] == ["0", "1"]
    assert len(list((out / "train" / "labels").glob("*.txt"))) == 5
    bad = runner.invoke(app, [*args, "--scale", "16..8"])
    assert bad.exit_code == 2
    assert "--scale must be two integers MIN..MAX" in bad.output
    info = runner.invoke(app, ["data", "info", str(out), "--grid", str(tmp_path / "g.png")])
    assert info.exit_code == 0, info.output
    assert "5 images" in info.output and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
