"""Training: ``train(config)``, ``resume(run_dir)``, ``evaluate_model``, recipes and checkpoints.

A run writes one folder: ``checkpoint.pt`` (every epoch, atomically), ``metrics.jsonl`` (one
line per epoch), ``report.json`` and the plots at the end.
"""

from cnnlab.callable_module import make_callable
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.config import TrainConfig
from cnnlab.train.evaluate import EvalResult, evaluate_model
from cnnlab.train.loop import resume, train
from cnnlab.train.recipes import default_config
from cnnlab.train.result import TrainingDiverged, TrainingInterrupted, TrainResult
from cnnlab.train.step import TrainStep

__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "TrainingDiverged",
    "TrainingInterrupted",
    "default_config",
    "evaluate_model",
    "load_checkpoint",
    "resume",
    "train",
]

make_callable(__name__, "train")  # cnnlab.train(config) is cnnlab.train.train(config)
