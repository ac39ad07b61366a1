"""The quest server under real load: uvicorn on 127.0.0.1, concurrent submissions, SIGKILL.

Runs on a SQLite file, and on PostgreSQL when configured (see conftest).
"""

import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cnnlab.quest.db import reveal
from cnnlab.quest.server import create_app
from cnnlab.quest.workers import ServeOptions

pytestmark = pytest.mark.slow


@pytest.fixture(params=["one process", "two workers"])
def served(request, db_url, kit):
    """(quest, URL): uvicorn in a thread on this test's database, or `quest serve --workers 2`
    (PostgreSQL; one server shared by the tests that use it: ``workers_server``)."""
    if request.param == "one process":
        quest = kit.make_quest(db_url)
        with kit.uvicorn_thread(create_app(quest.db_url)) as url:
            yield quest, url
        return
    if not db_url.startswith("postgresql"):
        pytest.skip("several workers need PostgreSQL")
    yield request.getfixturevalue("workers_server")


def test_fifty_concurrent_submissions_respect_the_daily_limit_exactly(served, kit):
    quest, url = served
    teams = {f"team{i}": quest.team(f"team{i}") for i in range(5)}  # the only teams here
    jobs = [(name, token, k) for name, token in teams.items() for k in range(10)]
    start = threading.Barrier(len(jobs))

    def post(job):
        name, token, k = job
        csv = kit.to_csv(quest.predictions(public_correct=10 * k + 1))
        start.wait()
        answer = httpx.post(f"{url}/api/submissions", timeout=60, **kit.submission(token, csv))
        return name, answer.status_code, answer.json()

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(post, jobs))
    time.sleep(ServeOptions.board_settle_seconds)  # several workers: the board's bound
    histories = {
        name: httpx.get(
            f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"}
        ).json()["submissions"]
        for name, token in teams.items()
    }
    board = httpx.get(f"{url}/api/leaderboard").json()

    assert Counter(status for _, status, _ in results) == {201: 25, 429: 25}
    accepted = [(name, body) for name, status, body in results if status == 201]
    assert Counter(name for name, _ in accepted) == dict.fromkeys(teams, 5)
    for name, history in histories.items():
        mine = {body["id"]: body["public_score"] for who, body in accepted if who == name}
        assert {row["id"]: row["public_score"] for row in history} == mine  # each exactly once
    assert sorted(body["submissions_left"] for _, body in accepted) == sorted([4, 3, 2, 1, 0] * 5)
    assert [entry["submissions"] for entry in board] == [5] * 5


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_server_keeps_every_acknowledged_submission(db_url, kit, tmp_path, workers):
    """SIGKILL mid-load. With two workers: first one worker (the supervisor starts another and
    the server keeps accepting), then the supervisor, whose workers then stop by themselves."""
    if workers > 1 and not db_url.startswith("postgresql"):
        pytest.skip("several workers need PostgreSQL")
    quest = kit.make_quest(db_url, daily_limit=10_000)
    tokens = [quest.team(f"crew{i}") for i in range(8)]
    acknowledged: list[tuple[int, float, float]] = []  # (id, public, private) the server promised
    lock, killing = threading.Lock(), threading.Event()

    def burst(token: str, seed: int, url: str) -> None:
        for k in range(200):
            public, private = (seed * 13 + k) % 128, (seed * 7 + 3 * k) % 128
            csv = kit.to_csv(quest.predictions(public_correct=public, private_correct=private))
            try:
                answer = httpx.post(
                    f"{url}/api/submissions", timeout=30, **kit.submission(token, csv)
                )
            except httpx.HTTPError:
                if killing.is_set():
                    return  # the server died under us
                continue  # the worker that had this connection was killed: another answers
            if answer.status_code == 201:
                with lock:
                    acknowledged.append((answer.json()["id"], public / 128, private / 128))

    def reached(count: int) -> bool:
        deadline = time.monotonic() + 120
        while len(acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(acknowledged) >= count

    log = tmp_path / "server.log"
    with kit.serve_subprocess(db_url, log, "--workers", str(workers)) as (process, url):
        threads = [
            threading.Thread(target=burst, args=(token, i, url)) for i, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        assert reached(40), log.read_text()[-2000:]
        if workers > 1:
            first, _ = worker_pids(log, 2, kit)
            os.kill(first, signal.SIGKILL)
            assert reached(len(acknowledged) + 40), log.read_text()[-2000:]
            survivors = [pid for pid in worker_pids(log, 3, kit) if pid != first]
        killing.set()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if workers > 1:  # no orphan keeps the port: each stops once its supervisor is gone
            assert kit.wait_until(lambda: all(map(exited, survivors))), log.read_text()[-2000:]
        for thread in threads:
            thread.join(timeout=60)
    assert process.returncode == -signal.SIGKILL

    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reveal(db_url)
    with kit.serve_subprocess(db_url, log) as (_, url):
        stored = {}
        for token in tokens:
            answer = httpx.get(
                f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"}
            )
            for row in answer.json()["submissions"]:
                stored[row["id"]] = (row["public_score"], row["private_score"])
    for submission_id, public, private in acknowledged:
        assert stored[submission_id] == pytest.approx((public, private)), submission_id


def worker_pids(log: Path, count: int, kit) -> list[int]:
    """The pids of the first ``count`` workers the log says started (waiting for them)."""
    pattern = re.compile(r"Started server process \[(\d+)\]")
    assert kit.wait_until(lambda: len(pattern.findall(log.read_text())) >= count), log.read_text()
    return [int(pid) for pid in pattern.findall(log.read_text())[:count]]


def exited(pid: int) -> bool:
    """Gone, or a zombie that nobody has reaped yet (its parent was killed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
