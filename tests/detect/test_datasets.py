"""Reading detection folders: YOLO and COCO by hand, every refused input with its file and line,
letterboxing, and the batch targets a trainer takes."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.detect.datasets import is_detection_folder, letterbox, load_detection_data


def png(path: Path, width: int, height: int, value: int = 0, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if mode == "L" else (height, width, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)


def yolo_folder(root: Path, labels: dict[str, str] | None = None) -> Path:
    """train/ with a.png (40x20) and b.png (40x20), test/ with c.png; names.txt with 3 classes."""
    labels = labels or {
        "train/a": "0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.2\n",
        "train/b": "",
        "test/c": "1 0.5 0.5 1 1\n",
    }
    for name, text in labels.items():
        split, stem = name.split("/")
        png(root / split / "images" / f"{stem}.png", 40, 20, value=len(stem))
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / split / "labels" / f"{stem}.txt").write_text(text)
    (root / "names.txt").write_text("cat\ndog\nbird\n")
    return root


def test_a_yolo_folder_by_hand(tmp_path):
    data = load_detection_data(yolo_folder(tmp_path / "d"))
    assert data.format == "yolo" and data.classes == ("cat", "dog", "bird")
    assert data.train.images.shape == (2, 1, 20, 40) and data.train.images.dtype == torch.uint8
    # 0 0.5 0.5 0.5 0.5 in 40x20: centre (20, 10), size 20x10; 2 0.25 0.25 0.1 0.2: (10, 5), 4x4
    expected = torch.tensor([[10.0, 5, 30, 15], [8, 3, 12, 7]])
    torch.testing.assert_close(data.train.boxes_of(0), expected)
    assert data.train.labels_of(0).tolist() == [0, 2]
    assert len(data.train.boxes_of(1)) == 0  # an empty label file: a scene without objects
    torch.testing.assert_close(data.test.boxes_of(0), torch.tensor([[0.0, 0, 40, 20]]))
    assert data.train.counts().tolist() == [2, 0]
    assert is_detection_folder(tmp_path / "d") and not is_detection_folder(tmp_path)


def test_targets_gather_a_batch_without_a_loop(tmp_path):
    data = load_detection_data(yolo_folder(tmp_path / "d")).train
    rows = data.targets(torch.tensor([1, 0, 0]))  # image 1 has no objects, image 0 twice
    expected = [
        [1, 0, 10, 5, 30, 15],
        [1, 2, 8, 3, 12, 7],
        [2, 0, 10, 5, 30, 15],
        [2, 2, 8, 3, 12, 7],
    ]
    assert rows.tolist() == expected
    assert data.to("cpu").targets(torch.tensor([1])).shape == (0, 6)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.5", r"a\.txt:2: expected 'class cx cy w h' \(5 numbers\), got 4 fields"),
        ("3 0.5 0.5 0.2 0.2", r"a\.txt:2: class id 3 is out of range: the names file has 3"),
        ("-1 0.5 0.5 0.2 0.2", r"a\.txt:2: class id '-1' is not a whole number"),
        ("1 0.5 0.5 x 0.2", r"a\.txt:2: cx cy w h must be numbers"),
        ("1 0.5 0.5 0 0.2", r"a\.txt:2: expected finite numbers with w > 0"),
        ("1 0.9 0.5 0.4 0.2", r"a\.txt:2: the box reaches outside the image: x from 0\.7 to 1\.1"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    root = yolo_folder(tmp_path / "d", {"train/a": f"0 0.5 0.5 0.2 0.2\n{line}\n", "test/c": ""})
    with pytest.raises(ValueError, match=message):
        load_detection_data(root)


def test_a_missing_label_file_an_orphan_label_and_missing_names_are_refused(tmp_path):
    root = yolo_folder(tmp_path / "d")
    (root / "train" / "labels" / "b.txt").unlink()
    with pytest.raises(ValueError, match=r"b\.png: no label file .*b\.txt \(an image without"):
        load_detection_data(root)
    (root / "train" / "labels" / "b.txt").write_text("")
    (root / "train" / "labels" / "z.txt").write_text("")
    with pytest.raises(ValueError, match=r"z\.txt: no image .*z\.\* for this label file"):
        load_detection_data(root)
    (root / "train" / "labels" / "z.txt").unlink()
    (root / "names.txt").unlink()
    with pytest.raises(ValueError, match=r"no class names: expected names\.txt, classes\.txt"):
        load_detection_data(root)


def test_a_binary_label_file_and_two_images_of_one_name_are_refused(tmp_path):
    root = yolo_folder(tmp_path / "d")
    (root / "train" / "labels" / "b.txt").write_bytes(b"\xff\xfe0 0.5")
    with pytest.raises(ValueError, match=r"b\.txt: not a text file"):
        load_detection_data(root)
    (root / "train" / "labels" / "b.txt").write_text("")
    png(root / "train" / "images" / "b.jpg", 40, 20)
    with pytest.raises(ValueError, match=r"two images share the name 'b'"):
        load_detection_data(root)


def test_an_unreadable_image_is_named(tmp_path):
    root = yolo_folder(tmp_path / "d")
    (root / "train" / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"a\.png: not a readable image"):
        load_detection_data(root)


def coco_folder(root: Path, change=None) -> Path:
    """train/ and val/ each with annotations.json (category ids 5 and 9) and images/."""
    for split in ("train", "val"):
        png(root / split / "images" / "p.png", 30, 20, mode="RGB")
        png(root / split / "images" / "q.png", 30, 20)
        coco = {
            "images": [
                {"id": 7, "file_name": "p.png", "width": 30, "height": 20},
                {"id": 8, "file_name": "q.png", "width": 30, "height": 20},
            ],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 9, "bbox": [1, 2, 10, 5], "iscrowd": 0},
                {"id": 2, "image_id": 8, "category_id": 5, "bbox": [0, 0, 30, 20]},
                {"id": 3, "image_id": 8, "category_id": 5, "bbox": [0, 0, 3, 3], "iscrowd": 1},
            ],
            "categories": [{"id": 9, "name": "nine"}, {"id": 5, "name": "five"}],
        }
        if change and split == "train":
            change(coco)
        (root / split / "annotations.json").write_text(json.dumps(coco, indent=1))
    return root


def test_a_coco_folder_by_hand(tmp_path):
    data = load_detection_data(coco_folder(tmp_path / "c"))
    assert data.format == "coco" and data.classes == ("five", "nine")  # in the order of ids
    assert data.train.images.shape == (2, 3, 20, 30)  # one RGB image: both get 3 channels
    torch.testing.assert_close(data.train.boxes_of(0), torch.tensor([[1.0, 2, 11, 7]]))
    assert data.train.labels_of(0).tolist() == [1] and data.train.labels_of(1).tolist() == [0]
    assert len(data.train.labels) == 2  # the crowd annotation is left out


def test_ultralytics_layout(tmp_path):
    root = tmp_path / "u"
    for split in ("train", "val"):
        png(root / "images" / split / "x.png", 16, 16)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "x.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    (root / "classes.txt").write_text("only\n")
    data = load_detection_data(root)
    torch.testing.assert_close(data.test.boxes_of(0), torch.tensor([[4.0, 6, 12, 10]]))


def _set(path, value):
    def change(coco):
        target = coco
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set(["images", 0, "file_name"], "gone.png"),
            "images[0] (id 7): image file 'gone.png' not found",
        ),
        (_set(["images", 1, "width"], 31), "images[1] (id 8): declares 31x20, the file is 30x20"),
        (
            _set(["annotations", 0, "category_id"], 4),
            "annotations[0]: category_id 4 is out of range",
        ),
        (
            _set(["annotations", 0, "bbox"], [25, 2, 10, 5]),
            "annotations[0]: bbox [25, 2, 10, 5] reaches outside image 7 (30x20)",
        ),
        (_set(["annotations", 1, "bbox"], [1, 2, 3]), "annotations[1]: bbox must be [x, y, w, h]"),
        (_set(["annotations", 1, "image_id"], 99), "annotations[1]: image_id 99 is not in images"),
        (_set(["categories"], {}), "expected COCO json: an object with lists"),
    ],
)
def test_bad_coco_entries_name_the_file_and_entry(tmp_path, change, message):
    root = coco_folder(tmp_path / "c", change)
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)) as caught:
        load_detection_data(root)
    assert str(root / "train" / "annotations.json") in str(caught.value)


def test_broken_json_names_line_and_column(tmp_path):
    root = coco_folder(tmp_path / "c")
    (root / "train" / "annotations.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(ValueError, match=r"annotations\.json:2:\d+: not valid JSON"):
        load_detection_data(root)


def test_images_of_different_sizes_need_a_size_and_are_letterboxed(tmp_path):
    root = yolo_folder(tmp_path / "d")
    png(root / "train" / "images" / "b.png", 20, 40)  # portrait: 20 wide, 40 high
    (root / "train" / "labels" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"images differ in size .*give size="):
        load_detection_data(root)
    data = load_detection_data(root, size=20)
    assert data.train.images.shape == (2, 1, 20, 20)
    # a.png 40x20 -> 20x10 placed at y 5: box (10, 5, 30, 15) -> (5, 7.5, 15, 12.5)
    torch.testing.assert_close(data.train.boxes_of(0)[0], torch.tensor([5.0, 7.5, 15, 12.5]))
    # b.png 20x40 -> 10x20 placed at x 5: box (5, 10, 15, 30) -> (7.5, 5, 12.5, 15)
    torch.testing.assert_close(data.train.boxes_of(1)[0], torch.tensor([7.5, 5, 12.5, 15]))
    assert data.train.images[0, 0, 0, 0] == 127 and data.train.images[0, 0, 10, 10] == 1


def test_letterbox_keeps_the_pixels_where_the_boxes_say():
    image = np.zeros((30, 60), dtype=np.uint8)
    image[10:20, 30:40] = 255
    out, boxes = letterbox(image, np.array([[30.0, 10, 40, 20]]), 120)
    x1, y1, x2, y2 = boxes[0].astype(int)
    assert (x1, y1, x2, y2) == (60, 50, 80, 70)
    assert (out[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1] == 255).all()  # the edges are interpolated
    assert out[30:90][~np.pad(np.ones((20, 20), bool), ((50 - 30, 20), (60, 40)))].max() < 255
    assert out[:30].max() == 127 and out[90:].min() == 127  # Darknet's grey above and below
