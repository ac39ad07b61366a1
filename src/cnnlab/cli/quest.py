"""`cnnlab quest init|serve|team add|reveal|submit|leaderboard`: the class leaderboard.

The server's modules (FastAPI, SQLAlchemy, uvicorn, httpx) are imported inside the commands, so
``cnnlab`` starts on machines that do not have them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cnnlab.cli.common import WholeTable, err, out, print_json, user_errors

quest_app = typer.Typer(
    name="quest",
    help="The search quest: a class leaderboard with server-side scoring.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
team_app = typer.Typer(
    name="team", help="Teams of the competition.", no_args_is_help=True, rich_markup_mode=None
)
quest_app.add_typer(team_app, name="team")

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="CNNLAB_QUEST_DB",
        help="The database: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB "
        "(default sqlite:///runs/quest.db, under the git-ignored runs/ folder).",
    ),
]
ServerOption = Annotated[
    str,
    typer.Option("--server", envvar="CNNLAB_QUEST_SERVER", help="The quest server's URL."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_DB = "sqlite:///runs/quest.db"  # the hidden labels stay out of the working directory
# The library names its Python arguments; the commands name their options.
QUEST_FLAGS = {
    "db_url": "--db",
    "server": "--server",
    "csv_path": "PREDICTIONS_CSV",
    "max_upload_bytes": "--max-upload-bytes",
    "daily_limit": "--daily-limit",
    "seed": "--seed",
    "close_at": "--close-at",
    "train_time": "--train-time",
    "data_dir": "--data-dir",
}
DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVE_FLAGS = {
    "host": "--host",
    "port": "--port",
    "client_timeout": "--client-timeout",
    "max_connections": "--max-connections",
    "workers": "--workers",
}


@contextlib.contextmanager
def database_errors(db: str) -> Iterator[None]:
    """A database that cannot be opened or used (an unwritable folder, a file that is not a
    database, a PostgreSQL server that does not answer) as one line naming --db."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DBAPIError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        shown = shown_db(db)
        raise ValueError(
            f"cannot use the database {shown} ({reason}): --db expects a SQLite file that can "
            f"be opened and written, or a PostgreSQL server that answers. Received: --db {shown}"
        ) from None


def shown_db(db: str) -> str:
    """The database URL with its password hidden, to print."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        return db


@quest_app.command("init")
@user_errors(flags=QUEST_FLAGS)
def init_command(
    data: Annotated[str, typer.Option("--data", help="Dataset whose test labels are hidden.")],
    db: DbOption = DEFAULT_DB,
    seed: Annotated[int, typer.Option(help="Seed of the public/private split.")] = 0,
    daily_limit: Annotated[
        int, typer.Option("--daily-limit", help="Submissions per team per UTC day.")
    ] = 5,
    close_at: Annotated[
        str | None,
        typer.Option(
            "--close-at",
            help="ISO time (UTC if no zone), in the future, when private scores show.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A folder holding the dataset's files.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create the competition: hidden test labels, public/private halves, the organiser token."""
    from cnnlab.data import load_dataset
    from cnnlab.quest.db import (
        check_close_at,
        check_competition_numbers,
        check_new_database,
        init_competition,
        parse_close_at,
        utc_now,
    )

    # Everything that can be refused is, before the data loads; nothing is created until the
    # competition is whole (a SQLite file is built aside and moved into place).
    check_competition_numbers(seed=seed, daily_limit=daily_limit)
    check_close_at(parse_close_at(close_at), utc_now())
    with database_errors(db):
        check_new_database(db)
    dataset = load_dataset(data, data_dir=data_dir)
    labels = dataset.test_labels.numpy()
    with database_errors(db):
        token = init_competition(
            db,
            data_name=data,
            labels=labels,
            num_classes=len(dataset.classes),
            seed=seed,
            daily_limit=daily_limit,
            close_at=close_at,
        )
    result = {"db": db, "data": data, "test_count": int(labels.size), "organiser_token": token}
    if json_output:
        print_json(result)
        return
    out.print(
        f"Competition on {data}: {labels.size:,} hidden test labels, split in halves.",
        markup=False,
    )
    out.print(f"Organiser token (shown only now; keep it secret): {token}")


@quest_app.command("serve")
@user_errors(flags=QUEST_FLAGS | SERVE_FLAGS)
def serve_command(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (1 to 65535).")] = 8000,
    max_upload_bytes: Annotated[
        int, typer.Option("--max-upload-bytes", help="Largest submission request accepted.")
    ] = 1_000_000,
    client_timeout: Annotated[
        float,
        typer.Option(
            "--client-timeout",
            help="Seconds a client has to send a request's head; silent or slower clients are "
            "disconnected.",
        ),
    ] = 10.0,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            help="Open connections served at once (by each worker); more get 503.",
        ),
    ] = 500,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Worker processes (uvicorn's); more than 1 needs a PostgreSQL --db, SQLite is "
            "served by one.",
        ),
    ] = 1,
) -> None:
    """Run the leaderboard server (FastAPI under uvicorn)."""
    from cnnlab.quest.http_limits import check_limits
    from cnnlab.quest.server import create_app, serve
    from cnnlab.quest.workers import ServeOptions, check_workers, serve_workers

    check_limits(client_timeout, max_connections)  # before the database opens
    check_workers(db, workers)
    with database_errors(db):
        app = create_app(db, max_upload_bytes=max_upload_bytes)

    def announce(url: str) -> None:
        processes = f" with {workers} worker processes" if workers > 1 else ""
        err.print(f"cnnlab quest: serving {shown_db(db)} on {url}{processes}", markup=False)

    if workers > 1:  # each worker builds its own app: this one only checked the database
        app.state.engine.dispose()
        options = ServeOptions(db, max_upload_bytes, client_timeout, max_connections)
        serve_workers(options, workers=workers, host=host, port=port, on_listening=announce)
        return

    serve(
        app,
        host=host,
        port=port,
        on_listening=announce,
        client_timeout=client_timeout,
        max_connections=max_connections,
    )


@team_app.command("add")
@user_errors(flags=QUEST_FLAGS)
def team_add_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The team's name, shown as text.")],
    db: DbOption = DEFAULT_DB,
    json_output: JsonOption = False,
) -> None:
    """Register a team and print its token (shown once)."""
    from cnnlab.quest.db import add_team
    from cnnlab.quest.fields import printable

    with database_errors(db):
        token = add_team(db, name)
    if json_output:
        print_json({"team": name.strip(), "token": token})
        return
    shown = escape(printable(name.strip()))
    out.print(f"Team {shown} added. Token (shown only now): {token}")


@quest_app.command("reveal")
@user_errors(flags=QUEST_FLAGS)
def reveal_command(db: DbOption = DEFAULT_DB, json_output: JsonOption = False) -> None:
    """Switch the leaderboard to the private scores."""
    from cnnlab.quest.db import reveal

    with database_errors(db):
        when = reveal(db)
    if json_output:
        print_json({"revealed": True, "revealed_at": when.isoformat()})
        return
    out.print(f"Private scores revealed (since {when:%Y-%m-%d %H:%M} UTC).")


@quest_app.command("submit")
@user_errors(flags=QUEST_FLAGS | {"model": "--model", "code": "--code"})
def submit_command(
    csv_path: Annotated[
        Path, typer.Argument(metavar="PREDICTIONS_CSV", help="The id,label file to submit.")
    ],
    token: Annotated[
        str, typer.Option("--token", envvar="CNNLAB_QUEST_TOKEN", help="The team's token.")
    ],
    model: Annotated[str, typer.Option("--model", help="What produced the predictions.")],
    train_time: Annotated[float, typer.Option("--train-time", help="Training time in seconds.")],
    code: Annotated[str | None, typer.Option(help="A URL or commit of the code.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_output: JsonOption = False,
) -> None:
    """Submit predictions; prints the id, the public score and the submissions left today."""
    from cnnlab.quest.client import submit

    result = submit(server, token, csv_path, model=model, train_time=train_time, code=code)
    if json_output:
        print_json(result)
        return
    out.print(
        f"Submission {result['id']}: public score {result['public_score']:.5f}, "
        f"{result['submissions_left']} submissions left today"
    )


@quest_app.command("leaderboard")
@user_errors(flags=QUEST_FLAGS)
def leaderboard_command(
    server: ServerOption = DEFAULT_SERVER, json_output: JsonOption = False
) -> None:
    """Show the leaderboard."""
    from cnnlab.quest.client import leaderboard

    entries = leaderboard(server)
    if json_output:
        print_json(entries)
        return
    out.print(leaderboard_table(entries))


def leaderboard_table(entries: list[dict[str, Any]]) -> WholeTable:
    from cnnlab.quest.fields import printable

    revealed = bool(entries) and "private_score" in entries[0]
    title = "quest leaderboard (private scores)" if revealed else "quest leaderboard"
    table = WholeTable(title=title, title_justify="left")
    for header in ("#", "team", "score", "model", "train time (s)", "submissions", "submitted"):
        prose = header in ("team", "model")  # names the teams chose: they may fold
        table.add_column(header, justify="left" if prose else "right", no_wrap=not prose)
    for entry in entries:
        table.add_row(
            str(entry["rank"]),
            escape(printable(entry["team"])),
            f"{entry['score']:.5f}",
            escape(printable(entry["model"])),
            f"{entry['train_time']:.1f}",
            str(entry["submissions"]),
            entry["created_at"][:16].replace("T", " "),
        )
    if not entries:
        table.caption = "no submissions yet"
    return table
