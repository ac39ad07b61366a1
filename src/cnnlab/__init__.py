"""cnnlab: a workbench for convolutional neural networks and the hardware that runs them.

The public API:

- models: ``create_model``, ``list_models``, ``register_model``, ``get_model_spec``
- summaries: ``summary(model)`` (any module), ``summarize(name)`` (a zoo model),
  ``format_keras``, ``format_darknet``
- data: ``load_dataset``
- training: ``train(TrainConfig(...))``, ``resume(run_dir)``, ``load(path)`` (a trained model,
  ready to predict)
- first principles: ``cnnlab.ops`` (``conv2d``, ``pool2d``, ``explain_conv``, ...)

``cnnlab.summary`` and ``cnnlab.train`` are modules that can be called like their functions.
"""

from typing import TYPE_CHECKING

from cnnlab.runtime.lazy import lazy_exports
from cnnlab.runtime.version import __version__

if TYPE_CHECKING:
    from cnnlab import ops, summary, train
    from cnnlab.data import load_dataset
    from cnnlab.models import create_model, get_model_spec, list_models, register_model
    from cnnlab.summary import ModelSummary, format_darknet, format_keras, summarize
    from cnnlab.train import TrainConfig, TrainResult, resume
    from cnnlab.train.predict import Predictor, load

# Imported on first use: `import cnnlab.quest.server` (a leaderboard worker) never needs torch.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ops": "cnnlab.ops",
        "summary": "cnnlab.summary",
        "train": "cnnlab.train",
        "load_dataset": "cnnlab.data",
        "create_model": "cnnlab.models",
        "get_model_spec": "cnnlab.models",
        "list_models": "cnnlab.models",
        "register_model": "cnnlab.models",
        "ModelSummary": "cnnlab.summary",
        "format_darknet": "cnnlab.summary",
        "format_keras": "cnnlab.summary",
        "summarize": "cnnlab.summary",
        "TrainConfig": "cnnlab.train",
        "TrainResult": "cnnlab.train",
        "resume": "cnnlab.train",
        "Predictor": "cnnlab.train.predict",
        "load": "cnnlab.train.predict",
    },
)

__all__ = [
    "ModelSummary",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "create_model",
    "format_darknet",
    "format_keras",
    "get_model_spec",
    "list_models",
    "load",
    "load_dataset",
    "ops",
    "register_model",
    "resume",
    "summarize",
    "summary",
    "train",
]
