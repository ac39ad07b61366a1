"""Classical baselines next to CNNs on the same split: the Search Quest's "which model?" question.

    from cnnlab.quest.baselines import BaselinesConfig, run_baselines, plot_baselines
    result = run_baselines(BaselinesConfig("fashion-mnist", limit_train=10_000), print_fn=print)
    plot_baselines(result, "baselines.png")

Classical models (scikit-learn) see the images flattened to C*H*W features scaled to [0, 1]. The
KNN is the slide's best semester score: ``KNeighborsClassifier(algorithm='ball_tree',
n_neighbors=4, weights='distance')`` reached 0.97369 on MNIST (REFERENCE.md section 3).

CNNs go through cnnlab's trainer (``cnnlab.train`` on the same subset, in memory): with
``limit_train`` every model, CNNs included, trains on the very same images, and every model
is scored on the same test images.

The parts: ``baseline_data`` (the split and a board row), ``classical`` (the scikit-learn
models and their time estimates), ``baseline_cnn`` (a CNN through the trainer) and
``baselines_plot`` (the picture); this module holds the config and runs the board.

Before a fit on more than ``2 * PILOT_TRAIN`` samples, each model says how long it is expected
to take: a pilot fit on ``PILOT_TRAIN`` samples (and prediction of ``PILOT_TEST``) extrapolated
by the model's cost law, e.g. ``n**2`` for an RBF SVM; a CNN times a few training steps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.quest.baseline_cnn import run_cnn
from cnnlab.quest.baseline_data import SLIDE_BEST, BaselineRow, BaselineSplit, subsample
from cnnlab.quest.baselines_plot import plot_baselines
from cnnlab.quest.classical import CLASSICAL, run_classical
from cnnlab.runtime.files import default_output_dir
from cnnlab.runtime.threads import torch_threads

PrintFn = Callable[[str], None]
RESULT_FORMAT = "cnnlab-baselines"
JSON_NAME, PNG_NAME = "baselines.json", "baselines.png"
EXCLUDED = (
    "train_seconds is the fit only (for a CNN: the trainer's optimizer steps); predict_seconds "
    "is predicting the whole test set. Both exclude loading and flattening the data, the time "
    "estimates' pilot fits, the CNN's per-epoch evaluations, reports and plots."
)

DEFAULT_MODELS = (*CLASSICAL, "lenet-like")
# Set by run_baselines for each CNN (the rest of its recipe comes from default_config).
CNN_MANAGED = ("model", "data", "data_dir", "seed", "threads", "device", "out")


def valid_models() -> list[str]:
    """The classical names, then the model zoo's."""
    from cnnlab.models import list_models

    return [*CLASSICAL, *list_models()]


@dataclass(frozen=True)
class BaselinesConfig:
    """One leaderboard run; ``cnn_overrides`` are ``TrainConfig`` fields for every CNN."""

    data: str
    models: tuple[str, ...] = DEFAULT_MODELS
    limit_train: int | None = None  # a seeded, stratified subsample of the training set
    limit_test: int | None = None  # the same for the test set
    seed: int = 0
    data_dir: str | None = None
    threads: int | None = None  # torch threads, BLAS threads and scikit-learn's n_jobs
    device: str = "auto"  # for the CNNs
    out: str | None = None  # the output folder; None = runs/baselines-<YYYYmmdd-HHMMSS>
    cnn_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data must be a dataset name. Received: data={self.data!r}")
        models = (self.models,) if isinstance(self.models, str) else self.models
        if not isinstance(models, Sequence) or not models:
            raise ValueError(f"models must name at least one model. Received: models={models!r}")
        object.__setattr__(self, "models", tuple(dict.fromkeys(models)))  # in order, once each
        valid = valid_models()
        for name in self.models:
            if name not in valid:
                from cnnlab.names import closest_names

                close = closest_names(str(name), valid)
                hint = f" Did you mean {' or '.join(close)}?" if close else ""
                raise ValueError(
                    f"models: unknown model {name!r}.{hint} Valid names: "
                    f"{', '.join(CLASSICAL)}, or a zoo model ({', '.join(valid[len(CLASSICAL) :])})"
                )
        for name in ("limit_train", "limit_test", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name} must be a positive integer or None. Received: {value!r}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be > 0. Received: {name}={value!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32). Received: seed={self.seed!r}")
        for name in ("data_dir", "out"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        managed = sorted(set(self.cnn_overrides) & set(CNN_MANAGED))
        if managed:
            raise ValueError(
                f"cnn_overrides: {', '.join(managed)} are set by the baselines run itself "
                f"(use its own fields). Received: cnn_overrides={dict(self.cnn_overrides)!r}"
            )
        for name in self.cnn_models:
            self.train_config(name, "unused")  # the recipe plus overrides must be valid

    @property
    def cnn_models(self) -> tuple[str, ...]:
        return tuple(name for name in self.models if name not in CLASSICAL)

    def train_config(self, model: str, out: str, **extra: Any) -> Any:
        """The trainer's config for CNN ``model``: its recipe, ``cnn_overrides``, this run's."""
        from cnnlab.train import default_config

        settings = {**self.cnn_overrides, **extra}
        return default_config(
            model,
            self.data,
            **settings,
            data_dir=self.data_dir,
            seed=self.seed,
            threads=self.threads,
            device=self.device,
            out=out,
        )


@dataclass(frozen=True)
class BaselinesResult:
    """The board (rows best first), what it was trained on, where the files are."""

    config: BaselinesConfig
    rows: tuple[BaselineRow, ...]
    data: dict[str, Any]  # name, source, classes, features, train/test counts used and total
    context: dict[str, Any]
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)  # "json"/"png" -> path

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self.config)
        config["models"] = list(self.config.models)
        config["cnn_overrides"] = dict(self.config.cnn_overrides)
        return {
            "format": RESULT_FORMAT,
            "version": 1,
            "config": config,
            "data": self.data,
            "rows": [asdict(row) for row in self.rows],
            "reference": SLIDE_BEST,
            "context": self.context,
            "out_dir": str(self.out_dir),
            "files": dict(self.files),
        }

    def __repr__(self) -> str:
        best = self.rows[0]
        return (
            f"BaselinesResult({self.data['name']!r}, {len(self.rows)} models, best={best.name} "
            f"{best.accuracy:.4f}, train={self.data['train_count']:,}, "
            f"test={self.data['test_count']:,})"
        )


def run_baselines(config: BaselinesConfig, *, print_fn: PrintFn | None = None) -> BaselinesResult:
    """Train and score every model of ``config``; write baselines.json and baselines.png."""
    from cnnlab.data import load_dataset
    from cnnlab.runtime.files import write_json

    wall_start = time.perf_counter()
    log = print_fn or (lambda text: None)
    out_dir = _out_dir(config.out)
    dataset = load_dataset(config.data, data_dir=config.data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # after the data: a typo leaves no folder
    train_idx = subsample(dataset.train_labels.numpy(), config.limit_train, config.seed)
    test_idx = subsample(dataset.test_labels.numpy(), config.limit_test, config.seed)
    split = BaselineSplit(
        train_images=dataset.train_images[train_idx],
        train_labels=dataset.train_labels[train_idx],
        test_images=dataset.test_images[test_idx],
        test_labels=dataset.test_labels[test_idx],
        train_total=len(dataset.train_labels),
    )
    c, h, w = dataset.image_shape
    data = {
        "name": config.data,
        "source": dataset.source,
        "classes": list(dataset.classes),
        "image_shape": [c, h, w],
        "features": c * h * w,
        "train_count": len(train_idx),
        "train_total": split.train_total,
        "test_count": len(test_idx),
        "test_total": len(dataset.test_labels),
    }
    log(
        f"{config.data}: {len(train_idx):,} of {split.train_total:,} training and "
        f"{len(test_idx):,} of {data['test_total']:,} test images"
    )
    rows = []
    with torch_threads(config.threads, blas=True):
        for name in config.models:
            if name in CLASSICAL:
                rows.append(
                    run_classical(name, split, seed=config.seed, threads=config.threads, log=log)
                )
            else:
                subset = dataset.subset(train=train_idx, test=test_idx)
                rows.append(run_cnn(name, config, split, subset, out_dir, log))
            row = rows[-1]
            log(
                f"{name}: accuracy {row.accuracy:.4f}, train {row.train_seconds:.1f} s, "
                f"predict {row.predict_seconds:.1f} s"
            )
    rows.sort(key=lambda row: (-row.accuracy, row.train_seconds))
    context = _context(config, time.perf_counter() - wall_start)
    files = {"json": str(out_dir / JSON_NAME), "png": str(out_dir / PNG_NAME)}
    result = BaselinesResult(config, tuple(rows), data, context, out_dir, files)
    plot_baselines(result, out_dir / PNG_NAME)
    write_json(out_dir / JSON_NAME, result.to_dict())
    return result


def _out_dir(out: str | None) -> Path:
    """The output folder (not created yet); an existing one must not hold another board."""
    path = default_output_dir("baselines") if out is None else Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out must be a folder. Received: out={str(path)!r} (an existing file)")
    held = [name for name in (JSON_NAME, "runs") if (path / name).exists()]
    if held:
        raise ValueError(
            f"out={str(path)!r} already holds a baselines run ({', '.join(held)}); "
            "choose another out"
        )
    return path.resolve()


def _context(config: BaselinesConfig, wall_seconds: float) -> dict[str, Any]:
    import sklearn

    from cnnlab.runtime.context import software_context
    from cnnlab.runtime.devices import cpu_name

    return {
        **software_context(),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": config.threads,
        "seed": config.seed,
        "limit_train": config.limit_train,
        "limit_test": config.limit_test,
        "wall_seconds": wall_seconds,
        "excluded": EXCLUDED,
    }
