"""How secret is a model quest's perturbed test set? Attacks that use the public test labels.

    python benchmarks/quest_secret.py [--data fashion-mnist] [--seed 1] [--queries 2000]
                                      [--max-shift-search 3] [--cnn-epochs 2] [--out DIR]
    python benchmarks/quest_secret.py --dry-run [--out DIR]

A model quest on a public dataset (``quest init --submissions model``) scores every model on the
public test images, each perturbed under a secret seed, in a secret order
(``cnnlab.quest.secret.draw_test_set``, the code the server uses). Its ranges are public; only
the seed is not. Measured here, on that very set:

- ``public labels``: the public test labels as predictions for the secret ids (what a CSV of
  them would score; a model quest refuses CSV files anyway).
- ``exact lookup``: secret images that are a public test image bit for bit (a model that hashes
  its input and looks the label up).
- ``1-NN over the public test images``: a memorising model, nearest public test image in pixels;
  next to ``1-NN over the training images``, the honest version of the same model.
- ``shift search over the public test images``: the nearest public test image under every
  integer shift up to ``--max-shift-search`` pixels, the undoing of the perturbation a determined
  team could build (on ``--queries`` secret images): how often it finds the very source image,
  and the label it gives.
- ``CNN`` (``--cnn-epochs`` > 0): a small convolutional network trained with the quest's own
  perturbation as augmentation (teams may do the same: the ranges are public), on the training
  images, and again on the training plus the public test images (a team that trains on the
  test set with its public labels). Accuracy on the public test images and on the secret set.

Prints the table and writes ``quest_secret.json`` with the context. ``--dry-run``: digits, a
few queries, one CNN epoch, seconds; the JSON goes to a temporary folder (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from _dry_run import RESULTS, refuse_recorded_results  # benchmarks/ is on sys.path
from cnnlab.quest.secret import Perturbation, draw_test_set, perturb
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import cpu_name
from cnnlab.runtime.files import write_json


def nearest_labels(
    references: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, chunk: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """(label, index) of each query's nearest reference image, in Euclidean pixel distance."""
    flat = references.flatten(1).float()
    found = []
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start : start + chunk].flatten(1).float(), flat)
        found.append(distances.argmin(dim=1))
    index = torch.cat(found)
    return labels[index], index


def shift_search(
    references: torch.Tensor, queries: torch.Tensor, max_shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest reference under any shift, its distance): every integer shift up
    to ``max_shift`` pixels each way, edges filled with zeros."""
    best = torch.full((len(queries),), float("inf"))
    index = torch.zeros(len(queries), dtype=torch.long)
    flat_queries = queries.flatten(1).float()
    h, w = references.shape[2:]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = torch.zeros_like(references, dtype=torch.float32)
            shifted[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = references[
                :, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ].float()
            distances, nearest = torch.cdist(flat_queries, shifted.flatten(1)).min(dim=1)
            better = distances < best
            best[better], index[better] = distances[better], nearest[better]
    return index, best


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with pooling and two dense layers (about 0.2 M parameters at 28x28)."""

    def __init__(self, channels: int, side: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(64 * (side // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_cnn(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    *,
    epochs: int,
    recipe: Perturbation,
    seed: int,
) -> nn.Module:
    """Adam, batch 128; each batch perturbed by the quest's recipe under a fresh seed."""
    torch.manual_seed(seed)
    c, h, _ = images.shape[1:]
    model = SmallCNN(c, h, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    draws = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=draws)
        for start in range(0, len(images), 128):
            batch = order[start : start + 128]
            seed_of_batch = int(torch.randint(0, 2**62, (1,), generator=draws))
            augmented, shuffled = perturb(images[batch], seed_of_batch, recipe)
            loss = F.cross_entropy(model(augmented.float() / 255), labels[batch][shuffled])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predicted = torch.cat(
            [
                model(images[i : i + 1000].float() / 255).argmax(1)
                for i in range(0, len(images), 1000)
            ]
        )
    return float((predicted == labels).float().mean())


def run(args: argparse.Namespace) -> dict:
    dataset = cnnlab.load_dataset(args.data)
    test_set = draw_test_set(dataset, submissions="model", seed=args.seed)
    secret, secret_labels = test_set.images, test_set.labels
    order = torch.randperm(len(secret), generator=torch.Generator().manual_seed(args.seed))
    public, public_labels = dataset.test_images, dataset.test_labels
    rows = []

    def add(attack: str, what: str, value: float, seconds: float) -> None:
        rows.append({"attack": attack, "measure": what, "value": value, "seconds": seconds})

    start = time.perf_counter()
    add(
        "public labels",
        "accuracy on the secret set",
        float((public_labels == secret_labels).float().mean()),
        0.0,
    )
    known = {image.numpy().tobytes() for image in public}
    exact = sum(image.numpy().tobytes() in known for image in secret) / len(secret)
    add("exact lookup", "secret images found bit for bit", exact, time.perf_counter() - start)
    for name, references, labels in (
        ("1-NN over the public test images", public, public_labels),
        ("1-NN over the training images", dataset.train_images, dataset.train_labels),
    ):
        start = time.perf_counter()
        guessed, _ = nearest_labels(references, labels, secret)
        value = float((guessed == secret_labels).float().mean())
        add(name, "accuracy on the secret set", value, time.perf_counter() - start)
    queries = min(args.queries, len(secret))
    start = time.perf_counter()
    found, _ = shift_search(public, secret[:queries], args.max_shift_search)
    seconds = time.perf_counter() - start
    attack = f"shift search (+-{args.max_shift_search} px) over the public test images"
    add(attack, "source image found", float((found == order[:queries]).float().mean()), seconds)
    right = float((public_labels[found] == secret_labels[:queries]).float().mean())
    add(attack, "accuracy on the secret set", right, seconds)
    if args.cnn_epochs > 0:
        recipe = test_set.perturbation
        classes = len(dataset.classes)
        for name, images, labels in (
            ("CNN trained on the training images", dataset.train_images, dataset.train_labels),
            (
                "CNN trained on the training + public test images",
                torch.cat([dataset.train_images, public]),
                torch.cat([dataset.train_labels, public_labels]),
            ),
        ):
            start = time.perf_counter()
            model = train_cnn(
                images, labels, classes, epochs=args.cnn_epochs, recipe=recipe, seed=args.seed
            )
            seconds = time.perf_counter() - start
            add(name, "accuracy on the public test", accuracy(model, public, public_labels), 0.0)
            add(name, "accuracy on the secret set", accuracy(model, secret, secret_labels), seconds)
    return {
        "context": {
            **software_context(),
            "benchmark": "quest_secret",
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "data": args.data,
            "test_images": len(secret),
            "seed": args.seed,
            "perturbation": test_set.perturbation.to_dict(),
            "queries": queries,
            "max_shift_search": args.max_shift_search,
            "cnn_epochs": args.cnn_epochs,
            "dry_run": args.dry_run,
        },
        "results": rows,
    }


def print_table(result: dict) -> None:
    context = result["context"]
    print(
        f"{context['data']}: {context['test_images']:,} secret test images "
        f"(the public ones perturbed under seed {context['seed']})"
    )
    print(f"{'attack':<52} {'measure':<34} {'value':>7} {'seconds':>8}")
    for row in result["results"]:
        print(
            f"{row['attack']:<52} {row['measure']:<34} {row['value']:>7.4f} {row['seconds']:>8.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="a public dataset (default fashion-mnist)")
    parser.add_argument("--seed", type=int, default=1, help="the perturbation's seed")
    parser.add_argument("--queries", type=int, default=None, help="secret images shift-searched")
    parser.add_argument("--max-shift-search", type=int, default=None, help="pixels each way")
    parser.add_argument("--cnn-epochs", type=int, default=None, help="0: no CNN")
    parser.add_argument("--out", type=Path, default=None, help="folder for quest_secret.json")
    parser.add_argument("--dry-run", action="store_true", help="digits, tiny sizes, seconds")
    args = parser.parse_args(argv)
    refuse_recorded_results(parser, args.dry_run, args.out)
    defaults = (
        {"data": "digits", "queries": 50, "max_shift_search": 1, "cnn_epochs": 1}
        if args.dry_run
        else {"data": "fashion-mnist", "queries": 2000, "max_shift_search": 3, "cnn_epochs": 2}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    out = args.out or (Path(tempfile.mkdtemp()) if args.dry_run else RESULTS)
    result = run(args)
    print_table(result)
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / "quest_secret.json", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
