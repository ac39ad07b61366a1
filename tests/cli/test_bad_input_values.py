"""Issue 15's remaining bad input: each is one line on stderr naming the option and the value,
exit status 2, nothing measured or written."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

import cnnlab.bench.memory
from cnnlab.cli import app

runner = CliRunner()


def fails(*args: str | os.PathLike[str], code: int = 2) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_models_pattern_that_matches_nothing_says_so():
    line = fails("models", "xyz")
    assert "no model matches 'xyz'" in line
    assert "resnet18" in line


@pytest.mark.parametrize("flag", ["--num-classes", "--in-channels"])
def test_summary_refuses_zero_classes_or_channels(flag):
    line = fails("summary", "lenet-like", flag, "0")
    assert f"{flag}=0" in line
    assert "positive integer" in line


def test_an_overlong_name_is_cut_in_the_message():
    line = fails("summary", "a" * 10_000)
    assert "characters)" in line
    assert len(line) < 1_000


@pytest.fixture
def one_gib_free(monkeypatch):
    monkeypatch.setattr(cnnlab.bench.memory, "available_bytes", lambda device: 1 << 30)


def test_ceilings_size_that_cannot_be_allocated_says_how_much_it_needs(one_gib_free):
    line = fails("bench", "ceilings", "--device", "cpu", "--size", "100000")
    assert "--size=100000 needs about 149.0 GiB" in line
    assert "1.0 GiB available" in line


def test_ceilings_buffer_errors_name_buffer_mib(one_gib_free):
    assert "--buffer-mib=0" in fails("bench", "ceilings", "--device", "cpu", "--buffer-mib", "0")
    line = fails("bench", "ceilings", "--device", "cpu", "--buffer-mib", "4096")
    assert "--buffer-mib=4096 needs about 8.0 GiB" in line
    assert "buffer_bytes" not in line


def test_crossover_width_that_cannot_be_allocated_says_how_much_it_needs(one_gib_free, tmp_path):
    out = tmp_path / "x"
    line = fails("bench", "crossover", "--devices", "cpu", "--widths", "100000", "--out", out)
    assert "--widths=100000 needs about 150.2 GiB" in line
    assert not out.exists()


@pytest.mark.parametrize("url", ["http://[::1", "http//bad", "ftp://host"])
def test_a_malformed_server_url_is_one_line_naming_server(url):
    line = fails("quest", "leaderboard", "--server", url)
    assert f"--server='{url}'" in line


def test_a_decompression_bomb_png_is_refused_naming_input(tmp_path):
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)  # 100 M pixels: over Pillow's warning limit
    line = fails("explain", "conv", "--input", bomb)
    assert line.startswith("error: --input could not be read")
    assert "decompression bomb" in line
    assert f"--input='{bomb}'" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_explain_refuses_a_bias_that_is_not_finite(value):
    assert f"--bias {value}" in fails("explain", "conv", "--bias", value)


def test_explain_refuses_a_padding_as_large_as_the_kernel():
    line = fails("explain", "conv", "--padding", "99999999999999999999")
    assert "--padding must be smaller than the kernel (3x3)" in line


def test_tour_with_a_dataset_that_does_not_exist_fails_before_it_starts():
    result = runner.invoke(app, ["tour", "--data", "nosuch", "--no-hardware"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # nothing of the tour ran
    assert "--data='nosuch'" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "99999999999999999999"], "--epochs must be an integer from 1 to 1000000"),
        (["--threads", "1000"], "--threads must be an integer from 1 to"),
        (["--seed", str(2**40)], "--seed=1099511627776"),
    ],
)
@pytest.mark.parametrize("command", [["train"], ["bench", "run"]])
def test_train_refuses_numbers_out_of_range_naming_the_flag(tmp_path, command, args, expected):
    out = tmp_path / "run"
    line = fails(*command, "lenet-like", "--data", "digits", "--out", out, *args)
    assert expected in line
    assert not out.exists()


def test_crossover_refuses_an_epoch_too_large_to_index():
    line = fails("bench", "crossover", "--samples", "99999999999999999999")
    assert "--samples must be an integer from 1 to 100000000" in line


def test_quest_init_refuses_a_daily_limit_too_large_and_makes_no_database(tmp_path):
    db = tmp_path / "q.db"
    line = fails(
        "quest",
        "init",
        "--data",
        "digits",
        "--db",
        f"sqlite:///{db}",
        "--daily-limit",
        "99999999999999999999",
    )
    assert "--daily-limit must be an integer from 1 to 1000000" in line
    assert not db.exists()
