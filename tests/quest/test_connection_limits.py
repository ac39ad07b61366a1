"""Silent and slow clients are dropped; a bounded number of connections is served at once.

A real uvicorn server with ``server_config`` (the one ``quest serve`` runs) and raw sockets:
a connection that sends nothing, or a request head that never ends, is closed by the server
(``recv`` returns b"" long before the socket's own 15 s timeout), while a client that sends its
request in time is answered, also on a kept-alive connection.
"""

import asyncio
import socket
import time
from contextlib import closing, contextmanager

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from cnnlab.quest.http_limits import server_config
from cnnlab.quest.server import create_app, read_limited_body

CLIENT_TIMEOUT_S = 0.5
SOCKET_TIMEOUT_S = 15.0  # far beyond the server's limit: reaching it means the server kept us
REQUEST = b"GET /api/competition HTTP/1.1\r\nHost: quest\r\n\r\n"


@contextmanager
def limited_server(app, kit, **limits):
    """``quest serve``'s server (``server_config``) in a thread; yields its port."""
    config = server_config(app, host="127.0.0.1", port=0, log_level="warning", **limits)
    with kit.uvicorn_thread(app, config) as url:
        yield int(url.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never
    does)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: its head, then Content-Length bytes of body (which may arrive
    in another packet than the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def db_url(tmp_path, kit):
    """SQLite only: the limits are the server's, whatever the database."""
    return kit.make_quest(f"sqlite:///{tmp_path / 'quest.db'}").db_url


@pytest.fixture
def port(db_url, kit):
    with limited_server(create_app(db_url), kit, client_timeout=CLIENT_TIMEOUT_S) as port:
        yield port


def test_a_silent_connection_is_closed(port):
    with closing(connect(port)) as silent:
        assert read_until_closed(silent) == b""


def test_a_request_head_that_never_ends_is_closed(port):
    with closing(connect(port)) as slow:
        slow.sendall(b"GET /api/competition HTTP/1.1\r\nHost: quest\r\n")  # no blank line
        assert read_until_closed(slow) == b""


def test_a_head_sent_a_byte_at_a_time_is_closed_although_bytes_keep_coming(port):
    """Each byte arriving does not restart the clock (a slowloris client)."""
    with closing(connect(port)) as trickle:
        closed = False
        for byte in b"GET /api/competition HTTP/1.1\r\nX-Pad: " + b"a" * 200:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:  # the server has closed: a write fails
                closed = True
                break
            time.sleep(CLIENT_TIMEOUT_S / 10)
        assert closed or read_until_closed(trickle) == b""


def test_requests_in_time_are_answered_also_on_a_kept_alive_connection(port):
    with closing(connect(port)) as client:
        for _ in range(2):
            client.sendall(REQUEST)
            assert read_response(client).startswith(b"HTTP/1.1 200")
        # then idle: closed after the keep-alive time
        assert b"HTTP/1.1" not in read_until_closed(client)


def test_connections_beyond_the_limit_get_503(db_url, kit):
    with limited_server(
        create_app(db_url), kit, client_timeout=CLIENT_TIMEOUT_S, max_connections=2
    ) as port:
        with closing(connect(port)) as first, closing(connect(port)) as second:
            assert first_status(port, b"HTTP/1.1 503") == b"HTTP/1.1 503"
            assert read_until_closed(first) == read_until_closed(second) == b""
        # the silent ones were dropped: room again
        assert first_status(port, b"HTTP/1.1 200") == b"HTTP/1.1 200"


def first_status(port: int, wanted: bytes, tries: int = 100) -> bytes:
    """The status line of a new connection's answer, asking again (up to ``tries`` times, 50 ms
    apart) until it is ``wanted``: the server registers connections as its loop gets to them."""
    for _ in range(tries):
        with closing(connect(port)) as client:
            client.sendall(REQUEST)
            status = read_response(client)[:12]
        if status == wanted:
            return status
        time.sleep(0.05)
    return status


def test_an_upload_that_stalls_is_refused_with_408():
    async def stalled_body():
        await asyncio.Event().wait()  # the client never sends the rest

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/api/submissions"}
    request = Request(scope, stalled_body)

    async def read() -> None:
        await read_limited_body(request, limit=1000, timeout=0.05)

    with pytest.raises(HTTPException) as refused:
        asyncio.run(read())
    assert refused.value.status_code == 408
    assert "not complete after 0.05 s" in refused.value.detail
