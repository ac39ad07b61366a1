"""What a leaderboard worker loads and logs: a CSV quest's server never imports torch (a worker of
`quest serve --workers N` starts in a second, not ten, and stays small), and a worker writes no
line per request unless asked."""

import multiprocessing
import subprocess
import sys

from typer.testing import CliRunner

from cnnlab.quest.workers import ServeOptions, WorkerConfig

# Builds a CSV quest's app in a fresh interpreter and says which heavy modules it imported.
BUILD_APP = """
import sys
from cnnlab.quest.db import init_competition
from cnnlab.quest.server import create_app
from cnnlab.quest.workers import serve_workers

init_competition(sys.argv[1], data_name="fashion-mnist", labels=[0, 1, 2, 3], num_classes=10,
                 seed=1)
create_app(sys.argv[1])
print(sorted(name for name in ("torch", "matplotlib", "cnnlab.cli") if name in sys.modules))
"""


def test_a_csv_quest_server_is_built_without_torch(tmp_path):
    answer = subprocess.run(
        [sys.executable, "-c", BUILD_APP, f"sqlite:///{tmp_path / 'quest.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "[]"


def worker_config(**options) -> WorkerConfig:
    changes = multiprocessing.get_context("spawn").Array("q", 2)
    return WorkerConfig(ServeOptions("postgresql+psycopg://q@h/db", **options), changes, 2, "info")


def test_workers_log_no_line_per_request_unless_asked():
    assert worker_config().access_log is False
    assert worker_config(access_log=True).access_log is True


def test_serve_offers_the_access_log_as_a_flag():
    from cnnlab.cli import app

    answer = CliRunner().invoke(app, ["quest", "serve", "--help"], terminal_width=200)
    assert answer.exit_code == 0
    assert "--access-log" in answer.output
