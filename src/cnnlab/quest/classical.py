"""The classical models of the baselines board (scikit-learn) and how long each will take.

Each model sees the images flattened to C*H*W features scaled to [0, 1]. The KNN is the
slide's best semester score. Before a fit on more than ``2 * PILOT_TRAIN`` samples, a model
says how long it is expected to take: a pilot fit on ``PILOT_TRAIN`` samples (and prediction of
``PILOT_TEST``) extrapolated by its cost law, e.g. ``n**2`` for an RBF SVM.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.quest.baseline_data import BaselineRow, BaselineSplit, subsample
from cnnlab.runtime.formatting import format_duration

PrintFn = Callable[[str], None]
PILOT_TRAIN, PILOT_TEST = 2_000, 500


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


def run_classical(
    name: str, split: BaselineSplit, *, seed: int, threads: int | None, log: PrintFn
) -> BaselineRow:
    """Fit classical model ``name`` on the split's training images, score it on its test set."""
    from sklearn.exceptions import ConvergenceWarning

    spec = CLASSICAL[name]
    x_train, x_test = split.features()
    y_train, y_test = split.train_labels.numpy(), split.test_labels.numpy()
    expected = _estimate_classical(name, spec, seed, threads, x_train, y_train, x_test, log)
    model = spec.build(seed, threads)
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
    seed: int,
    threads: int | None,
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
    pilot = subsample(y_train, PILOT_TRAIN, seed)
    queries = x_test[: min(PILOT_TEST, m)]
    model = spec.build(seed, threads)
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
        f"{name}: expected ~{format_duration(fit + predict)} (fit ~{format_duration(fit)} + "
        f"predict ~{format_duration(predict)}, extrapolated from a {PILOT_TRAIN:,}-sample "
        f"fit; {spec.law})"
    )
    return fit + predict
