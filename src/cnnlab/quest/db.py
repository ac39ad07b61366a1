"""The quest's database: schema, engines (SQLite or PostgreSQL), the competition and its tokens.

One code path through SQLAlchemy Core serves both engines. SQLite runs in WAL mode with a busy
timeout, and every write transaction starts with ``BEGIN IMMEDIATE`` so that writers queue for the
lock instead of failing when a read turns into a write. On PostgreSQL the same statements run with
``SELECT ... FOR UPDATE`` row locks (SQLite's compiler drops that clause; its write lock already
serialises writers).

Tokens (see ``cnnlab.quest.tokens``) are looked up by their indexed id, then verified.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from cnnlab.quest import sqlite_files
from cnnlab.quest.board_notify import notify_board
from cnnlab.quest.fields import MAX_NAME_LENGTH, check_distinct_name, check_team_name
from cnnlab.quest.tokens import DUMMY_SALT, Principal, new_token, verify_secret
from cnnlab.runtime.validate import check_int

SQLITE_BUSY_TIMEOUT_S = 30

metadata = MetaData()

competition_table = Table(
    "quest_competition",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("data_name", String(200), nullable=False),
    Column("num_classes", Integer, nullable=False),
    Column("test_count", Integer, nullable=False),
    Column("labels", LargeBinary, nullable=False),  # int32 little-endian, one per test id
    Column("private_mask", LargeBinary, nullable=False),  # one byte per test id: 1 = private half
    Column("seed", Integer, nullable=False),
    Column("daily_limit", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("close_at", DateTime(timezone=True)),
    Column("revealed_at", DateTime(timezone=True)),
)

teams_table = Table(
    "quest_teams",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(MAX_NAME_LENGTH), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tokens_table = Table(
    "quest_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("salt", LargeBinary(16), nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("role", String(16), nullable=False),  # "team" or "organiser"
    Column("team_id", Integer, ForeignKey("quest_teams.id")),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

submissions_table = Table(
    "quest_submissions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("team_id", Integer, ForeignKey("quest_teams.id"), nullable=False),
    Column("day", String(10), nullable=False),  # the UTC day, YYYY-MM-DD, for the daily limit
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model", Text, nullable=False),
    Column("train_time", Float, nullable=False),
    Column("code", Text),
    Column("public_score", Float, nullable=False),
    Column("private_score", Float, nullable=False),
    Index("ix_quest_submissions_team_day", "team_id", "day"),
    sqlite_autoincrement=True,  # ids never reused: the board's cache key (board.board_version)
)

# How the quest scores (cnnlab.quest.secret): CSV predictions or models run by the server, and a
# model quest's secret test images (their labels are quest_competition.labels). One row; a
# database made before it has none and is a CSV quest.
settings_table = Table(
    "quest_settings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("submissions", String(8), nullable=False),  # "csv" or "model"
    Column("test_set", String(16), nullable=False),  # "public", "folder" or "perturbed"
    Column("image_shape", String(40), nullable=False),  # "C,H,W"
    Column("classes", Text, nullable=False),  # JSON list of class names
    Column("images", LargeBinary),  # model quests: zlib(uint8 N*C*H*W), in test-id order
    Column("recipe", Text),  # the perturbation's ranges (JSON; public), or NULL
    Column("secret_seed", String(32)),  # the perturbation's seed (hex; never sent)
    Column("limits", Text),  # model quests: cnnlab.quest.models.ModelLimits as JSON
)

# What the server measured when it ran a submitted model (cnnlab.quest.models).
model_runs_table = Table(
    "quest_model_runs",
    metadata,
    Column(
        "submission_id",
        Integer,
        ForeignKey("quest_submissions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("model_bytes", Integer, nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("inference_ms", Float, nullable=False),  # session.run time per image
    Column("batch_size", Integer, nullable=False),
    Column("threads", Integer, nullable=False),
)


POSTGRES_POOL_WAIT_S = 120.0  # as long as an upload may take (http_limits)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def check_close_at(close_at: datetime | None, now: datetime) -> None:
    """A close time must lie ahead: one in the past would reveal the private scores at once."""
    if close_at is not None and close_at <= now:
        raise ValueError(
            f"close_at must be in the future (now {now:%Y-%m-%dT%H:%M}Z). "
            f"Received: close_at={close_at:%Y-%m-%dT%H:%M}Z"
        )


def parse_close_at(value: datetime | str | None) -> datetime | None:
    """An ISO 8601 time (``2025-11-26T12:00``, ``...Z``, ``...+01:00``); no zone means UTC."""
    if value is None or isinstance(value, datetime):
        return as_utc(value)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"close_at expects an ISO 8601 time like 2025-11-26T12:00Z. Received: {value!r}"
        ) from None
    return as_utc(parsed)


def make_db_engine(db_url: str, *, create: bool = False) -> Engine:
    """An engine for ``sqlite:///PATH`` or ``postgresql[+psycopg]://...``; anything else is refused.

    ``create=False`` refuses a SQLite file that does not exist yet (only ``init`` makes one);
    ``create=True`` makes its folder too.
    """
    expected = "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise ValueError(f"db_url expects {expected}. Received: db_url={db_url!r}") from None
    shown = url.render_as_string(hide_password=True)  # errors never echo a password
    backend = url.get_backend_name()
    if backend == "postgresql":
        try:
            # A team's submissions queue on its row lock while holding a pooled connection;
            # requests beyond the pool wait for one. SQLAlchemy's default 30 s wait can end in
            # a 500 under a loaded machine (50 concurrent submissions, two workers): wait as long
            # as an upload may take instead, so a queue stays a queue.
            return create_engine(
                url.set(drivername="postgresql+psycopg"),
                pool_pre_ping=True,
                pool_timeout=POSTGRES_POOL_WAIT_S,
            )
        except ImportError:
            raise ValueError(
                "db_url names PostgreSQL, whose driver psycopg is not installed: expected "
                f"pip install 'cnnlab[postgres]', or a SQLite file. Received: db_url={shown!r}"
            ) from None
    if backend != "sqlite" or url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise ValueError(f"db_url expects {expected}. Received: db_url={shown!r}")
    if not url.database or url.database == ":memory:":
        raise ValueError(
            f"db_url needs a SQLite file, like sqlite:///quest.db. Received: db_url={shown!r}"
        )
    if not create and not Path(url.database).exists():
        raise FileNotFoundError(
            f"No such quest database: {url.database} (create it with `cnnlab quest init`)"
        )
    if Path(url.database).exists():
        sqlite_files.restrict_permissions(Path(url.database))  # made 0644 before this rule
    if create:
        try:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"cannot create the folder of {url.database} ({error.strerror}): expected a "
                f"SQLite file in a writable folder. Received: db_url={shown!r}"
            ) from None
    # Writers queue on SQLite's lock, so let waiting requests hold a connection each; keep as
    # many open as the server has worker threads (40), since reopening one (and its PRAGMAs) per
    # request costs more than the leaderboard read itself.
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_size=40, max_overflow=24
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("quest_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: SQLite takes its write lock at BEGIN (IMMEDIATE)."""
    with engine.connect() as connection:
        connection.execution_options(quest_write=True)
        with connection.begin():
            yield connection


@contextmanager
def open_engine(db_url: str, *, create: bool = False) -> Iterator[Engine]:
    engine = make_db_engine(db_url, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


def sqlite_path(db_url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL, None for PostgreSQL; ``ValueError`` for a URL that
    ``make_db_engine`` refuses. Nothing is created."""
    with suppress(FileNotFoundError):  # a SQLite file not made yet: the URL itself is right
        make_db_engine(db_url).dispose()
    url = make_url(db_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" else None


def check_new_database(db_url: str) -> None:
    """Refuse, before any work, a database that already holds a competition or something else.

    A SQLite file that does not exist (or is empty) and a PostgreSQL database without the
    quest's tables are new; nothing is created here.
    """
    path = sqlite_path(db_url)
    if path is not None and sqlite_files.is_new_file(path):
        return
    with open_engine(db_url) as engine, engine.connect() as connection:
        if find_competition(connection) is not None:
            raise ValueError(
                f"{db_url} already holds a competition; use a new database for a new one"
            )
        if path is not None and inspect(connection).get_table_names():
            raise ValueError(
                f"db_url names a SQLite file that holds other tables: expected a new file for "
                f"the competition. Received: db_url={db_url!r}"
            )


@contextmanager
def new_database(db_url: str) -> Iterator[Engine]:
    """An engine on which to create the competition, all or nothing.

    SQLite: a private temporary file beside the one named, moved into place when the block
    succeeds (``sqlite_files.building``). PostgreSQL: the database itself; the caller creates
    the tables and the competition in one transaction.
    """
    check_new_database(db_url)
    path = sqlite_path(db_url)
    if path is None:
        with open_engine(db_url) as engine:
            yield engine
        return
    try:
        with (
            sqlite_files.building(path) as temporary,
            open_engine(f"sqlite:///{temporary}", create=True) as engine,
        ):
            yield engine
    except FileExistsError:  # another init won the race
        check_new_database(db_url)
        raise


def authenticate(connection: Connection, token: str) -> Principal | None:
    """The token's owner, or None: one indexed lookup, one HMAC, a constant-time comparison."""
    token_id, _, secret = token.partition(".")
    row = None
    if secret and len(token_id) <= 32:
        row = connection.execute(
            select(tokens_table, teams_table.c.name)
            .outerjoin(teams_table, teams_table.c.id == tokens_table.c.team_id)
            .where(tokens_table.c.token_id == token_id)
        ).first()
    if row is None:
        verify_secret(secret, DUMMY_SALT, b"")  # same work whether or not the id exists
        return None
    if not verify_secret(secret, row.salt, row.digest):
        return None
    return Principal(role=row.role, team_id=row.team_id, team_name=row.name)


# ----------------------------------------------------------------------------- competition


@dataclass(frozen=True)
class Competition:
    """The competition's settings (not its answer key)."""

    data_name: str
    num_classes: int
    test_count: int
    daily_limit: int
    seed: int
    created_at: datetime
    close_at: datetime | None
    revealed_at: datetime | None

    def is_revealed(self, now: datetime) -> bool:
        """Private scores are public once the organiser reveals them or the close time passes."""
        return self.revealed_at is not None or (self.close_at is not None and now >= self.close_at)

    def public_info(self, now: datetime) -> dict:
        return {
            "data": self.data_name,
            "num_classes": self.num_classes,
            "test_count": self.test_count,
            "daily_limit": self.daily_limit,
            "close_at": self.close_at.isoformat() if self.close_at else None,
            "revealed": self.is_revealed(now),
        }


def load_competition(connection: Connection) -> Competition | None:
    """The competition's settings; not its answer key (50 KB that every request would fetch)."""
    columns = [c for c in competition_table.c if c.name not in ("labels", "private_mask")]
    row = connection.execute(select(*columns).where(competition_table.c.id == 1)).first()
    if row is None:
        return None
    return Competition(
        data_name=row.data_name,
        num_classes=row.num_classes,
        test_count=row.test_count,
        daily_limit=row.daily_limit,
        seed=row.seed,
        created_at=as_utc(row.created_at),
        close_at=as_utc(row.close_at),
        revealed_at=as_utc(row.revealed_at),
    )


def find_competition(connection: Connection) -> Competition | None:
    """The competition, or None when the database is empty or not yet a quest database."""
    if not inspect(connection).has_table(competition_table.name):
        return None
    return load_competition(connection)


def load_answer_key(connection: Connection) -> tuple[np.ndarray, np.ndarray]:
    """The hidden labels (int32, one per test id) and the private-half mask (bool)."""
    row = connection.execute(
        select(competition_table.c.labels, competition_table.c.private_mask).where(
            competition_table.c.id == 1
        )
    ).one()
    labels = np.frombuffer(row.labels, dtype="<i4").astype(np.int64)
    private = np.frombuffer(row.private_mask, dtype=np.uint8).astype(bool)
    return labels, private


def split_private(count: int, seed: int) -> np.ndarray:
    """A seeded half of the test ids (the larger half when odd) is private; the rest is public."""
    order = np.random.default_rng(seed).permutation(count)
    private = np.zeros(count, dtype=bool)
    private[order[count // 2 :]] = True
    return private


MAX_DAILY_LIMIT = 1_000_000  # fits every database's INTEGER; a limit this high is no limit


def check_competition_numbers(*, seed: int, daily_limit: int) -> None:
    """The split's seed (NumPy's range) and the daily limit, refused before a file is made."""
    check_int("seed", seed, low=0, high=2**32 - 1)
    check_int("daily_limit", daily_limit, low=1, high=MAX_DAILY_LIMIT)


def init_competition(
    db_url: str,
    *,
    data_name: str,
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    seed: int = 0,
    daily_limit: int = 5,
    close_at: datetime | str | None = None,
    now: datetime | None = None,
    settings: dict | None = None,
) -> str:
    """Create the competition (hidden labels, public/private split); return the organiser token.

    The token is shown once: only its salted hash is stored. ``close_at`` must lie after
    ``now`` (the creation time; default the wall clock, a fixed one in tests). ``settings``:
    how the quest scores (``cnnlab.quest.secret.settings_row``); None makes a CSV quest.
    """
    answers = np.asarray(labels)
    if answers.ndim != 1 or answers.size < 2 or not np.issubdtype(answers.dtype, np.integer):
        raise ValueError(
            "labels must be a 1D array of at least 2 integer class indices. "
            f"Received: dtype={answers.dtype}, shape={answers.shape}"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
    if answers.min() < 0 or answers.max() >= num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}. "
            f"Received: values from {answers.min()} to {answers.max()}"
        )
    check_competition_numbers(seed=seed, daily_limit=daily_limit)
    close = parse_close_at(close_at)
    now = now or utc_now()
    check_close_at(close, now)
    with new_database(db_url) as engine, write_transaction(engine) as connection:
        metadata.create_all(connection)  # PostgreSQL: in the competition's transaction
        if load_competition(connection) is not None:
            raise ValueError(
                f"{db_url} already holds a competition; use a new database for a new one"
            )
        connection.execute(
            insert(competition_table).values(
                id=1,
                data_name=data_name,
                num_classes=num_classes,
                test_count=int(answers.size),
                labels=answers.astype("<i4").tobytes(),
                private_mask=split_private(answers.size, seed).astype(np.uint8).tobytes(),
                seed=seed,
                daily_limit=daily_limit,
                created_at=now,
                close_at=close,
                revealed_at=None,
            )
        )
        if settings is not None:  # cnnlab.quest.secret.settings_row
            connection.execute(insert(settings_table).values(id=1, **settings))
        token, row = new_token("organiser", None, now)
        connection.execute(insert(tokens_table).values(**row))
    return token


def add_team(db_url: str, name: str) -> str:
    """Register a team; return its token (shown once, only a salted hash is stored).

    The name must be readable and not a look-alike of another team's (``cnnlab.quest.fields``).
    """
    shown = check_team_name(name)
    now = utc_now()
    with open_engine(db_url) as engine:
        try:
            with write_transaction(engine) as connection:
                _require_competition(connection, db_url)
                lock_competition(connection)  # PostgreSQL: two look-alikes cannot both pass
                existing = list(connection.execute(select(teams_table.c.name)).scalars())
                check_distinct_name(shown, existing)
                team_id = connection.execute(
                    insert(teams_table).values(name=shown, created_at=now)
                ).inserted_primary_key[0]
                token, row = new_token("team", team_id, now)
                connection.execute(insert(tokens_table).values(**row))
        except IntegrityError:
            raise ValueError(f"a team named {shown!r} already exists") from None
    return token


def reveal(db_url: str) -> datetime:
    """Switch the leaderboard to private scores (idempotent); return when that happened."""
    with open_engine(db_url) as engine, write_transaction(engine) as connection:
        return reveal_in(connection, db_url)


def reveal_in(connection: Connection, db_url: str = "the database") -> datetime:
    competition = _require_competition(connection, db_url)
    if competition.revealed_at is not None:
        return competition.revealed_at
    now = utc_now()
    connection.execute(
        update(competition_table).where(competition_table.c.id == 1).values(revealed_at=now)
    )
    notify_board(connection, urgent=True)  # servers on PostgreSQL: exact on their next request
    return now


def lock_competition(connection: Connection) -> None:
    """Queue this transaction behind others that change the teams (PostgreSQL's row lock;
    SQLite's BEGIN IMMEDIATE already serialises writers)."""
    connection.execute(
        select(competition_table.c.id).where(competition_table.c.id == 1).with_for_update()
    ).one()


def _require_competition(connection: Connection, db_url: str) -> Competition:
    competition = find_competition(connection)
    if competition is None:
        raise ValueError(f"{db_url} holds no competition; run `cnnlab quest init` first")
    return competition
