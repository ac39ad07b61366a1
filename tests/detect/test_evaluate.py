"""A detector scored on a detection set: the batched path finds what ``detect_array`` finds
image by image (also through the letterbox), and pycocotools scores it."""

import json

import pytest
import torch

from cnnlab.detect import Detector
from cnnlab.detect.datasets import DetectionSet
from cnnlab.detect.evaluate import evaluate_detector, predict_set

from .tiny_detector import write_tiny_detector

pytest.importorskip("pycocotools")


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
