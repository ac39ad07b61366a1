"""Conversion both ways: Darknet files -> cnnlab run folder (``import``) and cnnlab model ->
Darknet files (``export``), checked bit for bit through cnnlab's reader and against OpenCV DNN
and Debian's darknet binary as independent readers of the exported files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import cnnlab
from cnnlab.cli import app
from cnnlab.darknet import (
    build_network,
    load_weights,
    plan_network,
    randomize_weights,
    save_weights,
)
from cnnlab.darknet.cfg import adapt_cfg, format_cfg, parse_cfg
from cnnlab.darknet.classify import classify, read_names
from cnnlab.darknet.convert import export_darknet, import_darknet
from cnnlab.darknet.sequential import NotExportableError, export_sequential
from cnnlab.models import create_model

from .conftest import CFG_DIR, DATA_DIR, SMALL_CLASSIFIER, needs_darknet_binary, needs_darknet_cfgs
from .test_classify import darknet_top

runner = CliRunner()


def small_weights(small_cfg, tmp_path):
    model = randomize_weights(build_network(small_cfg), seed=3)
    return save_weights(model, tmp_path / "small.weights")


def randomized(name: str, seed: int = 0) -> nn.Module:
    """A zoo model with random batch-norm statistics (a fresh one has mean 0, variance 1)."""
    torch.manual_seed(seed)
    model = create_model(name).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return model


# --- import -------------------------------------------------------------------------------------


def test_import_makes_a_run_folder_that_cnnlab_load_predicts_like_darknet(
    small_cfg, ten_names, tmp_path
):
    weights = small_weights(small_cfg, tmp_path)
    result = import_darknet(small_cfg, weights, tmp_path / "run", names=ten_names)
    assert result.weights.complete and result.input_shape == (3, 32, 32)
    predictor = cnnlab.load(result.run_dir, device="cpu")
    assert predictor.model_name == "darknetcfg"
    assert predictor.classes == tuple(read_names(ten_names))
    reference = build_network(small_cfg).eval()
    load_weights(reference, weights)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = reference(images.float() / 255)  # Darknet's input: RGB in [0, 1]
    torch.testing.assert_close(predictor.predict(images), expected, rtol=1e-5, atol=1e-6)
    summary = cnnlab.summary(predictor.model)
    assert summary.input_shape == (3, 32, 32) and summary.num_classes == 10


def test_import_then_export_gives_back_the_same_bytes(small_cfg, ten_names, tmp_path):
    weights = small_weights(small_cfg, tmp_path)
    run = import_darknet(small_cfg, weights, tmp_path / "run", names=ten_names).run_dir
    exported = export_darknet(run, tmp_path / "back")
    assert exported.weights.read_bytes() == weights.read_bytes()
    assert exported.names.read_text().splitlines() == read_names(ten_names)
    assert exported.max_difference == 0
    again = plan_network(exported.cfg)
    original = plan_network(small_cfg)
    assert [(p.kind, p.output_shape) for p in again.layers] == [
        (p.kind, p.output_shape) for p in original.layers
    ]


def test_import_refuses_too_few_names_and_detectors(small_cfg, tmp_path):
    weights = small_weights(small_cfg, tmp_path)
    names = tmp_path / "three.names"
    names.write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match=r"names has 3 class names .* expected at least 10"):
        import_darknet(small_cfg, weights, tmp_path / "run", names=names)
    detector = tmp_path / "detector.cfg"
    detector.write_text(SMALL_CLASSIFIER.split("[connected]")[0])
    with pytest.raises(ValueError, match=r"cfg must describe a classifier .* \[dropout\]"):
        import_darknet(detector, weights, tmp_path / "run2")


def test_darknetcfg_takes_its_shape_from_the_cfg_and_resizes_the_classifier():
    text = SMALL_CLASSIFIER.replace("height=32", "height=24")
    model = create_model("darknetcfg", cfg=text, num_classes=4, in_channels=1)
    assert model.cnnlab.input_shape == (1, 24, 32) and model.cnnlab.num_classes == 4
    assert model(torch.rand(2, 1, 24, 32)).shape == (2, 4)
    edited = adapt_cfg(parse_cfg(text), classes=4)
    assert "output=4" in format_cfg(edited) and "output=10" not in format_cfg(edited)


def test_format_cfg_reads_back_to_the_same_options():
    cfg = parse_cfg(SMALL_CLASSIFIER)
    again = parse_cfg(format_cfg(cfg))
    for a, b in zip((cfg.net, *cfg.layers), (again.net, *again.layers), strict=True):
        assert a.kind == b.kind
        assert {k: o.value for k, o in a.options.items()} == {
            k: o.value for k, o in b.options.items()
        }


# --- export of zoo models -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lenet-like",
        "lenet5",
        "mlp",
        pytest.param("darknet19", marks=pytest.mark.slow),
        pytest.param("alexnet", marks=pytest.mark.slow),
    ],
)
def test_zoo_export_reads_back_equal(name, tmp_path):
    model = randomized(name)
    text, darknet = export_sequential(model, model.cnnlab.input_shape)
    path = tmp_path / "model.weights"
    save_weights(darknet, path)
    again = build_network(parse_cfg(text)).eval()
    load_weights(again, path, allow_truncated=False)
    save_weights(again, tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == path.read_bytes()
    x = torch.rand(2, *model.cnnlab.input_shape)
    with torch.no_grad():
        logits = model(x)
        last = len(again.layers) - 2  # the layer before the final softmax
        theirs = again.forward_layers(x, (last,))[last].flatten(1)
    scale = float(logits.abs().max())
    torch.testing.assert_close(theirs, logits, rtol=1e-4, atol=1e-5 * scale)


def test_average_pooling_becomes_a_depthwise_convolution():
    model = create_model("lenet-like")
    text, _ = export_sequential(model, model.cnnlab.input_shape)
    assert "[avgpool]" not in text
    assert "filters=6\nsize=2\nstride=2\npadding=0\ngroups=6\nactivation=linear" in text


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("resnet18", r"its residual blocks .* \[shortcut\] could express"),
        ("googlenet", r"its Inception blocks .* \[route\] could express"),
        ("lenet5-1998", r"LeCun's 1.7159 \* tanh\(2/3 x\) is not one of Darknet's activations"),
    ],
)
def test_models_darknet_cannot_express_are_refused_with_the_reason(name, reason, tmp_path):
    with pytest.raises(NotExportableError, match=f"{name} cannot be exported to Darknet: {reason}"):
        export_darknet(name, tmp_path / "out")
    assert not (tmp_path / "out" / "model.weights").exists()


def test_maxpool_padding_and_ceil_mode_follow_pytorch():
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(2, 2, ceil_mode=True)
    ).eval()
    _, darknet = export_sequential(model, (2, 12, 13))
    x = torch.randn(1, 2, 12, 13)
    with torch.no_grad():
        torch.testing.assert_close(darknet.forward_layers(x, (2,))[2], model(x))


# --- the exported files in OpenCV DNN and Debian's darknet --------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lenet-like",
        "lenet5",
        "mlp",
        pytest.param("darknet19", marks=pytest.mark.slow),
        pytest.param("alexnet", marks=pytest.mark.slow),
    ],
)
def test_opencv_reads_the_export_as_the_cnnlab_model(name, tmp_path):
    import cv2  # the dev extra; the module's other tests run without it

    model = randomized(name)
    text, darknet = export_sequential(model, model.cnnlab.input_shape)
    (tmp_path / "model.cfg").write_text(text)
    save_weights(darknet, tmp_path / "model.weights")
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "model.cfg"), str(tmp_path / "model.weights"))
    x = np.random.default_rng(0).random((1, *model.cnnlab.input_shape), dtype=np.float32)
    net.setInput(x)
    theirs = net.forward().reshape(1, -1)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).softmax(dim=1).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * ours.max())


@pytest.mark.slow
@needs_darknet_binary
def test_darknet_binary_classifies_the_exported_darknet19_as_cnnlab(tmp_path):
    model = randomized("darknet19", seed=2)
    text, darknet = export_sequential(model, model.cnnlab.input_shape)
    cfg = tmp_path / "model.cfg"
    cfg.write_text(text)
    weights = save_weights(darknet, tmp_path / "model.weights")
    names = DATA_DIR / "imagenet.shortnames.list"
    (ours,) = classify(darknet, [DATA_DIR / "dog.jpg"], read_names(names)[:1000])
    assert ours.lines()[1:] == darknet_top(cfg, weights, names, DATA_DIR / "dog.jpg")


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_import_predict_export(small_cfg, ten_names, tmp_path):
    weights = small_weights(small_cfg, tmp_path)
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["darknet", "import", str(small_cfg), str(weights), "--out", str(run), "--json",
              "--names", str(ten_names)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["classes"] == 10
    result = runner.invoke(app, ["predict", str(run), str(DATA_DIR / "dog.jpg"), "--top", "2"])
    assert result.exit_code == 0 and "Predicted in" in result.output
    result = runner.invoke(app, ["darknet", "export", str(run), "--out", str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    assert "max logit difference to darknetcfg 0.00e+00" in result.output
    result = runner.invoke(app, ["darknet", "export", "resnet18", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "residual blocks" in result.output


@needs_darknet_cfgs
def test_debian_darknet19_cfg_imports(tmp_path):
    model = create_model("darknetcfg", cfg=(CFG_DIR / "darknet19.cfg").read_text())
    assert model.cnnlab.input_shape == (3, 256, 256) and model.cnnlab.num_classes == 1000


def test_darknetcfg_and_conversion_import_without_opencv():
    code = (
        "import sys, cnnlab, cnnlab.darknet.convert; cnnlab.create_model('darknetcfg'); "
        "assert 'cv2' not in sys.modules, 'cv2 was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
