"""`cnnlab quest team list|remove|rotate-token` and `cnnlab quest submissions`.

The organiser's commands work on the database (``--db``); ``submissions`` asks the server for
the calling team's own history (``--token``). Names and models are printed through
``fields.printable``: a control character stored before the rules existed is shown as an
escape, never sent to the terminal.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from cnnlab.cli.common import WholeTable, out, print_json, user_errors
from cnnlab.cli.quest import (
    DEFAULT_DB,
    DEFAULT_SERVER,
    QUEST_FLAGS,
    DbOption,
    JsonOption,
    ServerOption,
    database_errors,
)

TEAM_FLAGS = QUEST_FLAGS | {"with_submissions": "--with-submissions", "token": "--token"}
TeamName = Annotated[
    str,
    typer.Argument(metavar="NAME", help="The team's name as listed (case and width may differ)."),
]


def shown(text: str | None) -> str:
    """A stored name or model as terminal text: control characters escaped, no rich markup."""
    from cnnlab.quest.fields import printable

    return escape(printable(text or ""))


@user_errors(flags=TEAM_FLAGS)
def team_list_command(db: DbOption = DEFAULT_DB, json_output: JsonOption = False) -> None:
    """List the teams: name, when added, submissions, best public score."""
    from cnnlab.quest.teams import list_teams

    with database_errors(db):
        teams = list_teams(db)
    if json_output:
        print_json(teams)
        return
    table = WholeTable(title="quest teams", title_justify="left")
    for header in ("id", "team", "added", "submissions", "best public"):
        table.add_column(header, justify="left" if header == "team" else "right")
    for team in teams:
        best = team["best_public_score"]
        table.add_row(
            str(team["id"]),
            shown(team["name"]),
            team["created_at"][:16].replace("T", " "),
            str(team["submissions"]),
            "-" if best is None else f"{best:.5f}",
        )
    if not teams:
        table.caption = "no teams yet: cnnlab quest team add NAME"
    out.print(table)


@user_errors(flags=TEAM_FLAGS)
def team_remove_command(
    name: TeamName,
    db: DbOption = DEFAULT_DB,
    with_submissions: Annotated[
        bool,
        typer.Option(
            "--with-submissions",
            help="Also delete the team's submissions (needed when it has any; they leave the "
            "board).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove a team and its token (and, with --with-submissions, its submissions)."""
    from cnnlab.quest.teams import remove_team

    with database_errors(db):
        removed = remove_team(db, name, with_submissions=with_submissions)
    if json_output:
        print_json({"removed": removed.name, "submissions_deleted": removed.submissions})
        return
    out.print(
        f"Team {shown(removed.name)} removed, with {removed.submissions} submission(s); "
        "its token no longer works."
    )


@user_errors(flags=TEAM_FLAGS)
def team_rotate_token_command(
    name: TeamName, db: DbOption = DEFAULT_DB, json_output: JsonOption = False
) -> None:
    """Give a team a new token; the old one stops working at once."""
    from cnnlab.quest.teams import rotate_token

    with database_errors(db):
        team, token = rotate_token(db, name)
    if json_output:
        print_json({"team": team, "token": token})
        return
    out.print(
        f"Team {shown(team)}: new token (shown only now; the old one no longer works): {token}"
    )


@user_errors(flags=TEAM_FLAGS)
def submissions_command(
    token: Annotated[
        str, typer.Option("--token", envvar="CNNLAB_QUEST_TOKEN", help="The team's token.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    json_output: JsonOption = False,
) -> None:
    """Show your team's own submissions (public scores; private ones after the reveal)."""
    from cnnlab.quest.client import history

    result = history(server, token)
    if json_output:
        print_json(result)
        return
    out.print(history_table(result))


def history_table(result: dict[str, Any]) -> WholeTable:
    rows = result["submissions"]
    revealed = any("private_score" in row for row in rows)
    table = WholeTable(title=f"submissions of {shown(result['team'])}", title_justify="left")
    headers = ["id", "submitted", "model", "train time (s)", "public"]
    for header in headers + (["private"] if revealed else []):
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        cells = [
            str(row["id"]),
            row["created_at"][:16].replace("T", " "),
            shown(row["model"]),
            f"{row['train_time']:.1f}",
            f"{row['public_score']:.5f}",
        ]
        if revealed:
            cells.append(f"{row['private_score']:.5f}")
        table.add_row(*cells)
    table.caption = f"{result['submissions_left']} submission(s) left today (UTC day)"
    return table
