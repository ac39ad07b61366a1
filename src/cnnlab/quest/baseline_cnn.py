"""A CNN on the baselines board: trained by cnnlab's own trainer on the board's very images,
its training time estimated beforehand from a few of the trainer's own steps (``TrainStep``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cnnlab.quest.baseline_data import BaselineRow, BaselineSplit
from cnnlab.runtime.formatting import format_duration

if TYPE_CHECKING:
    from cnnlab.quest.baselines import BaselinesConfig

PrintFn = Callable[[str], None]


CNN_PILOT_STEPS = 12  # the median of the last 6: oneDNN takes a few steps to warm up


def run_cnn(
    name: str,
    config: BaselinesConfig,
    split: BaselineSplit,
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
    expected = estimate_cnn(name, recipe, split, log)
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


def estimate_cnn(name: str, recipe: Any, split: BaselineSplit, log: PrintFn) -> float | None:
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
            f"{name}: expected ~{format_duration(expected)} of training ({steps:,} steps of "
            f"{1000 * step:.0f} ms, timed on random inputs; the per-epoch evaluations come on top)"
        )
    return expected
