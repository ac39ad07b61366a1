"""The optional packages behind each export format, imported only when a format is used.

``import cnnlab`` and the core work without them; asking for a format whose package is missing
raises ``MissingExtraError`` naming the package and the extra that brings it.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib import metadata
from types import ModuleType

EXTRA_HINT = "pip install 'cnnlab[deploy]'"

# format or tool -> (module to import, distribution on PyPI)
PACKAGES: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "onnx"),
    "onnxscript": ("onnxscript", "onnxscript"),
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "nncf"),
    "litert-torch": ("litert_torch", "litert-torch"),
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
}


class MissingExtraError(ImportError, ValueError):
    """An optional package a format needs is not installed.

    Also a ``ValueError``: for the command line it is bad input (a format this installation
    cannot serve), printed as one line like every other.
    """


def require(package: str, purpose: str) -> ModuleType:
    """Import ``package`` (a key of ``PACKAGES``) or say which extra installs it."""
    module, distribution = PACKAGES[package]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs the package {distribution!r}, which is not installed "
            f"({error}): install the deploy extra, {EXTRA_HINT}"
        ) from None


def available(package: str) -> bool:
    """Whether ``package`` (a key of ``PACKAGES``) can be imported, without importing it."""
    module = PACKAGES[package][0].split(".")[0]
    return importlib.util.find_spec(module) is not None


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of the given distributions (None when absent), for model.json."""
    found: dict[str, str | None] = {}
    for package in packages:
        distribution = PACKAGES[package][1] if package in PACKAGES else package
        try:
            found[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[distribution] = None
    return found
