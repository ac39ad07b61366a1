"""The organiser's view of the teams: list them, remove one, give one a new token.

A team is found by its exact name, or else by its name ignoring case and width (``name_key``),
so ``quest team remove TEAM7`` finds "team7". Removing a team removes its tokens and, when
asked to, its submissions, in one transaction. A new token replaces every old one of the team
at once: the server checks tokens against the database on every request, so the old one is
refused from the next request on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection, Row

from cnnlab.quest.board_notify import notify_board
from cnnlab.quest.db import (
    as_utc,
    lock_competition,
    metadata,
    open_engine,
    submissions_table,
    teams_table,
    tokens_table,
    utc_now,
    write_transaction,
)
from cnnlab.quest.fields import name_key
from cnnlab.quest.tokens import new_token


@dataclass(frozen=True)
class RemovedTeam:
    name: str
    submissions: int


def list_teams(db_url: str) -> list[dict]:
    """Every team, oldest first: id, name, created_at, submissions, best public score."""
    query = (
        select(
            teams_table.c.id,
            teams_table.c.name,
            teams_table.c.created_at,
            func.count(submissions_table.c.id).label("submissions"),
            func.max(submissions_table.c.public_score).label("best_public_score"),
        )
        .outerjoin(submissions_table, submissions_table.c.team_id == teams_table.c.id)
        .group_by(teams_table.c.id, teams_table.c.name, teams_table.c.created_at)
        .order_by(teams_table.c.id)
    )
    with open_engine(db_url) as engine, engine.connect() as connection:
        return [
            {
                "id": row.id,
                "name": row.name,
                "created_at": as_utc(row.created_at).isoformat(),
                "submissions": row.submissions,
                "best_public_score": row.best_public_score,
            }
            for row in connection.execute(query)
        ]


def find_team(connection: Connection, name: str) -> Row:
    """The team called ``name`` exactly, else the one whose name matches ignoring case and width."""
    rows = list(connection.execute(select(teams_table.c.id, teams_table.c.name)))
    exact = [row for row in rows if row.name == name]
    similar = exact or [row for row in rows if name_key(row.name) == name_key(name)]
    if len(similar) == 1:
        return similar[0]
    if similar:
        names = ", ".join(repr(row.name) for row in similar)
        raise ValueError(f"name matches several teams ({names}): give one exactly as listed")
    raise ValueError(
        f"no team is named {name!r}: expected a name from `cnnlab quest team list`. "
        f"Received: name={name!r}"
    )


def remove_team(db_url: str, name: str, *, with_submissions: bool = False) -> RemovedTeam:
    """Remove a team and its tokens; one with submissions only when ``with_submissions``."""
    with open_engine(db_url) as engine, write_transaction(engine) as connection:
        lock_competition(connection)
        team = find_team(connection, name)
        count = connection.execute(
            select(func.count())
            .select_from(submissions_table)
            .where(submissions_table.c.team_id == team.id)
        ).scalar_one()
        if count and not with_submissions:
            raise ValueError(
                f"team {team.name!r} has {count} submission(s), which removing it deletes from "
                "the board: expected with_submissions=True to confirm. "
                f"Received: with_submissions={with_submissions}"
            )
        delete_submissions(connection, team.id)
        connection.execute(delete(tokens_table).where(tokens_table.c.team_id == team.id))
        connection.execute(delete(teams_table).where(teams_table.c.id == team.id))
        notify_board(connection, urgent=False)
    return RemovedTeam(team.name, count)


def delete_submissions(connection: Connection, team_id: int) -> None:
    """The team's submissions and every row that refers to one of them (a model's measured run),
    found through the schema's foreign keys."""
    ids = select(submissions_table.c.id).where(submissions_table.c.team_id == team_id)
    for table in reversed(metadata.sorted_tables):
        for key in table.foreign_keys:
            if key.column is submissions_table.c.id:
                connection.execute(delete(table).where(key.parent.in_(ids)))
    connection.execute(delete(submissions_table).where(submissions_table.c.team_id == team_id))


def rotate_token(db_url: str, name: str) -> tuple[str, str]:
    """Replace the team's tokens by a new one; return (the team's name, the token, shown once)."""
    with open_engine(db_url) as engine, write_transaction(engine) as connection:
        team = find_team(connection, name)
        connection.execute(delete(tokens_table).where(tokens_table.c.team_id == team.id))
        token, row = new_token("team", team.id, utc_now())
        connection.execute(insert(tokens_table).values(**row))
    return team.name, token
