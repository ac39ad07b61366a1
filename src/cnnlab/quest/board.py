"""Recording submissions under the daily limit, and reading the leaderboard, histories and log.

Everything here returns plain data that is safe to show: private scores only once revealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, FromClause, Select, func, insert, select
from sqlalchemy.engine import Connection

from cnnlab.quest.db import (
    Competition,
    as_utc,
    load_competition,
    model_runs_table,
    submissions_table,
    teams_table,
    write_transaction,
)
from cnnlab.quest.fields import printable
from cnnlab.quest.scoring import Scores


class DailyLimitReached(Exception):
    def __init__(self, team: str, used: int, limit: int) -> None:
        super().__init__(
            f"team {team!r} has used {used} of {limit} submissions today (UTC day); "
            "the next one is possible after midnight UTC"
        )


class CompetitionClosed(Exception):
    def __init__(self) -> None:
        super().__init__("the competition is closed: the private scores are revealed")


@dataclass(frozen=True)
class Recorded:
    id: int
    public_score: float
    submissions_left: int
    created_at: datetime


def utc_day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def record_submission(
    engine: Engine,
    *,
    team_id: int,
    team_name: str,
    scores: Scores,
    model: str,
    train_time: float,
    code: str | None,
    now: datetime,
    model_run: dict | None = None,
) -> Recorded:
    """Count today's submissions and insert this one in one transaction, so the limit is exact.

    ``model_run``: what the server measured running a submitted model (``quest_model_runs``'s
    columns but the id), stored with the submission.

    SQLite: the transaction starts with BEGIN IMMEDIATE, so writers run one at a time.
    PostgreSQL: ``SELECT ... FOR UPDATE`` on the team's row makes a team's submissions queue; the
    count is taken after the lock is held, so two requests can never both see "4 of 5 used".
    """
    day = utc_day(now)
    with write_transaction(engine) as connection:
        connection.execute(
            select(teams_table.c.id).where(teams_table.c.id == team_id).with_for_update()
        ).one()
        competition, used = check_quota(connection, team_id=team_id, team_name=team_name, now=now)
        new_id = connection.execute(
            insert(submissions_table).values(
                team_id=team_id,
                day=day,
                created_at=now,
                model=model,
                train_time=train_time,
                code=code,
                public_score=scores.public,
                private_score=scores.private,
            )
        ).inserted_primary_key[0]
        if model_run is not None:
            connection.execute(insert(model_runs_table).values(submission_id=new_id, **model_run))
    return Recorded(new_id, scores.public, competition.daily_limit - used - 1, now)


def check_quota(
    connection: Connection, *, team_id: int, team_name: str, now: datetime
) -> tuple[Competition, int]:
    """(the competition, the team's submissions today); ``CompetitionClosed`` or
    ``DailyLimitReached`` when it may not submit. Read before a model runs, so that a team out
    of submissions does not spend the server's time; checked again when the result is stored."""
    competition = load_competition(connection)
    assert competition is not None, "the server checks the competition exists first"
    if competition.is_revealed(now):
        raise CompetitionClosed()
    used = connection.execute(
        select(func.count())
        .select_from(submissions_table)
        .where(submissions_table.c.team_id == team_id, submissions_table.c.day == utc_day(now))
    ).scalar_one()
    if used >= competition.daily_limit:
        raise DailyLimitReached(team_name, used, competition.daily_limit)
    return competition, used


def _shown(source: FromClause) -> Select:
    """``source``'s rows (quest_submissions, or a subquery of it) with the team's name and what
    the server measured of a submitted model."""
    return (
        select(
            source,
            teams_table.c.name.label("team"),
            model_runs_table.c.inference_ms,
            model_runs_table.c.model_bytes,
        )
        .join(teams_table, teams_table.c.id == source.c.team_id)
        .outerjoin(model_runs_table, model_runs_table.c.submission_id == source.c.id)
    )


def _submission_rows(connection: Connection, team_id: int | None = None) -> list:
    query = _shown(submissions_table)
    if team_id is not None:
        query = query.where(submissions_table.c.team_id == team_id)
    return list(connection.execute(query.order_by(submissions_table.c.id)))


def _public_view(row, revealed: bool) -> dict:
    entry = {
        "id": row.id,
        "team": row.team,
        "created_at": as_utc(row.created_at).isoformat(),
        "model": row.model,
        "train_time": row.train_time,
        "code": row.code,
        "public_score": row.public_score,
        "inference_ms": row.inference_ms,  # measured by the server; None for a CSV
        "model_bytes": row.model_bytes,
    }
    if revealed:
        entry["private_score"] = row.private_score
    return entry


def history(connection: Connection, team_id: int, revealed: bool) -> list[dict]:
    """One team's own submissions, oldest first."""
    return [_public_view(row, revealed) for row in _submission_rows(connection, team_id)]


def leaderboard(connection: Connection, revealed: bool) -> list[dict]:
    """One row per team, best first.

    Before the reveal a team's entry is its best public score. After it, as on Kaggle when a team
    selects nothing, that same best-public submission is the team's final entry and the board ranks
    by its private score: a model tuned to the public half can fall ("shake-up").

    The database picks each team's best and counts its submissions (``best_per_team_query``):
    one pass over the submissions, and only one row per team comes back.
    """
    entries = []
    for rank, row in enumerate(connection.execute(best_per_team_query(revealed)), start=1):
        entry = _public_view(row, revealed)
        entry["submission_id"] = entry.pop("id")
        entry["submissions"] = row.submissions
        entry["score"] = row.private_score if revealed else row.public_score
        entry["rank"] = rank
        entries.append(entry)
    return entries


def best_per_team_query(revealed: bool) -> Select:
    """Each team's best public submission (ties: the earlier one) with its team's number of
    submissions, best first by the public score, or by the private one once revealed.

    Window functions (SQLite >= 3.25, PostgreSQL): number each team's submissions from the best
    public score down and count them, in one scan, then keep number 1.
    """
    by_team = submissions_table.c.team_id
    ranked = select(
        submissions_table,
        func.row_number()
        .over(
            partition_by=by_team,
            order_by=(submissions_table.c.public_score.desc(), submissions_table.c.id),
        )
        .label("pick"),
        func.count().over(partition_by=by_team).label("submissions"),
    ).subquery("ranked")
    score = ranked.c.private_score if revealed else ranked.c.public_score
    return _shown(ranked).where(ranked.c.pick == 1).order_by(score.desc(), ranked.c.id)


def board_version(connection: Connection) -> tuple[int, int]:
    """The newest submission's id and the number of submissions: the leaderboard changes only
    when one of them does (a submission raises the id, which is never reused; removing a team
    lowers the count), or at the reveal."""
    newest, count = connection.execute(
        select(func.max(submissions_table.c.id), func.count(submissions_table.c.id))
    ).one()
    return newest or 0, count


def public_scores(connection: Connection) -> list[float]:
    """Every submission's public score (for the histogram)."""
    return list(connection.execute(select(submissions_table.c.public_score)).scalars())


def recent_log(
    connection: Connection, competition: Competition, revealed: bool, limit: int
) -> list[str]:
    """The newest ``limit`` submissions as the lecture's log lines, oldest first."""
    rows = list(
        connection.execute(
            select(submissions_table, teams_table.c.name.label("team"))
            .join(teams_table, teams_table.c.id == submissions_table.c.team_id)
            .order_by(submissions_table.c.id.desc())
            .limit(limit)
        )
    )
    return [log_line(row, competition.data_name, revealed) for row in reversed(rows)]


def log_line(row, data_name: str, revealed: bool) -> str:
    """``26/11 10:01> "team7: dat=fashion-mnist, score=0.91230, model=..."`` (times in UTC)."""
    when = as_utc(row.created_at).strftime("%d/%m %H:%M")
    private = f", private={row.private_score:.5f}" if revealed else ""
    text = (
        f"{_one_line(row.team)}: dat={data_name}, score={row.public_score:.5f}{private}, "
        f"model={_one_line(row.model)}"
    )
    return f'{when}> "{text}"'


def _one_line(text: str) -> str:
    """Line breaks in a name or model would forge log lines, and ESC or NUL would reach the
    reader's terminal: every control character is shown as an escape (``\\n``, ``\\x1b``)."""
    return printable(text) if text else text
