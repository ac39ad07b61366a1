"""The registry's contract: lookup, suggestions for typos, keyword checks, ``model.cnnlab``."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import cnnlab.models
from cnnlab.models import (
    ModelInfo,
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)


def suggestions(message: str) -> list[str]:
    """The names offered after 'Did you mean:' in an unknown-model error."""
    match = re.search(r"Did you mean: ([^?]*)\?", message)
    return match.group(1).split(", ") if match else []


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("lenet", "lenet-like"),
        ("resnet-18", "resnet18"),
        ("vgg-16", "vgg16"),
        ("VGG16", "vgg16"),
        ("darknet", "darknet19"),
        ("lenet5_1998", "lenet5-1998"),
    ],
)
def test_unknown_name_suggests_the_closest_name_first(typo: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"Unknown model: name='{typo}'") as error:
        create_model(typo)
    assert suggestions(str(error.value))[0] == expected


def test_unknown_name_lists_the_whole_registry() -> None:
    with pytest.raises(ValueError) as error:
        create_model("lenet")
    assert "Registered models: " + ", ".join(list_models()) in str(error.value)
    assert suggestions(str(error.value)) == ["lenet-like", "lenet5", "lenet5-1998"]


def test_unrelated_name_gets_no_suggestion() -> None:
    with pytest.raises(ValueError) as error:
        get_model_spec("transformer-xl")
    assert "Did you mean" not in str(error.value)
    assert "Registered models: alexnet" in str(error.value)


def test_list_models_is_sorted_and_filters_by_pattern() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {"lenet5", "lenet5-1998", "lenet-like", "mlp", "darknet19", "googlenet"} <= set(names)
    assert list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert list_models("lenet5*") == ["lenet5", "lenet5-1998"]
    assert list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert list_models("no-such-*") == []


def test_unexpected_keyword_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ValueError) as error:
        create_model("lenet5", width=64)
    message = str(error.value)
    assert "create_model('lenet5'): unexpected argument(s) width" in message
    assert "Accepted: num_classes, in_channels" in message


@pytest.mark.parametrize(("key", "value"), [("num_classes", 0), ("in_channels", "3")])
def test_invalid_standard_keyword_is_rejected(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"Received: {key}={value!r}")):
        create_model("lenet5", **{key: value})


def test_family_keyword_is_validated_by_the_builder() -> None:
    with pytest.raises(ValueError, match=re.escape("Received: width=0")):
        create_model("mlp", width=0)
    with pytest.raises(ValueError, match=re.escape("Received: dropout=1.0")):
        create_model("mlp", dropout=1.0)


def test_overrides_change_the_first_layer_and_the_output() -> None:
    model = create_model("lenet5", num_classes=3, in_channels=3)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_model_carries_its_info() -> None:
    default = create_model("lenet-like")
    assert default.cnnlab == ModelInfo(
        name="lenet-like", kwargs={}, input_shape=(1, 32, 32), num_classes=10
    )
    custom = create_model("resnet18", num_classes=5, in_channels=1)
    assert custom.cnnlab.name == "resnet18"
    assert custom.cnnlab.kwargs == {"num_classes": 5, "in_channels": 1}
    assert custom.cnnlab.input_shape == (1, 224, 224)
    assert custom.cnnlab.num_classes == 5


def test_spec_describes_the_model() -> None:
    spec = get_model_spec("darknet19")
    assert isinstance(spec, ModelSpec)
    assert (spec.input_shape, spec.num_classes) == ((3, 256, 256), 1000)
    assert repr(spec) == "ModelSpec('darknet19', input=3x256x256, classes=1000)"


@pytest.mark.parametrize("name", list_models())
def test_every_model_is_described_and_cited(name: str) -> None:
    spec = get_model_spec(name)
    assert spec.description and spec.reference
    assert len(spec.input_shape) == 3 and spec.num_classes > 1


def test_registering_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="name='lenet5' is already registered"):
        register_model("lenet5", input_shape=(1, 32, 32), num_classes=10, description="dup")(
            lambda num_classes=10, in_channels=1: nn.Identity()
        )


def test_builder_without_in_channels_is_refused() -> None:
    with pytest.raises(TypeError, match="must accept in_channels="):
        register_model("test-incomplete", input_shape=(1, 8, 8), num_classes=2, description="x")(
            lambda num_classes=2: nn.Identity()
        )
    assert "test-incomplete" not in list_models()


def test_package_exports_the_registry_api() -> None:
    assert set(cnnlab.models.__all__) == {
        "register_model",
        "create_model",
        "list_models",
        "get_model_spec",
        "ModelSpec",
        "ModelInfo",
    }
