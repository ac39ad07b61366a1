"""`quest serve --workers N`: N uvicorn worker processes on one listening socket, on PostgreSQL.

uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N``
runs) spawns the workers, restarts one that dies and stops them all on Ctrl-C or SIGTERM. It is
used rather than gunicorn because it takes the socket ``server.listening_socket`` binds (with
Nagle's algorithm off, and a clear error when the port is taken) and the same ``uvicorn.Config``
as one process, so the request-head deadline and the connection limit of ``http_limits`` apply
in every worker unchanged; gunicorn would add a dependency, its own socket and its own
configuration for the same pre-fork model.

Each worker is a spawned process that builds its own app (``create_app``: its own engine and
connection pool, its own copy of the answer key) from ``ServeOptions``. What the workers share
is the board's ``ChangeCounter``, in shared memory: a reveal through any worker is seen by every
worker's cached board on its next request, a submission within ``board_settle_seconds``
(``board_cache``).

SQLite stays one worker: its writers take turns on one file lock, so more processes add
contention, not throughput.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from uvicorn.supervisors import Multiprocess

from cnnlab.quest.board_cache import ChangeCounter
from cnnlab.quest.http_limits import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    check_limits,
    timed_protocol,
    uvicorn_limits,
)
from cnnlab.runtime.validate import check_int

MAX_WORKERS = 64
PARENT_CHECK_S = 0.5  # how often a worker looks whether its supervisor still runs
# uvicorn kills a worker that does not answer its supervisor's ping within this time (5 s by
# default), and a new worker answers only once its imports are done: about a second (a CSV
# quest's server never imports torch; a model quest's loads it for the secret images), many
# more on a loaded machine.
WORKER_START_S = 120


@dataclass(frozen=True)
class ServeOptions:
    """What a worker needs to build its app; picklable, since each spawned worker receives it."""

    db_url: str
    max_upload_bytes: int = 1_000_000
    client_timeout: float = REQUEST_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS  # per worker: each process has its own descriptors
    board_refresh_seconds: float = 1.0
    # A submission shows on every worker within this time (the reveal at once): board_cache.
    board_settle_seconds: float = 0.25
    # One log line per request: at hundreds of requests a second, a large share of a worker's
    # CPU (uvicorn formats and writes each line in the event loop), so off unless asked for.
    access_log: bool = False

    def __post_init__(self) -> None:
        check_limits(self.client_timeout, self.max_connections)


def check_workers(db_url: str, workers: int) -> None:
    """``workers`` is 1, or more on PostgreSQL; SQLite is served by one worker."""
    check_int("workers", workers, low=1, high=MAX_WORKERS)
    if workers == 1:
        return
    try:
        backend = make_url(db_url).get_backend_name()
    except ArgumentError:
        backend = None  # create_app names what a database URL looks like
    if backend != "postgresql":
        raise ValueError(
            f"workers: several worker processes need PostgreSQL; a SQLite database is served "
            f"by one (its writers take turns on one file lock): expected --workers 1 or a "
            f"postgresql+psycopg:// database. Received: workers={workers}"
        )


class WorkerConfig(uvicorn.Config):
    """uvicorn's config for ``quest serve``'s workers.

    The supervisor pickles it into each spawned worker, so it carries only plain data; the app
    and the timed protocol class (made per timeout, not importable by name) are built in the
    worker, when uvicorn loads the config there.
    """

    def __init__(
        self, options: ServeOptions, changes: SynchronizedArray, workers: int, log_level: str
    ) -> None:
        super().__init__(
            app=None,
            workers=workers,
            log_level=log_level,
            timeout_worker_healthcheck=WORKER_START_S,
            access_log=options.access_log,
            **uvicorn_limits(options.client_timeout, options.max_connections),
        )
        self.options = options
        self.changes = changes
        self.supervisor_pid = os.getpid()

    def load(self) -> None:
        from cnnlab.quest.server import create_app  # in the worker: it imports this module

        options = self.options
        self.app = create_app(
            options.db_url,
            max_upload_bytes=options.max_upload_bytes,
            board_refresh_seconds=options.board_refresh_seconds,
            board_settle_seconds=options.board_settle_seconds,
            changes=ChangeCounter(self.changes),
        )
        self.http = timed_protocol(options.client_timeout)
        threading.Thread(target=_stop_without, args=(self.supervisor_pid,), daemon=True).start()
        super().load()


def _stop_without(supervisor_pid: int) -> None:
    """Shut this worker down (as on SIGTERM: requests in flight finish) once its supervisor is
    gone, for instance SIGKILLed: an orphaned worker would hold the port."""
    while os.getppid() == supervisor_pid:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def serve_workers(
    options: ServeOptions,
    *,
    workers: int,
    host: str,
    port: int,
    log_level: str = "info",
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve with ``workers`` processes on ``host:port`` until interrupted (Ctrl-C, SIGTERM)."""
    from cnnlab.quest.server import listening_socket

    check_workers(options.db_url, workers)
    changes: Any = multiprocessing.get_context("spawn").Array("q", 2)
    config = WorkerConfig(options, changes, workers, log_level)
    sock = listening_socket(host, port)
    if on_listening is not None:
        on_listening(f"http://{host}:{port}")
    with _main_script_not_rerun():
        Multiprocess(config, sockets=[sock]).run()


@contextlib.contextmanager
def _main_script_not_rerun() -> Iterator[None]:
    """While the supervisor spawns workers, they do not run this process's main script again.

    multiprocessing's spawn runs a main *script* (run by its path, as the ``cnnlab`` console
    script is) again in every child, in case the pickled target needs it; a worker needs only
    ``cnnlab.quest.workers``, and the ``cnnlab`` script imports the whole CLI, torch included:
    ~200 MB more per worker and seconds more to start. A main module with a spec named
    ``__main__`` is left alone (``multiprocessing.spawn._fixup_main_from_name``), as under
    ``python -m cnnlab``, so the script's module is given such a spec meanwhile.
    """
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is not None or not hasattr(main, "__file__"):
        yield  # python -m ... or python -c ...: nothing is run again
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None
