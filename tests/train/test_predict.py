"""Using a trained model: loading checkpoints, preparing image files, predicting, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli.predict import evaluate_command, predict_command
from cnnlab.darknet.convert import load_run_model
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train.predict import (
    FilePrediction,
    image_files,
    load,
    predict_files,
    prepare_image,
    write_predictions,
)

DIGITS = [str(d) for d in range(10)]
MEAN, STD = 0.3, 0.35


def save_checkpoint(
    path,
    model_name: str = "lenet-like",
    *,
    data_shape=(1, 28, 28),
    data: str = "mnist",
    classes=DIGITS,
    state_dict=None,
    seed: int = 0,
):
    """A checkpoint as the trainer writes it, built by hand; returns the model it holds."""
    torch.manual_seed(seed)
    kwargs = {"num_classes": len(classes)} | ({"width": 16} if model_name == "mlp" else {})
    model = create_model(model_name, **kwargs)
    info = model.cnnlab
    checkpoint = {
        "format": "cnnlab-checkpoint",
        "version": 1,
        "model": {
            "name": info.name,
            "kwargs": dict(info.kwargs),
            "input_shape": list(info.input_shape),
            "num_classes": info.num_classes,
        },
        "state_dict": model.state_dict() if state_dict is None else state_dict,
        "optimizer": {},
        "scheduler": {},
        "scaler": None,
        "rng": {},
        "epoch": 2,
        "step": 0,
        "global_step": 20,
        "config": {"data": data, "data_dir": None, "batch_size": 64},
        "data": {
            "name": data,
            "shape": list(data_shape),
            "normalization": {"mean": [MEAN] * data_shape[0], "std": [STD] * data_shape[0]},
            "classes": list(classes),
            "adaptation": "",
        },
        "metrics": [],
        "best": None,
        "finished": True,
        "cnnlab_version": "0.1.0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return model.eval()


def write_image(path, pixels: np.ndarray, **save_options) -> None:
    Image.fromarray(pixels.astype(np.uint8)).save(path, **save_options)


def drawing(height: int, width: int) -> np.ndarray:
    """A black stroke on white paper, like a digit drawn on a tablet."""
    pixels = np.full((height, width), 255, dtype=np.uint8)
    pixels[height // 4 : -height // 4, width // 2 - 2 : width // 2 + 2] = 0
    return pixels


def probabilities_by_hand(model, images: torch.Tensor) -> torch.Tensor:
    """What predicting 28x28 grey images must give, written out: pixels / 255, normalised with
    the checkpoint's MEAN and STD, zero-padded 28 -> 32 (LeNet-like's input; zero pixels, so the
    padding is the normalised black), the model's logits, softmax."""
    x = (images.float() / 255 - MEAN) / STD
    x = F.pad(x, (2, 2, 2, 2), value=(0 - MEAN) / STD)  # (N, 1, 32, 32)
    with torch.no_grad():
        return model(x).softmax(dim=1)


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run"
    model = save_checkpoint(folder / "checkpoint.pt")
    return folder, model


def test_load_round_trips(run_dir):
    folder, model = run_dir
    for source in (folder, folder / "checkpoint.pt", str(folder)):
        predictor = load(source, device="cpu")
        assert predictor.classes == tuple(DIGITS) and predictor.data_shape == (1, 28, 28)
        assert predictor.normalization.mean == (MEAN,) and predictor.normalization.std == (STD,)
        assert predictor.adapter.data_shape == (1, 28, 28)
        assert predictor.adapter.model_shape == (1, 32, 32)
        assert predictor.device == torch.device("cpu") and not predictor.model.training
        assert predictor.checkpoint == folder / "checkpoint.pt"
    assert repr(predictor).startswith("Predictor('lenet-like', trained on 'mnist', 10 classes")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(predictor.model.state_dict()[name], tensor, rtol=0, atol=0)

    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    probabilities = predictor.predict(images, batch_size=2)
    expected = probabilities_by_hand(model, images)
    torch.testing.assert_close(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_top_k(run_dir):
    folder, model = run_dir
    predictor = load(folder, device="cpu")
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    top = predictor.top_k(images, 3)
    expected = probabilities_by_hand(model, images).sort(dim=1, descending=True)
    assert [len(row) for row in top] == [3, 3, 3]
    for row, values, indices in zip(top, expected.values, expected.indices, strict=True):
        assert [name for _, name in row] == [DIGITS[i] for i in indices[:3]]
        assert [p for p, _ in row] == pytest.approx(values[:3].tolist(), rel=1e-5)
    every = predictor.top_k(images, 50)[0]  # k beyond the classes lists them all
    assert sorted(name for _, name in every) == DIGITS
    with pytest.raises(ValueError, match=r"k must be a positive integer\. Received: k=0"):
        predictor.top_k(images, 0)


def test_predict_checks_the_image_shape(run_dir):
    predictor = load(run_dir[0], device="cpu")
    with pytest.raises(
        ValueError, match=r"uint8 of shape \(N, 1, 28, 28\).*shape=\(2, 1, 32, 32\)"
    ):
        predictor.predict(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"dtype=torch\.float32"):
        predictor.predict(torch.zeros(2, 1, 28, 28))


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pt is not a cnnlab checkpoint"):
        load(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"other\.pt.*expected format='cnnlab-checkpoint'"):
        load(other)
    with pytest.raises(FileNotFoundError, match=r"No checkpoint\.pt in"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load(tmp_path / "missing.pt")


def test_load_refuses_the_weights_of_another_model(tmp_path):
    mlp = create_model("mlp", width=16)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, "lenet-like", state_dict=mlp.state_dict())
    refusal = r"checkpoint\.pt is from another model: its weights do not fit 'lenet-like'"
    with pytest.raises(ValueError, match=refusal):
        load(path, device="cpu")
    with pytest.raises(ValueError, match=refusal):  # `cnnlab darknet export` reads it too
        load_run_model(path)


def test_load_refuses_an_unknown_device(run_dir):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        load(run_dir[0], device="gpu")


def test_prepare_image_letterboxes_a_wide_drawing(tmp_path):
    path = tmp_path / "wide.png"
    write_image(path, drawing(20, 40))
    image = prepare_image(path, (1, 28, 28))
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
    # 40x20 scaled by 0.7 to 28x14: 7 rows of paper above and below, filled with white.
    assert (image[0, :7] == 255).all() and (image[0, -7:] == 255).all()
    assert image[0, 7:21].min() < 50  # the stroke survived
    inverted = prepare_image(path, (1, 28, 28), invert=True)
    torch.testing.assert_close(inverted, 255 - image)


def test_prepare_image_rgb_jpeg_keeps_colour(tmp_path):
    pixels = np.zeros((60, 30, 3), dtype=np.uint8)
    pixels[:] = (200, 40, 30)  # red paper
    pixels[20:40, 10:20] = (20, 200, 40)  # a green patch
    path = tmp_path / "tall.jpg"
    write_image(path, pixels, quality=95)
    image = prepare_image(path, (3, 32, 32))
    assert image.shape == (3, 32, 32)
    # 30x60 scaled to 16x32: 8 columns of the (red) background on each side.
    for side in (image[:, :, :8], image[:, :, -8:]):
        colour = side.float().mean(dim=(1, 2))
        torch.testing.assert_close(colour, torch.tensor([200.0, 40.0, 30.0]), atol=6, rtol=0)
    assert image[1, 14:18, 14:18].float().mean() > 150  # the green patch in the middle
    grey = prepare_image(path, (1, 16, 16))  # colour pictures for grey data: luminance
    assert grey.shape == (1, 16, 16)


def test_prepare_image_transparent_background_is_paper(tmp_path):
    pixels = np.zeros((28, 28, 4), dtype=np.uint8)  # transparent black
    pixels[8:20, 12:16] = (0, 0, 0, 255)  # an opaque black stroke
    path = tmp_path / "stroke.png"
    write_image(path, pixels)
    image = prepare_image(path, (1, 28, 28), invert=True)
    assert image[0, 0, 0] == 0 and image[0, 10, 13] == 255  # MNIST-like: light on dark


def test_prepare_image_errors(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a PNG at all")
    with pytest.raises(ValueError, match=r"garbage\.png is not an image Pillow can read"):
        prepare_image(garbage, (1, 28, 28))
    with pytest.raises(FileNotFoundError, match=r"No such image file: .*nothing\.png"):
        prepare_image(tmp_path / "nothing.png", (1, 28, 28))
    with pytest.raises(ValueError, match=r"1 \(grey\) or 3 \(RGB\) channels.*\(2, 28, 28\)"):
        prepare_image(garbage, (2, 28, 28))
    with pytest.raises(ValueError, match=r"data_shape must be \(C, H, W\)"):
        prepare_image(garbage, (28, 28))


@pytest.mark.parametrize("invert", [False, True])
def test_predict_files_goes_on_after_a_bad_file(tmp_path, run_dir, invert):
    folder, model = run_dir
    predictor = load(folder, device="cpu")
    # Two different 28x28 grey pictures: the data's size, so each file's pixels are the image.
    pictures = [drawing(28, 28), np.random.default_rng(0).integers(0, 256, (28, 28))]
    good = [tmp_path / "one.png", tmp_path / "two.png"]
    for path, pixels in zip(good, pictures, strict=True):
        write_image(path, pixels)
    garbage = tmp_path / "garbage.png"
    garbage.write_text("nope")
    results = predict_files(predictor, [good[0], garbage, good[1]], top=3, invert=invert)
    assert [r.ok for r in results] == [True, False, True]
    assert "garbage.png is not an image" in results[1].error and results[1].top == ()
    for result, path, pixels in zip((results[0], results[2]), good, pictures, strict=True):
        assert isinstance(result, FilePrediction) and result.path == path
        assert result.seconds > 0 and len(result.top) == 3
        image = torch.from_numpy(255 - pixels if invert else pixels).to(torch.uint8)
        values, indices = probabilities_by_hand(model, image[None, None])[0].topk(3)
        assert [name for _, name in result.top] == [DIGITS[i] for i in indices]
        assert [p for p, _ in result.top] == pytest.approx(values.tolist(), rel=1e-5)
    (probability, name), *_ = results[0].top
    data = json.loads(json.dumps(results[0].to_dict()))
    assert (data["path"], data["error"]) == (str(good[0]), None)
    assert data["top"][0] == {"probability": probability, "class": name}


def test_a_folder_gives_its_images_in_name_order(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not one
    extra = tmp_path / "elsewhere.dat"
    assert image_files([tmp_path, extra]) == [tmp_path / "a.JPG", tmp_path / "b.png", extra]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no image files: expected .*\.png"):
        image_files([tmp_path / "empty"])


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_predictions_equal_one_by_one(tmp_path, run_dir, batch_size):
    folder, model = run_dir
    predictor = load(folder, device="cpu")
    rng = np.random.default_rng(1)
    pictures = [rng.integers(0, 256, (28, 28)) for _ in range(7)]
    for i, pixels in enumerate(pictures):
        write_image(tmp_path / f"img{i}.png", pixels)
    (tmp_path / "img3.png").write_text("broken")  # a bad file inside a batch
    results = predict_files(predictor, [tmp_path], top=2, batch_size=batch_size)
    assert [r.path.name for r in results] == [f"img{i}.png" for i in range(7)]
    assert [r.ok for r in results] == [i != 3 for i in range(7)]
    good = [i for i in range(7) if i != 3]
    images = torch.from_numpy(np.stack([pictures[i] for i in good])).to(torch.uint8)[:, None]
    values, indices = probabilities_by_hand(model, images).topk(2)
    for row, i in enumerate(good):
        assert [name for _, name in results[i].top] == [DIGITS[j] for j in indices[row]]
        assert [p for p, _ in results[i].top] == pytest.approx(values[row].tolist(), rel=1e-5)
    # Images per pass: 6 good files in passes of batch_size files (the bad one takes a place).
    passes = [
        [i for i in range(first, min(first + batch_size, 7)) if i != 3]
        for first in range(0, 7, batch_size)
    ]
    assert [results[i].batch for i in good] == [len(p) for p in passes for _ in p]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict_files(predictor, [tmp_path], batch_size=0)


def test_write_predictions(tmp_path):
    path = write_predictions(np.array([3, 1, 4, 1, 5]), tmp_path / "out" / "preds.csv")
    assert path.read_text() == "id,label\n0,3\n1,1\n2,4\n3,1\n4,5\n"
    write_predictions(torch.tensor([9, 2]), path)  # replaces the file atomically
    assert path.read_text() == "id,label\n0,9\n1,2\n"
    assert [p.name for p in path.parent.iterdir()] == ["preds.csv"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 10)), r"1D array of integer class indices.*argmax.*shape=\(3, 10\)"),
        (np.array([0.5, 1.5]), r"integer class indices.*dtype=float64"),
        (np.array([1, -1]), "class indices >= 0. Received: a value of -1"),
    ],
)
def test_write_predictions_refuses_bad_input(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        write_predictions(bad, tmp_path / "preds.csv")
    assert not list(tmp_path.iterdir())


# The CLI, mounted on a local app as cnnlab.cli mounts it.
cli = typer.Typer()
cli.command("predict")(predict_command)
cli.command("evaluate")(evaluate_command)
runner = CliRunner()

DARKNET_HEADER = re.compile(r"^(.+): Predicted in \d+\.\d{6} seconds\.$")
DARKNET_LINE = re.compile(r"^[ \d]\d\.\d\d%: \S+$|^100\.00%: \S+$")


def test_cli_predict_darknet_style(tmp_path, run_dir):
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in images:
        write_image(path, drawing(28, 28))
    result = runner.invoke(cli, ["predict", str(run_dir[0]), *map(str, images), "--top", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 8
    assert [DARKNET_HEADER.match(lines[i]).group(1) for i in (0, 4)] == list(map(str, images))
    assert all(DARKNET_LINE.match(line) for line in lines[1:4] + lines[5:8]), lines


def test_cli_predict_reports_a_bad_file_and_exits_2(tmp_path, run_dir):
    good, garbage = tmp_path / "good.png", tmp_path / "garbage.png"
    write_image(good, drawing(28, 28))
    garbage.write_text("nope")
    args = ["predict", str(run_dir[0]), str(garbage), str(good), "--invert", "--device", "cpu"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2  # bad input, as the README says
    assert "garbage.png" in result.stderr and "not an image" in result.stderr
    assert DARKNET_HEADER.match(result.stdout.splitlines()[0]).group(1) == str(good)
    assert len(result.stdout.splitlines()) == 6  # the header and the top 5

    data = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
    assert [entry["error"] is None for entry in data] == [False, True]
    assert len(data[1]["top"]) == 5 and data[1]["seconds"] > 0


def test_cli_predict_a_folder_into_a_csv(tmp_path, run_dir):
    folder, model = run_dir
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    pictures = [rng.integers(0, 256, (28, 28)) for _ in range(5)]
    for i, pixels in enumerate(pictures):
        write_image(images / f"{i}.png", pixels)
    out = tmp_path / "out" / "predictions.csv"
    args = ["predict", str(folder), str(images), "--csv", str(out), "--batch-size", "2"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("classified 5 images in ")
    assert f"batches of up to 2, cpu); wrote {out}" in lines[0]
    rows = out.read_text().splitlines()
    assert rows[0] == "path,label,class,probability,error"
    probabilities = probabilities_by_hand(
        model, torch.from_numpy(np.stack(pictures)).to(torch.uint8)[:, None]
    )
    for i, row in enumerate(rows[1:]):
        path, label, name, probability, error = row.split(",")
        assert (path, error) == (str(images / f"{i}.png"), "")
        assert int(label) == int(probabilities[i].argmax()) and name == DIGITS[int(label)]
        assert float(probability) == pytest.approx(float(probabilities[i].max()), abs=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]  # no temporary

    (images / "9.png").write_text("broken")
    quiet = runner.invoke(cli, [*args, "--quiet"])
    assert quiet.exit_code == 2  # a bad file is bad input; the CSV still has every row
    assert quiet.stdout == "" and "9.png is not an image" in quiet.stderr
    assert out.read_text().splitlines()[-1].startswith(f"{images / '9.png'},,,,")


def test_cli_predict_csv_that_cannot_be_written(tmp_path, run_dir):
    write_image(tmp_path / "a.png", drawing(28, 28))
    (tmp_path / "taken").mkdir()
    result = runner.invoke(
        cli, ["predict", str(run_dir[0]), str(tmp_path / "a.png"), "--csv", str(tmp_path / "taken")]
    )
    assert result.exit_code == 2
    assert "--csv" in result.stderr and "taken" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_predict_bad_checkpoint_exits_2(tmp_path):
    result = runner.invoke(cli, ["predict", str(tmp_path / "nope"), str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "No such run folder or checkpoint" in result.stderr


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits-run")
    save_checkpoint(folder / "checkpoint.pt", data="digits", data_shape=(1, 8, 8))
    return folder


def test_cli_evaluate_on_digits(tmp_path, digits_run):
    csv = tmp_path / "preds.csv"
    args = ["evaluate", str(digits_run), "--device", "cpu"]  # auto would pick a GPU if any
    result = runner.invoke(cli, [*args, "--write-predictions", str(csv)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "lenet-like on digits (test, 360 images, cpu): accuracy" in text
    assert "per-class accuracy" in text and "confusion matrix" in text
    assert "8x8x1 -> 32x32x1: resized bilinearly" in text

    rows = csv.read_text().splitlines()
    assert rows[0] == "id,label" and len(rows) == 361
    predicted = np.array([int(row.split(",")[1]) for row in rows[1:]])
    dataset = load_dataset("digits")
    probabilities = load(digits_run, device="cpu").predict(dataset.test_images)
    np.testing.assert_array_equal(predicted, probabilities.argmax(dim=1).numpy())

    report = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
    confusion = np.array(report["confusion"])
    assert confusion.sum() == report["samples"] == 360
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 360)
    assert report["accuracy"] == pytest.approx(np.mean(predicted == dataset.test_labels.numpy()))
    assert [row["samples"] for row in report["per_class"]] == confusion.sum(axis=1).tolist()
    assert report["predictions_file"] is None and report["data"] == "digits"


def test_cli_evaluate_train_split(digits_run):
    args = ["evaluate", str(digits_run / "checkpoint.pt"), "--split", "train", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 1437


def test_cli_evaluate_refuses_a_dataset_with_other_classes(tmp_path):
    letters = [chr(ord("a") + i) for i in range(10)]
    save_checkpoint(tmp_path / "checkpoint.pt", data="letters", classes=letters)
    result = runner.invoke(cli, ["evaluate", str(tmp_path), "--data", "digits"])
    assert result.exit_code == 2
    assert "--data digits has the classes [0, 1, 2, 3, 4, 5, ...] (10)" in result.stderr
    assert "trained on letters" in result.stderr
