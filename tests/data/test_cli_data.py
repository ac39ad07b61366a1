"""`cnnlab data list|info|fetch` through typer's CliRunner, mounted on a local app."""

import json

import typer
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli.data import data_app
from cnnlab.data import cache_dir

app = typer.Typer()
app.add_typer(data_app, name="data")
runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_data_list_shows_where_each_dataset_is():
    text = run("data", "list")
    assert "digits" in text and "(bundled)" in text
    assert "mnist is not here. Three ways to get it:" in text
    rows = {row["name"]: row for row in json.loads(run("data", "list", "--json"))}
    assert rows["digits"]["found"] and rows["digits"]["source"] == "bundled"
    assert not rows["cifar10"]["found"] and rows["cifar10"]["image_shape"] == [3, 32, 32]
    assert "cnnlab data fetch cifar10" in rows["cifar10"]["how_to_get"]


def test_data_list_with_a_data_dir(tiny, tmp_path):
    tiny.write(tmp_path / "tiny")
    output = run("data", "list", "--data-dir", str(tmp_path), "--json")
    rows = {row["name"]: row for row in json.loads(output)}
    assert rows["tiny"]["source"] == "data-dir" and rows["tiny"]["path"] == str(tmp_path / "tiny")


def test_data_info_digits():
    text = run("data", "info", "digits")
    assert "1,437" in text and "360" in text and "8x8x1" in text
    assert "mean     0.3054" in text
    info = json.loads(run("data", "info", "digits", "--json"))
    assert info["train_count"] + info["test_count"] == 1797
    assert sum(info["train_class_counts"]) == 1437 and len(info["classes"]) == 10


def test_data_info_grid_writes_a_png(tmp_path):
    target = tmp_path / "x.png"
    text = run("data", "info", "digits", "--grid", str(target), "--per-class", "5")
    assert f"Wrote {target}" in text.replace("\n", "")
    with Image.open(target) as image:
        image.verify()
        assert image.format == "PNG" and image.width > 200 and image.height > 300
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left


def test_data_info_grid_errors_are_one_line(tmp_path):
    output = run("data", "info", "digits", "--grid", str(tmp_path / "x.jpg"), code=2)
    assert "expected a path ending in .png" in output and len(output.strip().splitlines()) == 1


def test_unknown_dataset_exits_2_with_a_suggestion():
    output = run("data", "info", "fasion-mnist", code=2)
    assert "Did you mean: fashion-mnist" in output
    assert "Traceback" not in output


def test_fetch_downloads_then_finds_it_cached(served_tiny):
    assert "downloaded and verified into" in run("data", "fetch", "tiny")
    assert (cache_dir("tiny") / "train-images-idx3-ubyte.gz").is_file()
    result = json.loads(run("data", "fetch", "tiny", "--json"))
    expected = {"name": "tiny", "path": str(cache_dir("tiny")), "source": "cache", "skipped": []}
    assert result == expected
    assert "nothing to fetch" in run("data", "fetch", "digits")


def test_fetch_without_mirrors_reachable_names_the_three_ways(tiny):
    output = run("data", "fetch", "tiny", code=2)
    assert "Three ways to get it" in output and "(1) pass --data-dir DIR" in output


def test_fetch_folder_is_an_error():
    assert "nothing to fetch" in run("data", "fetch", "folder:/nowhere", code=2)
