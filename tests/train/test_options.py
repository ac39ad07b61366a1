"""Every training option does what it promises inside a real ``train()`` run.

Each test trains through the public loop and compares with a closed form (learning-rate
schedules, weight decay, momentum) or with a reference computed here by autograd from the
run's own initial weights and batch (clipping, label smoothing), so an option that the loop
silently ignores fails a test. ``tests/mutations/run.py`` checks exactly that: it disables each
option inside torch and expects this file to fail.

Most runs use a synthetic training set of one batch: every step sees the same images (in a
shuffled order, which a batch-mean loss and its gradient do not depend on), so the reference
needs only the initial weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.module import register_module_forward_hook

import cnnlab
import cnnlab.train.loop as loop
import cnnlab.train.report as report
from cnnlab.data import Dataset
from cnnlab.data.device import preprocess
from cnnlab.train import TrainConfig, TrainResult, default_config, load_checkpoint, train

BATCH = 16  # the whole synthetic training set: one step per epoch
CLASSES = 4
Weights = dict[str, torch.Tensor]


def synthetic_dataset() -> Dataset:
    """Random 8x8 grey images (resized to LeNet's 32x32 by the loop), four classes."""
    generator = torch.Generator().manual_seed(0)
    shape = (2 * BATCH, 1, 8, 8)
    images = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    labels = torch.arange(2 * BATCH) % CLASSES
    return Dataset(
        name="synthetic",
        classes=tuple(str(i) for i in range(CLASSES)),
        train_images=images[:BATCH],
        train_labels=labels[:BATCH],
        test_images=images[BATCH:],
        test_labels=labels[BATCH:],
        source="test",
        flip_ok=False,
    )


def quick_runs(patch: pytest.MonkeyPatch) -> None:
    """No plots (seconds per run); the name "synthetic" loads the dataset above."""
    load_dataset = loop.load_dataset

    def load(name: str, **kwargs):
        return synthetic_dataset() if name == "synthetic" else load_dataset(name, **kwargs)

    patch.setattr(report, "write_plots", lambda *args, **kwargs: [])
    patch.setattr(loop, "load_dataset", load)


@pytest.fixture(autouse=True)
def _quick_runs(monkeypatch):
    quick_runs(monkeypatch)


def synthetic_config(tmp_path, name: str = "run", **overrides) -> TrainConfig:
    """Plain SGD at a constant lr, no decay: each test turns on the option it checks."""
    settings = {
        "epochs": 1,
        "batch_size": BATCH,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "threads": 1,  # the suite shares two cores
        "out": str(tmp_path / name),
    }
    return default_config("lenet-like", "synthetic", **(settings | overrides))


def run(config: TrainConfig) -> TrainResult:
    return train(config, progress=False)


def trained_weights(result: TrainResult) -> Weights:
    return load_checkpoint(result.run_dir)["state_dict"]


def assert_weights_close(actual: Weights, expected: Weights, *, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=atol, msg=name)


def smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Cross-entropy against (1 - smoothing) one-hot + smoothing / K (Szegedy et al. 2016)."""
    classes = logits.shape[1]  # logits (N, K)
    target = torch.full_like(logits, smoothing / classes)
    target[torch.arange(labels.shape[0]), labels] += 1 - smoothing
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


@dataclass(frozen=True)
class Reference:
    """A run's initial weights and its one training batch, preprocessed as the loop does."""

    model: nn.Module
    weights: Weights
    inputs: torch.Tensor  # (BATCH, 1, 32, 32)
    labels: torch.Tensor  # (BATCH,)

    def logits(self, weights: Weights) -> torch.Tensor:
        return functional_call(self.model, weights, (self.inputs,))

    def gradient(self, weights: Weights, smoothing: float = 0.0) -> Weights:
        """The gradient of the batch's loss at ``weights``, by autograd."""
        leaves = {name: w.detach().clone().requires_grad_() for name, w in weights.items()}
        loss = smoothed_cross_entropy(self.logits(leaves), self.labels, smoothing)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Reference:
    """The weights every synthetic run starts from (same seed, same model): those of a run
    whose one step is too small to move a float32 weight."""
    with pytest.MonkeyPatch.context() as patch:
        quick_runs(patch)
        result = run(synthetic_config(tmp_path_factory.mktemp("start"), lr=1e-30))
    predictor = cnnlab.load(result.run_dir, device="cpu")
    model = predictor.model.train()
    dataset = synthetic_dataset()
    return Reference(
        model=model,
        weights={name: w.detach().clone() for name, w in model.named_parameters()},
        inputs=preprocess(dataset.train_images, predictor.normalization, predictor.adapter),
        labels=dataset.train_labels,
    )


def global_norm(tensors: Weights) -> float:
    return math.sqrt(sum(float(t.square().sum()) for t in tensors.values()))


# Learning-rate schedules, as functions of the step k of `total` (0-based).
def cosine_between(start: float, end: float, fraction: float) -> float:
    """From ``start`` at fraction 0 to ``end`` at fraction 1 along a half cosine."""
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def constant_lr(k: int, total: int, lr: float) -> float:
    return lr


def one_cycle_lr(k: int, total: int, lr: float) -> float:
    """Smith & Topin 2019 as torch's OneCycleLR defaults have it (recipes.build_scheduler sets
    only max_lr and total_steps): from lr/25 up to lr over the first 30% of the steps, then
    down to lr/25/1e4 at the last step, both along half cosines."""
    initial, final = lr / 25, lr / 25 / 1e4
    peak = 0.3 * total - 1  # the step that uses lr itself
    if k <= peak:
        return cosine_between(initial, lr, k / peak)
    return cosine_between(lr, final, (k - peak) / (total - 1 - peak))


def cosine_lr(k: int, total: int, lr: float) -> float:
    """Loshchilov & Hutter 2017 without restarts, annealing to 0 over the run."""
    return cosine_between(lr, 0.0, k / total)


SCHEDULES: dict[str, Callable[[int, int, float], float]] = {
    "onecycle": one_cycle_lr,
    "cosine": cosine_lr,
    "constant": constant_lr,
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedule_sets_the_lr_of_every_step(tmp_path, schedule):
    # One step per epoch, so each epoch's record holds the lr of one step. The step cap, not
    # the epochs, is the length the schedule spans.
    steps, lr = 10, 0.05
    result = run(synthetic_config(tmp_path, lr=lr, schedule=schedule, epochs=12, steps=steps))
    assert result.epochs_run == steps
    expected = [SCHEDULES[schedule](k, steps, lr) for k in range(steps)]
    assert [record["lr"] for record in result.metrics] == pytest.approx(expected, rel=1e-9)


def test_grad_clip_scales_the_step_to_the_clip_norm(tmp_path, start):
    gradient = start.gradient(start.weights)
    norm = global_norm(gradient)
    clip, lr = norm / 4, 1.0  # the step is a quarter of the unclipped one
    result = run(synthetic_config(tmp_path, lr=lr, grad_clip=clip))
    expected = {name: w - lr * gradient[name] * (clip / norm) for name, w in start.weights.items()}
    assert_weights_close(trained_weights(result), expected)


def test_label_smoothing_is_in_the_loss_and_in_its_gradient(tmp_path, start):
    smoothing, lr = 0.5, 0.1
    result = run(synthetic_config(tmp_path, lr=lr, label_smoothing=smoothing))
    logits = start.logits(start.weights).detach()
    smoothed = float(smoothed_cross_entropy(logits, start.labels, smoothing))
    plain = float(smoothed_cross_entropy(logits, start.labels, 0.0))
    assert abs(smoothed - plain) > 1e-3  # the batch tells the two apart (1e-5 below)
    assert result.metrics[0]["loss"] == pytest.approx(smoothed, rel=1e-5)
    gradient = start.gradient(start.weights, smoothing=smoothing)
    expected = {name: w - lr * gradient[name] for name, w in start.weights.items()}
    assert_weights_close(trained_weights(result), expected)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_shrinks_each_weight_by_lr_times_decay(tmp_path, start, optimizer):
    # One step from the same weights on the same batch. SGD: w1 = w0 - lr (g + decay w0);
    # AdamW (decoupled, Loshchilov & Hutter 2019): w1 = w0 (1 - lr decay) - lr adam(g).
    # Either way the run with decay ends -lr decay w0 away from the run without.
    lr, decay = 0.1, 0.1
    plain = trained_weights(run(synthetic_config(tmp_path, "plain", optimizer=optimizer, lr=lr)))
    decayed = trained_weights(
        run(synthetic_config(tmp_path, "decayed", optimizer=optimizer, lr=lr, weight_decay=decay))
    )
    for name, w0 in start.weights.items():
        torch.testing.assert_close(
            decayed[name] - plain[name], -lr * decay * w0, rtol=0, atol=1e-6, msg=name
        )


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_sgd_momentum_follows_its_update_rule(tmp_path, start, nesterov):
    # torch.optim.SGD (Sutskever et al. 2013): v = mu v + g; the step is v, or g + mu v with
    # Nesterov. Two steps, so that the velocity carries a first gradient into the second.
    lr, mu = 0.1, 0.9
    result = run(synthetic_config(tmp_path, lr=lr, momentum=mu, nesterov=nesterov, epochs=2))
    weights = dict(start.weights)
    velocity = {name: torch.zeros_like(w) for name, w in weights.items()}
    for _ in range(2):
        gradient = start.gradient(weights)
        for name, g in gradient.items():
            velocity[name] = mu * velocity[name] + g
            direction = g + mu * velocity[name] if nesterov else velocity[name]
            weights[name] = weights[name] - lr * direction
    assert_weights_close(trained_weights(result), weights)


def test_channels_last_layout_and_the_same_results(tmp_path):
    layouts = {True: "on", False: "off", None: "auto"}
    results = {
        key: run(synthetic_config(tmp_path, name, channels_last=key, epochs=3))
        for key, name in layouts.items()
    }
    weights = {key: trained_weights(result) for key, result in results.items()}
    # A (O, C, k, k) kernel with C > 1 and k > 1 is laid out differently in the two formats;
    # lenet-like's second convolution (16, 6, 3, 3) is one. Auto is on for a conv model.
    kernels = [
        name
        for name, w in weights[False].items()
        if w.dim() == 4 and w.shape[1] > 1 and w.shape[2] > 1
    ]
    assert kernels
    for name in kernels:
        for key in (True, None):
            assert weights[key][name].is_contiguous(memory_format=torch.channels_last), key
            assert not weights[key][name].is_contiguous(), key
        assert weights[False][name].is_contiguous()
    losses = [r["loss"] for r in results[False].metrics]
    for key in (True, None):
        assert [r["loss"] for r in results[key].metrics] == pytest.approx(losses, rel=1e-5)
        assert_weights_close(weights[key], weights[False])


@pytest.mark.parametrize(
    "precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)], ids=["bf16", "fp16"]
)
def test_low_precision_runs_the_training_step_in_autocast(tmp_path, precision, dtype):
    # CPU autocast has float16 as well as bfloat16 since torch 2.2 (pytorch/pytorch#112484);
    # on the CPU there is no loss scaling (tests/train/test_gpu.py checks it on CUDA).
    seen = set()

    def record(module, args, output):
        # The training steps' forward passes: on the training batch, with autograd on. (The
        # report's FLOP count runs one on a single image; evaluation runs without autograd.)
        training = module.training and torch.is_grad_enabled() and output.shape[0] == BATCH
        if training and isinstance(module, nn.Conv2d | nn.Linear):
            seen.add((type(module).__name__, output.dtype))

    handle = register_module_forward_hook(record)
    try:
        low = run(synthetic_config(tmp_path, precision, precision=precision, epochs=3))
    finally:
        handle.remove()
    assert seen == {("Conv2d", dtype), ("Linear", dtype)}

    full = run(synthetic_config(tmp_path, "fp32", epochs=3))
    low_losses = [r["loss"] for r in low.metrics]
    full_losses = [r["loss"] for r in full.metrics]
    assert low_losses == pytest.approx(full_losses, rel=2e-2)
    assert_weights_close(trained_weights(low), trained_weights(full), atol=1e-2)


@pytest.mark.parametrize(
    "optimizer, schedule, settings",
    [
        ("sgd", "constant", {"momentum": 0.9, "lr": 0.02}),
        ("sgd", "cosine", {"momentum": 0.9, "nesterov": True, "lr": 0.05}),
        ("adamw", "onecycle", {"lr": 3e-3}),
    ],
    ids=["sgd-momentum-constant", "sgd-nesterov-cosine", "adamw-onecycle"],
)
def test_optimizer_and_schedule_learn_digits(tmp_path, optimizer, schedule, settings):
    config = default_config(
        "lenet-like",
        "digits",
        optimizer=optimizer,
        schedule=schedule,
        epochs=3,
        batch_size=64,
        threads=1,
        out=str(tmp_path / "run"),
        **settings,
    )
    result = run(config)
    losses = [record["loss"] for record in result.metrics]
    assert losses[-1] < losses[0] / 2
    assert result.test_accuracy > 0.8  # chance is 0.1


def test_onecycle_keeps_the_configured_sgd_momentum(tmp_path):
    result = run(synthetic_config(tmp_path, schedule="onecycle", momentum=0.5, epochs=2))
    assert load_checkpoint(result.run_dir)["optimizer"]["param_groups"][0]["momentum"] == 0.5
