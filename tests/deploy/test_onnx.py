"""ONNX export, its check against PyTorch, int8, load_export and the model.json schema."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime  # noqa: F401  (the dev extra; cnnlab imports it inside functions)
import onnxscript  # noqa: F401
import pytest
import torch

import cnnlab
import cnnlab.deploy.export as export_module
from cnnlab.deploy import (
    ExportConfig,
    ExportMismatchError,
    export_model,
    is_export_folder,
    load_export,
    read_manifest,
)


@pytest.fixture(scope="module")
def int8_export(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "lenet-int8"
    return export_model(ExportConfig(str(digits_run), int8=True, calibration=128, out=str(out)))


def test_fp32_and_int8_agree_with_pytorch_on_real_images(int8_export, digits_run):
    fp32, int8 = int8_export.verifications
    assert fp32.data == "digits test images"
    assert fp32.passed and fp32.max_abs_logit_diff <= fp32.tolerance
    assert fp32.top1_agreement == 1.0
    assert int8.top1_agreement >= 0.95
    assert int8.eval_images == 360  # digits' whole test split
    assert abs(int8.accuracy_change) <= 0.02  # int8 keeps LeNet-like's accuracy on digits


def test_model_json_describes_the_export(int8_export, digits_run):
    folder = int8_export.folder
    data = json.loads((folder / "model.json").read_text())
    assert data["format"] == "cnnlab-export" and data["version"] == 1
    assert data["runtime"] == "onnx" and data["precision"] == "int8"
    assert data["files"]["fp32"]["file"] == "model.onnx"
    assert data["files"]["int8"]["bytes"] == (folder / "model.int8.onnx").stat().st_size
    assert data["files"]["int8"]["bytes"] < data["files"]["fp32"]["bytes"] / 2
    assert data["input"] == {
        "name": "input",
        "dtype": "float32",
        "shape": [None, 1, 32, 32],
        "batch": "dynamic",
    }
    assert data["preprocessing"]["data_shape"] == [1, 8, 8]
    assert data["preprocessing"]["adapter"]["rule"] == "resize"
    assert data["classes"] == [str(d) for d in range(10)]
    assert data["source"]["kind"] == "run"
    assert data["source"]["path"] == str(digits_run / "checkpoint.pt")
    assert data["exporter"]["onnxruntime"] is not None
    assert read_manifest(folder).data_shape == (1, 8, 8)
    assert is_export_folder(folder) and not is_export_folder(digits_run)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_load_export_predicts_like_the_checkpoint(int8_export, digits_run, precision):
    images = cnnlab.load_dataset("digits").test_images[:64]
    reference = cnnlab.load(digits_run, device="cpu").predict(images)
    exported = load_export(int8_export.folder, precision=precision)
    probabilities = exported.predict(images)
    assert probabilities.shape == (64, 10)
    if precision == "fp32":
        torch.testing.assert_close(probabilities, reference, rtol=1e-4, atol=1e-5)
    else:
        agreement = (probabilities.argmax(1) == reference.argmax(1)).float().mean()
        assert agreement >= 0.9
    assert exported.logits(images).dtype == np.float32


def test_dynamic_batch(int8_export):
    exported = load_export(int8_export.folder, precision="fp32")
    images = cnnlab.load_dataset("digits").test_images
    one = exported.logits(images[:1])
    many = exported.logits(images[:37], batch_size=37)
    np.testing.assert_allclose(many[:1], one, rtol=1e-5, atol=1e-5)


def test_zoo_model_without_data_exports_with_random_images(tmp_path):
    result = export_model(ExportConfig("mlp", out=str(tmp_path / "mlp")))
    (check,) = result.verifications
    assert check.data == "random images" and check.passed
    assert result.manifest.source["kind"] == "zoo"


def test_a_disagreeing_export_is_refused_and_nothing_is_written(digits_run, tmp_path, monkeypatch):
    class Skewed:  # a runtime whose logits are off by 0.1: a broken export
        def __init__(self, backend):
            self.backend = backend

        def run(self, inputs):
            return self.backend.run(inputs) + 0.1

    opened = export_module.open_backend
    monkeypatch.setattr(export_module, "open_backend", lambda *a, **k: Skewed(opened(*a, **k)))
    out = tmp_path / "refused"
    with pytest.raises(ExportMismatchError, match=r"disagrees with PyTorch.*Nothing was written"):
        export_model(ExportConfig(str(digits_run), out=str(out)))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["darknet19", "resnet18"])
def test_large_zoo_models_round_trip_on_small_data(name, tmp_path):
    result = export_model(
        ExportConfig(name, data="digits", out=str(tmp_path / name), verify_images=8)
    )
    assert result.verifications[0].passed
    exported = load_export(result.folder)
    assert exported.predict(cnnlab.load_dataset("digits").test_images[:3]).shape == (3, 10)
