"""`cnnlab quest ...`: the commands, their one-line errors, and the import rule."""

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.cli.quest import leaderboard_table, quest_app
from cnnlab.quest.server import create_app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(quest_app, list(args))


def test_the_cli_imports_no_server_dependency():
    code = (
        "import sys, cnnlab.cli.quest, cnnlab.quest; "
        "heavy = {'fastapi', 'sqlalchemy', 'uvicorn', 'starlette', 'httpx'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_init_team_reveal_on_a_real_dataset(tmp_path):
    db = f"sqlite:///{tmp_path / 'quest.db'}"
    result = invoke("init", "--data", "digits", "--db", db, "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["test_count"] == 360
    assert "." in created["organiser_token"]
    again = invoke("init", "--data", "digits", "--db", db)
    assert again.exit_code == 2
    assert "already holds a competition" in again.output

    team = invoke("team", "add", "<b>Robert'); DROP TABLE quest_teams;--</b>", "--db", db)
    assert team.exit_code == 0, team.output
    assert "Token (shown only now):" in team.stdout
    assert invoke("reveal", "--db", db, "--json").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "--data", "no-such-set", "--db", "sqlite:///{tmp}/q.db"], "Unknown dataset"),
        (["init", "--data", "digits", "--db", "mysql://u@h/q"], "--db expects sqlite:///PATH"),
        (["team", "add", "x", "--db", "sqlite:///{tmp}/none.db"], "No such quest database"),
        (["reveal", "--db", "redis://h"], "--db expects"),
        (["serve", "--db", "sqlite:///{tmp}/none.db"], "No such quest database"),
        (
            ["submit", "{tmp}/missing.csv", "--token", "t", "--model", "m", "--train-time", "1"],
            "No such predictions file",
        ),
        (["leaderboard", "--server", "http://127.0.0.1:9"], "cannot reach"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = invoke(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_submit_and_leaderboard_against_a_server(quest, kit, tmp_path):
    token = quest.team("cli <crew>")
    csv = tmp_path / "predictions.csv"
    csv.write_text(quest.probe_csv())
    with kit.uvicorn_thread(create_app(quest.db_url)) as url:
        common = ["--server", url, "--model", "LeNet-5 [bn]", "--train-time", "12.3"]
        result = invoke("submit", str(csv), "--token", token, *common)
        assert result.exit_code == 0, result.output
        assert "public score 1.00000, 4 submissions left today" in result.stdout
        refused = invoke("submit", str(csv), "--token", "bad.token", *common)
        assert refused.exit_code == 2
        assert "401" in refused.stderr and "invalid token" in refused.stderr
        table = invoke("leaderboard", "--server", url)
        assert table.exit_code == 0, table.output
        assert "quest leaderboard" in table.stdout
        entries = json.loads(invoke("leaderboard", "--server", url, "--json").stdout)
    assert [(e["team"], e["model"]) for e in entries] == [("cli <crew>", "LeNet-5 [bn]")]
    wide = Console(width=200, file=io.StringIO())
    wide.print(leaderboard_table(entries))
    shown = wide.file.getvalue()
    assert "cli <crew>" in shown and "LeNet-5 [bn]" in shown  # markup escaped, shown as typed
