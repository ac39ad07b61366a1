"""The leaderboard server: FastAPI routes over the quest database.

Routes:
    GET  /                   the HTML page: leaderboard, histogram of public scores, recent log
    GET  /api/competition    data set, test size, daily limit, close time, whether revealed
    GET  /api/leaderboard    one entry per team, best first (JSON list)
    GET  /api/log            the lecture's log lines, text/plain (``?limit=N``)
    GET  /api/submissions    the calling team's own submissions (team token)
    POST /api/submissions    submit a CSV (team token; multipart: file, model, train_time, code)
    POST /api/models         a model quest: submit an exported ONNX model (team token; multipart:
                             file, manifest, train_time, model, code), run by the server on its
                             secret test set (``model_routes``)
    POST /api/reveal         switch to private scores (organiser token)

The hidden labels are read once into memory and never sent; private scores appear in answers
only after the reveal (or the close time). A model quest's secret images likewise.
"""

import asyncio
import contextlib
import errno
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection
from starlette.datastructures import UploadFile

from cnnlab.quest import board
from cnnlab.quest.board_cache import CachedBody, ChangeCounter, cached_response
from cnnlab.quest.board_notify import START_S as LISTEN_START_S
from cnnlab.quest.board_notify import BoardListener
from cnnlab.quest.db import (
    Competition,
    authenticate,
    find_competition,
    load_answer_key,
    load_competition,
    make_db_engine,
    metadata,
    model_runs_table,
    reveal_in,
    settings_table,
    utc_now,
    write_transaction,
)
from cnnlab.quest.fields import check_text, check_train_time
from cnnlab.quest.http_limits import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    UPLOAD_TIMEOUT_S,
    server_config,
)
from cnnlab.quest.models import require_onnxruntime
from cnnlab.quest.page import render_page
from cnnlab.quest.scoring import SubmissionError, parse_submission, score
from cnnlab.quest.secret import load_secret_images, load_settings
from cnnlab.quest.tokens import Principal

MAX_TEXT_LENGTH = 500
_CHUNK_LIMIT_MESSAGE = "the upload is larger than the server's limit of {limit:,} bytes"
_HTML = "text/html; charset=utf-8"
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
}


@contextlib.contextmanager
def board_refusals() -> Iterator[None]:
    """The board's refusals as HTTP errors: over the daily limit 429, after the close 409."""
    try:
        yield
    except board.DailyLimitReached as error:
        raise HTTPException(429, str(error)) from None
    except board.CompetitionClosed as error:
        raise HTTPException(409, str(error)) from None


def create_app(
    db_url: str,
    *,
    max_upload_bytes: int = 1_000_000,
    clock: Callable[[], datetime] | None = None,
    board_refresh_seconds: float = 1.0,
    changes: ChangeCounter | None = None,
    board_settle_seconds: float = 0.0,
) -> FastAPI:
    """The app for an initialised quest database (``init_competition`` first).

    ``max_upload_bytes`` bounds a submission's request body; ``clock`` (returning an aware UTC
    datetime) replaces the wall clock in tests of the daily limit and the close time;
    ``board_refresh_seconds`` is how stale the cached leaderboard and page may be for changes
    made outside this server (0: none); ``changes``: the counter this server's writes raise,
    shared by all the workers of ``quest serve --workers N``; ``board_settle_seconds``: how long
    a cached body may lag this server's submissions, never its reveal (``board_cache``).
    """
    if not board_refresh_seconds >= 0:
        raise ValueError(f"board_refresh_seconds must be >= 0. Received: {board_refresh_seconds!r}")
    if max_upload_bytes < 1:
        raise ValueError(
            f"max_upload_bytes must be positive. Received: max_upload_bytes={max_upload_bytes}"
        )
    now = clock or utc_now
    engine = make_db_engine(db_url)
    with engine.connect() as connection:
        if find_competition(connection) is None:
            engine.dispose()
            raise ValueError(f"{db_url} holds no competition; run `cnnlab quest init` first")
        labels, private = load_answer_key(connection)
    with write_transaction(engine) as connection:  # databases made before model quests
        metadata.create_all(connection, tables=[settings_table, model_runs_table])
    with engine.connect() as connection:
        # The test set's size and classes never change after `quest init` (only the reveal
        # does): a submission is checked against these, without asking the database again.
        started = load_competition(connection)
        settings = load_settings(connection, started)
        secret_images = None  # a model quest's secret test images, kept like the labels
        if settings.submissions == "model":
            require_onnxruntime()
            secret_images = load_secret_images(connection, settings)

    changes = changes or ChangeCounter()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # PostgreSQL: changes made outside the server (`quest reveal`) arrive as notifications.
        listener = BoardListener(engine, changes) if engine.dialect.name == "postgresql" else None
        if listener is not None:
            listener.start()
            await run_in_threadpool(listener.wait_listening, LISTEN_START_S)
        app.state.board_listener = listener
        # With a settle time, the cached bodies are checked ahead of their readers (board_cache).
        ahead = [asyncio.create_task(body.refresh_ahead()) for body in (cached_page, cached_board)]
        try:
            yield
        finally:
            for task in ahead:
                task.cancel()
            if listener is not None:
                await run_in_threadpool(listener.stop)
            engine.dispose()  # the pool's connections close now, not when the app is collected

    app = FastAPI(
        title="cnnlab quest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.engine = engine
    bearer = HTTPBearer(auto_error=False)

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                401,
                "missing token: send the header 'Authorization: Bearer TOKEN'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with engine.connect() as connection:
            principal = authenticate(connection, credentials.credentials)
        if principal is None:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        return principal

    def team(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if principal.role != "team":
            raise HTTPException(403, "this route needs a team's token")
        return principal

    def organiser(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if principal.role != "organiser":
            raise HTTPException(403, "this route needs the organiser's token")
        return principal

    def competition(connection: Connection) -> tuple[Competition, bool]:
        state = load_competition(connection)
        return state, state.is_revealed(now())

    def public_info(state: Competition) -> dict:
        info = state.public_info(now()) | settings.public_info()
        info["test_set_description"] = settings.describe(state.data_name, state.test_count)
        return info

    def page_body(connection: Connection, state: Competition, revealed: bool) -> bytes:
        html = render_page(
            public_info(state),
            board.leaderboard(connection, revealed),
            board.public_scores(connection),
            board.recent_log(connection, state, revealed, limit=50),
        )
        return html.encode()

    def board_body(connection: Connection, state: Competition, revealed: bool) -> bytes:
        entries = board.leaderboard(connection, revealed)
        return json.dumps(entries, separators=(",", ":")).encode()

    # Both read routes are served from memory while current, with an ETag (``board_cache``).
    cache = {
        "engine": engine,
        "now": now,
        "changes": changes,
        "refresh_seconds": board_refresh_seconds,
        "settle_seconds": board_settle_seconds,
    }
    cached_page = CachedBody(page_body, **cache)
    cached_board = CachedBody(board_body, **cache)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> Response:
        return await cached_response(request, cached_page, _HTML, _PAGE_HEADERS)

    @app.get("/api/competition")
    def competition_info() -> dict:
        with engine.connect() as connection:
            state, _ = competition(connection)
        return public_info(state)

    def board_changed() -> None:
        changes.bump()

    @app.get("/api/leaderboard")
    async def leaderboard(request: Request) -> Response:
        return await cached_response(request, cached_board, "application/json")

    @app.get("/api/log", response_class=PlainTextResponse)
    def log(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> PlainTextResponse:
        with engine.connect() as connection:
            state, revealed = competition(connection)
            lines = board.recent_log(connection, state, revealed, limit)
        return PlainTextResponse("".join(line + "\n" for line in lines))

    @app.get("/api/submissions")
    def own_submissions(who: Annotated[Principal, Depends(team)]) -> dict:
        with engine.connect() as connection:
            state, revealed = competition(connection)
            rows = board.history(connection, who.team_id, revealed)
        today = board.utc_day(now())
        used_today = sum(1 for row in rows if row["created_at"][:10] == today)
        return {
            "team": who.team_name,
            "submissions": rows,
            "submissions_left": max(state.daily_limit - used_today, 0),
        }

    @app.post("/api/submissions", status_code=201)
    async def submit(request: Request, who: Annotated[Principal, Depends(team)]) -> JSONResponse:
        if settings.submissions == "model":  # a CSV (of the public labels or any other) is no
            raise HTTPException(  # submission here: the server runs the model itself
                409,
                "this quest scores models, not predictions: submit your exported ONNX model "
                "(cnnlab quest submit --model EXPORT_DIR); this request did not use a submission",
            )
        body = await read_limited_body(request, max_upload_bytes)
        fields = await parse_form(request, body)
        try:
            predictions = await run_in_threadpool(
                parse_submission,
                fields.pop("data"),
                test_count=started.test_count,
                num_classes=started.num_classes,
            )
        except SubmissionError as error:
            raise HTTPException(422, f"file: {error}") from None
        scores = score(predictions, labels, private)
        with board_refusals():
            recorded = await run_in_threadpool(
                board.record_submission,
                engine,
                team_id=who.team_id,
                team_name=who.team_name,
                scores=scores,
                now=now(),
                **fields,
            )
        board_changed()
        return JSONResponse(
            {
                "id": recorded.id,
                "team": who.team_name,
                "public_score": recorded.public_score,
                "submissions_left": recorded.submissions_left,
                "created_at": recorded.created_at.isoformat(),
            },
            status_code=201,
        )

    from cnnlab.quest.model_routes import add_model_routes  # it imports this module

    add_model_routes(
        app,
        engine=engine,
        team=team,
        settings=settings,
        images=secret_images,
        labels=labels,
        private=private,
        now=now,
        board_changed=board_changed,
    )

    @app.post("/api/reveal")
    def reveal(who: Annotated[Principal, Depends(organiser)]) -> dict:
        with write_transaction(engine) as connection:
            revealed_at = reveal_in(connection)
        changes.bump(urgent=True)  # exact on every worker
        return {"revealed": True, "revealed_at": revealed_at.isoformat()}

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` whose connections send small writes at once.

    asyncio turns Nagle's algorithm off only for sockets created with ``proto=IPPROTO_TCP``;
    with uvicorn's own socket (proto 0) a JSON response (headers, then body, in two writes) waits
    for the client's delayed ACK: ~40 ms per request on Linux instead of ~1 ms.
    """
    received = f"Received: host={host!r}, port={port!r}"
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1..65535. {received}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(
            f"host is not an address to listen on ({reason}); expected an IP address or a "
            f"name of this machine, like 127.0.0.1 or 0.0.0.0. {received}"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        expected = {
            errno.EADDRINUSE: "a port no other program listens on",
            errno.EACCES: "a port above 1023 (lower ones need privileges)",
            errno.EADDRNOTAVAIL: "an address of this machine",
        }.get(error.errno, "an address and a port this machine can listen on")
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror}); expected {expected}. {received}"
        ) from None
    sock.listen(2048)
    return sock


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    on_listening: Callable[[str], None] | None = None,
    client_timeout: float = REQUEST_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    access_log: bool = False,
) -> None:
    """Run ``app`` under uvicorn on ``host:port`` until interrupted.

    ``on_listening(url)`` is called once the port is bound, before serving: an announcement
    made earlier would be followed by an error when the port is taken. A client that does not
    send a whole request head within ``client_timeout`` seconds is dropped; beyond
    ``max_connections`` open connections, requests are answered 503 (``http_limits``).
    ``access_log``: one line per request on stderr.
    """
    import uvicorn

    config = server_config(
        app,
        client_timeout=client_timeout,
        max_connections=max_connections,
        log_level=log_level,
        access_log=access_log,
    )
    sock = listening_socket(host, port)
    if on_listening is not None:
        on_listening(f"http://{host}:{port}")
    uvicorn.Server(config).run(sockets=[sock])


async def read_limited_body(
    request: Request, limit: int, timeout: float = UPLOAD_TIMEOUT_S
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes,
    and with 408 when it is not whole after ``timeout`` seconds (a client that stalls).

    A declared Content-Length over the limit is refused before reading anything; otherwise
    (chunked uploads, or a lying header) bytes are counted as the chunks arrive.
    """
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(
            408, f"the upload was not complete after {timeout:g} s: send it again"
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, f"invalid Content-Length header: {declared[:40]!r}")
        if int(declared) > limit:
            raise HTTPException(413, _CHUNK_LIMIT_MESSAGE.format(limit=limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, _CHUNK_LIMIT_MESSAGE.format(limit=limit))
    return bytes(body)


async def parse_form(request: Request, body: bytes) -> dict:
    """The multipart fields, checked: ``data`` (the file's bytes), model, train_time, code."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            422, "expected a multipart/form-data body with fields file, model, train_time"
        )

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, "file: missing; attach the predictions CSV as the field 'file'")
    data = await upload.read()
    await form.close()
    model = _text_field(form.get("model"), "model", required=True)
    code = _text_field(form.get("code"), "code", required=False) or None
    train_time_text = _text_field(form.get("train_time"), "train_time", required=True)
    try:
        train_time = check_train_time(float(train_time_text))
    except ValueError:
        raise HTTPException(
            422,
            f"train_time must be a number of seconds from 0 to a year. "
            f"Received: {train_time_text!r}",
        ) from None
    return {"data": data, "model": model, "train_time": train_time, "code": code}


def _text_field(value: object, name: str, *, required: bool) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise HTTPException(422, f"{name}: missing; it is a required form field")
        return ""
    if not isinstance(value, str):
        raise HTTPException(422, f"{name}: expected a text field, not a file")
    text = value.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise HTTPException(
            422, f"{name}: at most {MAX_TEXT_LENGTH} characters. Received: {len(text)}"
        )
    try:
        check_text(name, text)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    return text
