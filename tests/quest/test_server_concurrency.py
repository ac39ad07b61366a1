"""The quest server under real load: uvicorn on 127.0.0.1, concurrent submissions, SIGKILL.

Runs on a SQLite file, and on PostgreSQL when configured (see conftest).
"""

import os
import signal
import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cnnlab.quest.db import reveal
from cnnlab.quest.server import create_app

pytestmark = pytest.mark.slow


def test_fifty_concurrent_submissions_respect_the_daily_limit_exactly(quest, kit):
    teams = {f"team{i}": quest.team(f"team{i}") for i in range(5)}
    jobs = [(name, token, k) for name, token in teams.items() for k in range(10)]
    start = threading.Barrier(len(jobs))

    def post(job):
        name, token, k = job
        csv = kit.to_csv(quest.predictions(public_correct=10 * k + 1))
        start.wait()
        answer = httpx.post(f"{url}/api/submissions", timeout=60, **kit.submission(token, csv))
        return name, answer.status_code, answer.json()

    with kit.uvicorn_thread(create_app(quest.db_url)) as url:
        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(post, jobs))
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


def test_a_killed_server_keeps_every_acknowledged_submission(db_url, kit, tmp_path):
    quest = kit.make_quest(db_url, daily_limit=10_000)
    tokens = [quest.team(f"crew{i}") for i in range(8)]
    acknowledged: list[tuple[int, float, float]] = []  # (id, public, private) the server promised
    lock, enough = threading.Lock(), threading.Event()

    def burst(token: str, seed: int, url: str) -> None:
        for k in range(200):
            public, private = (seed * 13 + k) % 128, (seed * 7 + 3 * k) % 128
            csv = kit.to_csv(quest.predictions(public_correct=public, private_correct=private))
            try:
                answer = httpx.post(
                    f"{url}/api/submissions", timeout=30, **kit.submission(token, csv)
                )
            except httpx.HTTPError:
                return  # the server died under us
            if answer.status_code == 201:
                with lock:
                    acknowledged.append((answer.json()["id"], public / 128, private / 128))
                    if len(acknowledged) >= 40:
                        enough.set()

    log = tmp_path / "server.log"
    with kit.serve_subprocess(db_url, log) as (process, url):
        threads = [
            threading.Thread(target=burst, args=(token, i, url)) for i, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        assert enough.wait(timeout=60), log.read_text()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
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
