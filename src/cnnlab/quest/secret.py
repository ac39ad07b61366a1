"""The test set a quest scores on, and what the database keeps of it.

Three kinds (``TestSet.kind``):

- ``public``: a catalogue dataset's own test split, for CSV quests. Its labels ship with the
  dataset (``load_dataset("fashion-mnist").test_labels``): a CSV of them scores 1.0, so such a
  quest's scores cannot be trusted; ``quest init`` and the page say so.
- ``folder``: the test split of the organiser's ``folder:PATH``, images no team has seen. A
  CSV quest hands the images out without labels (``export_test_images``); a model quest keeps
  them on the server.
- ``perturbed``: a model quest on a catalogue dataset. Every public test image appears once, in
  a secret order, shifted, rotated, with its contrast changed and Gaussian noise added, all
  drawn under a secret seed (``Perturbation``), so that neither the public labels nor an exact
  lookup of the public images gives the answers. How strong that is (and is not): the README's
  quest section, with measurements.

A model quest stores its secret images (zlib-compressed uint8, in test-id order) and the seed
that drew them in the ``quest_settings`` row, beside the labels in ``quest_competition``; no
route sends either. The recipe's ranges are public (teams may train with the same augmentation);
the seed is not.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from cnnlab.data.catalog import FOLDER_PREFIX
from cnnlab.quest.db import (
    Competition,
    find_competition,
    load_answer_key,
    open_engine,
    settings_table,
)
from cnnlab.quest.models import ModelLimits
from cnnlab.runtime.validate import check_number

if TYPE_CHECKING:  # torch is imported for a model quest's images, not by a CSV quest's server
    import torch

SUBMISSIONS = ("csv", "model")
PUBLIC, FOLDER, PERTURBED = "public", "folder", "perturbed"
EXPORT_MARKER = "images.npy"  # an export-test folder holds it (and may be replaced whole)


@dataclass(frozen=True)
class Perturbation:
    """How a perturbed test image is drawn from a public one (each draw independent)."""

    max_shift: float = 0.1  # of the image's side, along each axis (2.8 pixels on 28x28)
    max_rotation: float = 10.0  # degrees, either way, about the centre
    max_contrast: float = 0.1  # contrast scaled by 1 +- this, about the image's mean
    noise: float = 8.0  # standard deviation of Gaussian noise, in grey levels (0..255)

    def __post_init__(self) -> None:
        check_number("max_shift", self.max_shift, 0, 0.5, "a fraction of the side in [0, 0.5)")
        check_number("max_rotation", self.max_rotation, 0, 181, "degrees from 0 to 180")
        check_number("max_contrast", self.max_contrast, 0, 1, "a fraction in [0, 1)")
        check_number("noise", self.noise, 0, 256, "grey levels from 0 to 255")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"shifted by up to {100 * self.max_shift:g}% of the side, rotated by up to "
            f"{self.max_rotation:g} degrees, contrast x(1 +- {self.max_contrast:g}), Gaussian "
            f"noise of {self.noise:g} grey levels"
        )


def perturb(
    images: torch.Tensor, seed: int, perturbation: Perturbation
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the perturbed images in a seeded order, that order): uint8 (N, C, H, W) in and out.

    One affine warp per image (bilinear; edge pixels repeated beyond the border, so nothing
    black slides in on colour images), then contrast about the image's mean, then noise.
    """
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = images.shape
    order = torch.randperm(n, generator=generator)

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
        return torch.rand(shape, generator=generator) * 2 - 1

    angle = uniform(n) * math.radians(perturbation.max_rotation)
    shift = uniform(n, 2) * perturbation.max_shift * 2  # grid units: the side spans 2
    contrast = 1 + uniform(n, 1, 1, 1) * perturbation.max_contrast
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    warped = F.grid_sample(
        images[order].to(torch.float32),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    result = (warped - mean) * contrast + mean
    result += torch.randn(result.shape, generator=generator) * perturbation.noise
    return result.round_().clamp_(0, 255).to(torch.uint8), order


@dataclass(frozen=True, repr=False)
class TestSet:
    """The images and labels a quest scores on."""

    kind: str  # PUBLIC, FOLDER or PERTURBED
    images: torch.Tensor  # uint8 (N, C, H, W), in test-id order
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    perturbation: Perturbation | None = None
    seed: int | None = None  # PERTURBED: the secret seed

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:  # never the seed
        c, h, w = self.image_shape
        return f"TestSet({self.kind}, {len(self.labels):,} images {h}x{w}x{c})"


def draw_test_set(
    dataset: Any,
    *,
    submissions: str,
    perturbation: Perturbation | None = None,
    seed: int | None = None,
) -> TestSet:
    """The test set of a new quest on ``dataset`` (a ``cnnlab.data.Dataset``).

    A folder dataset's test split as it is; a catalogue dataset's as it is for a CSV quest, and
    perturbed under ``seed`` (default: 63 fresh random bits) for a model quest.
    """
    if submissions not in SUBMISSIONS:
        raise ValueError(
            f"submissions must be one of {', '.join(SUBMISSIONS)}. Received: "
            f"submissions={submissions!r}"
        )
    images, labels, classes = dataset.test_images, dataset.test_labels, tuple(dataset.classes)
    if dataset.name.startswith(FOLDER_PREFIX):
        return TestSet(FOLDER, images, labels, classes)
    if submissions == "csv":
        return TestSet(PUBLIC, images, labels, classes)
    recipe = perturbation or Perturbation()
    drawn = secrets.randbits(63) if seed is None else seed
    perturbed, order = perturb(images, drawn, recipe)
    return TestSet(PERTURBED, perturbed, labels[order], classes, recipe, drawn)


def settings_row(test_set: TestSet, submissions: str, limits: ModelLimits | None) -> dict:
    """The ``quest_settings`` row for ``init_competition(settings=...)``."""
    if submissions == "model" and limits is None:
        limits = ModelLimits()
    model = submissions == "model"
    return {
        "submissions": submissions,
        "test_set": test_set.kind,
        "image_shape": ",".join(map(str, test_set.image_shape)),
        "classes": json.dumps(list(test_set.classes)),
        "images": zlib.compress(test_set.images.numpy().tobytes()) if model else None,
        "recipe": json.dumps(test_set.perturbation.to_dict()) if test_set.perturbation else None,
        "secret_seed": format(test_set.seed, "x") if test_set.seed is not None else None,
        "limits": json.dumps(limits.to_dict()) if model else None,
    }


@dataclass(frozen=True)
class QuestSettings:
    """How a quest scores (never its secrets)."""

    submissions: str  # "csv" or "model"
    test_set: str  # PUBLIC, FOLDER or PERTURBED
    image_shape: tuple[int, int, int] | None  # None in databases made before model quests
    classes: tuple[str, ...]
    perturbation: Perturbation | None
    limits: ModelLimits | None  # model quests

    @property
    def labels_public(self) -> bool:
        """Whether anyone can read the answers: a CSV quest on a catalogue dataset."""
        return self.test_set == PUBLIC

    def describe(self, data_name: str, test_count: int) -> str:
        if self.test_set == PERTURBED:
            assert self.perturbation is not None, "a perturbed set records its recipe"
            return (
                f"The server runs each team's ONNX model on {test_count:,} secret test images: "
                f"the public test images of {data_name} in a secret order, each "
                f"{self.perturbation.describe()}, drawn under a secret seed."
            )
        if self.submissions == "model":
            return (
                f"The server runs each team's ONNX model on the organiser's own {test_count:,} "
                "labelled test images, which no team has seen."
            )
        if self.test_set == FOLDER:
            return (
                f"Teams predict the organiser's {test_count:,} test images (`cnnlab quest "
                "export-test`); their labels are only on the server."
            )
        return (
            f"The labels of these {test_count:,} test images are public: they ship with "
            f"{data_name}, so a CSV of them scores 1.0 and these scores cannot be trusted. "
            "For an honest board, use model submissions (quest init --submissions model)."
        )

    def public_info(self) -> dict[str, Any]:
        return {
            "submissions": self.submissions,
            "test_set": self.test_set,
            "labels_public": self.labels_public,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "classes": list(self.classes),
            "perturbation": self.perturbation.to_dict() if self.perturbation else None,
            "limits": self.limits.to_dict() if self.limits else None,
        }


def load_settings(connection: Connection, competition: Competition) -> QuestSettings:
    """The quest's settings; a database made before model quests is a CSV quest."""
    row = None
    if inspect(connection).has_table(settings_table.name):
        columns = [c for c in settings_table.c if c.name not in ("images", "secret_seed")]
        row = connection.execute(select(*columns).where(settings_table.c.id == 1)).first()
    if row is None:
        kind = FOLDER if competition.data_name.startswith(FOLDER_PREFIX) else PUBLIC
        return QuestSettings("csv", kind, None, (), None, None)
    c, h, w = (int(v) for v in row.image_shape.split(","))
    return QuestSettings(
        submissions=row.submissions,
        test_set=row.test_set,
        image_shape=(c, h, w),
        classes=tuple(json.loads(row.classes)),
        perturbation=Perturbation(**json.loads(row.recipe)) if row.recipe else None,
        limits=ModelLimits.from_dict(json.loads(row.limits)) if row.limits else None,
    )


def load_secret_images(connection: Connection, settings: QuestSettings) -> torch.Tensor:
    """A model quest's secret images, uint8 (N, C, H, W) in test-id order."""
    import torch

    data = connection.execute(
        select(settings_table.c.images).where(settings_table.c.id == 1)
    ).scalar_one()
    pixels = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).view(-1, *settings.image_shape)


def quest_settings(db_url: str) -> tuple[Competition, QuestSettings]:
    """The competition and its settings, from a database made by ``quest init``."""
    with open_engine(db_url) as engine, engine.connect() as connection:
        competition = find_competition(connection)
        if competition is None:
            raise ValueError(f"{db_url} holds no competition; run `cnnlab quest init` first")
        return competition, load_settings(connection, competition)


@dataclass(frozen=True)
class ExportedTestSet:
    folder: Path
    count: int
    labels_public: bool


def export_test_images(
    db_url: str, out: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> ExportedTestSet:
    """A CSV quest's test images, for the teams: ``00000.png``... (the id is the file name) and
    ``images.npy`` (uint8 (N, C, H, W), index = id), without labels.

    The folder appears whole (built beside it, then renamed); an earlier export there is
    replaced. A model quest's images are secret and are not exported.
    """
    from PIL import Image

    from cnnlab.data import load_dataset

    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or _holds_other_files(folder)):
        raise ValueError(
            f"out must be a new or empty folder, or an earlier export-test to replace. "
            f"Received: out={str(folder)!r}"
        )
    competition, settings = quest_settings(db_url)
    if settings.submissions == "model":
        raise ValueError(
            f"{db_url} is a model quest: its test images are secret and stay on the server. "
            "Teams train on the training data and submit models (quest submit --model EXPORT_DIR)"
        )
    with open_engine(db_url) as engine, engine.connect() as connection:
        labels, _ = load_answer_key(connection)
    dataset = load_dataset(competition.data_name, data_dir=data_dir)
    if not np.array_equal(dataset.test_labels.numpy(), labels):
        raise ValueError(
            f"the test split of {competition.data_name} is not the one the quest was made "
            "from (its labels differ): expected the same data as at quest init"
        )
    images = dataset.test_images.numpy()
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    building.chmod(0o755)
    try:
        width = max(5, len(str(len(images) - 1)))
        for index, pixels in enumerate(images):
            picture = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
            Image.fromarray(picture).save(building / f"{index:0{width}d}.png", format="PNG")
        np.save(building / EXPORT_MARKER, images, allow_pickle=False)
        if folder.exists():
            shutil.rmtree(folder)
        building.rename(folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ExportedTestSet(folder, len(images), settings.labels_public)


def _holds_other_files(folder: Path) -> bool:
    names = [path.name for path in folder.iterdir()]
    return bool(names) and EXPORT_MARKER not in names
