"""Classical baselines next to CNNs on the same split: the Search Quest's "which model?" question.

    from cnnlab.quest.baselines import BaselinesConfig, run_baselines, plot_baselines
    result = run_baselines(BaselinesConfig("fashion-mnist", limit_train=10_000), print_fn=print)
    plot_baselines(result, "baselines.png")

Classical models (scikit-learn) see the images flattened to C*H*W features scaled to [0, 1]. The
KNN is the slide's best semester score: ``KNeighborsClassifier(algorithm='ball_tree',
n_neighbors=4, weights='distance')`` reached 0.97369 on MNIST (REFERENCE.md section 3).

CNNs go through cnnlab's trainer, which takes a dataset by name, not a subset: with
``limit_train`` a CNN still trains on the whole training set, with its optimizer steps capped at
the recipe's epochs over ``limit_train`` images (the same number of images seen, more of them
distinct); its row says so. Every model, CNNs included, is scored on the same test images.

Before a fit on more than ``2 * PILOT_TRAIN`` samples, each model says how long it is expected
to take: a pilot fit on ``PILOT_TRAIN`` samples (and prediction of ``PILOT_TEST``) extrapolated
by the model's cost law, e.g. ``n**2`` for an RBF SVM; a CNN times a few training steps.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.runtime.files import default_output_dir
from cnnlab.runtime.threads import torch_threads

PrintFn = Callable[[str], None]
RESULT_FORMAT = "cnnlab-baselines"
SLIDE_BEST = {
    "score": 0.97369,
    "data": "mnist",
    "model": "KNeighborsClassifier(algorithm='ball_tree', n_neighbors=4, weights='distance')",
    "note": "the slide's best semester score (Qd MNIST Search Quest II): KNN 0.97369 on MNIST",
}
PILOT_TRAIN, PILOT_TEST = 2_000, 500
CNN_PILOT_STEPS = 12  # the median of the last 6: oneDNN takes a few steps to warm up
JSON_NAME, PNG_NAME = "baselines.json", "baselines.png"
EXCLUDED = (
    "train_seconds is the fit only (for a CNN: the trainer's optimizer steps); predict_seconds "
    "is predicting the whole test set. Both exclude loading and flattening the data, the time "
    "estimates' pilot fits, the CNN's per-epoch evaluations, reports and plots."
)


@dataclass(frozen=True)
class Classical:
    """A scikit-learn model of the board and how its cost grows (for the time estimate)."""

    build: Callable[[int, int | None], Any]  # (seed, threads) -> an unfitted estimator
    fit_power: float  # fit time ~ n_train ** fit_power
    predict_power: float  # predict time ~ n_test * n_train ** predict_power
    law: str  # the cost law, said in the estimate


def _knn(seed: int, threads: int | None) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(
        algorithm="ball_tree", n_neighbors=4, weights="distance", n_jobs=threads or -1
    )


def _forest(seed: int, threads: int | None) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=threads or -1, random_state=seed)


def _svm(seed: int, threads: int | None) -> Any:
    from sklearn.svm import SVC

    return SVC(kernel="rbf", random_state=seed)


def _logistic(seed: int, threads: int | None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=LOGISTIC_MAX_ITER)


def _mlp(seed: int, threads: int | None) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(100,), max_iter=MLP_MAX_ITER, random_state=seed)


# Caps, not tuned values: lbfgs converges within 1,000 iterations on MNIST-like data scaled to
# [0, 1]; the MLP usually stops earlier on its own (10 epochs without a better training loss).
LOGISTIC_MAX_ITER = 1_000
MLP_MAX_ITER = 100

CLASSICAL: dict[str, Classical] = {
    # ball_tree in hundreds of dimensions prunes little: a query costs about a scan of the set
    "knn": Classical(_knn, 1.0, 1.0, "prediction ~ n_train * n_test"),
    "random-forest": Classical(_forest, 1.1, 0.0, "fit ~ n log n"),
    # libsvm's SMO: about n**2 kernel evaluations; the support vectors grow with n
    "svm": Classical(_svm, 2.0, 1.0, "fit ~ n^2, prediction ~ n_train * n_test"),
    "logistic": Classical(_logistic, 1.0, 0.0, "fit ~ n"),
    "sklearn-mlp": Classical(_mlp, 1.0, 0.0, "fit ~ n"),
}
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
class BaselineRow:
    """One model on the board. ``parameters`` is None where a count is not defined (KNN...)."""

    name: str
    kind: str  # "classical" or "cnn"
    accuracy: float
    train_seconds: float
    predict_seconds: float
    parameters: int | None
    notes: str = ""
    expected_seconds: float | None = None  # the estimate said before it started, if any

    def __repr__(self) -> str:
        params = "-" if self.parameters is None else f"{self.parameters:,}"
        return (
            f"BaselineRow({self.name!r}, {self.kind}, accuracy={self.accuracy:.4f}, "
            f"train={self.train_seconds:.2f} s, predict={self.predict_seconds:.2f} s, "
            f"params={params})"
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


def subsample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``limit`` samples, stratified by label (seeded); all when it is None
    or at least the set's size. Falls back to a plain seeded draw when stratifying cannot
    work (fewer samples than classes, or a class with one sample)."""
    from sklearn.model_selection import train_test_split

    count = len(labels)
    if limit is None or limit >= count:
        return np.arange(count)
    indices = np.arange(count)
    try:
        chosen, _ = train_test_split(
            indices, train_size=limit, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError:
        chosen = np.random.default_rng(seed).choice(count, size=limit, replace=False)
    return np.sort(chosen)


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
    split = _Split(
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
                rows.append(_run_classical(name, config, split, log))
            else:
                subset = dataset.subset(train=train_idx, test=test_idx)
                rows.append(_run_cnn(name, config, split, subset, out_dir, log))
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


@dataclass(frozen=True)
class _Split:
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_total: int  # the whole training set's size

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) flattened to (N, C*H*W) float32 in [0, 1]."""
        return tuple(  # type: ignore[return-value]
            images.reshape(len(images), -1).numpy().astype(np.float32) / 255
            for images in (self.train_images, self.test_images)
        )


def _run_classical(name: str, config: BaselinesConfig, split: _Split, log: PrintFn) -> BaselineRow:
    from sklearn.exceptions import ConvergenceWarning

    spec = CLASSICAL[name]
    x_train, x_test = split.features()
    y_train, y_test = split.train_labels.numpy(), split.test_labels.numpy()
    expected = _estimate_classical(name, spec, config, x_train, y_train, x_test, log)
    model = spec.build(config.seed, config.threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.predict(x_test)
    predict_seconds = time.perf_counter() - start
    stopped = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return BaselineRow(
        name=name,
        kind="classical",
        accuracy=float(np.mean(predictions == y_test)),
        train_seconds=train_seconds,
        predict_seconds=predict_seconds,
        parameters=_classical_parameters(model),
        notes=_classical_notes(model, stopped, len(y_train)),
        expected_seconds=expected,
    )


def _classical_parameters(model: Any) -> int | None:
    """Learned numbers: weights and biases of the MLP and the logistic regression; None else."""
    if hasattr(model, "coefs_"):
        return int(sum(w.size for w in model.coefs_) + sum(b.size for b in model.intercepts_))
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        return int(model.coef_.size + model.intercept_.size)
    return None


def _classical_notes(model: Any, stopped: bool, samples: int) -> str:
    params = model.get_params()
    if type(model).__name__ == "KNeighborsClassifier":
        shown = ", ".join(f"{k}={params[k]!r}" for k in ("algorithm", "n_neighbors", "weights"))
        return f"{shown}; stores the {samples:,} training images"
    if type(model).__name__ == "RandomForestClassifier":
        nodes = sum(tree.tree_.node_count for tree in model.estimators_)
        return f"n_estimators={params['n_estimators']}, {nodes:,} tree nodes"
    if type(model).__name__ == "SVC":
        return f"rbf, C={params['C']}, {int(model.n_support_.sum()):,} support vectors; 1 thread"
    iterations = int(np.max(model.n_iter_))
    if type(model).__name__ == "MLPClassifier":
        shape = ", ".join(map(str, params["hidden_layer_sizes"]))
        text = f"hidden ({shape}), adam, {iterations} epochs"
    else:
        text = f"lbfgs, {iterations} iterations"
    return text + (f" (stopped at the max_iter={params['max_iter']} cap)" if stopped else "")


def _estimate_classical(
    name: str,
    spec: Classical,
    config: BaselinesConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    log: PrintFn,
) -> float | None:
    """Seconds expected for fit + predict, from a pilot on PILOT_TRAIN samples; None when the
    training set is too small for a pilot to save anyone any waiting."""
    n, m = len(y_train), len(x_test)
    if n <= 2 * PILOT_TRAIN:
        return None
    pilot = subsample(y_train, PILOT_TRAIN, config.seed)
    queries = x_test[: min(PILOT_TEST, m)]
    model = spec.build(config.seed, config.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(x_train[pilot], y_train[pilot])
        fit = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(queries)
    predict = time.perf_counter() - start
    scale = n / PILOT_TRAIN
    fit *= scale**spec.fit_power
    predict *= (m / len(queries)) * scale**spec.predict_power
    log(
        f"{name}: expected ~{_seconds(fit + predict)} (fit ~{_seconds(fit)} + predict "
        f"~{_seconds(predict)}, extrapolated from a {PILOT_TRAIN:,}-sample fit; {spec.law})"
    )
    return fit + predict


def _run_cnn(
    name: str,
    config: BaselinesConfig,
    split: _Split,
    subset: Any,
    out_dir: Path,
    log: PrintFn,
) -> BaselineRow:
    """Train CNN ``name`` on ``subset``: the very training images the classical models get."""
    from cnnlab.summary import summarize
    from cnnlab.train import train
    from cnnlab.train.predict import load

    run_dir = str(out_dir / "runs" / name)
    recipe = config.train_config(name, run_dir)
    n, total = len(split.train_labels), split.train_total
    seen = (
        f"trained on all {total:,} training images"
        if n == total
        else f"trained on the same {n:,} of {total:,} training images as the classical models"
    )
    notes = f"{seen}; {recipe.optimizer} {recipe.schedule}, batch {recipe.batch_size}"
    expected = _estimate_cnn(name, recipe, split, log)
    log(f"{name}: {seen}")
    trained = train(
        recipe, data=subset, progress=False, print_fn=lambda text: log(f"  {name}: {text}")
    )
    predictor = load(trained.run_dir, device=config.device)
    start = time.perf_counter()
    probabilities = predictor.predict(split.test_images)
    predict_seconds = time.perf_counter() - start
    correct = probabilities.argmax(dim=1) == split.test_labels
    parameters = summarize(name, num_classes=len(predictor.classes)).total_params
    return BaselineRow(
        name=name,
        kind="cnn",
        accuracy=float(correct.double().mean()),
        train_seconds=trained.train_seconds,
        predict_seconds=predict_seconds,
        parameters=int(parameters),
        notes=f"{notes}; run folder {trained.run_dir}",
        expected_seconds=expected,
    )


def _estimate_cnn(name: str, recipe: Any, split: _Split, log: PrintFn) -> float | None:
    """Seconds for the optimizer steps, from timing a few of the trainer's own steps (its
    optimizer, precision and clipping; ``TrainStep``) of the model on random inputs."""
    from cnnlab.models import create_model
    from cnnlab.runtime.devices import resolve_device, synchronize
    from cnnlab.train.recipes import build_optimizer
    from cnnlab.train.step import TrainStep

    device = resolve_device(recipe.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        classes = int(split.train_labels.max()) + 1
        model = create_model(name, num_classes=max(classes, 2))
    channels_last = recipe.channels_last
    if channels_last is None:  # as the trainer decides it
        channels_last = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=layout)
    train_count = len(split.train_labels)
    batch = min(recipe.batch_size, train_count)
    inputs = torch.randn(batch, *model.cnnlab.input_shape, device=device)
    inputs = inputs.contiguous(memory_format=layout)
    labels = torch.zeros(batch, dtype=torch.int64, device=device)
    train_step = TrainStep(
        model,
        build_optimizer(model, recipe),
        precision=recipe.precision,
        label_smoothing=recipe.label_smoothing,
        grad_clip=recipe.grad_clip,
    )
    timings = []
    for _ in range(CNN_PILOT_STEPS):
        start = time.perf_counter()
        train_step(inputs, labels)
        synchronize(device)
        timings.append(time.perf_counter() - start)
    step = float(np.median(timings[CNN_PILOT_STEPS // 2 :]))  # the first steps warm up
    per_epoch = max(1, train_count // batch)
    steps = recipe.epochs * per_epoch if recipe.steps is None else recipe.steps
    expected = step * min(steps, recipe.epochs * per_epoch)
    if expected >= 1:
        log(
            f"{name}: expected ~{_seconds(expected)} of training ({steps:,} steps of "
            f"{1000 * step:.0f} ms, timed on random inputs; the per-epoch evaluations come on top)"
        )
    return expected


def _out_dir(out: str | None) -> Path:
    """The output folder (not created yet); an existing one must not hold another board."""
    path = default_output_dir("baselines") if out is None else Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out must be a folder. Received: out={str(path)!r} (an existing file)")
    held = [name for name in (JSON_NAME, "runs") if (path / name).exists()]
    if held:
        raise ValueError(
            f"out={str(path)!r} already holds a baselines run ({', '.join(held)}); "
            "choose another --out"
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


def _seconds(value: float) -> str:
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min"


def plot_baselines(result: BaselinesResult, path: str | Path) -> Path:
    """Test accuracy against training time (log scale), one labelled point per model."""
    from matplotlib.ticker import FuncFormatter  # lazily, as cnnlab.train.plots does

    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(path)
    figure = new_figure((8.6, 5.4))
    ax = figure.add_subplot()
    colours = {"classical": "tab:blue", "cnn": "tab:red"}
    for kind, colour in colours.items():
        rows = [row for row in result.rows if row.kind == kind]
        if rows:
            ax.scatter(
                [max(row.train_seconds, 1e-3) for row in rows],
                [100 * row.accuracy for row in rows],
                s=60,
                color=colour,
                edgecolor="black",
                linewidth=0.6,
                zorder=3,
                label="CNN (cnnlab trainer)" if kind == "cnn" else "classical (scikit-learn)",
            )
    accuracies = [100 * row.accuracy for row in result.rows]
    low, high = min(accuracies), max(accuracies)
    pad = max(1.0, 0.1 * (high - low))
    y_low, y_high = max(0.0, low - pad), min(100.0, high + pad)
    for row, nudge in zip(result.rows, _label_nudges(result.rows, y_low, y_high), strict=True):
        ax.annotate(
            f"{row.name}\n{100 * row.accuracy:.2f}%, predict {_seconds(row.predict_seconds)}",
            xy=(max(row.train_seconds, 1e-3), 100 * row.accuracy),
            xytext=(7, nudge),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
    if result.data["name"] == SLIDE_BEST["data"]:
        ax.axhline(100 * SLIDE_BEST["score"], color="grey", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            100 * SLIDE_BEST["score"],
            " slide's best semester score: KNN 97.369%",
            transform=ax.get_yaxis_transform(),
            va="bottom",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    seconds = [max(row.train_seconds, 1e-3) for row in result.rows]
    ax.set_xlim(min(seconds) / 2, max(seconds) * 6)  # room for the labels on the right
    ax.set_ylim(y_low, y_high)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    ax.set_xlabel("training time (seconds, log scale)")
    ax.set_ylabel("test accuracy (%)")
    data = result.data
    ax.set_title(
        f"{data['name']}: accuracy against training time\n"
        f"{data['train_count']:,} of {data['train_total']:,} training images, "
        f"{data['test_count']:,} test images, seed {result.config.seed}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8.5)
    return save_png(figure, out)


def _label_nudges(rows, y_low: float, y_high: float, *, height_pt: float = 300.0) -> list[float]:
    """Vertical label offsets (points) so that two-line labels of nearby points do not overlap:
    best first, a label within a decade of training time and 24 pt of a placed one moves below."""
    line_pt = 24.0  # two lines of 8.5-pt text
    placed: list[tuple[float, float]] = []  # (log10 seconds, label centre in points)
    nudges = {}
    for index in sorted(range(len(rows)), key=lambda i: -rows[i].accuracy):
        row = rows[index]
        x = math.log10(max(row.train_seconds, 1e-3))
        y = (100 * row.accuracy - y_low) / max(y_high - y_low, 1e-9) * height_pt
        centre = y
        for other_x, other_centre in sorted(placed, key=lambda p: -p[1]):
            if abs(other_x - x) < 1.0 and abs(other_centre - centre) < line_pt:
                centre = other_centre - line_pt
        placed.append((x, centre))
        nudges[index] = centre - y
    return [nudges[i] for i in range(len(rows))]
