"""Let ``cnnlab.train(config)`` and ``cnnlab.summary(model)`` call the function of the same name
while ``cnnlab.train`` and ``cnnlab.summary`` stay importable modules.

Re-exporting a function under its own module's name would shadow the module attribute
(``import cnnlab.summary as s`` would then give the function, and patching
``cnnlab.summary.summarize`` would break); making the module callable avoids both.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def make_callable(module_name: str, function_name: str) -> None:
    """Calling the module ``module_name`` calls its attribute ``function_name``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function_name)(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
