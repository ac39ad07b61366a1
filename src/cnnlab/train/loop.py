"""The training loop: ``train(config)`` starts a run, ``resume(run_dir)`` continues one.

One loop for every device (DESIGN principle 2): the data lives on the device as uint8 and
``DeviceBatches`` slices, normalises and augments it there; bf16/fp16 are an autocast switch.
A checkpoint is written atomically at the end of every epoch and at a step boundary on
Ctrl-C. Every source of randomness is either derived from (seed, epoch, step) (batch order,
augmentation) or saved in the checkpoint (the generators dropout draws from), so a resumed
run on the same machine ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.device import Augmentation, DeviceBatches, InputAdapter, Normalization
from cnnlab.models import create_model
from cnnlab.runtime.devices import synchronize
from cnnlab.runtime.files import append_jsonl, atomic_write, write_jsonl
from cnnlab.runtime.interrupt import StopRequest, sigint_requests_stop
from cnnlab.runtime.threads import torch_threads
from cnnlab.train import detection
from cnnlab.train import report as reports
from cnnlab.train.changes import RESCHEDULING, apply_changes, describe_changes, reschedule
from cnnlab.train.checkpoint import (
    BEST_NAME,
    CHECKPOINT_NAME,
    METRICS_NAME,
    REPORT_NAME,
    RunState,
    checkpoint_file,
    load_checkpoint,
    new_run_dir,
    save_checkpoint,
)
from cnnlab.train.config import TrainConfig
from cnnlab.train.data import as_dataset, data_fingerprint, split_validation
from cnnlab.train.detection import is_detector
from cnnlab.train.distributed import Ranks, join_process_group
from cnnlab.train.evaluate import EvalResult, evaluate_model
from cnnlab.train.recipes import build_optimizer, build_scheduler
from cnnlab.train.result import TrainingDiverged, TrainingInterrupted, TrainResult
from cnnlab.train.step import TrainStep

PrintFn = Callable[[str], None]
EpochCallback = Callable[[dict[str, Any]], None]
# Steps between looks at the loss: each look waits for the device, so not after every step.
NONFINITE_CHECK_EVERY = 50


def train(
    config: TrainConfig,
    *,
    data: Any = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    print_fn: PrintFn | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data``; write the run folder; return the result.

    ``data`` trains on data in memory instead of loading ``config.data`` by name (which then
    only names the data in the run folder): a :class:`cnnlab.data.Dataset`, for instance
    ``load_dataset("fashion-mnist").subset(train=indices)``, or arrays in Keras's
    ``load_data()`` layout, ``((x_train, y_train), (x_test, y_test))`` (see
    :meth:`cnnlab.data.Dataset.from_arrays`). Resuming such a run needs the same data again.
    ``print_fn`` receives one line per epoch and the notes of the run (silent when None);
    ``on_epoch`` receives each epoch's metrics dict; ``progress`` shows a bar on stderr when
    stderr is a terminal. Raises ``TrainingInterrupted`` (a KeyboardInterrupt) after saving a
    checkpoint on Ctrl-C, and ``TrainingDiverged`` when the loss becomes NaN or infinite.
    In a process torchrun started, the run trains on all its processes
    (:mod:`cnnlab.train.distributed`).
    """
    wall_start = time.perf_counter()
    ranks = join_process_group()
    log = ranks.only_main(print_fn or _silent)
    run_dir = ranks.from_main(lambda: new_run_dir(config.out, model=config.model, data=config.data))
    config = dataclasses.replace(config, out=str(run_dir))
    dataset = as_dataset(data, name=config.data)
    with torch_threads(config.threads):
        run = _build(config, run_dir, log, dataset=dataset, ranks=ranks)
        if ranks.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / METRICS_NAME).touch()
        _save(run)  # epoch 0, step 0: a kill during the first epoch can be resumed too
        log(f"run folder: {run_dir}")
        return _fit(run, progress=progress, on_epoch=on_epoch, log=log, wall_start=wall_start)


def resume(
    run_dir: str | Path,
    *,
    data: Any = None,
    changes: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    print_fn: PrintFn | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` (or from a checkpoint file) where its checkpoint stopped.

    Everything comes from the checkpoint, except the data of a run trained on data in memory:
    pass the same ``data`` again (its fingerprint is checked). A finished run is left as it
    is and its stored result returned.

    ``changes`` sets some of the config anew (``{"epochs": 6, "lr": 0.05}``; see
    :data:`cnnlab.train.changes.CHANGEABLE`): the learning-rate schedule is rebuilt for the new
    plan at the step reached, and a finished run given more epochs or steps continues.
    In a process torchrun started, rank 0 reads the checkpoint and every rank continues it.
    """
    wall_start = time.perf_counter()
    ranks = join_process_group()
    log = ranks.only_main(print_fn or _silent)
    file, checkpoint = ranks.from_main(lambda: _read_checkpoint(run_dir))
    folder = file.parent.resolve()
    try:
        config = TrainConfig(**checkpoint["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{file}: its stored config is not valid here ({error})") from None
    config, changed = apply_changes(config, changes)
    config = dataclasses.replace(config, out=str(folder))
    stored_report = ranks.from_main(lambda: (folder / REPORT_NAME).exists())
    if checkpoint["finished"] and not changed and stored_report:
        result = ranks.from_main(lambda: _stored_result(folder, checkpoint))
        log(
            f"{folder} is already finished ({result.epochs_run} epochs, "
            f"{result.headline}); nothing to resume. Its report: {result.report}"
        )
        return result
    for name in (CHECKPOINT_NAME, BEST_NAME, METRICS_NAME, REPORT_NAME):
        for stale in folder.glob(f".{name}.*.tmp") if ranks.main else ():
            stale.unlink()  # left by a process killed while writing
    stored = checkpoint["data"]
    if stored.get("in_memory") and data is None:
        raise ValueError(
            f"{file}: the run was trained on data in memory ({config.data!r}), which a "
            "checkpoint does not hold; pass the same data again: resume(run_dir, data=...)"
        )
    dataset = as_dataset(data, name=config.data)
    with torch_threads(config.threads):
        run = _build(
            config, folder, log, checkpoint=checkpoint, source=file, dataset=dataset, ranks=ranks
        )
        if changed:
            _continue_with_changes(run, changed, file, log)
        if ranks.main:
            write_jsonl(folder / METRICS_NAME, run.metrics)  # drop lines after the checkpoint
        if not run.finished:
            log(f"resuming {folder} at epoch {run.epoch + 1}, step {run.step}")
        return _fit(run, progress=progress, on_epoch=on_epoch, log=log, wall_start=wall_start)


def _continue_with_changes(
    run: RunState, changed: dict[str, tuple[Any, Any]], source: Path, log: PrintFn
) -> None:
    """Apply a resume's changes to the restored ``run``, and say what changed."""
    config = run.config
    done = f"{run.epoch} epoch{'s' if run.epoch != 1 else ''}, {run.global_step:,} steps"
    if run.epoch >= config.epochs or run.global_step >= run.total_steps:
        plan = f"epochs={config.epochs}" + (f", steps={config.steps}" if config.steps else "")
        raise ValueError(
            f"{source}: the run has already done {done}; its new settings ({plan}) leave "
            "nothing to train: expected more epochs or steps than it has done"
        )
    if any(name in RESCHEDULING for name in changed):
        reschedule(run)
    run.finished = False
    lr = run.optimizer.param_groups[0]["lr"]
    log(
        f"changed on resume: {describe_changes(changed)} (after {done}; the {config.schedule} "
        f"schedule now plans {run.total_steps:,} steps, lr at this step {lr:.4g})"
    )


def _silent(text: str) -> None:
    """The default ``print_fn``: the library prints nothing unless asked to."""


def _read_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    file = checkpoint_file(run_dir)
    return file, load_checkpoint(file)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # every device's default generator
    np.random.seed(seed)
    random.seed(seed)


def _build(
    config: TrainConfig,
    run_dir: Path,
    log: PrintFn,
    *,
    checkpoint: dict[str, Any] | None = None,
    source: Path | None = None,
    dataset: Dataset | None = None,
    ranks: Ranks,
) -> RunState:
    """Data, model, optimizer, schedule and batches for ``config``; state from ``checkpoint``.

    ``dataset`` is data given in memory; None loads ``config.data`` by name.
    """
    device = ranks.device(config.device)
    if is_detector(config.model):
        if dataset is not None:
            raise ValueError(
                f"{config.model} is a detector: it trains on a detection folder "
                f"(data={config.data!r}), not on a classification Dataset in memory"
            )
        return _build_detector(
            config, run_dir, log, checkpoint=checkpoint, source=source, ranks=ranks
        )
    in_memory = dataset is not None
    if dataset is None:
        dataset = load_dataset(config.data, data_dir=config.data_dir)
    fingerprint = data_fingerprint(dataset)
    shape = tuple(int(v) for v in dataset.train_images.shape[1:])  # (C, H, W)
    classes = [str(name) for name in dataset.classes]
    if checkpoint is None:
        mean, std = dataset.mean_std()
        normalization = Normalization(tuple(map(float, mean)), tuple(map(float, std)))
        model_kwargs = {"num_classes": len(classes), **config.model_kwargs}
        _seed_everything(config.seed)  # the model's initial weights
    else:
        stored = checkpoint["data"]
        _check_same_data(stored.get("fingerprint", fingerprint), fingerprint, source, config)
        if list(shape) != list(stored["shape"]) or classes != list(stored["classes"]):
            raise ValueError(
                f"{source}: the run was trained on {config.data} with images "
                f"{'x'.join(map(str, stored['shape']))} and {len(stored['classes'])} classes, "
                f"but {config.data} now loads {'x'.join(map(str, shape))} and {len(classes)}"
            )
        normalization = Normalization(**{k: tuple(v) for k, v in stored["normalization"].items()})
        if checkpoint["model"]["name"] != config.model:
            raise ValueError(
                f"{source} holds model {checkpoint['model']['name']!r} but its config says "
                f"{config.model!r}: the file is not a consistent cnnlab checkpoint"
            )
        model_kwargs = dict(checkpoint["model"]["kwargs"])
    if model_kwargs.get("num_classes") != len(classes):
        raise ValueError(
            f"{config.data} has {len(classes)} classes, but the model was asked for "
            f"num_classes={model_kwargs.get('num_classes')!r}"
        )
    model = create_model(config.model, **model_kwargs)
    adapter = _input_adapter(shape, model.cnnlab.input_shape, config)
    model_shape = _shape(model.cnnlab.input_shape)
    if adapter.description == "none":
        log(f"input: {config.data} images are {_shape(shape)}, as {config.model} expects")
    else:
        log(
            f"input: {config.data} {_shape(shape)} adapted to {config.model} {model_shape} "
            f"({adapter.description})"
        )
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
    model.to(
        device, memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )

    train_images, train_labels, val = split_validation(dataset, config.val_split, config.seed)
    ranks.check_batches(config.batch_size, int(train_labels.shape[0]))
    batches = DeviceBatches(
        train_images,
        train_labels,
        batch_size=config.batch_size,
        device=device,
        normalization=normalization,
        adapter=adapter,
        augmentation=Augmentation(flip=dataset.flip_ok) if config.augment else None,
        shuffle=True,
        seed=config.seed,
        # A last batch of one image breaks batch norm; dropping the remainder (a different
        # part of the data each epoch) is harmless when there is more than one batch.
        drop_last=train_labels.shape[0] > config.batch_size,
    )
    data_info = {
        "name": config.data,
        "shape": list(shape),
        "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)},
        "classes": classes,
        "adaptation": adapter.description,
        "in_memory": in_memory,
        "source": dataset.source,
        "train_count": int(train_labels.shape[0]),
        "fingerprint": fingerprint,
    }
    run = _run_state(
        config,
        run_dir,
        model,
        ranks.batches(batches),  # this process's share of every batch
        data_info,
        normalization=normalization,
        adapter=adapter,
        device=device,
        ranks=ranks,
        val=None if val is None else (val[0].to(device), val[1].to(device)),
        test=(dataset.test_images.to(device), dataset.test_labels.to(device)),
    )
    if checkpoint is not None:
        run.restore(checkpoint, source)
    return run


def _check_same_data(
    stored: str | None, fingerprint: str, source: Path | None, config: TrainConfig
) -> None:
    """Refuse to resume a run on data other than it started with (the fingerprints differ)."""
    if stored != fingerprint:
        raise ValueError(
            f"{source}: the run was trained on other data than {config.data!r} holds now "
            f"(data fingerprint {str(stored)[:12]}..., now {fingerprint[:12]}...); "
            "resume it with the data it started with"
        )


def _run_state(
    config: TrainConfig,
    run_dir: Path,
    model: nn.Module,
    batches: Any,
    data_info: dict[str, Any],
    *,
    normalization: Normalization,
    adapter: InputAdapter,
    device: torch.device,
    ranks: Ranks,
    val: Any,
    test: Any,
    task: str = "classify",
    loss_fn: Any = None,
) -> RunState:
    """The run of ``model`` on ``batches``: the step plan, optimizer, schedule and train step."""
    total_steps = config.epochs * len(batches)
    if config.steps is not None:
        total_steps = min(total_steps, config.steps)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    use_scaler = config.precision == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    train_step = TrainStep(
        ranks.model_to_train(model, device, sync_bn=config.sync_bn),
        optimizer,
        scheduler=scheduler,
        scaler=scaler,
        precision=config.precision,
        label_smoothing=config.label_smoothing,
        grad_clip=config.grad_clip,
        loss_fn=loss_fn,
    )
    return RunState(
        config=config,
        run_dir=run_dir,
        device=device,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        train_step=train_step,
        batches=batches,
        normalization=normalization,
        adapter=adapter,
        data_info=data_info,
        val=val,
        test=test,
        total_steps=total_steps,
        ranks=ranks,
        task=task,
    )


def _build_detector(
    config: TrainConfig,
    run_dir: Path,
    log: PrintFn,
    *,
    checkpoint: dict[str, Any] | None,
    source: Path | None,
    ranks: Ranks,
) -> RunState:
    """``_build`` for a detector (:mod:`cnnlab.train.detection`): a detection folder's scenes
    and boxes, the YOLO loss, mAP as the score."""
    detection.check_detection_config(config, ranks.distributed)
    device = ranks.device(config.device)
    data = detection.load_detection_run_data(config)
    fingerprint = detection.detection_fingerprint(data.train, data.test)
    classes = list(data.classes)
    if checkpoint is not None:
        _check_same_data(checkpoint["data"].get("fingerprint"), fingerprint, source, config)
        if classes != list(checkpoint["data"]["classes"]):
            raise ValueError(
                f"{source}: the run was trained on the classes {checkpoint['data']['classes']}, "
                f"but {config.data} now names {classes}; resume it with the data it started with"
            )
        model_kwargs = dict(checkpoint["model"]["kwargs"])
    else:
        model_kwargs = dict(config.model_kwargs)
        _seed_everything(config.seed)  # the model's initial weights
    parts = detection.detection_parts(config, data, device, model_kwargs)
    model = parts["model"]
    channels_last = config.channels_last is None or config.channels_last
    model.to(
        device, memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    augmentation = parts["augmentation"]
    log(
        f"data: {config.data}: {len(data.train):,} train and {len(data.test):,} test scenes "
        f"of {_shape(data.train.image_shape)}, {len(data.train.labels):,} train objects, "
        f"{len(classes)} classes; augmentation: "
        + (
            "none"
            if augmentation is None
            else f"shifts up to {augmentation.max_shift} px"
            + (", horizontal flips" if augmentation.flip else " (no flips: not label-safe here)")
        )
    )
    data_info = {
        "name": config.data,
        "task": "detect",
        "shape": list(data.train.image_shape),
        "normalization": {
            "mean": list(parts["normalization"].mean),
            "std": list(parts["normalization"].std),
        },
        "classes": classes,
        "adaptation": "none",
        "in_memory": False,
        "source": data.source,
        "format": data.format,
        "train_count": len(data.train),
        "fingerprint": fingerprint,
    }
    run = _run_state(
        config,
        run_dir,
        model,
        parts["batches"],
        data_info,
        normalization=parts["normalization"],
        adapter=parts["adapter"],
        device=device,
        ranks=ranks,
        val=None,
        test=parts["test"],
        task="detect",
        loss_fn=parts["loss_fn"],
    )
    run.model.cnnlab = dataclasses.replace(run.model.cnnlab, kwargs=parts["kwargs"])
    if checkpoint is not None:
        run.restore(checkpoint, source)
    return run


def _stored_result(folder: Path, checkpoint: dict[str, Any]) -> TrainResult:
    """A finished run's result, from its report.json and its checkpoint's metrics."""
    file = folder / REPORT_NAME
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        return TrainResult.from_report(folder, report, checkpoint["metrics"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{file} is not a readable cnnlab train report ({type(error).__name__}: {error})"
        ) from None


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _input_adapter(
    data_shape: tuple[int, ...], model_shape: tuple[int, ...], config: TrainConfig
) -> InputAdapter:
    try:
        return InputAdapter(tuple(data_shape), tuple(model_shape))
    except ValueError as error:
        raise ValueError(
            f"{config.data} images ({_shape(data_shape)}) cannot be fed to {config.model}, which "
            f"expects {_shape(model_shape)} (C x H x W): {error}"
        ) from None


def _save(run: RunState) -> None:
    if run.ranks.main:
        save_checkpoint(run.checkpoint(), run.run_dir / CHECKPOINT_NAME)
    run.saved_at = (run.epoch, run.step)


@dataclass
class _EpochSteps:
    """What one pass of training steps added up to (device tensors until read)."""

    start_step: int
    start_global_step: int
    loss_sum: torch.Tensor
    correct: torch.Tensor
    first_nonfinite: torch.Tensor  # the global step whose loss was first NaN/inf, or -1
    images: int = 0
    seconds: float = 0.0
    interrupted: bool = False


def _train_step(run: RunState, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[Any, Any]:
    return run.train_step(inputs, labels)


def _train_steps(run: RunState, stop: StopRequest, bar: Any) -> _EpochSteps:
    """Steps from (epoch, step) to the end of the epoch, the step cap, a NaN, or Ctrl-C."""
    device, steps_per_epoch = run.device, len(run.batches)
    done = _EpochSteps(
        start_step=run.step,
        start_global_step=run.global_step,
        loss_sum=torch.zeros((), device=device),
        correct=torch.zeros((), dtype=torch.int64, device=device),
        first_nonfinite=torch.full((), -1, dtype=torch.int64, device=device),
    )
    task = None
    if bar is not None:
        description = f"epoch {run.epoch + 1}/{run.config.epochs}"
        task = bar.add_task(description, total=steps_per_epoch, completed=run.step)
    run.model.train()
    synchronize(device)
    start = time.perf_counter()
    for inputs, labels in run.batches.epoch(run.epoch, start_step=run.step):
        loss, logits = _train_step(run, inputs, labels)
        done.loss_sum += loss * labels.shape[0]
        if run.task == "classify":
            done.correct += (logits.argmax(dim=1) == labels).sum()
        bad = (done.first_nonfinite < 0) & ~torch.isfinite(loss)
        done.first_nonfinite = torch.where(bad, run.global_step, done.first_nonfinite)
        run.step, run.global_step = run.step + 1, run.global_step + 1
        done.images += labels.shape[0]
        if task is not None:
            bar.advance(task)
        looking = run.global_step % NONFINITE_CHECK_EVERY == 0
        if looking:
            run.ranks.agree(done, stop, totals=False)  # several processes stop together
            if done.first_nonfinite.item() >= 0:
                break
        if run.global_step >= run.total_steps:
            break
        if stop.requested and (looking or not run.ranks.distributed):
            break
    synchronize(device)
    done.seconds = time.perf_counter() - start
    if task is not None:
        bar.remove_task(task)
    run.ranks.agree(done, stop, totals=True)
    more = run.step < steps_per_epoch and run.global_step < run.total_steps
    done.interrupted = stop.requested and more
    return done


def _check_finite(run: RunState, done: _EpochSteps) -> None:
    """Raise TrainingDiverged if a loss was NaN/inf or the weights are; nothing is saved then."""
    bad_step = int(done.first_nonfinite.item())  # 0-based global step
    if bad_step >= 0:
        step = done.start_step + bad_step - done.start_global_step + 1
        what = "the loss became NaN or infinite"
    elif not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        step, bad_step = run.step, run.global_step - 1
        what = "the weights became NaN or infinite"
    else:
        return
    config = run.config
    # Each tip names the config field (Python) and the flag (command line).
    tips = [f"a lower learning rate (this run: lr={config.lr:g}; --lr)"]
    if config.precision != "fp32":
        tips.append(f"precision='fp32' (this run: {config.precision!r}; --precision fp32)")
    if config.grad_clip is None:
        tips.append("gradient clipping (grad_clip=1.0; --grad-clip 1.0)")
    if config.schedule != "onecycle":
        tips.append("a schedule that warms up (schedule='onecycle'; --schedule onecycle)")
    epoch, saved_step = run.saved_at
    again = ""
    if (run.run_dir / CHECKPOINT_NAME).exists():
        again = (
            " Or continue from that checkpoint with a lower rate: cnnlab train --resume "
            f"{run.run_dir} --lr {config.lr / 10:g}"
        )
    raise TrainingDiverged(
        f"Training stopped: {what} at epoch {run.epoch + 1}, step {step} of "
        f"{len(run.batches)} (global step {bad_step + 1}). The last good checkpoint "
        f"(after {epoch} epochs and {saved_step} steps) is kept in "
        f"{run.run_dir / CHECKPOINT_NAME}. Try {', '.join(tips)}.{again}",
        run_dir=run.run_dir,
        epoch=run.epoch + 1,
        step=step,
    )


def _evaluate(run: RunState, part: Any) -> Any:
    """The score of the run's model on ``part``: an EvalResult for (images, labels), a
    DetectionScore for a detector's DetectionSet."""
    if run.task == "detect":
        return detection.evaluate_detection(run, part)
    images, labels = part
    evaluate = run.ranks.evaluate if run.ranks.distributed else evaluate_model
    return evaluate(
        run.model,
        images,
        labels,
        normalization=run.normalization,
        adapter=run.adapter,
        device=run.device,
        num_classes=len(run.data_info["classes"]),
        batch_size=run.config.eval_batch_size,
        precision=run.config.precision,
    )


def _epoch_record(
    run: RunState, done: _EpochSteps, val: EvalResult | None, test: EvalResult
) -> dict[str, Any]:
    images = max(done.images, 1)
    record = {
        "epoch": run.epoch + 1,
        "loss": done.loss_sum.item() / images,
        "train_accuracy": done.correct.item() / images,
        "val_accuracy": None if val is None else val.accuracy,
        "test_accuracy": getattr(test, "accuracy", None),
        "lr": run.train_step.last_lr,
        "epoch_seconds": done.seconds,
        "eval_seconds": test.seconds + (0.0 if val is None else val.seconds),
        "images_per_second": done.images / done.seconds if done.seconds > 0 else 0.0,
        "val_loss": None if val is None else val.loss,
        "test_loss": getattr(test, "loss", None),
        "steps": run.global_step - done.start_global_step,
        "images": done.images,
    }
    if run.task == "detect":
        record = detection.detection_record(record, test)
    if done.start_step:
        record["resumed_at_step"] = done.start_step  # loss and accuracy cover the rest only
    return record


def _update_best(run: RunState, val: EvalResult | None, test: EvalResult) -> bool:
    """Track the best validation accuracy; True when early stopping says stop."""
    if val is None:
        return False
    patience, epoch = run.config.patience, run.epoch + 1
    if run.best is None or val.accuracy > run.best["val_accuracy"]:
        run.best = {
            "epoch": epoch,
            "val_accuracy": val.accuracy,
            "test_accuracy": test.accuracy,
            "restored": False,
        }
        if patience is not None:
            run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            state = run.best_state
            if run.ranks.main:
                atomic_write(run.run_dir / BEST_NAME, lambda file: torch.save(state, file))
        return False
    return patience is not None and epoch - run.best["epoch"] >= patience


def _fit(
    run: RunState,
    *,
    progress: bool,
    on_epoch: EpochCallback | None,
    log: PrintFn,
    wall_start: float,
) -> TrainResult:
    config, stop = run.config, StopRequest()
    metrics_file, test = run.run_dir / METRICS_NAME, None
    bar_shown = progress and run.ranks.main
    with sigint_requests_stop(stop), reports.progress_bar(bar_shown) as bar:
        while not run.finished:
            done = _train_steps(run, stop, bar)
            _check_finite(run, done)
            if done.interrupted:
                _save(run)
                log(
                    f"interrupted: checkpoint saved after step {run.step} of "
                    f"{len(run.batches)} in epoch {run.epoch + 1}. "
                    f"Resume with: cnnlab train --resume {run.run_dir} "
                    f"(in Python: cnnlab.resume({str(run.run_dir)!r}))"
                )
                raise TrainingInterrupted(run.run_dir, run.epoch, run.step)
            val = None if run.val is None else _evaluate(run, run.val)
            test = _evaluate(run, run.test)
            record = _epoch_record(run, done, val, test)
            stop_early = _update_best(run, val, test)
            run.epoch, run.step = run.epoch + 1, 0
            run.metrics.append(record)
            out_of_steps = run.epoch >= config.epochs or run.global_step >= run.total_steps
            run.finished = stop_early or out_of_steps
            if run.finished and _restore_best(run, log):
                test = None  # evaluate the restored weights below
            if stop_early:
                log(f"early stopping: no better val accuracy for {config.patience} epochs")
            _save(run)
            if run.ranks.main:
                append_jsonl(metrics_file, record)
            line = detection.epoch_line if run.task == "detect" else reports.epoch_line
            log(line(record, config.epochs))
            if on_epoch is not None:
                on_epoch(record)
            if stop.requested and not run.finished:
                log(f"interrupted after epoch {run.epoch}: cnnlab train --resume {run.run_dir}")
                raise TrainingInterrupted(run.run_dir, run.epoch, 0)
    return _finish(run, test, log=log, wall_start=wall_start)


def _restore_best(run: RunState, log: PrintFn) -> bool:
    """With early stopping on, end with the best weights by validation accuracy."""
    best = run.best
    if run.config.patience is None or best is None or best["epoch"] == run.epoch:
        return False
    if run.best_state is None:
        raise FileNotFoundError(f"{run.run_dir / BEST_NAME} is missing: cannot restore the best")
    run.model.load_state_dict(run.best_state)
    best["restored"] = True
    log(
        f"restored the weights of epoch {best['epoch']}, the best by val accuracy "
        f"({best['val_accuracy']:.2%})"
    )
    return True


def _finish(
    run: RunState, test: EvalResult | None, *, log: PrintFn, wall_start: float
) -> TrainResult:
    """report.json and the plots; ``test`` is the final weights' evaluation, if already done."""
    extra_eval = 0.0
    if test is None:
        test = _evaluate(run, run.test)
        extra_eval = test.seconds
    result = TrainResult.from_checkpoint(
        run.run_dir,
        run.checkpoint(),
        test_accuracy=getattr(test, "accuracy", None),
        extra_eval_seconds=extra_eval,
    )
    wall_seconds = time.perf_counter() - wall_start
    report = run.ranks.from_main(
        lambda: reports.write_run_report(run, test, result, wall_seconds=wall_seconds, log=log)
    )
    return TrainResult.from_report(run.run_dir, report, run.metrics)
