"""A quest's test set: the perturbed secret set, what `quest init` says about public labels,
and `quest export-test` (a CSV quest's images for the teams, without labels)."""

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import cnnlab
from cnnlab.cli import app
from cnnlab.quest.db import load_competition, open_engine
from cnnlab.quest.models import ModelLimits
from cnnlab.quest.secret import Perturbation, draw_test_set, load_secret_images, load_settings
from cnnlab.quest.server import create_app

runner = CliRunner()


def quest(*args: str):
    return runner.invoke(app, ["quest", *args])


@pytest.fixture(scope="module")
def digits():
    return cnnlab.load_dataset("digits")


def test_no_perturbation_is_a_permutation_of_the_public_images(digits):
    """The warp, contrast and noise at zero leave every pixel as it was: the order alone."""
    test_set = draw_test_set(
        digits, submissions="model", perturbation=Perturbation(0, 0, 0, 0), seed=3
    )
    order = torch.randperm(360, generator=torch.Generator().manual_seed(3))
    assert torch.equal(test_set.images, digits.test_images[order])
    assert torch.equal(test_set.labels, digits.test_labels[order])


def test_the_perturbed_set_is_drawn_by_its_seed(digits):
    first, again, other = (draw_test_set(digits, submissions="model", seed=s) for s in (1, 1, 2))
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)
    assert first.kind == "perturbed" and first.perturbation == Perturbation()
    hidden = draw_test_set(digits, submissions="model", seed=987654321)
    assert "987654321" not in repr(hidden) and format(987654321, "x") not in repr(hidden)
    # labels follow their images: the same multiset, in the secret order
    assert sorted(first.labels.tolist()) == sorted(digits.test_labels.tolist())
    # no image is left as it was
    order = torch.randperm(360, generator=torch.Generator().manual_seed(1))
    changed = (first.images != digits.test_images[order]).flatten(1).any(dim=1)
    assert bool(changed.all())


def test_a_fresh_seed_is_drawn_when_none_is_given(digits):
    assert (
        draw_test_set(digits, submissions="model").seed
        != draw_test_set(digits, submissions="model").seed
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Perturbation(max_shift=0.7), "max_shift must be a fraction"),
        (lambda: Perturbation(noise=-1), "noise must be grey levels"),
        (lambda: ModelLimits(max_model_mb=0), "max_model_mb must be a size in MB above 0"),
        (lambda: ModelLimits(model_threads=0), "model_threads must be an integer from 1"),
        (lambda: ModelLimits(max_model_memory_mb=100), "max_model_memory_mb must be an integer"),
    ],
)
def test_bad_recipes_and_limits_name_the_argument(make, message):
    with pytest.raises(ValueError, match="Received: ") as caught:
        make()
    assert message in str(caught.value)


def test_a_csv_quest_on_a_public_dataset_warns_that_its_labels_are_public(tmp_path):
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    created = quest("init", "--data", "digits", "--db", db, "--json")
    assert created.exit_code == 0, created.output
    assert "test labels of digits are public" in created.stderr
    assert "cannot be trusted" in created.stderr
    info = json.loads(created.stdout)
    assert info["submissions"] == "csv" and info["labels_public"] is True
    with TestClient(create_app(db)) as client:
        page = client.get("/").text
        assert client.get("/api/competition").json()["labels_public"] is True
    assert 'class="warning"' in page and "cannot be trusted" in page


def test_a_model_quest_does_not_warn_and_keeps_its_limits(tmp_path):
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    created = quest(
        "init", "--data", "digits", "--db", db, "--submissions", "model",
        "--max-model-mb", "5", "--model-threads", "2", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "public" not in created.stderr
    info = json.loads(created.stdout)
    assert (info["test_set"], info["labels_public"]) == ("perturbed", False)
    assert info["limits"]["max_model_mb"] == 5 and info["limits"]["model_threads"] == 2
    with TestClient(create_app(db)) as client:
        page = client.get("/").text
    assert "Limits per model: 5 MB" in page and "2 thread(s)" in page
    assert "cannot be trusted" not in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-model-mb", "0"], "--max-model-mb must be a size in MB above 0"),
        (["--model-threads", "0"], "--model-threads must be an integer from 1 to 256"),
        (["--max-model-seconds", "0.5"], "--max-model-seconds must be a time"),
    ],
)
def test_bad_limits_are_refused_before_a_database_is_made(tmp_path, args, message):
    result = quest(
        "init", "--data", "digits", "--submissions", "model",
        "--db", f"sqlite:///{tmp_path / 'q.db'}", *args,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "q.db").exists()


def test_export_test_writes_the_images_without_labels(tmp_path, digits):
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    assert quest("init", "--data", "digits", "--db", db).exit_code == 0
    out = tmp_path / "for-students"
    exported = quest("export-test", "--db", db, "--out", str(out), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout) == {"out": str(out), "images": 360}
    assert "labels ship with the dataset" in exported.stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(360)] + ["images.npy"]
    assert np.array_equal(np.load(out / "images.npy"), digits.test_images.numpy())
    assert np.array_equal(np.asarray(Image.open(out / "00007.png")), digits.test_images[7, 0])
    again = quest("export-test", "--db", db, "--out", str(out))  # an earlier export: replaced
    assert again.exit_code == 0, again.output
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    refused = quest("export-test", "--db", db, "--out", str(tmp_path / "notes"))
    assert refused.exit_code == 2 and "--out must be a new or empty folder" in refused.stderr


def test_a_model_quest_keeps_its_test_images(tmp_path):
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    assert quest("init", "--data", "digits", "--db", db, "--submissions", "model").exit_code == 0
    refused = quest("export-test", "--db", db, "--out", str(tmp_path / "out"))
    assert refused.exit_code == 2
    assert "test images are secret and stay on the server" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_quest_on_the_organisers_folder_keeps_its_images_as_they_are(tmp_path, digits):
    """folder:PATH with train/ and test/: the test split is the secret set, unchanged."""
    root = tmp_path / "own"
    for split, images, labels in (
        ("train", digits.train_images[:40], digits.train_labels[:40]),
        ("test", digits.test_images[:30], digits.test_labels[:30]),
    ):
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(folder / f"{index:03d}.png")
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    data = f"folder:{root}"
    created = quest("init", "--data", data, "--db", db, "--submissions", "model", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["test_set"] == "folder"
    expected = cnnlab.load_dataset(data).test_images
    with open_engine(db) as engine, engine.connect() as connection:
        settings = load_settings(connection, load_competition(connection))
        assert torch.equal(load_secret_images(connection, settings), expected)
    assert settings.labels_public is False and settings.test_set == "folder"
