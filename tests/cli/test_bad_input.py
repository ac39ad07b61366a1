"""What a new user meets: bad input, unwritable outputs, Ctrl-C, markup in values, pipes.

Every failure is one line on stderr that names the option and the value, exit status 2 (130
for Ctrl-C), no traceback, and nothing half-written.
"""

import errno
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cnnlab.runtime.files
from cnnlab.cli import app
from cnnlab.cli.common import out

runner = CliRunner()


def fails(*args: str | os.PathLike[str], code: int = 2) -> str:
    """Run ``cnnlab ARGS``, check the exit status and one clean line on stderr; return it."""
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def succeeds(*args: str | os.PathLike[str]) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write fails as on a full disk (ENOSPC at fsync, after the data)."""

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cnnlab.runtime.files.os, "fsync", no_space)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*"))


# -- rich markup in user values is printed literally ------------------------------------------


def test_markup_in_an_error_message_is_printed_literally():
    line = fails("summary", "[/oops]")
    assert "'[/oops]'" in line


def test_markup_in_a_missing_input_file_name_is_echoed(tmp_path):
    missing = tmp_path / "[bold]x[/bold].png"
    line = fails("explain", "conv", "--input", missing)
    assert str(missing) in line


def test_markup_in_an_input_file_name_is_printed_literally(tmp_path):
    matrix = tmp_path / "[red]m.csv"
    matrix.write_text("1,2,3\n4,5,6\n7,8,9\n")
    text = succeeds("explain", "conv", "--input", matrix)
    assert f"convolution of {matrix}" in text
    text = succeeds("explain", "pool", "--input", matrix, "--size", "2", "--stride", "1")
    assert str(matrix) in text


# -- inputs that are not what they claim to be -------------------------------------------------


@pytest.mark.parametrize("command", ["conv", "pool"])
def test_an_empty_csv_input_names_the_option_and_says_empty(tmp_path, command):
    empty = tmp_path / "x.csv"
    empty.write_bytes(b"")
    line = fails("explain", command, "--input", empty)
    assert line.startswith("error: --input holds no numbers (an empty file?)")
    assert f"Received: --input='{empty}'" in line


def test_a_text_file_named_png_as_input(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    line = fails("explain", "conv", "--input", fake)
    assert line.startswith("error: --input could not be read") and f"--input='{fake}'" in line


# -- outputs that cannot be written ------------------------------------------------------------


def test_explain_out_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    target = blocker / "maps.png"
    line = fails("explain", "conv", "--out", target)
    assert f"Received: --out {target}" in line and "cannot write" in line


def test_explain_out_on_a_full_disk_leaves_nothing(tmp_path, full_disk):
    target = tmp_path / "maps.png"
    line = fails("explain", "conv", "--out", target)
    assert "No space left on device" in line and f"Received: --out {target}" in line
    assert leftovers(tmp_path) == []


def test_explain_out_in_a_read_only_folder(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod does not make a folder read-only: refuse the mkdir.
    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    target = tmp_path / "ro" / "maps.png"
    line = fails("explain", "conv", "--out", target)
    assert line == (
        f"error: cannot write {target.parent} (Permission denied): --out expects a place where "
        f"files can be written (a writable folder, with free space). Received: --out {target}"
    )


def test_data_info_grid_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("cnnlab.data.grid.os.replace", no_space)
    target = tmp_path / "grid.png"
    line = fails("data", "info", "digits", "--grid", target)
    assert "No space left on device" in line and f"Received: --grid {target}" in line
    assert leftovers(tmp_path) == []


def test_data_info_grid_errors_name_the_options(tmp_path):
    assert "Received: --grid=" in fails("data", "info", "digits", "--grid", tmp_path / "g.jpg")
    line = fails("data", "info", "digits", "--grid", tmp_path / "g.png", "--per-class", "0")
    assert "Received: --per-class=0" in line


def test_hw_catalog_writes_under_runs_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = succeeds("hw", "catalog")
    written = list(tmp_path.glob("runs/hw-catalog-*/catalog.png"))
    assert len(written) == 1 and not (tmp_path / "catalog.png").exists()
    assert str(written[0].relative_to(tmp_path)) in text


def test_hw_catalog_on_a_full_disk(tmp_path, full_disk):
    line = fails("hw", "catalog", "--out", tmp_path / "cat")
    assert "No space left on device" in line and f"--out {tmp_path / 'cat'}" in line
    assert leftovers(tmp_path / "cat") == []


# -- tables in a pipe or on a narrow terminal keep numbers, names and paths whole --------------


@pytest.mark.parametrize("width", [80, 40])
def test_data_list_keeps_paths_and_numbers_whole(monkeypatch, width):
    monkeypatch.setattr(out, "_width", width)  # what rich assumes in a pipe (80), a narrow one
    text = succeeds("data", "list")
    lines = text.splitlines()
    digits = next(line for line in lines if "digits" in line)
    assert "1,437" in digits and "8x8x1" in digits
    import sklearn.datasets

    bundled = str(Path(sklearn.datasets.__file__).parent / "data")
    assert any(bundled in line for line in lines), text
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        row = next(line for line in lines if "fashion-mnist" in line)
        assert "/usr/share/datasets/fashion-mnist" in row and "60,000" in row


# -- a trained run, and what happens to it -----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real (one-step) run of the MLP on the bundled digits, in a folder whose name is markup."""
    run = tmp_path_factory.mktemp("runs") / "[bold]run"
    text = succeeds("train", "mlp", "--data", "digits", "--steps", "1", "--out", run)
    assert f"report: {run.resolve() / 'report.json'}" in text  # printed literally
    return run


@pytest.fixture
def truncated(trained, tmp_path) -> Path:
    """A copy of the run whose checkpoint.pt was cut in half (a copy or a write that stopped)."""
    run = tmp_path / "cut"
    run.mkdir()
    whole = (trained / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    return run


@pytest.mark.parametrize(
    "command",
    [["evaluate", "{run}"], ["predict", "{run}", "{image}"], ["train", "--resume", "{run}"]],
)
def test_a_truncated_checkpoint_is_one_line(truncated, tmp_path, command):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    args = [arg.format(run=truncated, image=image) for arg in command]
    line = fails(*args)
    assert f"{truncated / 'checkpoint.pt'} is a truncated or damaged cnnlab checkpoint" in line
    assert "expected a complete checkpoint" in line


def test_predict_on_a_text_file_named_png_exits_2(trained, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    line = fails("predict", trained, fake)
    assert line == f"error: {fake} is not an image Pillow can read (expected PNG, JPEG, BMP, ...)"


def test_evaluate_write_predictions_on_a_full_disk(trained, tmp_path, full_disk):
    target = tmp_path / "predictions.csv"
    line = fails("evaluate", trained, "--write-predictions", target)
    assert "No space left on device" in line and f"Received: --write-predictions {target}" in line
    assert leftovers(tmp_path) == []


def test_train_on_a_full_disk_names_out(tmp_path, full_disk):
    run = tmp_path / "run"
    line = fails("train", "mlp", "--data", "digits", "--steps", "1", "--out", run)
    assert "No space left on device" in line and f"Received: --out {run}" in line
    assert not [name for name in leftovers(tmp_path) if name.endswith(".tmp")]


def test_train_out_taken_names_the_option():
    # The library says out= (its Python argument); the command says --out.
    line = fails("train", "mlp", "--data", "digits", "--out", Path(__file__))
    assert "Received: --out=" in line and "out=" not in line.replace("--out=", "")


def test_interrupted_command_is_one_line_and_exit_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cnnlab.cli.data.load_dataset", interrupted)
    assert fails("data", "info", "digits", code=130) == "interrupted (Ctrl-C)"


# -- the quest -------------------------------------------------------------------------------


def test_quest_submit_of_an_empty_csv_is_refused_before_sending(tmp_path):
    empty = tmp_path / "predictions.csv"
    empty.write_bytes(b"")
    args = ["--token", "t", "--model", "m", "--train-time", "1", "--server", "http://127.0.0.1:9"]
    line = fails("quest", "submit", empty, *args)
    assert "the predictions file is empty: expected a header 'id,label'" in line
    assert f"Received: PREDICTIONS_CSV='{empty}'" in line


def test_quest_serve_on_a_busy_port_is_one_line(tmp_path):
    import socket

    db = f"sqlite:///{tmp_path / 'quest.db'}"
    succeeds("quest", "init", "--data", "digits", "--db", db)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = fails("quest", "serve", "--db", db, "--port", port)
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in line
    assert "expected a port no other program listens on" in line
    assert f"Received: --host='127.0.0.1', --port={port}" in line


# -- the library names Python arguments, not the command's flags ------------------------------


def test_library_errors_name_python_arguments(tmp_path):
    from cnnlab.quest.client import leaderboard
    from cnnlab.quest.db import make_db_engine
    from cnnlab.train.checkpoint import new_run_dir

    with pytest.raises(ValueError) as error:
        leaderboard("localhost:8000")
    assert "server=" in str(error.value) and "--" not in str(error.value)
    with pytest.raises(ValueError) as error:
        make_db_engine("mysql://u@h/q")
    assert "db_url=" in str(error.value) and "--" not in str(error.value)
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError) as error:
        new_run_dir(tmp_path, model="mlp", data="digits")
    assert "choose another out" in str(error.value) and "--out" not in str(error.value)


def test_an_os_error_names_the_file_meant_not_a_temporary_one():
    from cnnlab.cli.common import describe_os_error

    error = OSError(errno.EROFS, os.strerror(errno.EROFS), "/x/.maps.png.1234.0123abcd.tmp")
    assert describe_os_error(error) == "cannot use /x/maps.png: Read-only file system"


@pytest.mark.parametrize("command", [["init", "--data", "digits"], ["team", "add", "t"]])
def test_a_quest_database_that_is_not_one_is_one_line(tmp_path, command):
    junk = tmp_path / "quest.db"
    junk.write_text("not a database")
    line = fails("quest", *command, "--db", f"sqlite:///{junk}")
    assert "(file is not a database): --db expects a SQLite file" in line
    assert line.endswith(f"Received: --db sqlite:///{junk}")


def test_a_quest_database_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "quest.db").mkdir()  # a folder where the file should be
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    line = fails("quest", "init", "--data", "digits", "--db", db)
    assert "(unable to open database file)" in line and f"Received: --db {db}" in line
    blocker = tmp_path / "afile"
    blocker.write_text("")
    db = f"sqlite:///{blocker / 'quest.db'}"
    line = fails("quest", "init", "--data", "digits", "--db", db)
    assert f"cannot use {blocker}" in line  # a file where a folder should be


def test_a_postgresql_password_is_not_echoed():
    db = "postgresql+psycopg://user:secret@127.0.0.1:9/quest"
    line = fails("quest", "team", "add", "t", "--db", db)
    assert "secret" not in line and "user:***@127.0.0.1:9" in line


def test_postgresql_without_its_driver_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as on an install without the dev extra
    line = fails("quest", "reveal", "--db", "postgresql://user:secret@127.0.0.1:9/quest")
    assert "whose driver psycopg is not installed" in line and "secret" not in line


# -- the cache ($CNNLAB_HOME) ----------------------------------------------------------------


def test_a_warning_is_one_line(monkeypatch):
    import warnings

    import cnnlab.cli.data

    real = cnnlab.cli.data.load_dataset

    def load_and_warn(*args, **kwargs):
        warnings.warn("cannot cache digits in /nowhere (Read-only file system)", stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(cnnlab.cli.data, "load_dataset", load_and_warn)
    result = runner.invoke(app, ["data", "info", "digits"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "warning: cannot cache digits in /nowhere (Read-only file system)\n"


def test_fetch_into_a_cnnlab_home_that_is_a_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("")
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    line = fails("data", "fetch", "mnist")
    assert "(Not a directory)" in line and line.endswith(f"Received: CNNLAB_HOME {home}")


def test_the_quest_database_defaults_to_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNLAB_QUEST_DB", raising=False)
    succeeds("quest", "init", "--data", "digits")
    assert "Token (shown only now)" in succeeds("quest", "team", "add", "t")
    assert leftovers(tmp_path) == ["quest.db", "runs"]  # nothing loose in the working directory


def test_evaluate_on_other_classes_prints_their_names_literally(trained, tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):  # "[cat, dog]" in the message once read as a markup tag
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / name / f"{i}.png")
    line = fails("evaluate", trained, "--data", f"folder:{tmp_path}")
    assert "has the classes [cat, dog] (2)" in line


@pytest.mark.requires(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), "Debian's dataset-fashion-mnist"
)
def test_data_list_piped_keeps_the_system_path_on_one_line():
    import subprocess

    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    piped = subprocess.run(
        [sys.executable, "-m", "cnnlab", "data", "list"],
        capture_output=True,  # a pipe: rich falls back to 80 columns
        text=True,
        env=env,
        check=True,
    ).stdout
    row = next(line for line in piped.splitlines() if "fashion-mnist" in line)
    assert "/usr/share/datasets/fashion-mnist (system)" in row and "60,000" in row


def test_train_data_dir_errors_name_the_option(tmp_path):
    missing = tmp_path / "nowhere"
    line = fails("train", "mlp", "--data", "mnist", "--data-dir", missing)
    assert line.startswith(f"error: --data-dir='{missing}' is not a folder")


def test_quest_init_prints_a_dataset_name_literally(tmp_path):
    from PIL import Image

    images = tmp_path / "[red]pets"
    for name in ("cat", "dog"):
        (images / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(images / name / f"{i}.png")
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    text = succeeds("quest", "init", "--data", f"folder:{images}", "--db", db)
    assert f"Competition on folder:{images}: " in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["evaluate", "run", "--batch-size", "0"],
            "error: cnnlab evaluate: Invalid value for '--batch-size': Input should be greater "
            "than or equal to 1. Received: --batch-size 0",
        ),
        (
            ["train", "lenet-like", "--epochs=many"],
            "error: cnnlab train: Invalid value for '--epochs': Input should be a valid integer, "
            "unable to parse string as an integer. Received: --epochs=many",
        ),
        (["summary"], "error: cnnlab summary: Missing argument 'model'."),
        (["nosuchcommand"], "error: cnnlab: No such command 'nosuchcommand'."),
    ],
)
def test_a_usage_error_is_one_line_with_the_value(args, expected):
    """Through the real entry point (``python -m cnnlab``), not CliRunner, which skips main()."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [expected]
    assert done.stdout == ""


def test_a_command_group_alone_prints_its_help():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "data"], capture_output=True, text=True, check=False
    )
    assert done.stdout.startswith("Usage: cnnlab data [OPTIONS] COMMAND [ARGS]...")
    assert "fetch" in done.stdout and done.stderr == ""
