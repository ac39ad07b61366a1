"""The read routes' cached bodies and ETags, the change counter shared by workers, and the
best-per-team query that builds the board in SQL."""

import asyncio
import json
import multiprocessing
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text

from cnnlab.quest import board
from cnnlab.quest.board_cache import Body, CachedBody, ChangeCounter, etag_matches
from cnnlab.quest.db import make_db_engine, reveal, teams_table, utc_now
from cnnlab.quest.scoring import Scores
from cnnlab.quest.server import create_app
from cnnlab.quest.teams import remove_team

ROUTES = ["/api/leaderboard", "/"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_read_route_answers_304_to_its_etag_until_the_board_changes(quest, kit, route):
    with TestClient(create_app(quest.db_url)) as client:
        first = client.get(route)
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
        again = client.get(route, headers={"If-None-Match": etag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        token = quest.team("newcomer")
        csv = kit.to_csv(quest.predictions(public_correct=40))
        assert client.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
        changed = client.get(route, headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert "newcomer" in changed.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_current_body_is_served_without_a_database_statement(quest, route):
    """While the board has not changed, a read (200, or 304 to its ETag) costs no SQL: only the
    change counter and the clock are consulted."""
    app = create_app(quest.db_url, board_refresh_seconds=3600)
    statements = []
    event.listen(app.state.engine, "before_cursor_execute", lambda *args: statements.append(1))
    with TestClient(app) as client:
        etag = client.get(route).headers["etag"]
        statements.clear()
        answers = [client.get(route, headers={"If-None-Match": etag}) for _ in range(20)]
        answers += [client.get(route) for _ in range(20)]
    assert {answer.status_code for answer in answers[:20]} == {304}
    assert {answer.status_code for answer in answers[20:]} == {200}
    assert statements == []


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),  # If-None-Match compares weakly
        ('"x", "abc"', True),
        ("*", True),
        ('"abd"', False),
        ("abc", False),  # an ETag is quoted
    ],
)
def test_if_none_match_forms(header, matches):
    assert etag_matches(header, '"abc"') is matches


def test_workers_sharing_a_counter_see_each_others_changes_at_once(quest, kit):
    """Two apps on one database with an hour's refresh, as two workers: sharing the counter,
    one shows the other's submission and reveal on its next request; a third app with its own
    counter still shows its cached board (the refresh bound is all it has)."""
    shared = multiprocessing.get_context("spawn").Array("q", 2)
    options = {"board_refresh_seconds": 3600}
    one = TestClient(create_app(quest.db_url, changes=ChangeCounter(shared), **options))
    two = TestClient(create_app(quest.db_url, changes=ChangeCounter(shared), **options))
    alone = TestClient(create_app(quest.db_url, **options))
    with one, two, alone:
        for client in (one, two, alone):
            assert client.get("/api/leaderboard").json() == []
        token = quest.team("early")
        csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
        assert one.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
        assert [entry["team"] for entry in two.get("/api/leaderboard").json()] == ["early"]
        assert alone.get("/api/leaderboard").json() == []
        organiser = {"Authorization": f"Bearer {quest.organiser_token}"}
        assert one.post("/api/reveal", headers=organiser).status_code == 200
        assert two.get("/api/leaderboard").json()[0]["private_score"] == pytest.approx(0.5)
        assert "private scores (final)" in two.get("/").text


def test_a_settling_board_lags_submissions_but_never_the_reveal(quest, kit):
    """With a settle time, another worker's submission waits for it; the reveal does not."""
    shared = multiprocessing.get_context("spawn").Array("q", 2)
    options = {"board_refresh_seconds": 3600, "board_settle_seconds": 3600}
    one = TestClient(create_app(quest.db_url, changes=ChangeCounter(shared), **options))
    two = TestClient(create_app(quest.db_url, changes=ChangeCounter(shared), **options))
    with one, two:
        assert two.get("/api/leaderboard").json() == []
        token = quest.team("patient")
        csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
        assert one.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
        assert two.get("/api/leaderboard").json() == []  # within the settle time
        organiser = {"Authorization": f"Bearer {quest.organiser_token}"}
        assert one.post("/api/reveal", headers=organiser).status_code == 200
        [entry] = two.get("/api/leaderboard").json()
        assert entry["private_score"] == pytest.approx(0.5)


def test_change_counter_repr_and_counts():
    local, shared = ChangeCounter(), ChangeCounter(multiprocessing.Array("q", [5, 1]))
    local.bump()
    shared.bump(urgent=True)
    assert (local.read(), shared.read()) == ((1, 0), (6, 2))
    assert repr(shared) == "ChangeCounter(shared, writes=6, urgent=2)"


def record(engine, team_id: int, name: str, public: float, private: float, when) -> None:
    board.record_submission(
        engine,
        team_id=team_id,
        team_name=name,
        scores=Scores(public, private),
        model="m",
        train_time=1.0,
        code=None,
        now=when,
    )


def best_by_hand(rows: list[tuple[int, float, float]], revealed: bool) -> list[tuple[int, int]]:
    """(submission id, submissions) per team, best first: the reference for the SQL."""
    best, used = {}, {}
    for submission_id, (team, public, private) in enumerate(rows, start=1):
        used[team] = used.get(team, 0) + 1
        if team not in best or public > best[team][1]:
            best[team] = (submission_id, public, private)  # ties: the earlier one stays
    entries = sorted(best.items(), key=lambda item: (-item[1][2 if revealed else 1], item[1][0]))
    return [(entry[0], used[team]) for team, entry in entries]


def test_the_best_per_team_query_equals_the_board_by_hand(quest):
    rng = np.random.default_rng(3)
    names = [f"t{i}" for i in range(7)]
    for name in names:
        quest.team(name)
    engine = make_db_engine(quest.db_url)
    with engine.connect() as connection:
        ids = dict(connection.execute(select(teams_table.c.name, teams_table.c.id)).all())
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for k in range(60):  # scores on a coarse grid: ties within and across teams
        name = names[rng.integers(len(names))]
        public, private = rng.integers(0, 5) / 4, rng.integers(0, 5) / 4
        record(engine, ids[name], name, public, private, start + timedelta(days=k))
        rows.append((name, public, private))
    with engine.connect() as connection:
        for revealed in (False, True):
            entries = board.leaderboard(connection, revealed)
            got = [(entry["submission_id"], entry["submissions"]) for entry in entries]
            assert got == best_by_hand(rows, revealed)
            assert [entry["rank"] for entry in entries] == list(range(1, len(entries) + 1))


def test_the_query_plan_reads_the_submissions_once(quest):
    """The plan of the best-per-team query: one scan of quest_submissions (no per-team
    subquery, no self-join), whatever the database."""
    engine = make_db_engine(quest.db_url)
    for revealed in (False, True):
        query = board.best_per_team_query(revealed).compile(
            engine, compile_kwargs={"literal_binds": True}
        )
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                steps = [row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))]
                reads = [step for step in steps if "quest_submissions" in step]
            else:
                [[plan]] = connection.execute(text(f"EXPLAIN (FORMAT JSON) {query}")).all()
                reads = [
                    node
                    for node in plan_nodes(plan[0]["Plan"])
                    if node.get("Relation Name") == "quest_submissions"
                ]
        assert len(reads) == 1, json.dumps(steps if engine.dialect.name == "sqlite" else plan)


def plan_nodes(node: dict) -> list[dict]:
    return [node, *(child for sub in node.get("Plans", []) for child in plan_nodes(sub))]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's one worker polls
def test_changes_made_outside_the_server_reach_its_board_at_once_on_postgresql(db_url, kit):
    """`cnnlab quest team remove` and `cnnlab quest reveal` write to the database, not through a
    server: with an hour's refresh, only PostgreSQL's notifications (delivered in milliseconds)
    can show them before the wait gives up."""
    quest = kit.make_quest(db_url)
    tokens = {name: quest.team(name) for name in ("stays", "leaves")}
    app = create_app(quest.db_url, board_refresh_seconds=3600)
    with TestClient(app) as client:
        assert repr(app.state.board_listener).endswith(", listening)")
        csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
        for token in tokens.values():
            assert client.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
        assert {entry["team"] for entry in client.get("/api/leaderboard").json()} == set(tokens)
        body = client.get("/")

        remove_team(quest.db_url, "leaves", with_submissions=True)
        assert kit.wait_until(lambda: len(client.get("/api/leaderboard").json()) == 1, 30)
        reveal(quest.db_url)
        assert kit.wait_until(
            lambda: "private_score" in client.get("/api/leaderboard").json()[0], 30
        )
        answer = client.get("/", headers={"If-None-Match": body.headers["etag"]})
        assert answer.status_code == 200 and "private scores (final)" in answer.text


def test_a_body_being_read_is_rebuilt_ahead_of_its_readers(quest, kit):
    """With a settle time, refresh_ahead rebuilds a body that is being read once the board has
    changed: the reader after the settle time finds the new body in memory (fresh), instead of
    waiting for the database (current)."""
    builds = []

    def build(connection, state, revealed) -> bytes:
        builds.append(board.leaderboard(connection, revealed))
        return json.dumps(builds[-1]).encode()

    engine = make_db_engine(quest.db_url)
    changes = ChangeCounter()
    cached = CachedBody(
        build,
        engine=engine,
        now=utc_now,
        changes=changes,
        refresh_seconds=3600,
        settle_seconds=0.2,
    )
    assert cached.current().content == b"[]"
    quest.team("ahead")
    with engine.connect() as connection:
        team_id = connection.execute(select(teams_table.c.id)).scalar_one()
    record(engine, team_id, "ahead", 0.5, 0.25, utc_now())
    changes.bump()
    assert cached.fresh().content == b"[]"  # read within the settle time: the old body

    async def run_ahead_until_rebuilt() -> Body | None:
        task = asyncio.create_task(cached.refresh_ahead())
        try:
            for _ in range(3000):  # up to 30 s; a rebuild is due after 0.15 s
                body = cached.fresh()  # memory only: never the database
                if body is not None and body.content != b"[]":
                    return body
                await asyncio.sleep(0.01)
            return None
        finally:
            task.cancel()

    body = asyncio.run(run_ahead_until_rebuilt())
    assert body is not None and len(builds) == 2
    assert [entry["team"] for entry in json.loads(body.content)] == ["ahead"]
    engine.dispose()
