"""A package's public names, imported on first use (PEP 562), so that importing one light module
of cnnlab (the quest server's, say) does not import torch through the packages above it.

    __getattr__, __dir__ = lazy_exports(__name__, {"load_dataset": "cnnlab.data.dataset", ...})

A static checker reads the same names from an ``if TYPE_CHECKING:`` block of ordinary imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each public name to the
    module that defines it (a name equal to its module's last part is that submodule)."""

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name)
        # Not cached in the package: a name keeps following its module (a patched function too).
        return module if module_name == f"{package}.{name}" else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return __getattr__, __dir__
