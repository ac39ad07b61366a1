"""A detector scored on a detection set: the batched path finds what ``detect_array`` finds
image by image (also through the letterbox), pycocotools scores it, and `cnnlab evaluate RUN
--data DIR` does it for a run folder."""

import json

import pycocotools  # noqa: F401  (the dev extra; cnnlab imports it when it scores)
import pytest
import torch
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.detect import Detector
from cnnlab.detect.datasets import DetectionSet
from cnnlab.detect.evaluate import evaluate_detector, predict_set
from cnnlab.detect.scene_files import make_scenes
from cnnlab.detect.scenes import SceneConfig
from cnnlab.models import create_model
from cnnlab.train.checkpoint import CHECKPOINT_KEYS, FORMAT, VERSION

from .test_scenes import blob_dataset
from .tiny_detector import write_tiny_detector


def grey_set(count: int, height: int, width: int, boxes: torch.Tensor, labels) -> DetectionSet:
    images = torch.arange(count * height * width, dtype=torch.int64) % 251
    return DetectionSet(
        images=images.reshape(count, 1, height, width).to(torch.uint8),
        boxes=boxes.float(),
        labels=torch.tensor(labels),
        offsets=torch.arange(count + 1) * (len(labels) // count),
        files=tuple(f"i{k}" for k in range(count)),
    )


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40)])
def test_batched_detections_equal_one_image_at_a_time(tmp_path, height, width):
    detector = Detector.from_darknet(*write_tiny_detector(tmp_path, "yolo"), thresh=0.1)
    with torch.no_grad():  # the raw map now follows each channel's brightest pixel
        detector.network.layers[1].conv.weight.copy_(torch.linspace(-2, 2, 21).reshape(7, 3, 1, 1))
    part = grey_set(3, height, width, torch.zeros(0, 4), [])
    part.images[1] //= 2
    part.images[2] //= 5
    batched = predict_set(detector, part, batch_size=2)
    assert not torch.equal(batched[0][:, :4], batched[2][:, :4])  # the images matter
    for k in range(3):
        image = part.images[k].float().expand(3, -1, -1).numpy() / 255
        alone = detector.detect_array(image).rows
        assert len(alone) > 0
        torch.testing.assert_close(batched[k], alone)


def test_evaluate_detector_scores_and_writes_its_files(tmp_path):
    detector = Detector.from_darknet(*write_tiny_detector(tmp_path, "yolo"), names=["a", "b"])
    found = predict_set(detector, grey_set(2, 32, 32, torch.zeros(0, 4), []))[0]
    best = found[found[:, 4].argmax()]  # the detector's best row: its box, its class
    label = int(best[5])
    truth = grey_set(2, 32, 32, best[:4].repeat(2, 1), [label, label])
    result = evaluate_detector(detector, truth, ["a", "b"], out=tmp_path / "eval")
    assert result.metrics.map == pytest.approx(1.0)
    assert result.metrics.per_class[["a", "b"][1 - label]] == (None, None)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["map"] == pytest.approx(1.0) and written["thresh"] == 0.005
    assert (tmp_path / "eval" / "pr.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="the detector has 2 classes and the data 3"):
        evaluate_detector(detector, truth, ["a", "b", "c"])


def detector_run(folder, classes):
    """A run folder whose checkpoint holds a small ``yolo-scenes`` (random weights), as the
    trainer's checkpoint format describes it."""
    torch.manual_seed(0)
    model = create_model("yolo-scenes", num_classes=len(classes), in_channels=1, size=64)
    checkpoint = dict.fromkeys(CHECKPOINT_KEYS) | {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": "yolo-scenes", "kwargs": dict(model.cnnlab.kwargs)},
        "state_dict": model.state_dict(),
        "data": {"name": "blobs", "classes": list(classes)},
    }
    folder.mkdir()
    torch.save(checkpoint, folder / "checkpoint.pt")
    return folder


@pytest.mark.slow
def test_cnnlab_evaluate_scores_a_detector_on_a_scenes_folder(tmp_path):
    data = blob_dataset()
    config = SceneConfig(source="blobs", count=6, size=48, scale=(10, 20), test_fraction=0.5)
    make_scenes(config, tmp_path / "scenes", dataset=data)
    run = detector_run(tmp_path / "run", data.classes)
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", str(run), "--data", str(tmp_path / "scenes"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 3 and report["computed_by"] == "pycocotools COCOeval (bbox)"
    assert set(report["per_class"]) == {"a", "b", "c"}
    folder = run / "evaluate-scenes-test"
    assert json.loads((folder / "metrics.json").read_text())["map"] == report["map"]
    assert (folder / "pr.png").read_bytes()[:4] == b"\x89PNG"
    text = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "scenes")]).output
    assert "mAP@[.5:.95]" in text and "AP per class" in text
    other = detector_run(tmp_path / "other", ("x", "y", "z"))
    bad = runner.invoke(app, ["evaluate", str(other), "--data", str(tmp_path / "scenes")])
    assert bad.exit_code == 2 and "expected data with the same classes" in bad.output
