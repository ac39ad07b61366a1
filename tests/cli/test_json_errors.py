"""Under --json an error is also JSON on stdout, {"error": "..."}, with the same one line on
stderr and exit status 2; usage errors too, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main
from typer.testing import CliRunner

from cnnlab.cli import app

runner = CliRunner()


def test_a_library_error_under_json_is_json_on_stdout():
    result = runner.invoke(app, ["summary", "nosuch", "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error.startswith("Unknown model: name='nosuch'")
    assert result.stderr.strip() == f"error: {error}"


def test_without_json_stdout_stays_empty():
    result = runner.invoke(app, ["summary", "nosuch"])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_a_usage_error_under_json_is_json_on_stdout():
    command = [sys.executable, "-m", "cnnlab", "models", "--json", "--nosuch"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "No such option: --nosuch" in json.loads(result.stdout)["error"]
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_command_but_quest_serve_takes_json():
    lacking = []

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        if not hasattr(command, "commands") and not any("--json" in p.opts for p in command.params):
            lacking.append(" ".join(path))

    walk(typer.main.get_command(app), [])
    assert lacking == ["quest serve"]
