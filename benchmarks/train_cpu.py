"""Train the lecture's LeNet-like on Fashion-MNIST three ways, side by side, on this machine.

    python benchmarks/train_cpu.py [--epochs 3] [--batch-sizes 32,128] [--out benchmarks/results]

Competitors, each in its own subprocess so that none inherits another's threads or caches:

- cnnlab: ``cnnlab.train`` (data resident as uint8 tensors, batches are index slices);
- keras: Keras 3 with the torch backend, the slide's Sequential model, ``model.fit``
  (needs ``pip install keras``; skipped with a note when Keras is missing);
- torch-dataloader: a plain PyTorch loop in the style of pytorch/examples/mnist: a Dataset that
  converts one sample at a time, a DataLoader, the same model.

All use Adam at lr 1e-3, no augmentation, the 28x28 images zero-padded to 32x32 and normalised
with the training set's mean and std. Seconds per epoch exclude evaluation; accuracy is on the
10,000 test images. Prints a table and writes JSON with the context (versions, CPU, threads).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SEED = 0
LR = 1e-3


def load_padded():
    """Fashion-MNIST as float32 NCHW arrays padded to 32x32 and normalised, plus labels."""
    import numpy as np

    from cnnlab.data import load_dataset

    data = load_dataset("fashion-mnist")
    mean, std = data.mean_std()

    def prepare(images):
        x = images.numpy().astype(np.float32) / 255.0
        x = (x - mean[0]) / std[0]
        return np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=(0 - mean[0]) / std[0])

    return (
        prepare(data.train_images),
        data.train_labels.numpy(),
        prepare(data.test_images),
        data.test_labels.numpy(),
    )


def run_cnnlab_recipe(epochs: int, batch_size: int) -> dict:
    """cnnlab's own recipe for the LeNet-like (AdamW, one-cycle; its default epochs)."""
    from cnnlab.train import default_config, train

    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-recipe-{os.getpid()}"
    result = train(default_config("lenet-like", "fashion-mnist", out=str(out)), progress=False)
    seconds = [m["epoch_seconds"] for m in result.metrics]
    accuracy = [m["test_accuracy"] for m in result.metrics]
    reached = next((i for i, a in enumerate(accuracy) if a >= 0.90), None)
    return {
        "epoch_seconds": seconds,
        "test_accuracy": result.test_accuracy,
        "recipe_epochs": len(seconds),
        "recipe_batch_size": 128,
        "train_seconds_total": sum(seconds),
        "train_seconds_to_90": None if reached is None else sum(seconds[: reached + 1]),
    }


def run_cnnlab(epochs: int, batch_size: int) -> dict:
    from cnnlab.train import TrainConfig, train

    config = TrainConfig(
        model="lenet-like",
        data="fashion-mnist",
        epochs=epochs,
        batch_size=batch_size,
        optimizer="adam",
        lr=LR,
        schedule="constant",
        weight_decay=0.0,
        augment=False,
        seed=SEED,
        device="cpu",
        out=str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-cnnlab-{os.getpid()}"),
    )
    result = train(config, progress=False)
    seconds = [m["epoch_seconds"] for m in result.metrics]
    return {"epoch_seconds": seconds, "test_accuracy": result.test_accuracy}


def run_keras(epochs: int, batch_size: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return {"skipped": "keras is not installed (pip install keras)"}
    from keras import layers

    x_train, y_train, x_test, y_test = load_padded()
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
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, callbacks=[timer], verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    return {"epoch_seconds": timer.seconds, "test_accuracy": float(accuracy)}


def run_torch_dataloader(epochs: int, batch_size: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from cnnlab.data import load_dataset
    from cnnlab.models import create_model

    torch.manual_seed(SEED)
    data = load_dataset("fashion-mnist")
    mean, std = data.mean_std()

    class ImageDataset(Dataset):
        """One sample at a time, converted on access, like torchvision's datasets + transforms."""

        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            x = self.images[index].float().div(255.0).sub(mean[0]).div(std[0])
            x = F.pad(x, (2, 2, 2, 2), value=(0 - mean[0]) / std[0])
            return x, int(self.labels[index])

    train_loader = DataLoader(
        ImageDataset(data.train_images, data.train_labels), batch_size=batch_size, shuffle=True
    )
    test_loader = DataLoader(ImageDataset(data.test_images, data.test_labels), batch_size=1000)
    model = create_model("lenet-like")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    seconds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return {"epoch_seconds": seconds, "test_accuracy": correct / len(test_loader.dataset)}


RUNNERS = {"cnnlab": run_cnnlab, "keras": run_keras, "torch-dataloader": run_torch_dataloader}
ONCE = {"cnnlab-recipe": run_cnnlab_recipe}  # not per batch size


def context(args) -> dict:
    import torch

    import cnnlab
    from cnnlab.runtime.context import git_commit
    from cnnlab.runtime.devices import cpu_name

    try:
        keras_version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        keras_version = None
    return {
        "cnnlab_version": cnnlab.__version__,
        "git_commit": git_commit()["commit"],
        "torch_version": torch.__version__,
        "keras_version": keras_version,
        "python": platform.python_version(),
        "device": f"cpu: {cpu_name()}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": "float32",
        "epochs": args.epochs,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "seed": SEED,
        "data": "fashion-mnist (60,000 train / 10,000 test)",
        "excluded_from_epoch_seconds": "evaluation, data loading before the first epoch, imports",
    }


def child(name: str, epochs: int, batch_size: int) -> dict:
    """Run one competitor in a fresh process; its last stdout line is its JSON result."""
    command = [sys.executable, __file__, "--only", name, "--epochs", str(epochs)]
    command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge(name: str, batch_size: int, results: list[dict]) -> dict:
    """One row: every run's epochs, and the median steady epoch (each run's first epoch pays
    one-time warm-up costs, so it is left out when there are more)."""
    row: dict = {"competitor": name, "batch_size": batch_size, "runs": results}
    done = [r for r in results if "epoch_seconds" in r]
    if not done:
        row["skipped"] = results[0].get("skipped", "no result")
        return row
    steady = sorted(s for r in done for s in (r["epoch_seconds"][1:] or r["epoch_seconds"]))
    row["seconds_per_epoch"] = steady[len(steady) // 2]
    accuracies = sorted(r["test_accuracy"] for r in done)
    row["test_accuracy"] = accuracies[len(accuracies) // 2]
    row.update({k: v for k, v in done[-1].items() if k not in ("epoch_seconds", "test_accuracy")})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, interleaved")
    parser.add_argument("--only", choices=sorted({**RUNNERS, **ONCE}), help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.only:  # the child process: one competitor, one batch size, JSON on stdout
        print(json.dumps({**RUNNERS, **ONCE}[args.only](args.epochs, args.batch_size)))
        return
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs: dict[tuple[str, int], list[dict]] = {}
    for repeat in range(args.repeats):  # interleaved, so that drift hits every competitor alike
        for batch_size in args.batch_sizes:
            for name in RUNNERS:
                runs.setdefault((name, batch_size), []).append(child(name, args.epochs, batch_size))
                print(f"  done: {name} batch {batch_size} ({repeat + 1})", file=sys.stderr)
    rows = [merge(name, batch_size, results) for (name, batch_size), results in runs.items()]
    recipe = merge("cnnlab-recipe", 128, [child("cnnlab-recipe", 0, 128)])
    from cnnlab.runtime.devices import cpu_name

    print(f"\nLeNet-like on Fashion-MNIST, {args.epochs} epochs, {cpu_name()}\n")
    print(f"{'competitor':<18}{'batch':>6}{'s/epoch':>10}{'test acc':>10}{'vs cnnlab':>11}")
    for batch_size in args.batch_sizes:
        same = {r["competitor"]: r for r in rows if r["batch_size"] == batch_size}
        base = same.get("cnnlab", {}).get("seconds_per_epoch")
        for name, row in same.items():
            if "seconds_per_epoch" not in row:
                print(f"{name:<18}{batch_size:>6}  {row.get('skipped', 'no result')}")
                continue
            ratio = f"{row['seconds_per_epoch'] / base:.2f}x" if base else "-"
            print(
                f"{name:<18}{batch_size:>6}{row['seconds_per_epoch']:>10.2f}"
                f"{row['test_accuracy']:>10.4f}{ratio:>11}"
            )
    if "train_seconds_total" in recipe:
        to_90 = recipe["train_seconds_to_90"]
        print(
            f"\ncnnlab's default recipe: {recipe['recipe_epochs']} epochs at batch 128, "
            f"test accuracy {recipe['test_accuracy']:.4f} after "
            f"{recipe['train_seconds_total']:.1f} s of training; "
            + (f"90% reached after {to_90:.1f} s" if to_90 is not None else "90% not reached")
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "train_cpu.json"
    tmp = path.with_suffix(".json.tmp")
    results = {"context": context(args), "results": rows, "recipe": recipe}
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
