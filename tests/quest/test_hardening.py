"""The quest locked down (issue 14): init all or nothing and private, bad options refused with one
line, the organiser's team commands, a team's own history, control characters kept off the
terminal, the PostgreSQL extra."""

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import insert, inspect
from typer.testing import CliRunner

from cnnlab.cli import app as cnnlab_app
from cnnlab.cli.quest import leaderboard_table
from cnnlab.quest import db as quest_db
from cnnlab.quest.db import (
    add_team,
    init_competition,
    make_db_engine,
    open_engine,
    submissions_table,
    write_transaction,
)
from cnnlab.quest.server import create_app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def quest_cli(*args: str):
    return runner.invoke(cnnlab_app, ["quest", *args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# ------------------------------------------------------------------------------ quest init


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295. Received: --seed=-1"),
        (["--seed", "4294967296"], "Received: --seed=4294967296"),
        (["--daily-limit", "0"], "--daily-limit must be an integer from 1 to 1000000"),
        (["--close-at", "2000-01-01"], "Received: --close-at=2000-01-01T00:00Z"),
        (["--close-at", "soon"], "--close-at expects an ISO 8601 time"),
        (["--data", "no-such-set"], "Unknown dataset: name='no-such-set'"),
    ],
)
def test_a_refused_init_names_the_flag_and_leaves_no_file(tmp_path, options, expected):
    db = tmp_path / "new" / "folder" / "quest.db"
    args = ["init", "--data", "digits", "--db", f"sqlite:///{db}", *options]
    line = one_error_line(quest_cli(*args))
    assert expected in line
    if "--close-at" in options and "soon" not in options:
        assert "--close-at must be in the future" in line
    assert files_under(tmp_path) == []  # not the database, not its folders


def test_init_is_all_or_nothing_when_a_write_fails(tmp_path, monkeypatch):
    """An error after the tables exist (here: in the split) leaves no file, not empty tables."""

    def broken_split(count, seed):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quest_db, "split_private", broken_split)
    with pytest.raises(OSError, match="No space left"):
        init_competition(
            f"sqlite:///{tmp_path / 'quest.db'}", data_name="x", labels=[0, 1], num_classes=2
        )
    assert files_under(tmp_path) == []


@pytest.mark.slow
def test_a_full_disk_during_init_leaves_no_file(tmp_path):
    """A file size limit makes SQLite's writes fail (EFBIG) as a full disk fails them: 64 KiB
    holds the shared-memory file and the first pages, not the 80 KB answer key's commit."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from cnnlab.quest.db import init_competition\n"
        "try:\n"
        f"    init_competition('sqlite:///{tmp_path}/quest.db', data_name='x',\n"
        "                     labels=[i % 10 for i in range(20000)], num_classes=10)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "disk I/O error" in result.stdout or "full" in result.stdout
    assert files_under(tmp_path) == []


def test_init_refuses_an_existing_competition_before_loading_data_and_keeps_it(tmp_path):
    db = tmp_path / "quest.db"
    init_competition(f"sqlite:///{db}", data_name="x", labels=[0, 1], num_classes=2)
    before = db.read_bytes()
    line = one_error_line(quest_cli("init", "--data", "no-such-set", "--db", f"sqlite:///{db}"))
    assert "already holds a competition" in line  # said before the unknown dataset
    assert db.read_bytes() == before


def test_init_takes_the_place_of_an_empty_file_and_refuses_another_database(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    init_competition(f"sqlite:///{empty}", data_name="x", labels=[0, 1, 1], num_classes=2)
    with open_engine(f"sqlite:///{empty}") as engine, engine.connect() as connection:
        assert quest_db.load_competition(connection).test_count == 3
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE notes (x)")
        connection.commit()
    with pytest.raises(ValueError, match="holds other tables: expected a new file"):
        init_competition(f"sqlite:///{other}", data_name="x", labels=[0, 1], num_classes=2)


def sqlite_modes(db: Path) -> dict[str, int]:
    files = [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm"))]
    return {file.name: stat.S_IMODE(file.stat().st_mode) for file in files if file.exists()}


def test_the_database_and_its_wal_and_shm_are_private(tmp_path, kit):
    previous = os.umask(0o022)  # a usual umask: files would be 0644
    try:
        db = tmp_path / "quest.db"
        quest = kit.make_quest(f"sqlite:///{db}")
        token = quest.team("crew")
        with TestClient(create_app(quest.db_url)) as client:
            answer = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
            assert answer.status_code == 201
            modes = sqlite_modes(db)  # while the server holds the database open
    finally:
        os.umask(previous)
    assert set(modes) == {"quest.db", "quest.db-wal", "quest.db-shm"}
    assert set(modes.values()) == {0o600}


def test_an_older_readable_database_is_made_private_when_opened(tmp_path, kit):
    db = tmp_path / "quest.db"
    kit.make_quest(f"sqlite:///{db}")
    os.chmod(db, 0o644)  # as quest init made it before
    make_db_engine(f"sqlite:///{db}").dispose()
    assert sqlite_modes(db) == {"quest.db": 0o600}


# ------------------------------------------------------------------------------ teams


def test_team_list_rotate_and_remove(quest, kit):
    db = ["--db", quest.db_url]
    old = quest.team("alpha")
    beta = quest.team("beta")
    with TestClient(create_app(quest.db_url, board_refresh_seconds=0)) as client:
        for token in (old, beta):
            posted = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
            assert posted.status_code == 201
        board = [entry["team"] for entry in client.get("/api/leaderboard").json()]
        assert board == ["alpha", "beta"]  # and now cached
        listed = json.loads(quest_cli("team", "list", *db, "--json").stdout)
        assert [(t["name"], t["submissions"], t["best_public_score"]) for t in listed] == [
            ("alpha", 1, 1.0),
            ("beta", 1, 1.0),
        ]

        rotated = quest_cli("team", "rotate-token", "ALPHA", *db, "--json")  # any case finds it
        assert rotated.exit_code == 0, rotated.output
        new = json.loads(rotated.stdout)["token"]
        mine = {"Authorization": f"Bearer {old}"}
        assert client.get("/api/submissions", headers=mine).status_code == 401  # at once
        mine = {"Authorization": f"Bearer {new}"}
        assert client.get("/api/submissions", headers=mine).json()["team"] == "alpha"

        line = one_error_line(quest_cli("team", "remove", "alpha", *db))
        assert "has 1 submission(s)" in line and "--with-submissions" in line
        removed = quest_cli("team", "remove", "alpha", *db, "--with-submissions", "--json")
        assert json.loads(removed.stdout) == {"removed": "alpha", "submissions_deleted": 1}
        assert client.get("/api/submissions", headers=mine).status_code == 401
        # alpha's submission was not the newest: the board must still notice it is gone
        assert [entry["team"] for entry in client.get("/api/leaderboard").json()] == ["beta"]
    assert "no team is named 'gamma'" in one_error_line(quest_cli("team", "remove", "gamma", *db))
    table = quest_cli("team", "list", *db)
    assert "beta" in table.stdout and "alpha" not in table.stdout


def test_team_add_refuses_look_alikes_and_control_characters_in_one_line(tmp_path, kit):
    quest = kit.make_quest(f"sqlite:///{tmp_path / 'quest.db'}")
    quest.team("team7")
    db = ["--db", quest.db_url]
    line = one_error_line(quest_cli("team", "add", "t\u0435am7", *db))
    assert "too close to the existing team 'team7'" in line and "t\\u0435am7" in line
    line = one_error_line(quest_cli("team", "add", "red\x1b[31m", *db))
    assert "contains U+001B" in line and "\x1b" not in line


def test_a_team_sees_its_own_history_from_the_cli(quest, kit, tmp_path):
    token = quest.team("crew")
    other = quest.team("others")
    csv = tmp_path / "predictions.csv"
    csv.write_text(quest.probe_csv())
    with kit.uvicorn_thread(create_app(quest.db_url)) as url:
        for who, model in ((token, "lenet [bn]"), (other, "theirs"), (token, "resnet")):
            common = ["--server", url, "--model", model, "--train-time", "12.5"]
            result = quest_cli("submit", str(csv), "--token", who, *common)
            assert result.exit_code == 0, result.output
        shown = quest_cli("submissions", "--token", token, "--server", url)
        mine = json.loads(
            quest_cli("submissions", "--token", token, "--server", url, "--json").stdout
        )
    assert shown.exit_code == 0, shown.output
    assert "lenet [bn]" in shown.stdout and "resnet" in shown.stdout
    assert "theirs" not in shown.stdout
    assert "3 submission(s) left today" in shown.stdout
    assert [row["model"] for row in mine["submissions"]] == ["lenet [bn]", "resnet"]


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--port", "80000"], "--port must be an integer in 1..65535. Received: "),
        (["--port", "-1"], "--port=-1"),
        (["--port", "0"], "--port=0"),
        (["--host", "no such host!"], "--host is not an address to listen on"),
        (["--client-timeout", "0"], "--client-timeout must be a number of seconds in (0, 3600)"),
        (["--max-connections", "0"], "--max-connections must be an integer from 1 to 100000"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(quest, options, expected):
    line = one_error_line(quest_cli("serve", "--db", quest.db_url, *options))
    assert expected in line
    if "--port" in options:
        assert f"--port={options[1]}" in line


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--train-time", "1e308"], "--train-time must be a number of seconds from 0 to"),
        (["--train-time", "-5"], "Received: --train-time=-5.0"),
        (["--model", "lenet\x1b[2J"], "--model contains U+001B at position 6"),
    ],
)
def test_submit_refuses_bad_fields_before_sending(tmp_path, options, expected):
    csv = tmp_path / "p.csv"
    csv.write_text("id,label\n0,1\n")
    base = {"--model": "m", "--train-time": "1"} | dict(
        zip(options[::2], options[1::2], strict=True)
    )
    args = [arg for pair in base.items() for arg in pair]
    server = ["--server", "http://127.0.0.1:9"]  # nothing listens: refused before any request
    line = one_error_line(quest_cli("submit", str(csv), "--token", "t.t", *server, *args))
    assert expected in line and "cannot reach" not in line


def test_control_characters_stored_earlier_are_escaped_on_the_terminal_and_in_the_log(quest, kit):
    """A row written before the rules (straight into the database) never reaches a terminal raw."""
    add_team(quest.db_url, "crew")
    with open_engine(quest.db_url) as engine, write_transaction(engine) as connection:
        connection.execute(
            insert(submissions_table).values(
                team_id=1, day="2025-11-26", created_at=quest_db.utc_now(), model="a\x1b[2Jb\x07",
                train_time=1.0, public_score=0.5, private_score=0.5,
            )
        )  # fmt: skip
    with TestClient(create_app(quest.db_url)) as client:
        log = client.get("/api/log").text
        entries = client.get("/api/leaderboard").json()
    assert "\x1b" not in log and "\x07" not in log
    assert "model=a\\x1b[2Jb\\x07" in log
    terminal = Console(width=200, file=io.StringIO())
    terminal.print(leaderboard_table(entries))
    shown = terminal.file.getvalue()
    assert "\x1b" not in shown and "a\\x1b[2Jb\\x07" in shown


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_driver_is_an_install_extra_and_its_absence_says_so(monkeypatch):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(spec.startswith("psycopg[binary]") for spec in extras["postgres"])
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'cnnlab\[postgres\]'"):
        make_db_engine("postgresql://quest@127.0.0.1:5432/quest")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: the test above
def test_postgres_init_is_one_transaction(db_url, monkeypatch):
    """On PostgreSQL the tables and the competition are created together or not at all."""
    monkeypatch.setattr(quest_db, "split_private", lambda count, seed: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        init_competition(db_url, data_name="x", labels=np.array([0, 1]), num_classes=2)
    with open_engine(db_url) as engine, engine.connect() as connection:
        assert inspect(connection).get_table_names() == []
