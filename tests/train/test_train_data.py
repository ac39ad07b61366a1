"""train() on data in memory (a Dataset, a subset, Keras-style arrays), the complete
TrainResult, resuming such a run, and TrainStep against a hand-written PyTorch step."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab.train.report as report
from cnnlab.data import Dataset, load_dataset
from cnnlab.models import create_model
from cnnlab.summary import summary
from cnnlab.train import TrainStep, default_config, load_checkpoint, resume, train
from cnnlab.train.data import data_fingerprint


@pytest.fixture(autouse=True)
def no_plots(monkeypatch, request):
    if "with_plots" not in request.fixturenames:
        monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


@pytest.fixture
def with_plots():
    """Keep the real plots."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def config_for(tmp_path, name="run", **overrides):
    settings = {"epochs": 1, "batch_size": 64, "threads": 1, "out": str(tmp_path / name)}
    settings.update(overrides)
    return default_config("lenet-like", "my-digits", **settings)


def keras_arrays(dataset):
    """The digits as Keras hands out MNIST: (N, H, W, 1) float32 in [0, 1], labels (N,)."""
    pairs = []
    for split in ("train", "test"):
        images = getattr(dataset, f"{split}_images").permute(0, 2, 3, 1).numpy()
        pairs.append((images.astype(np.float32) / 255, getattr(dataset, f"{split}_labels").numpy()))
    return tuple(pairs)


def test_a_subset_trains_on_exactly_its_images(tmp_path, digits):
    subset = digits.subset(train=np.arange(300), test=np.arange(100))
    result = train(config_for(tmp_path), data=subset, progress=False)
    checkpoint = load_checkpoint(result.run_dir)
    assert checkpoint["data"]["in_memory"] is True
    assert checkpoint["data"]["train_count"] == 300
    assert checkpoint["data"]["fingerprint"] == data_fingerprint(subset)
    # 300 images in full batches of 64: 4 steps, 256 images (the remainder is dropped).
    assert (result.steps, result.images_trained) == (4, 256)
    assert sum(result.confusion[row][col] for row in range(10) for col in range(10)) == 100


def test_keras_arrays_train_like_the_same_dataset(tmp_path, digits):
    from_arrays = train(config_for(tmp_path, "a"), data=keras_arrays(digits), progress=False)
    from_dataset = train(config_for(tmp_path, "b"), data=digits, progress=False)
    a, b = load_checkpoint(from_arrays.run_dir), load_checkpoint(from_dataset.run_dir)
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"]  # x / 255 * 255 round trip
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert from_arrays.test_accuracy == from_dataset.test_accuracy


def test_the_result_is_the_report(tmp_path, digits, with_plots):
    result = train(config_for(tmp_path, epochs=2), data=digits, progress=False)
    saved = json.loads(result.report.read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "steps",
        "images_trained",
        "train_seconds",
        "training_flops_per_image",
        "training_flops_total",
        "achieved_flops_per_second",
        "per_class_accuracy",
        "confusion",
        "classes",
    ):
        assert result.to_dict()[key] == saved[key], key
    assert [path.name for path in result.plots] == saved["files"]["plots"]
    assert all(path.is_file() for path in result.plots) and len(result.plots) == 4
    steps_per_epoch = len(digits.train_labels) // 64  # 1,437 // 64 = 22 full batches
    assert result.steps == 2 * steps_per_epoch
    assert result.images_trained == 2 * steps_per_epoch * 64
    model_flops = summary(create_model("lenet-like", num_classes=10), (1, 32, 32)).training_flops
    assert result.training_flops_per_image == model_flops
    assert result.training_flops_total == model_flops * result.images_trained
    assert result.context["seed"] == 0 and result.context["batch_size"] == 64


def test_resume_needs_the_same_data_again(tmp_path, digits):
    class Stop(Exception):
        pass

    def stop_after_first(record):
        raise Stop

    config = config_for(tmp_path, "cut", epochs=2)
    subset = digits.subset(train=np.arange(400))
    with pytest.raises(Stop):
        train(config, data=subset, progress=False, on_epoch=stop_after_first)

    with pytest.raises(ValueError, match=r"trained on data in memory \('my-digits'\)"):
        resume(tmp_path / "cut", progress=False)
    other = digits.subset(train=np.arange(1, 401))
    with pytest.raises(ValueError, match="trained on other data"):
        resume(tmp_path / "cut", data=other, progress=False)

    resumed = resume(tmp_path / "cut", data=subset, progress=False)
    whole = train(config_for(tmp_path, "whole", epochs=2), data=subset, progress=False)
    a, b = load_checkpoint(resumed.run_dir), load_checkpoint(whole.run_dir)
    assert resumed.epochs_run == 2
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("digits", r"data must be a cnnlab.data.Dataset or arrays .* Received: data of type str"),
        (
            (
                (np.zeros((4, 8, 8), np.float32) + 2, np.zeros(4, int)),
                (np.zeros((2, 8, 8)), [0, 1]),
            ),
            r"train images: float images must lie in \[0, 1\].*from 2 to 2",
        ),
        (
            ((np.zeros((4, 8, 8), np.uint8), np.zeros(3, int)), (np.zeros((2, 8, 8)), [0, 1])),
            r"train labels must be 4 integer class ids",
        ),
        (
            ((np.zeros((4, 8), np.uint8), np.zeros(4, int)), (np.zeros((2, 8, 8)), [0, 1])),
            r"train images must be \(N, H, W\), \(N, H, W, C\) or \(N, C, H, W\)",
        ),
    ],
)
def test_bad_data_is_refused_before_anything_is_written(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        train(config_for(tmp_path), data=data, progress=False)
    assert not (tmp_path / "run").exists()


def test_from_arrays_layouts_agree():
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 256, (5, 3, 4, 6), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0])
    a = Dataset.from_arrays((nchw, labels), (nchw, labels))
    b = Dataset.from_arrays((nchw.transpose(0, 2, 3, 1), labels[:, None]), (nchw, labels))
    assert torch.equal(a.train_images, b.train_images) and a.image_shape == (3, 4, 6)
    assert a.classes == ("0", "1", "2")
    with pytest.raises(ValueError, match=r"classes names 2 classes but the labels go up to 2"):
        Dataset.from_arrays((nchw, labels), (nchw, labels), classes=["a", "b"])


def test_subset_by_mask_and_bad_indices(digits):
    mask = (digits.train_labels == 3).numpy()
    threes = digits.subset(train=mask)
    assert len(threes.train_labels) == int(mask.sum()) and set(threes.train_labels.tolist()) == {3}
    assert len(threes.test_labels) == len(digits.test_labels)
    with pytest.raises(ValueError, match=r"train indices must be in \[0, 1437\)"):
        digits.subset(train=[0, 1437])
    with pytest.raises(ValueError, match="test mask must have one entry per test image"):
        digits.subset(test=np.ones(3, bool))


def test_train_step_is_a_plain_pytorch_step():
    """PyTorch as the oracle: the same SGD step written out by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    reference = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    reference.load_state_dict(model.state_dict())
    inputs, labels = torch.randn(8, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    step = TrainStep(
        model, torch.optim.SGD(model.parameters(), lr=0.5), label_smoothing=0.2, grad_clip=0.1
    )
    loss, logits = step(inputs, labels)

    expected_loss = F.cross_entropy(reference(inputs), labels, label_smoothing=0.2)
    grads = torch.autograd.grad(expected_loss, list(reference.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, 0.1 / (float(norm) + 1e-6))
    assert float(norm) > 0.1  # so the clip really clips
    torch.testing.assert_close(loss, expected_loss.detach())
    for got, start, grad in zip(model.parameters(), reference.parameters(), grads, strict=True):
        torch.testing.assert_close(got.detach(), start.detach() - 0.5 * scale * grad)
    assert step.last_lr == 0.5 and not logits.requires_grad


def test_train_step_refuses_an_unknown_precision():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"Received: precision='fp8'"):
        TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), precision="fp8")
