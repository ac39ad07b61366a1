"""cnnlab: a workbench for convolutional neural networks and the hardware that runs them.

The public API, re-exported from the subpackages:

- models: ``create_model``, ``list_models``, ``register_model``, ``get_model_spec``
- summaries: ``summary`` (of any module), ``summarize`` (of a zoo model by name),
  ``format_keras``, ``format_darknet``
- first principles: ``cnnlab.ops`` (``conv2d``, ``pool2d``, ``explain_conv``, ...)
"""

from cnnlab import ops
from cnnlab.models import create_model, get_model_spec, list_models, register_model
from cnnlab.summary import ModelSummary, format_darknet, format_keras, summarize, summary

__version__ = "0.1.0"

__all__ = [
    "ModelSummary",
    "__version__",
    "create_model",
    "format_darknet",
    "format_keras",
    "get_model_spec",
    "list_models",
    "ops",
    "register_model",
    "summarize",
    "summary",
]
