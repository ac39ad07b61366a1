"""Read routes served from a precomputed body with an ETag, rebuilt only when the board changes.

Readers far outnumber submissions: the leaderboard's JSON and the page are built and encoded
when a submission or the reveal changed them, and served from memory in between, with an ETag
(a hash of the body) so that a client that already holds this body gets ``304 Not Modified``.

When is a body stale?

- After a change made by this server, in every worker: each write (a submission, the reveal)
  bumps a ``ChangeCounter`` after its commit; ``quest serve --workers N`` gives all its workers
  one counter in shared memory. A reveal through any worker is exact on all of them (the next
  request rebuilds); a submission shows on the next request after ``settle_seconds`` have passed
  since the body was last checked (0: at once; ``--workers`` uses 0.25 s), so that 20 submissions
  a second cost each worker at most 4 rebuilds a second, not 20.
- At the close time, exactly: a body built before it carries the close time and is rebuilt on
  the first request at or after it.
- After a change made outside this server (``cnnlab quest reveal``, a second machine's server,
  removing a team), within ``refresh_seconds``: the board's key (newest id, count, competition
  state) is read from the database again at most that often (on PostgreSQL such changes also
  raise the counter at once: ``board_notify``).

With a settle time, readers need not wait for those checks: ``refresh_ahead`` (a task in each
worker) checks a body that is being read once it is three quarters of the bound old, and rebuilds
it if the board changed, so that the next readers find it current in memory. The bounds stay
what ``fresh`` enforces; only who pays for the check changes (a reader waited for it before).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from cnnlab.quest import board
from cnnlab.quest.db import Competition, load_competition


class ChangeCounter:
    """Two numbers that writes to the board raise after their commit: every write the first,
    a write that must show at once everywhere (the reveal) the second too.

    ``shared``: a ``multiprocessing`` ``Array('q', 2)`` that several worker processes hold (see
    ``workers``); without it the counter is this process's own.
    """

    def __init__(self, shared: SynchronizedArray | None = None) -> None:
        self._counts = shared if shared is not None else [0, 0]
        self._lock = shared.get_lock() if shared is not None else threading.Lock()
        self._where = "local" if shared is None else "shared"

    def bump(self, *, urgent: bool = False) -> None:
        with self._lock:
            self._counts[0] += 1
            if urgent:
                self._counts[1] += 1

    def read(self) -> tuple[int, int]:
        """(all writes, urgent writes)."""
        with self._lock:
            return self._counts[0], self._counts[1]

    def __repr__(self) -> str:
        return f"ChangeCounter({self._where}, writes={self.read()[0]}, urgent={self.read()[1]})"


@dataclass(frozen=True)
class Body:
    """An encoded response body and its strong ETag (quoted, as the header carries it)."""

    content: bytes
    etag: str

    @classmethod
    def of(cls, content: bytes) -> Body:
        return cls(content, f'"{hashlib.blake2b(content, digest_size=12).hexdigest()}"')


@dataclass(frozen=True)
class _Entry:
    key: object  # (board version, competition state, revealed): the body changes only with it
    body: Body
    counter: tuple[int, int]  # the change counter, read before the database was
    checked: float  # time.monotonic() when the key was read
    closes: datetime | None  # the close time that will reveal this body, if any


# refresh_ahead checks a body once it is this share of its bound old (the settle time, or the
# refresh time if shorter), and looks six times in that span: readers find it current.
REFRESH_AHEAD_AT = 0.75
REFRESH_AHEAD_LOOKS = 6

# Builds a body from the database: (connection, competition, revealed) -> bytes.
BuildBody = Callable[[Connection, Competition, bool], bytes]


class CachedBody:
    """One route's body, served from memory while it is known to be current (see the module)."""

    def __init__(
        self,
        build: BuildBody,
        *,
        engine: Engine,
        now: Callable[[], datetime],
        changes: ChangeCounter,
        refresh_seconds: float,
        settle_seconds: float = 0.0,
    ) -> None:
        if not refresh_seconds >= 0:
            raise ValueError(f"refresh_seconds must be >= 0. Received: {refresh_seconds!r}")
        if not settle_seconds >= 0:
            raise ValueError(f"settle_seconds must be >= 0. Received: {settle_seconds!r}")
        self._settle_seconds = settle_seconds
        self._build = build
        self._engine = engine
        self._now = now
        self._changes = changes
        self._refresh_seconds = refresh_seconds
        self._entry: _Entry | None = None
        self._rebuilding = threading.Lock()  # one reader rebuilds; the others take its result
        self._served = False  # whether fresh() handed out the body since refresh_ahead looked

    def fresh(self) -> Body | None:
        """The body when it can be served without asking the database (no I/O), else None."""
        entry = self._entry
        if entry is None:
            return None
        writes, urgent = self._changes.read()
        age = time.monotonic() - entry.checked
        if urgent != entry.counter[1] or age >= self._refresh_seconds:
            return None
        if writes != entry.counter[0] and age >= self._settle_seconds:
            return None
        if entry.closes is not None and self._now() >= entry.closes:
            return None
        self._served = True
        return entry.body

    def current(self) -> Body:
        """The body, checked against the database (blocking: run it in a thread pool)."""
        asked = time.monotonic()
        with self._rebuilding:
            entry = self._entry
            if entry is not None and entry.checked >= asked and self.fresh() is not None:
                return entry.body  # another reader refreshed it while this one waited
            return self._refresh()

    async def refresh_ahead(self) -> None:
        """Check the body against the database before its readers would have to, rebuilding it
        if the board changed, for as long as it is being read (a task of the worker's event
        loop; nothing to do without a settle time, when every change shows at once)."""
        lead = REFRESH_AHEAD_AT * min(self._settle_seconds, self._refresh_seconds)
        if lead <= 0:
            return
        while True:
            await asyncio.sleep(lead / REFRESH_AHEAD_LOOKS)
            entry = self._entry
            if entry is None or not self._served or time.monotonic() - entry.checked < lead:
                continue
            self._served = False
            with contextlib.suppress(SQLAlchemyError):  # a reader's own request reports it
                await run_in_threadpool(self._refresh_now)

    def _refresh_now(self) -> Body:
        with self._rebuilding:
            return self._refresh()

    def _refresh(self) -> Body:
        counter = self._changes.read()  # before the database: a later bump forces a rebuild
        with self._engine.connect() as connection:
            state = load_competition(connection)
            revealed = state.is_revealed(self._now())
            key = (board.board_version(connection), state, revealed)
            old = self._entry
            if old is not None and old.key == key:
                body = old.body
            else:
                body = Body.of(self._build(connection, state, revealed))
        closes = None if revealed else state.close_at
        self._entry = _Entry(key, body, counter, time.monotonic(), closes)
        return body


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110 13.1.2: weak comparison,
    a list of tags, or ``*``)."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


def cached_headers(body: Body, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The headers of a cached body's answer: its ETag, and ``no-cache`` so that a browser asks
    again each time (cheaply, with If-None-Match) rather than showing a stale board."""
    return {"ETag": body.etag, "Cache-Control": "no-cache", **(extra or {})}


async def cached_response(
    request: Request, cached: CachedBody, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    """``cached``'s body (from memory when it is current), or 304 when the client holds it."""
    body = cached.fresh() or await run_in_threadpool(cached.current)
    all_headers = cached_headers(body, headers)
    if etag_matches(request.headers.get("if-none-match"), body.etag):
        return Response(status_code=304, headers=all_headers)
    return Response(body.content, media_type=media_type, headers=all_headers)
