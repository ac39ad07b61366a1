"""evaluate_model against PyTorch computed by hand: accuracy, confusion, loss, probabilities."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.device import InputAdapter, Normalization
from cnnlab.train import EvalResult, evaluate_model

SHAPE = (1, 2, 2)
IDENTITY = Normalization(mean=(0.0,), std=(1.0,))  # model input = pixels / 255


def fixed_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))


def sample(count=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, *SHAPE), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 3, (count,), generator=generator)
    return images, labels


def evaluate(model, images, labels, **kwargs):
    options = {
        "normalization": IDENTITY,
        "adapter": InputAdapter(SHAPE, SHAPE),
        "device": "cpu",
        "num_classes": 3,
    }
    return evaluate_model(model, images, labels, **{**options, **kwargs})


def test_matches_pytorch_by_hand():
    model, (images, labels) = fixed_model(), sample()
    result = evaluate(model, images, labels, probabilities=True)
    model.eval()
    with torch.no_grad():
        logits = model(images.float() / 255)
    predicted = logits.argmax(dim=1)
    assert isinstance(result, EvalResult)
    assert np.array_equal(result.predictions, predicted.numpy())
    assert result.accuracy == pytest.approx((predicted == labels).float().mean().item())
    assert result.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    expected = np.zeros((3, 3), dtype=np.int64)
    for true, guess in zip(labels.tolist(), predicted.tolist(), strict=True):
        expected[true, guess] += 1
    assert np.array_equal(result.confusion, expected)  # rows = true class
    per_class = np.diag(expected) / expected.sum(axis=1)
    np.testing.assert_allclose(result.per_class_accuracy, per_class)
    np.testing.assert_allclose(result.probabilities, logits.softmax(dim=1).numpy(), rtol=1e-5)
    assert result.samples == 50
    assert "accuracy=" in repr(result)


def test_batches_do_not_change_the_result():
    model, (images, labels) = fixed_model(), sample(count=37)
    whole = evaluate(model, images, labels)
    pieces = evaluate(model, images, labels, batch_size=5)
    assert np.array_equal(whole.confusion, pieces.confusion)
    assert whole.loss == pytest.approx(pieces.loss, rel=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_the_mode_is_restored(training):
    model = fixed_model().train(training)
    evaluate(model, *sample())
    assert model.training is training
    assert all(module.training is training for module in model.modules())


def test_a_class_without_samples_has_no_accuracy():
    model, (images, _) = fixed_model(), sample(count=6)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    result = evaluate(model, images, labels)
    assert np.isnan(result.per_class_accuracy[2])
    assert result.confusion.sum() == 6 and result.confusion[2].sum() == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": torch.zeros(4, *SHAPE)}, "images_uint8 must be a uint8 tensor"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, "labels must have shape (4,)"),
        ({"labels": torch.tensor([0, 1, 2, 3])}, "labels must lie in [0, 3)"),
        ({"batch_size": 0}, "batch_size must be a positive integer. Received: batch_size=0"),
        ({"precision": "int8"}, "precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_input_is_named(change, message):
    images, labels = sample(count=4)
    images, labels = change.pop("images", images), change.pop("labels", labels)
    with pytest.raises(ValueError) as caught:
        evaluate(fixed_model(), images, labels, **change)
    assert message in str(caught.value)
