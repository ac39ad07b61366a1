"""`cnnlab darknet export` of a detector run: OpenCV DNN reads the exported cfg and weights and
finds the boxes cnnlab finds.

The run is saved as the trainer saves one (``RunState.checkpoint`` and ``save_checkpoint``): a
``yolo-scenes`` model over fashion-mnist's ten classes, seeded random weights, batch-norm
statistics moved by three forward passes in train mode, and the input normalisation of a run
(its data's mean and std, which Darknet does not apply: the export adds a first 1x1
convolution for it). The scenes are made by cnnlab's scene generator from twelve random discs,
on a noisy background; one is resized to 320x240, so that the letterbox is exercised too.
OpenCV is the oracle for the network, the decoding (its yolo layer) and NMS (cv2.dnn.NMSBoxes
per class); the test maps its boxes back from the letterbox by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.darknet import randomize_weights
from cnnlab.darknet.cfg import format_cfg, read_cfg
from cnnlab.darknet.convert import export_darknet
from cnnlab.darknet.sequential import NotExportableError
from cnnlab.detect import Detector
from cnnlab.detect.detector import detector_from_checkpoint
from cnnlab.detect.scenes import SceneConfig, generate_split
from cnnlab.models import create_model
from cnnlab.models.detectors import DarknetDetector
from cnnlab.train.checkpoint import CHECKPOINT_NAME, RunState, save_checkpoint
from cnnlab.train.config import TrainConfig

from .darknet_binary import darknet_lines, needs_darknet_binary
from .opencv_oracle import by_class_and_score, opencv_rows

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
MEAN, STD = (0.15, 0.13, 0.11), (0.27, 0.25, 0.29)  # a run's normalisation, per channel
# Random heads call most anchors objects (hundreds of boxes at 0.5): each scene's threshold is
# the lowest of these at which it has at most MAX_BOXES boxes, none scored within 1e-4 of it
# (so that the test does not hang on one architecture's random weights).
LADDER = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
MAX_BOXES, MIN_BOXES, NMS = 80, 5, 0.45
SIZES = [(256, 256)] * 3 + [(320, 240)]  # (width, height) of each scene image
runner = CliRunner()


def save_run(
    folder: Path, model: torch.nn.Module, classes: list[str], mean: tuple, std: tuple
) -> Path:
    """A run folder whose checkpoint.pt is written as `cnnlab train` writes it."""
    folder.mkdir(parents=True)
    optimizer = torch.optim.AdamW(model.parameters())
    info = model.cnnlab
    run = RunState(
        config=TrainConfig(model=info.name, data="scenes", model_kwargs=dict(info.kwargs)),
        run_dir=folder,
        device=torch.device("cpu"),
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        scaler=None,
        batches=None,
        normalization=None,
        adapter=None,
        data_info={
            "name": "scenes",
            "shape": list(info.input_shape),
            "normalization": {"mean": list(mean), "std": list(std)},
            "classes": classes,
            "adaptation": "none",
        },
        val=None,
        test=(torch.zeros(0), torch.zeros(0)),
        total_steps=0,
        epoch=1,
        global_step=100,
        finished=True,
    )
    save_checkpoint(run.checkpoint(), folder / CHECKPOINT_NAME)
    return folder


def scenes_model(seed: int = 3) -> DarknetDetector:
    """yolo-scenes over ten classes, seeded random weights, batch-norm statistics of three
    train-mode batches (momentum 0.1 moves them away from randomize_weights' values)."""
    model = randomize_weights(create_model("yolo-scenes", num_classes=10), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 256, 256, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("run") / "run", scenes_model(), FASHION, MEAN, STD)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    return export_darknet(run, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    """Four scene PNGs: random discs pasted by cnnlab's scene generator on a noisy canvas."""
    rng = np.random.default_rng(0)
    discs = np.zeros((12, 3, 28, 28), np.uint8)
    rows, cols = np.mgrid[:28, :28]
    for disc in discs:
        y, x, r = rng.integers(8, 20), rng.integers(8, 20), rng.integers(6, 13)
        disc[:, (rows - y) ** 2 + (cols - x) ** 2 < r * r] = rng.integers(80, 256, (3, 1))
    config = SceneConfig(source="discs", count=10, size=256, noise=40, max_objects=6)
    batch = next(generate_split(torch.from_numpy(discs), torch.arange(12) % 10, 4, config, "test"))
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for index, (image, size) in enumerate(zip(batch.images, SIZES, strict=True)):
        paths.append(folder / f"scene{index}.png")
        Image.fromarray(image.transpose(1, 2, 0)).resize(size, Image.BILINEAR).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def thresholds(run, scenes) -> list[float]:
    """Each scene's threshold (see LADDER)."""
    chosen = []
    for image in scenes:
        for value in LADDER:
            rows = detector_from_checkpoint(run, thresh=value, nms=NMS).detect(image).rows
            if len(rows) <= MAX_BOXES and (
                len(rows) == 0 or (rows[:, 4] - value).abs().min() > 1e-4
            ):
                chosen.append(value)
                break
        else:
            pytest.fail(f"{image}: no threshold of {LADDER} leaves at most {MAX_BOXES} boxes")
    return chosen


def options(section) -> dict[str, str]:
    return {key: option.text for key, option in section.options.items()}


def assert_same_boxes(ours: np.ndarray, theirs: np.ndarray, coordinates: float) -> None:
    """The same classes, scores within 1e-4 and corners within ``coordinates`` pixels."""
    assert len(ours) == len(theirs)
    ours, theirs = by_class_and_score(ours.astype(np.float64)), by_class_and_score(theirs)
    np.testing.assert_array_equal(ours[:, 5], theirs[:, 5])
    np.testing.assert_allclose(ours[:, 4], theirs[:, 4], atol=1e-4)
    np.testing.assert_allclose(ours[:, :4], theirs[:, :4], rtol=0, atol=coordinates)


def test_export_writes_darknet_files_with_the_runs_classes(run, exported):
    assert exported.model == "yolo-scenes" and exported.compared == "head map"
    assert exported.normalized
    assert exported.max_difference < 1e-4
    assert exported.names.read_text().splitlines() == FASHION
    assert exported.data.read_text() == f"classes=10\nnames={exported.names.resolve()}\n"
    # the normalising layer first, then the model's own layers, absolute route numbers moved
    # up by one (yolo-scenes' second route joins an earlier layer's features by its number)
    first, *layers = read_cfg(exported.cfg).layers
    assert options(first) == {
        "filters": "3", "size": "1", "stride": "1", "pad": "0",
        "activation": "linear",
    }  # fmt: skip
    model_layers = scenes_model().plan.cfg.layers
    assert [s.kind for s in layers] == [s.kind for s in model_layers]
    routes = [
        (s.get("layers"), m.get("layers"))
        for s, m in zip(layers, model_layers, strict=True)
        if s.kind == "route"
    ]
    assert routes == [(tuple(v + (v >= 0) for v in m), m) for _, m in routes]
    assert any(v >= 0 for _, m in routes for v in m)  # an absolute number was moved
    same = [
        options(s) == options(m)
        for s, m in zip(layers, model_layers, strict=True)
        if s.kind != "route"
    ]
    assert all(same) and sum(options(s).get("classes") == "10" for s in layers) == 2


@pytest.mark.parametrize("index", range(len(SIZES)))
def test_opencv_finds_the_boxes_of_the_run(run, exported, scenes, thresholds, index):
    image, thresh = scenes[index], thresholds[index]
    ours = detector_from_checkpoint(run, thresh=thresh, nms=NMS).detect(image).rows.numpy()
    theirs = opencv_rows(exported.cfg, exported.weights, image, thresh, NMS, 256)
    assert len(ours) >= MIN_BOXES
    # OpenCV's float32 network and its own decoding: a few thousandths of a pixel apart
    assert_same_boxes(ours, theirs, coordinates=0.01)


def test_the_exported_files_detect_as_the_run(run, exported, scenes, thresholds):
    """cnnlab reading its own export (Detector.from_darknet) equals the run's detector."""
    for image, thresh in zip(scenes, thresholds, strict=True):
        from_run = detector_from_checkpoint(run, thresh=thresh, nms=NMS)
        from_files = Detector.from_darknet(exported.cfg, exported.weights, thresh=thresh, nms=NMS)
        assert from_files.net_size == from_run.net_size == (256, 256)
        ours, theirs = from_run.detect(image).rows.numpy(), from_files.detect(image).rows.numpy()
        assert len(ours) >= MIN_BOXES
        assert_same_boxes(ours, theirs.astype(np.float64), coordinates=1e-3)


@pytest.mark.slow
@needs_darknet_binary
def test_debian_darknet_detector_test_prints_the_runs_lines(
    run, exported, scenes, thresholds, tmp_path
):
    """`darknet detector test model.data model.cfg model.weights IMAGE` (Debian's binary, the
    names from model.data) prints the lines `cnnlab detect RUN IMAGE` prints."""
    image, thresh = scenes[1], thresholds[1]
    files = (exported.data, exported.cfg, exported.weights)
    theirs = darknet_lines(["detector", "test", *files, image], thresh, tmp_path)
    assert theirs[0].startswith(f"{image}: Predicted in ")
    detector = detector_from_checkpoint(run, thresh=thresh, nms=NMS)
    rows = detector.detect(image).rows.tolist()
    ours = [f"{detector.names[int(cls)]}: {score * 100:.0f}%" for *_, score, cls in rows]
    # Darknet prints in the order of its last sort; the lines themselves must be the same
    assert len(ours) >= MIN_BOXES
    assert Counter(theirs[1:]) == Counter(ours)


def test_a_run_without_normalization_exports_the_models_own_cfg(tmp_path):
    model = scenes_model(seed=4)
    run = save_run(tmp_path / "run", model, FASHION, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    result = export_darknet(run, tmp_path / "out")
    assert not result.normalized and result.max_difference == 0
    assert result.cfg.read_text() == format_cfg(model.plan.cfg)


def test_cli_export_of_a_detector_run(run, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["darknet", "export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:4] == [
        f"Wrote {out / n}" for n in ("model.cfg", "model.weights", "model.names", "model.data")
    ]
    assert lines[4] == "Layer 0 normalises the input as the run did: (x - mean) / std"
    assert lines[5].startswith("Read back: max head map difference to yolo-scenes ")
    files = " ".join(str(out / f"model.{ext}") for ext in ("data", "cfg", "weights"))
    assert lines[6] == f"Try: darknet detector test {files} IMAGE"
    result = runner.invoke(app, ["darknet", "export", str(run), "--out", str(out), "--json"])
    assert json.loads(result.output)["compared"] == "head map"


def test_runs_darknet_cannot_hold_are_refused(tmp_path):
    model = create_model("lenet5-1998")
    run = save_run(tmp_path / "lenet", model, [str(i) for i in range(10)], (0.1,), (0.3,))
    with pytest.raises(NotExportableError, match="lenet5-1998 cannot be exported to Darknet: "):
        export_darknet(run, tmp_path / "out")
    result = runner.invoke(app, ["darknet", "export", str(run), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "lenet5-1998 cannot be exported to Darknet" in result.output


def test_detect_refuses_a_run_that_is_not_a_detector(tmp_path):
    run = save_run(
        tmp_path / "lenet", create_model("lenet5-1998"), list("0123456789"), (0.1,), (0.3,)
    )
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    result = runner.invoke(app, ["detect", str(run), str(image)])
    assert result.exit_code == 2
    assert "holds model 'lenet5-1998', which is not a detector" in " ".join(result.output.split())
