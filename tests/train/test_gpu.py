"""Training, evaluating and predicting on CUDA, in fp16 (with loss scaling) and in bf16.

Every test here is marked ``gpu``: tests/conftest.py skips them without CUDA. They train on
the bundled digits set, so they need no download.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from typer.testing import CliRunner

import cnnlab
import cnnlab.train.report as report
from cnnlab.cli import app
from cnnlab.data import load_dataset
from cnnlab.train import TrainResult, default_config, load_checkpoint, train

pytestmark = pytest.mark.gpu

LOW_PRECISION = {"fp16": torch.float16, "bf16": torch.bfloat16}
BATCH = 128


def no_plots(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(report, "write_plots", lambda *args, **kwargs: [])


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    no_plots(monkeypatch)


def skip_without_bf16(precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bfloat16")


def cuda_config(folder, precision: str, **overrides):
    settings = {"epochs": 5, "batch_size": BATCH, "out": str(folder / "run")}
    return default_config(
        "lenet-like", "digits", device="cuda", precision=precision, **(settings | overrides)
    )


@pytest.fixture(scope="module", params=list(LOW_PRECISION))
def cuda_run(request, tmp_path_factory) -> TrainResult:
    """A short digits run on CUDA in each low precision, shared by the tests of this module."""
    skip_without_bf16(request.param)
    with pytest.MonkeyPatch.context() as patch:
        no_plots(patch)
        folder = tmp_path_factory.mktemp(request.param)
        return train(cuda_config(folder, request.param), progress=False)


def test_cuda_run_learns_digits(cuda_run):
    losses = [record["loss"] for record in cuda_run.metrics]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert cuda_run.test_accuracy > 0.9  # chance is 0.1
    checkpoint = load_checkpoint(cuda_run.run_dir)
    assert checkpoint["config"]["device"] == "cuda"
    assert all(t.device.type == "cpu" for t in checkpoint["state_dict"].values())  # portable


def test_fp16_scales_the_loss_and_bf16_does_not(cuda_run):
    checkpoint = load_checkpoint(cuda_run.run_dir)
    if checkpoint["config"]["precision"] == "fp16":
        assert checkpoint["scaler"] is not None
        assert checkpoint["scaler"]["scale"] > 0
    else:
        assert checkpoint["scaler"] is None


@pytest.mark.parametrize("precision", list(LOW_PRECISION))
def test_training_steps_run_in_low_precision(tmp_path, precision):
    skip_without_bf16(precision)
    seen = set()

    def record(module, args, output):
        training = module.training and torch.is_grad_enabled() and output.shape[0] == BATCH
        if training and isinstance(module, nn.Conv2d | nn.Linear):
            seen.add((type(module).__name__, output.device.type, output.dtype))

    handle = register_module_forward_hook(record)
    try:
        train(cuda_config(tmp_path, precision, steps=3), progress=False)
    finally:
        handle.remove()
    dtype = LOW_PRECISION[precision]
    assert seen == {("Conv2d", "cuda", dtype), ("Linear", "cuda", dtype)}


def test_fp16_clips_the_unscaled_gradient(tmp_path):
    # With loss scaling the gradients are scaled by 2**16 until scaler.unscale_: clipping
    # before it would shrink a step to lr * clip / 2**16. One step of plain SGD moves the
    # weights by exactly lr * clip when the gradient's norm is above clip (a step the scaler
    # skips for an inf/NaN gradient moves nothing, so three are taken).
    settings = {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"}
    start = train(
        cuda_config(tmp_path / "start", "fp16", lr=1e-30, steps=1, **settings), progress=False
    )
    lr, clip, steps = 1.0, 1e-3, 3
    clipped = train(
        cuda_config(tmp_path / "clipped", "fp16", lr=lr, grad_clip=clip, steps=steps, **settings),
        progress=False,
    )
    before = load_checkpoint(start.run_dir)["state_dict"]
    checkpoint = load_checkpoint(clipped.run_dir)
    after = checkpoint["state_dict"]
    moved = math.sqrt(sum(float((after[k] - before[k]).square().sum()) for k in before))
    skipped = round(math.log2(2.0**16 / checkpoint["scaler"]["scale"]))  # each skip halves it
    assert skipped < steps
    assert moved <= steps * lr * clip * 1.001
    assert moved >= 0.5 * lr * clip


def test_load_and_predict_on_cuda(cuda_run):
    dataset = load_dataset("digits")
    predictor = cnnlab.load(cuda_run.run_dir, device="cuda")
    assert predictor.device.type == "cuda"
    assert all(p.is_cuda for p in predictor.model.parameters())
    probabilities = predictor.predict(dataset.test_images)  # fp32, on the CPU
    assert probabilities.shape == (360, 10)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(360))
    predicted = probabilities.argmax(dim=1)
    accuracy = float((predicted == dataset.test_labels).float().mean())
    # The trainer evaluated in low precision; a few borderline images may change class.
    assert accuracy == pytest.approx(cuda_run.test_accuracy, abs=0.02)
    # The same weights on the CPU (CUDA convolutions may round through TF32).
    on_cpu = cnnlab.load(cuda_run.run_dir, device="cpu").predict(dataset.test_images)
    torch.testing.assert_close(probabilities, on_cpu, rtol=0, atol=1e-2)
    top = predictor.top_k(dataset.test_images[:4], k=3)
    assert [row[0][1] for row in top] == [str(int(c)) for c in predicted[:4]]


def test_cli_evaluate_on_cuda(cuda_run):
    result = CliRunner().invoke(
        app, ["evaluate", str(cuda_run.run_dir), "--device", "cuda", "--json"]
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["device"].startswith("cuda")
    assert evaluation["samples"] == 360 and evaluation["data"] == "digits"
    dataset = load_dataset("digits")
    predicted = cnnlab.load(cuda_run.run_dir, device="cuda").predict(dataset.test_images)
    expected = float((predicted.argmax(dim=1) == dataset.test_labels).float().mean())
    assert evaluation["accuracy"] == pytest.approx(expected, abs=1 / 360)
