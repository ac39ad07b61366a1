"""Region and yolo decoding against values computed by hand for a one-cell map, the letterbox
correction against hand arithmetic, and the refusals of heads cnnlab does not decode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.darknet import build_network, parse_cfg, plan_network
from cnnlab.detect import Detector, correct_boxes, decode, detection_heads
from cnnlab.detect.decode import DetectionHead, HeadKind, head_detections, to_pixel_corners

from .tiny_detector import BODY, HEADS, write_tiny_detector


def one_cell(kind: str) -> tuple[DetectionHead, torch.Tensor]:
    plan = plan_network(parse_cfg(BODY + HEADS[kind][0]))
    return detection_heads(plan)[0], torch.tensor(HEADS[kind][1]).reshape(1, 7, 1, 1)


def test_region_one_cell_by_hand():
    head, raw = one_cell("region")
    assert head.kind is HeadKind.region and head.softmax and head.anchors == ((2.0, 3.0),)
    decoded = decode((head,), [raw], (32, 32))
    # x = (0 + sigmoid(0)) / 1; y = (0 + sigmoid(ln 3)) / 1 = 3/4; anchors in cells of a 1x1 map:
    # w = e^(ln 2) * 2 / 1 = 4; h = e^0 * 3 / 1 = 3
    torch.testing.assert_close(decoded.boxes[0, 0], torch.tensor([0.5, 0.75, 4.0, 3.0]))
    torch.testing.assert_close(decoded.objectness[0, 0], torch.tensor(0.8))  # sigmoid(ln 4)
    # softmax over (0, ln 3) = (1/4, 3/4): a sigmoid would give (1/2, 3/4)
    torch.testing.assert_close(decoded.probabilities[0, 0], torch.tensor([0.25, 0.75]))
    # scores 0.8 * (1/4, 3/4) = (0.2, 0.6); 0.2 is under the threshold
    torch.testing.assert_close(decoded.scores(0.5)[0, 0], torch.tensor([0.0, 0.6]))


def test_yolo_one_cell_by_hand():
    head, raw = one_cell("yolo")
    assert head.kind is HeadKind.yolo and not head.softmax
    decoded = decode((head,), [raw], (32, 32))
    # anchors in input pixels: w = 2 * 8 / 32, h = 1 * 16 / 32
    torch.testing.assert_close(decoded.boxes[0, 0], torch.tensor([0.5, 0.5, 0.5, 0.5]))
    torch.testing.assert_close(decoded.objectness[0, 0], torch.tensor(0.9))  # sigmoid(ln 9)
    torch.testing.assert_close(decoded.probabilities[0, 0], torch.tensor([0.5, 0.75]))
    torch.testing.assert_close(decoded.scores(0.5)[0, 0], torch.tensor([0.0, 0.675]))
    torch.testing.assert_close(decoded.scores(0.4)[0, 0], torch.tensor([0.45, 0.675]))
    # the objectness itself must pass the threshold, whatever the product
    torch.testing.assert_close(decoded.scores(0.9)[0, 0], torch.tensor([0.0, 0.0]))


def test_cells_and_anchors_are_laid_out_as_darknet_entry_index():
    """Anchor-major channels, then entry, then cell: anchor 1's tx at cell (row 1, col 2)."""
    cfg = parse_cfg(
        "[net]\nheight=96\nwidth=96\nchannels=3\n[convolutional]\nfilters=14\nsize=1\n"
        "stride=32\npad=0\nactivation=linear\n[yolo]\nmask=0,1\nanchors=8,8,32,16\nclasses=2\nnum=2\n"
    )
    head = detection_heads(plan_network(cfg))[0]
    raw = torch.zeros(1, 14, 3, 3)
    raw[0, 7 + 0, 1, 2] = math.log(3)  # anchor 1, entry tx, row 1, col 2: sigmoid = 3/4
    raw[0, 7 + 2, 1, 2] = math.log(2)  # its tw
    decoded = decode((head,), [raw], (96, 96))
    index = 1 * 9 + 1 * 3 + 2  # anchor-major, then row, then column
    torch.testing.assert_close(
        decoded.boxes[0, index], torch.tensor([(2 + 0.75) / 3, (1 + 0.5) / 3, 64 / 96, 16 / 96])
    )


def test_letterbox_correction_by_hand():
    # a 200 x 100 image in a 32 x 32 input: scaled to 32 x 16, 8 rows of grey above and below
    box = torch.tensor([[0.5, 0.5, 0.5, 0.25], [0.25, 0.375, 0.25, 0.25]], dtype=torch.float64)
    image = correct_boxes(box, (100, 200), (32, 32))
    expected = [[0.5, 0.5, 0.5, 0.5], [0.25, (0.375 - 0.25) / 0.5, 0.25, 0.5]]
    torch.testing.assert_close(image, torch.tensor(expected, dtype=torch.float64))
    corners = to_pixel_corners(image, (100, 200))
    torch.testing.assert_close(
        corners, torch.tensor([[50.0, 25, 150, 75], [25, 0, 75, 50]], dtype=torch.float64)
    )


def test_pixel_corners_are_clipped_to_the_image():
    corners = to_pixel_corners(torch.tensor([[0.9, 0.1, 0.4, 0.4]]), (10, 20))
    torch.testing.assert_close(corners, torch.tensor([[14.0, 0.0, 20.0, 3.0]]))


@pytest.mark.parametrize(
    ("kind", "thresh", "rows"),
    [
        # yolo box (0.5, 0.5, 0.5, 0.5) of the input; a 64 x 40 image is letterboxed to 32 x 20
        # (6 grey rows above): y = (0.5 - 6/32) / (20/32) = 0.5, h = 0.5 * 32/20 = 0.8
        ("yolo", 0.5, [[16, 4, 48, 36, 0.675, 1]]),
        ("yolo", 0.4, [[16, 4, 48, 36, 0.675, 1], [16, 4, 48, 36, 0.45, 0]]),
        # region box (0.5, 0.75, 4, 3) covers the whole image once clipped
        ("region", 0.5, [[0, 0, 64, 40, 0.6, 1]]),
    ],
)
def test_detector_rows_by_hand(tmp_path, kind, thresh, rows):
    cfg, weights = write_tiny_detector(tmp_path, kind)
    detector = Detector.from_darknet(cfg, weights, thresh=thresh)
    image = np.random.default_rng(0).random((3, 40, 64), dtype=np.float32)
    found = detector.detect_array(image)
    assert found.size == (40, 64)
    torch.testing.assert_close(found.rows, torch.tensor(rows, dtype=torch.float32))


@pytest.mark.parametrize(
    ("head", "key"),
    [
        ("[region]\nanchors=2,3\nclasses=2\ncoords=5\nnum=1\n", "coords"),
        ("[region]\nanchors=2,3\nclasses=2\nnum=1\nbackground=1\n", "background"),
        ("[yolo]\nmask=0,3\nanchors=8,16\nclasses=2\nnum=1\n", "mask"),
    ],
)
def test_heads_cnnlab_does_not_decode_are_refused_by_key(head, key):
    body = BODY.replace("filters=7", "filters=8" if key == "coords" else "filters=7")
    if key == "mask":
        body = body.replace("filters=7", "filters=14")
    with pytest.raises(ValueError, match=key):
        detection_heads(plan_network(parse_cfg(body + head)))


def test_a_classifier_is_not_a_detector():
    network = build_network(parse_cfg(BODY))
    with pytest.raises(ValueError, match=r"no \[region\] or \[yolo\] layer"):
        Detector(network)


@pytest.mark.parametrize(("flag", "value"), [("thresh", 1.5), ("nms", -0.1)])
def test_thresholds_out_of_range_are_refused(tmp_path, flag, value):
    cfg, weights = write_tiny_detector(tmp_path, "yolo")
    with pytest.raises(ValueError, match=rf"{flag} must be .* Received: {flag}={value}"):
        Detector.from_darknet(cfg, weights, **{flag: value})


@pytest.mark.parametrize("kind", ["yolo", "region"])
def test_the_fast_path_finds_what_full_decoding_finds(kind):
    """head_detections decodes only anchors above the threshold; the scores it gives are the
    full decoding's nonzero ones, for the same boxes."""
    head = DetectionHead(
        HeadKind(kind), 1, ((1.0, 2.0), (3.0, 1.5), (2.0, 2.0)), 4, kind == "region"
    )
    raw = torch.randn(1, 3 * 9, 5, 6, generator=torch.Generator().manual_seed(0)) * 2
    full = decode((head,), [raw], (160, 192))
    scores = full.scores(0.3)[0]
    boxes, fast_scores = head_detections(head, raw[0], (160, 192), 0.3)
    live = full.objectness[0] > 0.3
    assert 0 < (fast_scores > 0).sum() == (scores > 0).sum()
    torch.testing.assert_close(fast_scores, scores[live])
    torch.testing.assert_close(boxes, full.boxes[0, live])
