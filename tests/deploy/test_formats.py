"""OpenVINO and TFLite exports of a trained LeNet-like: checked, loadable, int8 within a point or
two of PyTorch on digits, and each format's file and tensor description in model.json."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.deploy import ExportConfig, export_model, load_export

NEEDS = {"openvino": ("openvino", "nncf"), "tflite": ("litert_torch", "ai_edge_litert")}


@pytest.fixture(scope="module", params=["openvino", "tflite"])
def exported(request, digits_run, tmp_path_factory):
    for module in NEEDS[request.param]:  # `make test` installs both (the dev extra, litert)
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is missing: `make test` installs it", pytrace=False)
    out = tmp_path_factory.mktemp("formats") / request.param
    config = ExportConfig(str(digits_run), format=request.param, int8=True, calibration=64)
    return export_model(ExportConfig(**{**config.__dict__, "out": str(out), "verify_images": 64}))


@pytest.mark.slow
def test_checked_against_pytorch(exported):
    fp32, int8 = exported.verifications
    assert fp32.passed and fp32.top1_agreement == 1.0
    assert int8.top1_agreement >= 0.9
    assert abs(int8.accuracy_change) <= 0.02


@pytest.mark.slow
def test_runs_like_the_checkpoint(exported, digits_run):
    images = cnnlab.load_dataset("digits").test_images[:5]  # 5: not a multiple of a fixed batch
    reference = cnnlab.load(digits_run, device="cpu").predict(images)
    ours = load_export(exported.folder, precision="fp32").predict(images)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert load_export(exported.folder).predict(images).shape == (5, 10)


@pytest.mark.slow
def test_model_json_per_format(exported):
    data = json.loads((exported.folder / "model.json").read_text())
    if data["runtime"] == "openvino":
        assert data["files"]["fp32"]["file"] == "model.xml"
        size = sum((exported.folder / n).stat().st_size for n in ("model.xml", "model.bin"))
        assert data["files"]["fp32"]["bytes"] == size  # the weights beside the .xml count
        assert data["input"]["batch"] == "dynamic"
    else:
        assert data["input"]["batch"] == 1
        assert data["input"]["dtype"] == "int8"  # full int8: the Edge TPU's requirement
        assert data["output"]["dtype"] == "int8"
        assert data["input"]["scale"] > 0
        assert np.iinfo(np.int8).min <= data["input"]["zero_point"] <= np.iinfo(np.int8).max
