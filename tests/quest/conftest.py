"""Fixtures for the quest server: a database per test (SQLite, and PostgreSQL when configured),
a small competition whose private score is a number that appears nowhere else, live servers.

PostgreSQL runs when ``CNNLAB_TEST_POSTGRES_URL`` is set (e.g.
``postgresql+psycopg://postgres@127.0.0.1:55432/postgres``); each test gets a fresh schema.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fastapi  # noqa: F401  (cnnlab imports the server's packages inside quest/)
import httpx
import numpy as np
import pytest
import sqlalchemy  # noqa: F401

from cnnlab.quest.db import add_team, init_competition, split_private


def pytest_configure(config):
    # Starlette's TestClient asks for "httpx2"; httpx is what this project uses.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


POSTGRES_ENV = "CNNLAB_TEST_POSTGRES_URL"
TEST_COUNT = 256  # 128 public ids, 128 private ids
NUM_CLASSES = 10
SEED = 7
# The probe submission gets every public id right and 99 of the 128 private ids: a private score
# of 0.7734375 ("0.77344" at five decimals). No other number in the suite starts with 0.7734.
PRIVATE_CORRECT = 99
SECRET_SCORE_TEXT = "0.7734"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A database URL nobody else uses: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quest.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://...)")
    yield from _postgres_schema(base)


def _postgres_schema(base: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"quest_test_{secrets.token_hex(6)}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Quest:
    """A competition in ``db_url``: its answer key and helpers to build submissions."""

    db_url: str
    organiser_token: str
    labels: np.ndarray
    private: np.ndarray
    tokens: dict[str, str] = field(default_factory=dict)

    def team(self, name: str) -> str:
        self.tokens[name] = add_team(self.db_url, name)
        return self.tokens[name]

    def predictions(
        self, public_correct: int | None = None, private_correct: int = 0
    ) -> np.ndarray:
        """Right on the first ``public_correct`` public ids (all when None) and the first
        ``private_correct`` private ids, wrong elsewhere."""
        guess = (self.labels + 1) % NUM_CLASSES
        public_ids = np.flatnonzero(~self.private)
        private_ids = np.flatnonzero(self.private)
        right = public_ids[: len(public_ids) if public_correct is None else public_correct]
        guess[right] = self.labels[right]
        guess[private_ids[:private_correct]] = self.labels[private_ids[:private_correct]]
        return guess

    def probe_csv(self) -> str:
        """Public score 1.0; private score 0.7734375 (the number that must stay hidden)."""
        return to_csv(self.predictions(private_correct=PRIVATE_CORRECT))


def to_csv(predictions: np.ndarray) -> str:
    return "id,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(predictions))


def make_quest(db_url: str, **options) -> Quest:
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, TEST_COUNT)
    token = init_competition(
        db_url, data_name="fashion-mnist", labels=labels, num_classes=NUM_CLASSES, seed=SEED,
        **options,
    )  # fmt: skip
    return Quest(db_url, token, labels, split_private(TEST_COUNT, SEED))


@contextmanager
def postgres_quest(**options):
    """A competition in a fresh PostgreSQL schema (skips without ``CNNLAB_TEST_POSTGRES_URL``):
    for servers shared by the tests of a module."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"several workers need PostgreSQL: set {POSTGRES_ENV}")
    schema = _postgres_schema(base)
    try:
        yield make_quest(next(schema), **options)
    finally:
        schema.close()


@pytest.fixture
def quest(db_url) -> Quest:
    return make_quest(db_url)


def submission(token: str, csv: str, model: str = "LeNet-5", train_time: str = "12.5", **extra):
    """Keyword arguments for a client's ``post`` to /api/submissions."""
    return {
        "headers": {"Authorization": f"Bearer {token}"},
        "files": {"file": ("predictions.csv", csv.encode(), "text/csv")},
        "data": {"model": model, "train_time": train_time, **extra},
    }


@contextmanager
def uvicorn_thread(app, config=None):
    """A real uvicorn server for ``app`` on 127.0.0.1 (a free port), in a thread; ``config``:
    another uvicorn config for it (host 127.0.0.1, port 0)."""
    import uvicorn

    config = config or uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def wait_until(condition, timeout: float = 120, interval: float = 0.05) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (asked every ``interval``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The server as a user starts it: `python -m cnnlab quest serve ...`.
QUEST_COMMAND = [sys.executable, "-m", "cnnlab", "quest"]


@contextmanager
def serve_subprocess(db_url: str, log_path: Path, *options: str, command: list[str] | None = None):
    """`cnnlab quest serve` with ``options`` in its own process (and process group), or
    ``command`` run with the port as its last argument; yields (process, base URL) once it
    answers."""
    port = free_port()
    command = command or [*QUEST_COMMAND, "serve", "--db", db_url, *options, "--port"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine: the CLI imports torch first
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/competition", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a failed test
            os.killpg(process.pid, signal.SIGKILL)


# `quest serve --workers 2` as the CLI runs it (``serve_workers``), with an hour's board refresh
# (only the workers' shared change counter can then show a change made through another worker),
# a 2 s request-head deadline and 64 connections a worker.
WORKERS_TIMEOUT_S, WORKERS_CONNECTIONS = 2.0, 64
WORKERS_SCRIPT = f"""
import sys
from cnnlab.quest.workers import ServeOptions, serve_workers
options = ServeOptions(
    sys.argv[1], client_timeout={WORKERS_TIMEOUT_S}, max_connections={WORKERS_CONNECTIONS},
    board_refresh_seconds=3600,
)
serve_workers(options, workers=2, host="127.0.0.1", port=int(sys.argv[2]))
"""


@pytest.fixture(scope="session")
def workers_server(tmp_path_factory):
    """(quest, URL) of a two-worker server on a PostgreSQL competition, shared by the tests that
    run against several workers (starting one costs each worker's imports). The test that
    reveals the scores (tests/quest/test_workers.py) runs after those that submit."""
    log = tmp_path_factory.mktemp("workers") / "server.log"
    with postgres_quest() as quest:
        command = [sys.executable, "-c", WORKERS_SCRIPT, quest.db_url]
        with serve_subprocess(quest.db_url, log, command=command) as (_, url):
            yield quest, url


@pytest.fixture
def kit():
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        to_csv=to_csv,
        make_quest=make_quest,
        submission=submission,
        uvicorn_thread=uvicorn_thread,
        serve_subprocess=serve_subprocess,
        postgres_quest=postgres_quest,
        wait_until=wait_until,
        quest_command=QUEST_COMMAND,
        workers_timeout=WORKERS_TIMEOUT_S,
        workers_connections=WORKERS_CONNECTIONS,
        secret=SECRET_SCORE_TEXT,
        test_count=TEST_COUNT,
        num_classes=NUM_CLASSES,
    )
