"""`cnnlab quest init|serve|team add|reveal|submit|leaderboard`: the class leaderboard.

The server's modules (FastAPI, SQLAlchemy, uvicorn, httpx) are imported inside the commands, so
``cnnlab`` starts on machines that do not have them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from enum import Enum
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
    "max_model_mb": "--max-model-mb",
    "max_model_seconds": "--max-model-seconds",
    "max_model_memory_mb": "--max-model-memory-mb",
    "model_threads": "--model-threads",
    "submissions": "--submissions",
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


class Submissions(str, Enum):
    model = "model"
    csv = "csv"


@quest_app.command("init")
@user_errors(flags=QUEST_FLAGS)
def init_command(
    data: Annotated[str, typer.Option("--data", help="Dataset whose test labels are hidden.")],
    submissions: Annotated[
        Submissions,
        typer.Option(
            "--submissions",
            help="model: teams submit exported ONNX models, which the server runs on a secret "
            "test set (the folder's test split, or the public test images perturbed under a "
            "secret seed); csv: teams submit predictions, honest only for your own "
            "--data folder:PATH (a public dataset's labels are public).",
        ),
    ] = Submissions.csv,
    max_model_mb: Annotated[
        float, typer.Option("--max-model-mb", help="Model quests: largest ONNX file, in MB.")
    ] = 20.0,
    max_model_seconds: Annotated[
        float,
        typer.Option("--max-model-seconds", help="Model quests: wall time of one model's run."),
    ] = 120.0,
    max_model_memory_mb: Annotated[
        int,
        typer.Option("--max-model-memory-mb", help="Model quests: memory of one model's run, MB."),
    ] = 2000,
    model_threads: Annotated[
        int, typer.Option("--model-threads", help="Model quests: ONNX Runtime's threads.")
    ] = 1,
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
    from cnnlab.quest.models import ModelLimits, require_onnxruntime
    from cnnlab.quest.secret import PUBLIC, draw_test_set, settings_row

    # Everything that can be refused is, before the data loads; nothing is created until the
    # competition is whole (a SQLite file is built aside and moved into place).
    check_competition_numbers(seed=seed, daily_limit=daily_limit)
    check_close_at(parse_close_at(close_at), utc_now())
    limits = None
    if submissions is Submissions.model:
        limits = ModelLimits(
            max_model_mb=max_model_mb,
            max_model_seconds=max_model_seconds,
            max_model_memory_mb=max_model_memory_mb,
            model_threads=model_threads,
        )
        require_onnxruntime()
    with database_errors(db):
        check_new_database(db)
    dataset = load_dataset(data, data_dir=data_dir)
    test_set = draw_test_set(dataset, submissions=submissions.value)
    labels = test_set.labels.numpy()
    with database_errors(db):
        token = init_competition(
            db,
            data_name=data,
            labels=labels,
            num_classes=len(dataset.classes),
            seed=seed,
            daily_limit=daily_limit,
            close_at=close_at,
            settings=settings_row(test_set, submissions.value, limits),
        )
    result = {
        "db": db,
        "data": data,
        "test_count": int(labels.size),
        "submissions": submissions.value,
        "test_set": test_set.kind,
        "labels_public": test_set.kind == PUBLIC,
        "limits": limits.to_dict() if limits else None,
        "organiser_token": token,
    }
    if test_set.kind == PUBLIC:
        warnings.warn(
            f"the test labels of {data} are public (they ship with the dataset): a CSV "
            "of them scores 1.0, so CSV scores on this quest cannot be trusted. For an honest "
            "board use --submissions model, or your own --data folder:PATH",
            stacklevel=1,
        )
    if json_output:
        print_json(result)
        return
    if submissions is Submissions.model:
        out.print(
            f"Competition on {data}, model submissions: the server runs each team's ONNX model "
            f"on {labels.size:,} secret test images ({_secret_source(test_set)}), split in "
            f"halves; {limits.describe()}.",
            markup=False,
        )
    else:
        out.print(
            f"Competition on {data}: {labels.size:,} hidden test labels, split in halves.",
            markup=False,
        )
    out.print(f"Organiser token (shown only now; keep it secret): {token}")


def _secret_source(test_set: Any) -> str:
    if test_set.kind == "folder":
        return "the folder's test split, which no team has seen"
    return "the public test images perturbed under a secret seed"


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
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log", help="Log one line per request on stderr (off: it costs CPU)."
        ),
    ] = False,
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
        options = ServeOptions(
            db, max_upload_bytes, client_timeout, max_connections, access_log=access_log
        )
        serve_workers(options, workers=workers, host=host, port=port, on_listening=announce)
        return

    serve(
        app,
        host=host,
        port=port,
        on_listening=announce,
        client_timeout=client_timeout,
        max_connections=max_connections,
        access_log=access_log,
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
    token: Annotated[
        str, typer.Option("--token", envvar="CNNLAB_QUEST_TOKEN", help="The team's token.")
    ],
    train_time: Annotated[float, typer.Option("--train-time", help="Training time in seconds.")],
    csv_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PREDICTIONS_CSV|EXPORT_DIR]",
            help="The id,label file to submit; or, in a model quest, the folder that `cnnlab "
            "export RUN --format onnx` wrote.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="What produced the predictions; or, without PREDICTIONS_CSV, the export "
            "folder to submit in a model quest (described by its model.json).",
        ),
    ] = None,
    code: Annotated[str | None, typer.Option(help="A URL or commit of the code.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_output: JsonOption = False,
) -> None:
    """Submit predictions, or an exported model that the server runs on its secret test set;
    prints the id, the public score and the submissions left today."""
    from cnnlab.quest.client import submit, submit_model

    export_dir, description = _what_to_submit(csv_path, model)
    if export_dir is not None:
        result = submit_model(
            server, token, export_dir, model=description, train_time=train_time, code=code
        )
        if json_output:
            print_json(result)
            return
        out.print(
            f"Submission {result['id']} ({escape(result['model'])}): public score "
            f"{result['public_score']:.5f} on the server's {result['images']:,} secret test "
            f"images (half of them public); inference {result['inference_ms']:.3f} ms/image, "
            f"model {result['model_bytes']:,} bytes (measured by the server); "
            f"{result['submissions_left']} submissions left today"
        )
        return
    result = submit(server, token, csv_path, model=description, train_time=train_time, code=code)
    if json_output:
        print_json(result)
        return
    out.print(
        f"Submission {result['id']}: public score {result['public_score']:.5f}, "
        f"{result['submissions_left']} submissions left today"
    )


def _what_to_submit(csv_path: Path | None, model: str | None) -> tuple[Path | None, str | None]:
    """(an export folder to submit, or None for a CSV; the description)."""
    if csv_path is not None and csv_path.is_dir():
        return csv_path, model
    if csv_path is not None:
        if not model:
            raise ValueError(
                "--model is missing: say what produced the predictions, like --model "
                "'lenet-like, 5 epochs'"
            )
        return None, model
    if model is None:
        raise ValueError(
            "expected PREDICTIONS_CSV, or --model EXPORT_DIR to submit an exported model"
        )
    if not Path(model).is_dir():
        raise ValueError(
            f"--model without PREDICTIONS_CSV names the export folder to submit (cnnlab export "
            f"RUN --format onnx --out DIR); {model!r} is no folder. Received: --model {model!r}"
        )
    return Path(model), None


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
    measured = any(entry.get("model_bytes") is not None for entry in entries)  # a model quest
    server_columns = ("inference (ms/image)", "model size") if measured else ()
    headers = ("#", "team", "score", "model", "train time (s)", *server_columns)
    for header in (*headers, "submissions", "submitted"):
        prose = header in ("team", "model")  # names the teams chose: they may fold
        table.add_column(header, justify="left" if prose else "right", no_wrap=not prose)
    for entry in entries:
        table.add_row(
            str(entry["rank"]),
            escape(printable(entry["team"])),
            f"{entry['score']:.5f}",
            escape(printable(entry["model"])),
            f"{entry['train_time']:.1f}",
            *(_measured(entry) if measured else ()),
            str(entry["submissions"]),
            entry["created_at"][:16].replace("T", " "),
        )
    if not entries:
        table.caption = "no submissions yet"
    elif measured:
        table.caption = "inference time and model size: measured by the server"
    return table


def _measured(entry: dict[str, Any]) -> tuple[str, str]:
    """The server's inference time and the model's size (blank for a CSV submission)."""
    from cnnlab.runtime.formatting import format_si

    if entry.get("model_bytes") is None:
        return "", ""
    return f"{entry['inference_ms']:.3f}", f"{format_si(entry['model_bytes'])}B"
