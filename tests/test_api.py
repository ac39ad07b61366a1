"""The public API as the README shows it: cnnlab.summary, cnnlab.train(config), cnnlab.load."""

import importlib

import torch

import cnnlab
from cnnlab.train import default_config


def test_summary_and_train_are_callable_modules():
    summary_module = importlib.import_module("cnnlab.summary")
    assert cnnlab.summary is summary_module
    assert cnnlab.summary(cnnlab.create_model("lenet-like")).total_params == 81_194
    assert cnnlab.train is importlib.import_module("cnnlab.train")
    assert cnnlab.TrainConfig is cnnlab.train.TrainConfig


def test_train_then_load_and_predict(tmp_path):
    config = default_config(
        "lenet-like", "digits", epochs=3, batch_size=128, threads=1, out=str(tmp_path / "run")
    )
    result = cnnlab.train(config, progress=False)
    assert result.test_accuracy > 0.8  # chance is 0.1
    predictor = cnnlab.load(result.run_dir)
    data = cnnlab.load_dataset("digits")
    probabilities = predictor.predict(data.test_images)
    assert probabilities.shape == (len(data.test_labels), 10)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(len(data.test_labels)))
    accuracy = (probabilities.argmax(dim=1) == data.test_labels).float().mean().item()
    assert abs(accuracy - result.test_accuracy) < 1e-6
