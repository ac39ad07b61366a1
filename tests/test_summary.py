"""Summaries against the lecture's numbers (REFERENCE.md section 2) and hand-computed counts."""

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, list_models
from cnnlab.summary import LayerKind, format_darknet, format_keras, summarize, summary

GOLDEN = Path(__file__).parent / "golden"

# The slide's Keras model.summary() of the LeNet-like model: (output shape, params) per row.
LENET_LIKE_SLIDE = [
    ("(None, 30, 30, 6)", 60),
    ("(None, 15, 15, 6)", 0),
    ("(None, 13, 13, 16)", 880),
    ("(None, 6, 6, 16)", 0),
    ("(None, 576)", 0),
    ("(None, 120)", 69240),
    ("(None, 84)", 10164),
    ("(None, 10)", 850),
]


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME; CNNLAB_REGEN_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("CNNLAB_REGEN_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_lenet_like_matches_the_slide_row_for_row():
    result = summarize("lenet-like")
    text = format_keras(result)
    rows = [line for line in text.splitlines() if line.startswith(" ") and "(None" in line]
    assert len(rows) == len(LENET_LIKE_SLIDE)
    for row, (shape, params) in zip(rows, LENET_LIKE_SLIDE, strict=True):
        assert shape in row
        assert row.rstrip().endswith(f" {params}")
    assert [r.split()[1] for r in rows] == [
        "(Conv2D)",
        "(AveragePooling2D)",
        "(Conv2D)",
        "(AveragePooling2D)",
        "(Flatten)",
        "(Dense)",
        "(Dense)",
        "(Dense)",
    ]
    for line in ("Total params: 81,194", "Trainable params: 81,194", "Non-trainable params: 0"):
        assert line in text.splitlines()
    check_golden("lenet-like.keras.txt", text)


def test_lenet_like_flops_by_hand():
    result = summarize("lenet-like")
    conv1 = 2 * 6 * 3 * 3 * 1 * 30 * 30  # FLOPs = 2 x MACs, per output element k*k*c_in MACs
    conv2 = 2 * 16 * 3 * 3 * 6 * 13 * 13
    dense = 2 * (576 * 120 + 120 * 84 + 84 * 10)
    assert result.forward_flops == conv1 + conv2 + dense == 549_312
    # Backward: grad wrt weights and wrt inputs, each as much as the forward pass, except
    # that nothing needs the gradient of the input image (the first conv has weight grads only).
    assert result.training_flops == 3 * result.forward_flops - conv1 == 1_550_736
    assert [layer.flops for layer in result.layers] == [
        conv1,
        0,
        conv2,
        0,
        0,
        138_240,
        20_160,
        1680,
    ]
    assert [layer.activation for layer in result.layers if layer.kind is LayerKind.DENSE] == [
        "relu",
        "relu",
        None,
    ]


def test_mlp_matches_the_hardware_slide():
    result = summarize("mlp")
    dense = [layer.params for layer in result.layers if layer.kind is LayerKind.DENSE]
    assert dense == [3_215_360, 16_781_312, 40_970]
    assert result.total_params == 20_037_642
    assert [layer.kind for layer in result.layers].count(LayerKind.DROPOUT) == 2


def test_darknet19_matches_darknets_printout():
    result = summarize("darknet19")
    text = format_darknet(result)
    golden = (GOLDEN / "darknet19.darknet.txt").read_text().splitlines()
    assert text.splitlines()[1:] == golden
    assert round(result.forward_flops / 1e9, 2) == 7.29


def test_darknet19_parameter_totals():
    result = summarize("darknet19")
    assert result.trainable_params == 20_842_376
    assert result.non_trainable_params == 14_400  # BN running mean and variance
    assert result.total_params == 20_856_776  # the floats in Darknet's .weights file
    text = format_keras(result)
    assert "Total params: 20,856,776" in text
    assert "Non-trainable params: 14,400" in text


@pytest.mark.parametrize("name", list_models())
def test_rows_add_up_to_the_totals(name):
    result = summarize(name)
    assert sum(layer.params for layer in result.layers) == result.total_params
    assert sum(layer.flops for layer in result.layers) == result.forward_flops
    assert result.training_flops > 2 * result.forward_flops
    with torch.device("meta"):
        detector = create_model(name).cnnlab.output == "detections"
    if detector:  # a YOLO head's raw map: (anchors * (5 + classes), H, W)
        assert result.layers[-1].output_shape[-3] % (5 + result.num_classes) == 0
    else:
        assert result.layers[-1].output_shape[-1] == result.num_classes


def test_summary_of_a_real_model_equals_meta_and_leaves_it_untouched():
    torch.manual_seed(0)
    model = create_model("lenet-like")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    real = summary(model)
    assert real == summarize("lenet-like")
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_batchnorm_running_statistics_are_non_trainable():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    result = summary(model, (3, 8, 8))
    assert [layer.kind for layer in result.layers] == [LayerKind.CONV, LayerKind.NORM]
    assert result.layers[1].trainable_params == 16
    assert result.layers[1].non_trainable_params == 16
    assert result.layers[1].activation == "relu"


def test_frozen_parameters_are_non_trainable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 5))  # Linear(2, 5): 2*5 + 5 = 15
    model[1].weight.requires_grad_(False)
    result = summary(model, (2,))
    assert (result.trainable_params, result.non_trainable_params) == (5, 10)


def test_an_activation_after_a_residual_add_is_its_own_row():
    result = summarize("resnet18")
    paths = [layer.path for layer in result.layers if layer.kind is LayerKind.ACTIVATION]
    assert len(paths) == 8  # one ReLU after each of the 8 residual additions
    assert result.trainable_params == 11_689_512


def test_darknet_style_works_for_a_lenet():
    text = format_darknet(summarize("lenet-like"))
    lines = text.splitlines()
    assert lines[0].endswith("MFLOPs")
    assert lines[1].split()[:3] == ["0", "conv", "6"]
    assert lines[-2].split() == ["7", "softmax", "10"]
    assert lines[-1] == "    total 0.55 MFLOPs"


def test_input_too_small_names_the_first_empty_layer():
    with pytest.raises(ValueError) as caught:
        summarize("darknet19", (3, 16, 16))
    message = str(caught.value)
    assert "input_size=(3, 16, 16)" in message
    assert "too small for darknet19" in message
    assert "MaxPool2d 2x2/2" in message
    assert "1x1 input" in message


@pytest.mark.parametrize("bad", [(3, 0, 32), (), "abc", (3, -1, 4), (3.5, 32, 32)])
def test_bad_input_size_is_named(bad):
    with pytest.raises(ValueError, match=r"input_size must be a sequence of positive integers"):
        summarize("lenet-like", bad)


def test_input_size_is_required_for_plain_modules():
    with pytest.raises(ValueError, match=r"input_size is required .* Received: input_size=None"):
        summary(nn.Sequential(nn.Linear(2, 2)))


def test_a_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"lenet-like cannot run at input_size=\(3, 32, 32\)"):
        summarize("lenet-like", (3, 32, 32))


def test_to_dict_is_json_ready():
    import json

    data = summarize("lenet-like").to_dict()
    assert json.loads(json.dumps(data))["total_params"] == 81_194
    assert data["layers"][0]["kind"] == "conv"
    assert data["layers"][0]["output_shape"] == (6, 30, 30)
