"""train(): it learns, writes its run folder as documented, is deterministic, and fails clearly."""

import dataclasses
import json
import math
import time
import types

import pytest
import torch

import cnnlab.train.loop as loop
import cnnlab.train.report as report
from cnnlab.data import Dataset, load_dataset
from cnnlab.runtime.devices import fast_bf16
from cnnlab.train import (
    TrainConfig,
    TrainingDiverged,
    default_config,
    evaluate_model,
    load_checkpoint,
    train,
)
from cnnlab.train.checkpoint import CHECKPOINT_KEYS

EPOCH_KEYS = {
    "epoch",
    "loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "lr",
    "epoch_seconds",
    "eval_seconds",
    "images_per_second",
}


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path_factory, monkeypatch, request):
    """Datasets are cached under a temporary CNNLAB_HOME, shared by the tests of a worker;
    plots (a second or two per run) only for the tests that ask for them."""
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    if "with_plots" not in request.fixturenames:
        monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


@pytest.fixture
def with_plots():
    """Keep the real plots."""


def digits_config(tmp_path, model="lenet-like", **overrides):
    # One thread: the suite shares two cores with other processes, and idle OpenMP threads
    # waiting for a busy core make a step many times slower.
    settings = {"epochs": 2, "batch_size": 256, "threads": 1, "out": str(tmp_path / "run")}
    settings.update(overrides)
    return default_config(model, "digits", **settings)


def synthetic_dataset(channels=1, size=8, count=64, classes=2):
    generator = torch.Generator().manual_seed(0)
    shape = (count, channels, size, size)
    images = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % classes
    names = tuple(str(i) for i in range(classes))
    test_images, test_labels = images[:16].clone(), labels[:16].clone()
    return Dataset("synthetic", names, images, labels, test_images, test_labels, "test", False)


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lenet_like_learns_digits(tmp_path):
    lines, records = [], []
    config = digits_config(tmp_path, epochs=10, batch_size=128)
    result = train(config, progress=False, print_fn=lines.append, on_epoch=records.append)
    assert result.test_accuracy >= 0.9  # chance is 0.1
    assert result.epochs_run == 10 and len(result.metrics) == 10
    assert [r["epoch"] for r in records] == list(range(1, 11))
    assert records[-1]["loss"] < records[0]["loss"]
    # The adaptation from 8x8 digits to LeNet's 32x32 input is said once.
    assert sum("adapted to lenet-like 1x32x32" in line for line in lines) == 1
    assert sum(line.startswith("epoch ") for line in lines) == 10


def test_run_folder_metrics_checkpoint_and_report(tmp_path, with_plots):
    config = digits_config(tmp_path, epochs=3, val_split=0.2)
    result = train(config, progress=False)
    run = tmp_path / "run"
    assert result.run_dir == run.resolve()

    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    assert all(set(r) >= EPOCH_KEYS for r in records)
    assert all(r["val_accuracy"] is not None for r in records)
    assert records == list(result.metrics)

    checkpoint = load_checkpoint(run)
    assert tuple(checkpoint) == CHECKPOINT_KEYS
    assert checkpoint["format"] == "cnnlab-checkpoint" and checkpoint["version"] == 1
    assert checkpoint["model"] == {
        "name": "lenet-like",
        "kwargs": {"num_classes": 10},
        "input_shape": [1, 32, 32],
        "num_classes": 10,
    }
    assert set(checkpoint["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 0 and checkpoint["finished"]
    assert checkpoint["global_step"] == sum(r["steps"] for r in records)
    assert checkpoint["config"] == dataclasses.asdict(dataclasses.replace(config, out=str(run)))
    data = checkpoint["data"]
    assert data["name"] == "digits" and data["shape"] == [1, 8, 8]
    assert data["classes"] == [str(i) for i in range(10)]
    assert len(data["normalization"]["mean"]) == len(data["normalization"]["std"]) == 1
    assert "32x32" in data["adaptation"]
    assert checkpoint["metrics"] == records
    assert checkpoint["best"]["val_accuracy"] == max(r["val_accuracy"] for r in records)

    report = json.loads((run / "report.json").read_text())
    assert report["test_accuracy"] == result.test_accuracy == records[-1]["test_accuracy"]
    assert len(report["confusion"]) == 10 and all(len(row) == 10 for row in report["confusion"])
    assert sum(map(sum, report["confusion"])) == 360  # the digits test set
    assert set(report["per_class_accuracy"]) == set(data["classes"])
    assert report["train_seconds"] == pytest.approx(sum(r["epoch_seconds"] for r in records))
    assert report["eval_seconds"] == pytest.approx(sum(r["eval_seconds"] for r in records))
    images = sum(r["images"] for r in records)
    assert report["images_trained"] == images
    assert report["training_flops_per_image"] > 0
    assert report["training_flops_total"] == report["training_flops_per_image"] * images
    assert report["achieved_flops_per_second"] == pytest.approx(
        report["training_flops_total"] / report["train_seconds"]
    )
    context = report["context"]
    for key in ("cnnlab_version", "git_commit", "torch_version", "device_name", "wall_seconds"):
        assert key in context
    assert context["precision"] == "fp32" and context["batch_size"] == 256
    assert context["seed"] == 0 and context["threads"] == 1
    assert "eval" in context["excluded"]
    assert report["files"]["plots"] == [
        "curves.png",
        "confusion.png",
        "kernels.png",
        "features.png",
    ]
    assert all((run / name).stat().st_size > 0 for name in report["files"]["plots"])


def test_evaluation_time_is_not_on_the_training_clock(tmp_path, monkeypatch):
    # A clock that jumps by an hour during each evaluation: if evaluation were on the training
    # clock, an epoch would take an hour. No real sleeping, so the test cannot be flaky.
    hour = 3600.0
    jumped = [0.0]

    def clock() -> float:
        return time.perf_counter() + jumped[0]

    def slow_evaluation(*args, **kwargs):
        jumped[0] += hour
        result = evaluate_model(*args, **kwargs)
        return dataclasses.replace(result, seconds=result.seconds + hour)

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(loop, "evaluate_model", slow_evaluation)
    result = train(digits_config(tmp_path, batch_size=512), progress=False)
    for record in result.metrics:
        assert record["eval_seconds"] >= hour
        assert record["epoch_seconds"] < hour
    assert result.eval_seconds >= 2 * hour
    assert result.train_seconds == pytest.approx(sum(r["epoch_seconds"] for r in result.metrics))


@pytest.mark.parametrize("model, overrides", [("lenet-like", {}), ("mlp", {"augment": True})])
def test_same_seed_same_weights(tmp_path, model, overrides):
    if model == "mlp":  # dropout draws from torch's generator; augmentation from (seed, step)
        overrides = {**overrides, "model_kwargs": {"width": 32}}
    first = train(digits_config(tmp_path / "a", model, **overrides), progress=False)
    second = train(digits_config(tmp_path / "b", model, **overrides), progress=False)
    other = train(digits_config(tmp_path / "c", model, seed=1, **overrides), progress=False)
    weights = [load_checkpoint(r.run_dir)["state_dict"] for r in (first, second, other)]
    assert same_weights(weights[0], weights[1])
    assert not same_weights(weights[0], weights[2])
    assert first.metrics[-1]["loss"] == second.metrics[-1]["loss"]


def test_steps_caps_the_run(tmp_path):
    result = train(digits_config(tmp_path, epochs=5, batch_size=128, steps=3), progress=False)
    assert result.epochs_run == 1
    assert result.metrics[0]["steps"] == 3 and result.metrics[0]["images"] == 3 * 128
    assert load_checkpoint(result.run_dir)["finished"]


def test_early_stopping_restores_the_best_weights(tmp_path, monkeypatch):
    accuracies = iter([0.5, 0.9, 0.8, 0.7, 0.95])  # validation accuracy per epoch
    val_count = round(0.1 * load_dataset("digits").train_labels.shape[0])

    def scripted(model, images, labels, **kwargs):
        result = evaluate_model(model, images, labels, **kwargs)
        if labels.shape[0] == val_count:
            return dataclasses.replace(result, accuracy=next(accuracies))
        return result

    monkeypatch.setattr(loop, "evaluate_model", scripted)
    lines = []
    config = digits_config(tmp_path, epochs=5, val_split=0.1, patience=2)
    result = train(config, progress=False, print_fn=lines.append)
    assert result.epochs_run == 4 and result.early_stopped
    assert result.best_val_accuracy == 0.9
    checkpoint = load_checkpoint(result.run_dir)
    assert checkpoint["best"]["epoch"] == 2 and checkpoint["best"]["restored"]
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert same_weights(checkpoint["state_dict"], best)
    assert any("restored the weights of epoch 2" in line for line in lines)


def test_huge_lr_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    config = digits_config(tmp_path, lr=1e6, batch_size=128)
    with pytest.raises(TrainingDiverged) as caught:
        train(config, progress=False)
    message = str(caught.value)
    assert "NaN or infinite at epoch 1, step" in message
    assert "--lr" in message and "--grad-clip" in message
    assert caught.value.epoch == 1 and caught.value.step >= 1
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["epoch"] == 0 and checkpoint["step"] == 0  # the initial weights
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ""
    assert not (tmp_path / "run" / "report.json").exists()


def test_nan_in_the_second_epoch_keeps_the_first_epochs_checkpoint(tmp_path, monkeypatch):
    real_step = loop._train_step

    def poisoned(run, inputs, labels):
        if run.global_step == 3:  # the second step of epoch 2 (two steps per epoch)
            with torch.no_grad():
                next(run.model.parameters()).fill_(math.nan)
        return real_step(run, inputs, labels)

    monkeypatch.setattr(loop, "_train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="at epoch 2, step 2 of 2"):
        train(digits_config(tmp_path, epochs=3, batch_size=512), progress=False)
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["epoch"] == 1 and not checkpoint["finished"]
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_input_that_cannot_be_adapted_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "load_dataset", lambda name, **kw: synthetic_dataset(channels=2))
    with pytest.raises(ValueError, match=r"cannot be fed to lenet-like.*2 data channel"):
        train(digits_config(tmp_path), progress=False)
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ValueError, match="is an existing file"):
        train(digits_config(tmp_path), progress=False)
    assert (tmp_path / "run").read_text() == "not a folder"


def test_an_output_folder_with_a_run_is_not_overwritten(tmp_path):
    train(digits_config(tmp_path, epochs=1), progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run.*--resume"):
        train(digits_config(tmp_path, epochs=1), progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("epochs", 0, "epochs must be an integer from 1 to 1000000. Received: epochs=0"),
        ("epochs", 10**20, "Received: epochs=100000000000000000000"),
        ("epochs", -3, "Received: epochs=-3"),
        ("batch_size", 0, "batch_size must be a positive integer. Received: batch_size=0"),
        ("batch_size", 2.5, "Received: batch_size=2.5"),
        ("steps", 0, "Received: steps=0"),
        ("optimizer", "rmsprop", "optimizer must be one of sgd, adam, adamw"),
        ("lr", 0, "lr must be a positive number. Received: lr=0"),
        ("lr", math.nan, "Received: lr=nan"),
        ("momentum", 1.0, "momentum must be in [0, 1)"),
        ("schedule", "step", "schedule must be one of constant, onecycle, cosine"),
        ("label_smoothing", 1.0, "Received: label_smoothing=1.0"),
        ("val_split", 1.0, "val_split must be a fraction in [0, 1). Received: val_split=1.0"),
        ("val_split", -0.1, "Received: val_split=-0.1"),
        ("precision", "fp8", "precision must be one of fp32, bf16, fp16. Received: precision="),
        ("device", "gpu", "device must be auto, cpu, cuda, cuda:N or mps. Received: device='gpu'"),
        ("seed", -1, "Received: seed=-1"),
        ("threads", 0, "Received: threads=0"),
        ("threads", 10_000, "threads must be an integer from 1 to"),
        ("weight_decay", -1e-4, "Received: weight_decay=-0.0001"),
        ("grad_clip", 0.0, "Received: grad_clip=0.0"),
        ("augment", "yes", "augment must be True or False"),
    ],
)
def test_config_errors_name_the_field_and_the_value(field, value, expected):
    with pytest.raises(ValueError) as caught:
        TrainConfig(model="lenet-like", data="digits", **{field: value})
    assert expected in str(caught.value)


def test_config_cross_checks():
    with pytest.raises(ValueError, match=r"patience .* needs a validation set"):
        TrainConfig(model="lenet-like", data="digits", patience=3)
    with pytest.raises(ValueError, match="nesterov needs optimizer='sgd'"):
        TrainConfig(model="lenet-like", data="digits", optimizer="adam", nesterov=True)
    with pytest.raises(ValueError, match="Unknown model: name='lenet'"):
        TrainConfig(model="lenet", data="digits")


def test_recipes():
    small = default_config("lenet-like", "digits")
    assert (small.optimizer, small.lr, small.schedule, small.batch_size) == (
        "adamw",
        3e-3,
        "onecycle",
        128,
    )
    assert default_config("mlp", "mnist").optimizer == "adam"
    large = default_config("resnet18", "cifar10")
    assert (large.optimizer, large.nesterov, large.lr, large.schedule) == (
        "sgd",
        True,
        0.1,
        "cosine",
    )
    assert large.weight_decay == 5e-4
    # Choosing Adam for a model whose recipe uses Nesterov SGD turns Nesterov off.
    assert default_config("resnet18", "cifar10", optimizer="adam").nesterov is False
    assert default_config("lenet5", "digits", epochs=3, lr=0.01).epochs == 3
    with pytest.raises(ValueError, match=r"unknown setting.*learning_rate"):
        default_config("lenet5", "digits", learning_rate=0.1)


def test_val_split_too_small_for_the_data(tmp_path):
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        train(digits_config(tmp_path, val_split=1e-5), progress=False)


def test_unavailable_device_is_an_error_before_anything_is_written(tmp_path, monkeypatch):
    # A machine without CUDA, on every machine: torch answers as it does without a GPU.
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        train(digits_config(tmp_path, device="cuda"), progress=False)
    with pytest.raises(ValueError, match=r"device='cuda:1' but CUDA is not available"):
        train(digits_config(tmp_path, device="cuda:1"), progress=False)
    assert not (tmp_path / "run").exists()


def test_channels_last_must_be_a_bool_or_none(tmp_path):
    with pytest.raises(ValueError, match=r"Received: channels_last='yes'"):
        digits_config(tmp_path, channels_last="yes")


CPUINFO = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"


def test_fast_bf16_reads_the_cpus_bf16_flags():
    cpu = torch.device("cpu")
    assert fast_bf16(cpu, CPUINFO.format(extra="amx_tile amx_bf16"))
    assert fast_bf16(cpu, CPUINFO.format(extra="avx512_bf16"))
    assert not fast_bf16(cpu, CPUINFO.format(extra="avx512_vnni"))  # emulated bf16: slower
    assert not fast_bf16(cpu, "processor\t: 0\n")  # no flags line
    assert not fast_bf16(torch.device("meta"))


@pytest.mark.parametrize("fast", [True, False])
def test_a_detector_trains_in_bf16_only_where_the_hardware_computes_it(monkeypatch, fast):
    monkeypatch.setattr("cnnlab.train.recipes.fast_bf16", lambda device: fast)
    assert default_config("yolo-scenes", "scenes").precision == ("bf16" if fast else "fp32")
    # What the user asks for wins; classifiers keep fp32 either way.
    assert default_config("yolo-scenes", "scenes", precision="fp32").precision == "fp32"
    assert default_config("lenet-like", "digits").precision == "fp32"
