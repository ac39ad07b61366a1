"""Changes made outside the server reach its cached board at once on PostgreSQL: LISTEN/NOTIFY.

``cnnlab quest reveal`` and ``cnnlab quest team remove`` write to the database directly, not
through a server, so no worker's ``ChangeCounter`` knows of them. On PostgreSQL each such write
also sends a notification (``notify_board``, in its transaction: delivered at its commit, never
for a rolled-back one), and every worker holds one connection that listens
(``BoardListener``, a thread) and raises the counter when one arrives: a reveal makes every
worker rebuild on its next request, as a reveal through the server does, a team's removal within
the board's settle time. Delivery takes about a millisecond, not the board's refresh time.

SQLite has no notifications; a one-worker SQLite server sees such changes within
``board_refresh_seconds`` (``board_cache``).

The payload names the schema the change was made in: servers of other quests in the same
PostgreSQL database (one schema each) ignore it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:  # board_cache imports db, which imports this module
    from cnnlab.quest.board_cache import ChangeCounter

CHANNEL = "cnnlab_quest_board"
REVEAL, CHANGE = "reveal", "change"
WAIT_S = 0.5  # how often the listener looks whether it should stop
START_S = 10.0  # the server waits this long for its listener before it serves anyway
RETRY_S = 1.0  # after a lost connection (the database restarted): listen again after this


def notify_board(connection: Connection, *, urgent: bool) -> None:
    """Tell the listening servers, once this transaction commits, that the board changed
    (``urgent``: the reveal, which must show at once). Nothing on SQLite."""
    if connection.dialect.name != "postgresql":
        return
    connection.execute(
        text("SELECT pg_notify(:channel, coalesce(current_schema(), '') || ':' || :kind)"),
        {"channel": CHANNEL, "kind": REVEAL if urgent else CHANGE},
    )


class BoardListener:
    """A thread holding one PostgreSQL connection that LISTENs, raising ``changes`` for each
    notification about this quest's schema. ``start`` and ``stop`` it with the app; the app
    serves once it listens (``wait_listening``): no body is cached before."""

    def __init__(self, engine: Engine, changes: ChangeCounter) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"engine: notifications need PostgreSQL. Received: {engine.dialect.name}"
            )
        # psycopg's own connection string: not one of the pool's, which it would keep busy.
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._changes = changes
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quest-board-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener is connected and listening (waiting up to ``timeout`` s)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * WAIT_S)

    def _run(self) -> None:
        import psycopg

        reconnecting = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    schema = connection.execute("SELECT current_schema()").fetchone()[0]
                    connection.execute(f"LISTEN {CHANNEL}")
                    if reconnecting:  # a change made while no one listened was not delivered:
                        self._changes.bump(urgent=True)  # every worker checks the database
                    self._listening.set()
                    self._listen(connection, f"{schema or ''}:")
            except psycopg.Error:
                self._listening.clear()
                self._stopping.wait(RETRY_S)
            reconnecting = True

    def _listen(self, connection, prefix: str) -> None:
        while not self._stopping.is_set():
            for notification in connection.notifies(timeout=WAIT_S):
                kind = notification.payload.removeprefix(prefix)
                if len(kind) < len(notification.payload):  # this quest's schema
                    self._changes.bump(urgent=kind == REVEAL)

    def __repr__(self) -> str:
        state = "listening" if self._listening.is_set() else "not listening"
        return f"BoardListener({CHANNEL!r}, {state})"
