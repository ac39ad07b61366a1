"""OpenCV DNN's Darknet importer as an independent oracle: the same cfg and random weights
(written by cnnlab) give the same outputs within 1e-4 relative.

Region and YOLO layers are raw here (decoding is the detector's job), so detection networks are
compared at the maps that feed them. The fast tests run the cfgs at a smaller input size (the
same layers, shapes that still divide); the slow ones at the cfg's own size.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cnnlab.darknet import build_network, load_weights, randomize_weights, save_weights

from .conftest import CFG_DIR, needs_darknet_cfgs, resized_cfg

pytestmark = pytest.mark.requires(
    not hasattr(cv2.dnn, "readNetFromDarknet"),
    "OpenCV's readNetFromDarknet (opencv-python-headless<5: OpenCV 5 dropped it)",
)

ORACLE_CFGS = {  # cfg -> a smaller input size for the fast test
    "darknet19": 96,
    "extraction": 96,
    "alexnet": 227,  # its connected layers fix the size
    "tiny": 96,
    "yolov2-tiny": 160,
    "yolov2-voc": 160,
    "yolov3-tiny": 160,
}
HEAVY = ("darknet19", "extraction", "alexnet", "yolov2-voc")  # 20-60 M weights: seconds each
VERSIONS = {"20-byte header": (0, 2, 0), "16-byte header": (0, 1, 0)}


def compare_with_opencv(cfg, weights_dir, version) -> float:
    model = randomize_weights(build_network(cfg), seed=11)
    weights = save_weights(model, weights_dir / "random.weights", version=version)
    ours = build_network(cfg).eval()
    assert load_weights(ours, weights).complete
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    c, h, w = ours.plan.input_shape
    x = np.random.default_rng(0).random((1, c, h, w), dtype=np.float32)
    heads = tuple(layer.index - 1 for layer in ours.plan.layers if layer.kind in ("region", "yolo"))
    net.setInput(x)
    with torch.inference_mode():
        if heads:  # OpenCV names the convolution of Darknet layer i "conv_i"
            theirs = net.forward([f"conv_{i}" for i in heads])
            mine = ours.forward_layers(torch.from_numpy(x), heads)
            pairs = [(mine[i].numpy(), t) for i, t in zip(heads, theirs, strict=True)]
        else:
            pairs = [(ours(torch.from_numpy(x)).numpy(), net.forward())]
    worst = 0.0
    for a, b in pairs:
        a, b = a.reshape(-1), b.reshape(-1)
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
        worst = max(worst, float(np.abs(a - b).max() / scale))
    return worst


@needs_darknet_cfgs
@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ORACLE_CFGS]
)
def test_opencv_agrees_at_a_small_input(name, version, tmp_path):
    size = ORACLE_CFGS[name]
    cfg = resized_cfg(CFG_DIR / f"{name}.cfg", tmp_path, size, size)
    compare_with_opencv(cfg, tmp_path, version)


@pytest.mark.slow
@needs_darknet_cfgs
@pytest.mark.parametrize("name", ORACLE_CFGS)
def test_opencv_agrees_at_the_cfg_size(name, tmp_path):
    compare_with_opencv(CFG_DIR / f"{name}.cfg", tmp_path, (0, 2, 0))


def test_small_classifier_agrees(small_cfg, tmp_path):
    # OpenCV's importer returns NaN for a connected layer with batch_normalize=1 (Darknet's
    # binary is the oracle for that one, in test_classify), so this copy leaves it out.
    cfg = tmp_path / "small-no-dense-bn.cfg"
    cfg.write_text(small_cfg.read_text().replace("linear\nbatch_normalize=1", "linear"))
    compare_with_opencv(cfg, tmp_path, (0, 2, 0))
