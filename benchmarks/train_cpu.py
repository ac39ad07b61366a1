"""Train the lecture's LeNet-like on Fashion-MNIST three ways, side by side, on this machine.

    python benchmarks/train_cpu.py [--epochs 3] [--batch-sizes 32,128] [--out benchmarks/results]
    python benchmarks/train_cpu.py --dry-run [--out DIR]

Competitors, each in its own subprocess so that none inherits another's threads or caches:

- cnnlab: ``cnnlab.train`` (data resident as uint8 tensors, batches are index slices);
- keras: Keras 3 with the torch backend, the slide's Sequential model, ``model.fit``
  (needs ``pip install keras``; skipped with a note when Keras is missing);
- torch-dataloader: a plain PyTorch loop in the style of pytorch/examples/mnist: a Dataset that
  converts one sample at a time, a DataLoader, the same model.

All use Adam at lr 1e-3, no augmentation, the 28x28 images zero-padded to 32x32 and normalised
with the training set's mean and std. Seconds per epoch exclude evaluation; accuracy is on the
10,000 test images. Prints a table and writes JSON with the context (versions, CPU, threads).

``--dry-run`` runs the same code in seconds, so that CI keeps the script working: one epoch
capped at a few optimizer steps per run, batch 32, one repeat, Fashion-MNIST if it is on this
machine (else scikit-learn's bundled digits, resized to 32x32), the JSON into a temporary folder
(or ``--out``), never into benchmarks/results.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _dry_run import RESULTS, refuse_recorded_results  # benchmarks/ is on sys.path

SEED = 0
LR = 1e-3
DATA = "fashion-mnist"
OFFLINE_DATA = "digits"  # bundled with scikit-learn: a dry run needs no download
MODEL_SHAPE = (1, 32, 32)  # (C, H, W) the LeNet-like takes
REAL_RUN = {"epochs": 3, "batch_sizes": "32,128", "repeats": 1}
DRY_RUN = {"epochs": 1, "batch_sizes": "32", "repeats": 1}
DRY_RUN_STEPS = 8  # optimizer steps per run in a dry run


@dataclass(frozen=True)
class CompetitorRun:
    """What one competitor's process trains: ``steps`` caps the optimizer steps of the run."""

    data: str
    epochs: int
    batch_size: int
    steps: int | None = None

    def flags(self) -> list[str]:
        flags = ["--data", self.data, "--epochs", str(self.epochs)]
        flags += ["--batch-size", str(self.batch_size)]
        return flags + (["--steps", str(self.steps)] if self.steps else [])


@dataclass(frozen=True)
class BenchConfig:
    """The side-by-side run: every competitor at every batch size, ``repeats`` times.

    ``steps`` caps each run's optimizer steps (a dry run's); ``out`` None is benchmarks/results,
    or a fresh temporary folder in a dry run.
    """

    epochs: int
    batch_sizes: tuple[int, ...]
    repeats: int
    data: str
    steps: int | None
    dry_run: bool
    out: Path | None


def input_adapter(data):
    """cnnlab's rule from the data's images to the model's 32x32: Fashion-MNIST's 28x28 are
    zero-padded by 2 pixels (black, before normalisation), the 8x8 digits resized."""
    from cnnlab.data import InputAdapter

    return InputAdapter(data.image_shape, MODEL_SHAPE)


def load_adapted(name: str):
    """The dataset as float32 NCHW arrays adapted to 32x32 and normalised, plus labels."""
    from cnnlab.data import load_dataset

    data = load_dataset(name)
    mean, std = data.mean_std()
    adapter = input_adapter(data)

    def prepare(images):
        return ((adapter(images.float() / 255.0) - mean[0]) / std[0]).numpy()

    return (
        prepare(data.train_images),
        data.train_labels.numpy(),
        prepare(data.test_images),
        data.test_labels.numpy(),
    )


def run_cnnlab_recipe(run: CompetitorRun) -> dict:
    """cnnlab's own recipe for the LeNet-like (AdamW, one-cycle; its epochs and batch size)."""
    from cnnlab.train import default_config, train

    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as folder:
        config = default_config(
            "lenet-like", run.data, steps=run.steps, device="cpu", out=str(Path(folder) / "run")
        )
        result = train(config, progress=False)
    seconds = [m["epoch_seconds"] for m in result.metrics]
    accuracy = [m["test_accuracy"] for m in result.metrics]
    reached = next((i for i, a in enumerate(accuracy) if a >= 0.90), None)
    return {
        "epoch_seconds": seconds,
        "test_accuracy": result.test_accuracy,
        "recipe_epochs": len(seconds),
        "recipe_batch_size": config.batch_size,
        "train_seconds_total": sum(seconds),
        "train_seconds_to_90": None if reached is None else sum(seconds[: reached + 1]),
    }


def run_cnnlab(run: CompetitorRun) -> dict:
    from cnnlab.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="bench-cnnlab-") as folder:
        config = TrainConfig(
            model="lenet-like",
            data=run.data,
            epochs=run.epochs,
            steps=run.steps,
            batch_size=run.batch_size,
            optimizer="adam",
            lr=LR,
            schedule="constant",
            weight_decay=0.0,
            augment=False,
            seed=SEED,
            device="cpu",
            out=str(Path(folder) / "run"),
        )
        result = train(config, progress=False)
    seconds = [m["epoch_seconds"] for m in result.metrics]
    return {"epoch_seconds": seconds, "test_accuracy": result.test_accuracy}


def run_keras(run: CompetitorRun) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return {"skipped": "keras is not installed (pip install keras)"}
    from keras import layers

    x_train, y_train, x_test, y_test = load_adapted(run.data)
    x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)  # NHWC
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 1)),
            layers.Conv2D(filters=6, kernel_size=(3, 3), activation="relu"),
            layers.AveragePooling2D(pool_size=(2, 2)),
            layers.Conv2D(filters=16, kernel_size=(3, 3), activation="relu"),
            layers.AveragePooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dense(units=120, activation="relu"),
            layers.Dense(units=84, activation="relu"),
            layers.Dense(units=10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    class EpochTimer(keras.callbacks.Callback):
        """Seconds per epoch; stops training after ``steps`` optimizer steps when given (Keras
        looks at ``stop_training`` after every batch)."""

        def __init__(self, steps: int | None):
            super().__init__()
            self.seconds: list[float] = []
            self.steps_left = steps

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.steps_left is not None:
                self.steps_left -= 1
                self.model.stop_training = self.steps_left <= 0

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer(run.steps)
    model.fit(
        x_train,
        y_train,
        batch_size=run.batch_size,
        epochs=run.epochs,
        callbacks=[timer],
        verbose=0,
    )
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    return {"epoch_seconds": timer.seconds, "test_accuracy": float(accuracy)}


def run_torch_dataloader(run: CompetitorRun) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from cnnlab.data import load_dataset
    from cnnlab.models import create_model

    torch.manual_seed(SEED)
    data = load_dataset(run.data)
    mean, std = data.mean_std()
    adapter = input_adapter(data)

    class ImageDataset(Dataset):
        """One sample at a time, converted on access, like torchvision's datasets + transforms."""

        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            x = adapter(self.images[index : index + 1].float().div(255.0))[0]  # (1, 32, 32)
            return x.sub(mean[0]).div(std[0]), int(self.labels[index])

    train_loader = DataLoader(
        ImageDataset(data.train_images, data.train_labels), batch_size=run.batch_size, shuffle=True
    )
    test_loader = DataLoader(ImageDataset(data.test_images, data.test_labels), batch_size=1000)
    model = create_model("lenet-like", num_classes=len(data.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    seconds = []
    steps_left = run.steps
    for _ in range(run.epochs):
        model.train()
        start = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if steps_left is not None:
                steps_left -= 1
                if steps_left <= 0:
                    break
        seconds.append(time.perf_counter() - start)
        if steps_left is not None and steps_left <= 0:
            break
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return {"epoch_seconds": seconds, "test_accuracy": correct / len(test_loader.dataset)}


RUNNERS = {"cnnlab": run_cnnlab, "keras": run_keras, "torch-dataloader": run_torch_dataloader}
ONCE = {"cnnlab-recipe": run_cnnlab_recipe}  # not per batch size
RECIPE_BATCH_SIZE = 128  # the recipe's own; only labels its row


def choose_data(dry_run: bool) -> str:
    """Fashion-MNIST (downloaded if needed); in a dry run, the bundled digits when Fashion-MNIST
    is not on this machine."""
    if not dry_run:
        return DATA
    from cnnlab.data import resolve_dataset

    try:
        resolve_dataset(DATA, download=False)
    except FileNotFoundError:
        return OFFLINE_DATA
    return DATA


def describe_data(name: str) -> str:
    from cnnlab.data import get_entry

    entry = get_entry(name)
    return f"{name} ({entry.train_count:,} train / {entry.test_count:,} test)"


def context(config: BenchConfig) -> dict:
    import torch

    from cnnlab.runtime.context import software_context
    from cnnlab.runtime.devices import cpu_name

    try:
        keras_version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        keras_version = None
    return {
        **software_context(),
        "keras_version": keras_version,
        "device": f"cpu: {cpu_name()}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": "float32",
        "epochs": config.epochs,
        "batch_sizes": list(config.batch_sizes),
        "repeats": config.repeats,
        "seed": SEED,
        "data": describe_data(config.data),
        "dry_run": config.dry_run,
        "steps_per_run": config.steps,  # None: every epoch is a full pass over the training set
        "excluded_from_epoch_seconds": "evaluation, data loading before the first epoch, imports",
    }


def child(name: str, run: CompetitorRun) -> dict:
    """Run one competitor in a fresh process; its last stdout line is its JSON result."""
    command = [sys.executable, __file__, "--only", name, *run.flags()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return {"failed": last[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge(name: str, batch_size: int, results: list[dict]) -> dict:
    """One row: every run's epochs, and the median steady epoch (each run's first epoch pays
    one-time warm-up costs, so it is left out when there are more)."""
    row: dict = {"competitor": name, "batch_size": batch_size, "runs": results}
    done = [r for r in results if "epoch_seconds" in r]
    if not done:
        for outcome in ("failed", "skipped"):
            if outcome in results[0]:
                row[outcome] = results[0][outcome]
        return row
    steady = sorted(s for r in done for s in (r["epoch_seconds"][1:] or r["epoch_seconds"]))
    row["seconds_per_epoch"] = steady[len(steady) // 2]
    accuracies = sorted(r["test_accuracy"] for r in done)
    row["test_accuracy"] = accuracies[len(accuracies) // 2]
    row.update({k: v for k, v in done[-1].items() if k not in ("epoch_seconds", "test_accuracy")})
    return row


def print_table(config: BenchConfig, rows: list[dict], recipe: dict) -> None:
    from cnnlab.runtime.devices import cpu_name

    length = f"{config.epochs} epochs"
    if config.steps:
        length += f" capped at {config.steps} steps (dry run)"
    print(f"\nLeNet-like on {describe_data(config.data)}, {length}, {cpu_name()}\n")
    print(f"{'competitor':<18}{'batch':>6}{'s/epoch':>10}{'test acc':>10}{'vs cnnlab':>11}")
    for batch_size in config.batch_sizes:
        same = {r["competitor"]: r for r in rows if r["batch_size"] == batch_size}
        base = same.get("cnnlab", {}).get("seconds_per_epoch")
        for name, row in same.items():
            if "seconds_per_epoch" not in row:
                if "failed" in row:
                    note = f"failed: {row['failed']}"
                else:
                    note = f"skipped: {row.get('skipped', 'no result')}"
                print(f"{name:<18}{batch_size:>6}  {note}")
                continue
            ratio = f"{row['seconds_per_epoch'] / base:.2f}x" if base else "-"
            print(
                f"{name:<18}{batch_size:>6}{row['seconds_per_epoch']:>10.2f}"
                f"{row['test_accuracy']:>10.4f}{ratio:>11}"
            )
    if "train_seconds_total" in recipe:
        to_90 = recipe["train_seconds_to_90"]
        print(
            f"\ncnnlab's default recipe: {recipe['recipe_epochs']} epochs at batch "
            f"{recipe['recipe_batch_size']}, test accuracy {recipe['test_accuracy']:.4f} after "
            f"{recipe['train_seconds_total']:.1f} s of training; "
            + (f"90% reached after {to_90:.1f} s" if to_90 is not None else "90% not reached")
        )
    else:
        print(f"\ncnnlab's default recipe: {recipe.get('failed', 'no result')}")


def parse_args(argv: list[str] | None = None) -> BenchConfig | tuple[str, CompetitorRun]:
    """The side-by-side run's config, or (competitor, run) in a competitor's own process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help=f"seconds, not minutes: {DRY_RUN_STEPS} steps per run, batch 32, one repeat; "
        "the JSON goes to a temporary folder unless --out is given",
    )
    parser.add_argument("--epochs", type=int, help="default 3 (1 in a dry run)")
    parser.add_argument("--batch-sizes", help="comma-separated; default 32,128 (32 in a dry run)")
    parser.add_argument("--repeats", type=int, help="runs of each, interleaved (default 1)")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for train_cpu.json (default benchmarks/results; dry run: a temp folder)",
    )
    parser.add_argument("--only", choices=sorted({**RUNNERS, **ONCE}), help=argparse.SUPPRESS)
    parser.add_argument("--data", default=DATA, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        return args.only, CompetitorRun(args.data, args.epochs, args.batch_size, args.steps)
    for name, value in (DRY_RUN if args.dry_run else REAL_RUN).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        batch_sizes = ()
    if not batch_sizes or min(batch_sizes) < 1:
        parser.error(
            "--batch-sizes must be positive integers separated by commas. "
            f"Received: {args.batch_sizes!r}"
        )
    refuse_recorded_results(parser, args.dry_run, args.out)
    return BenchConfig(
        epochs=args.epochs,
        batch_sizes=batch_sizes,
        repeats=args.repeats,
        data=choose_data(args.dry_run),
        steps=DRY_RUN_STEPS if args.dry_run else None,
        dry_run=args.dry_run,
        out=args.out,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if isinstance(config, tuple):  # a competitor's process: one run, JSON on stdout
        name, run = config
        print(json.dumps({**RUNNERS, **ONCE}[name](run)))
        return 0
    runs: dict[tuple[str, int], list[dict]] = {}
    for repeat in range(config.repeats):  # interleaved, so that drift hits every competitor alike
        for batch_size in config.batch_sizes:
            run = CompetitorRun(config.data, config.epochs, batch_size, config.steps)
            for name in RUNNERS:
                runs.setdefault((name, batch_size), []).append(child(name, run))
                print(f"  done: {name} batch {batch_size} ({repeat + 1})", file=sys.stderr)
    rows = [merge(name, batch_size, results) for (name, batch_size), results in runs.items()]
    recipe_run = CompetitorRun(config.data, config.epochs, RECIPE_BATCH_SIZE, config.steps)
    recipe = merge("cnnlab-recipe", RECIPE_BATCH_SIZE, [child("cnnlab-recipe", recipe_run)])
    print_table(config, rows, recipe)

    out = config.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="train_cpu-dry-run-")) if config.dry_run else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_cpu.json"
    tmp = path.with_suffix(".json.tmp")
    results = {"context": context(config), "results": rows, "recipe": recipe}
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    failed = [
        f"{r['competitor']} (batch {r['batch_size']})" for r in [*rows, recipe] if "failed" in r
    ]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
