"""A detector trained by `cnnlab train`: the one loop, YOLO loss, mAP by pycocotools, resume.

The scenes are small (64x64, one or two fashion-mnist objects of 20..32 px) so that a few
hundred steps take seconds; the stated mAP was measured on this 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.detect import load_detection_data
from cnnlab.detect.detector import detector_from_checkpoint
from cnnlab.detect.evaluate import evaluate_detector
from cnnlab.detect.scene_files import make_scenes
from cnnlab.detect.scenes import SceneConfig
from cnnlab.train import default_config, load_checkpoint, train

pytestmark = pytest.mark.requires(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    "Debian's dataset-fashion-mnist (the scenes' source)",
)

SCENES = SceneConfig(
    "fashion-mnist", count=600, size=64, min_objects=1, max_objects=2, scale=(20, 32),
    test_fraction=0.1, seed=3,
)  # fmt: skip
SETTINGS = {"epochs": 6, "batch_size": 16, "lr": 3e-3, "threads": 2, "seed": 0}
MAP50_AT_LEAST = 0.4  # measured 0.561 (mAP@[.5:.95] 0.284) on this 2-core machine, bf16 (AMX)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes") / "small"
    make_scenes(SCENES, folder)
    return folder


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "yolo"
    config = default_config("yolo-scenes", str(scenes), out=str(out), **SETTINGS)
    return train(config)


def test_training_reaches_the_stated_map_and_reports_it(trained, scenes):
    assert trained.test_map50 >= MAP50_AT_LEAST
    assert 0 < trained.test_map < trained.test_map50
    assert trained.test_accuracy is None
    records = [json.loads(line) for line in (trained.run_dir / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records] == list(range(1, SETTINGS["epochs"] + 1))
    assert records[-1]["test_map50"] == pytest.approx(trained.test_map50)
    assert records[-1]["loss"] < records[0]["loss"]
    report = json.loads(trained.report.read_text())
    assert report["task"] == "detect" and report["test_map"] == pytest.approx(trained.test_map)
    assert set(report["per_class_ap"]) == set(report["classes"])
    assert {"curves.png", "pr.png"} <= set(report["files"]["plots"])
    # The run's detector, as `cnnlab evaluate` and `cnnlab detect` build it (batch norm folded),
    # scores the same on the test split.
    data = load_detection_data(scenes)
    again = evaluate_detector(detector_from_checkpoint(trained.run_dir), data.test, data.classes)
    assert again.metrics.map50 == pytest.approx(trained.test_map50, abs=2e-3)


def test_evaluate_without_data_scores_the_scenes_the_run_trained_on(trained):
    from typer.testing import CliRunner

    from cnnlab.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(trained.run_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["map50"] == pytest.approx(trained.test_map50, abs=2e-3)


def test_evaluate_asks_a_detector_run_for_detection_data(trained, tmp_path):
    from typer.testing import CliRunner

    from cnnlab.cli import app

    for data in ("fashion-mnist", str(trained.run_dir / "nonexistent")):
        result = CliRunner().invoke(app, ["evaluate", str(trained.run_dir), "--data", data])
        assert result.exit_code == 2, result.output
        assert "holds a detector: --data must be a folder of detection data" in result.output
        assert f"Received: --data={data}" in result.output
    # a copy of the run whose scenes were deleted since, evaluated without --data
    moved = tmp_path / "run"
    shutil.copytree(trained.run_dir, moved)
    report = json.loads((moved / "report.json").read_text())
    report["data"]["source"] = str(tmp_path / "deleted-scenes")
    (moved / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(app, ["evaluate", str(moved)])
    assert result.exit_code == 2, result.output
    assert f"Received: no --data, and {tmp_path / 'deleted-scenes'} is gone" in result.output


def test_the_checkpoint_describes_a_detector_run(trained):
    checkpoint = load_checkpoint(trained.run_dir)
    assert checkpoint["data"]["task"] == "detect"
    assert checkpoint["model"]["kwargs"] == {"num_classes": 10, "in_channels": 1, "size": 64}
    assert checkpoint["data"]["normalization"] == {"mean": [0.0], "std": [1.0]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"val_split": 0.1}, r"does not support val_split=0\.1"),
        ({"label_smoothing": 0.1}, r"does not support label_smoothing=0\.1"),
    ],
)
def test_settings_a_detector_does_not_use_are_refused(scenes, tmp_path, override, message):
    config = default_config("yolo-scenes", str(scenes), out=str(tmp_path / "r"), **override)
    with pytest.raises(ValueError, match=message):
        train(config)


def test_a_region_head_detector_is_refused_with_the_reason(scenes, tmp_path):
    config = default_config("yolov2-tiny", str(scenes), out=str(tmp_path / "r"), steps=1)
    with pytest.raises(ValueError, match=r"\[region\] head \(YOLOv2\).*yolo-scenes"):
        train(config)


def cnnlab_train(*args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", *map(str, args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(scenes, tmp_path):
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home")}
    args = ["yolo-scenes", "--data", scenes, "--epochs", 3, "--batch-size", 16, "--threads", 1]
    args += ["--device", "cpu"]  # about 3 s an epoch here: the kill lands inside the run
    reference = cnnlab_train(*args, "--out", tmp_path / "reference", env=env)
    run_dir = tmp_path / "killed"
    process = cnnlab_train(*args, "--out", run_dir, env=env)
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + 600
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    killed = load_checkpoint(run_dir)
    assert killed["epoch"] >= 1 and not killed["finished"]  # the kill came before the end
    resumed = cnnlab_train("--resume", run_dir, env=env)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "resuming" in output and "test mAP@0.5" in output
    assert reference.communicate(timeout=600)[0] and reference.returncode == 0
    ours = load_checkpoint(run_dir)["state_dict"]
    theirs = load_checkpoint(tmp_path / "reference")["state_dict"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
