"""The model zoo: ``create_model(name)`` builds a registered network, ``list_models()`` names them.

Each family module registers its builders when imported, so each is imported here by name.
"""

from cnnlab.models import (  # noqa: F401
    alexnet,
    darknet,
    darknet_cfg,
    detectors,
    googlenet,
    lenet,
    mlp,
    resnet,
    vgg,
)
from cnnlab.models.registry import (
    ModelInfo,
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_model",
]
