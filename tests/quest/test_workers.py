"""`quest serve --workers 2` on PostgreSQL: the connection limits hold in every worker, a
submission through one worker shows on every worker once the settle time has passed, and nothing
secret leaks before the reveal, which is then exact on every worker.

Each check asks over fresh connections, which the kernel hands to either worker; the server's
board refresh is an hour (``workers_server``), so a worker that missed a change would show it.
"""

import socket
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest

from cnnlab.quest.workers import ServeOptions, check_workers

pytestmark = pytest.mark.slow

READS = 24  # fresh connections per check: each lands on one of the two workers
REQUEST = b"GET /api/competition HTTP/1.1\r\nHost: quest\r\nConnection: close\r\n\r\n"


# One client that keeps no connection open: each request connects anew (httpx.get would also
# build a client, and its TLS context, per request: ~0.1 s of CPU each).
FRESH = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def fresh_reads(url: str, path: str, **options) -> list[httpx.Response]:
    """``READS`` answers, each over a new connection."""
    return [FRESH.get(f"{url}{path}", **options) for _ in range(READS)]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(30)  # far beyond the server's 2 s deadline
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_of_new_connection(port: int) -> bytes:
    with closing(connect(port)) as client:
        client.sendall(REQUEST)
        return read_until_closed(client)[:12]


def test_sqlite_refuses_several_workers_in_one_line(tmp_path, kit):
    quest = kit.make_quest(f"sqlite:///{tmp_path / 'quest.db'}")
    answer = subprocess.run(
        [*kit.quest_command, "serve", "--db", quest.db_url, "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 2
    [line] = answer.stderr.strip().splitlines()
    assert "--workers: several worker processes need PostgreSQL" in line
    assert "Received: --workers=2" in line


@pytest.mark.parametrize("url", ["sqlite:///quest.db", "postgresql+psycopg://q@h/db"])
def test_one_worker_serves_any_database_and_postgres_more(url):
    check_workers(url, 1)
    if url.startswith("postgresql"):
        check_workers(url, 8)
    with pytest.raises(ValueError, match=r"workers must be an integer from 1 to 64"):
        check_workers(url, 0)


def test_options_are_checked_when_made():
    with pytest.raises(ValueError, match=r"max_connections must be an integer from 1 to"):
        ServeOptions("postgresql+psycopg://q@h/db", max_connections=0)


def test_silent_and_slow_connections_are_closed_by_every_worker(workers_server):
    _, url = workers_server
    port = int(url.rsplit(":", 1)[1])
    silent = [connect(port) for _ in range(4)]
    slow = [connect(port) for _ in range(4)]
    for sock in slow:
        sock.sendall(b"GET /api/competition HTTP/1.1\r\nHost: quest\r\n")  # no blank line
    for sock in silent + slow:
        with closing(sock):
            assert read_until_closed(sock) == b""


def test_connections_beyond_a_workers_limit_get_503(workers_server, kit):
    """Two workers with a limit of L each: 2L - 1 silent connections fill at least one of them
    (until the 2 s deadline drops them), and a new connection that lands there is answered 503."""
    _, url = workers_server
    port = int(url.rsplit(":", 1)[1])
    held = [connect(port) for _ in range(2 * kit.workers_connections - 1)]
    try:
        statuses = set()
        deadline = time.monotonic() + 30
        while b"HTTP/1.1 503" not in statuses and time.monotonic() < deadline:
            statuses.add(status_of_new_connection(port))
        assert b"HTTP/1.1 503" in statuses
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30  # the held ones are gone: every worker answers again
    while status_of_new_connection(port) != b"HTTP/1.1 200" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {status_of_new_connection(port) for _ in range(READS)} == {b"HTTP/1.1 200"}


def test_every_worker_shows_a_submission_hides_the_secret_then_reveals_exactly(workers_server, kit):
    """Runs after the other tests on this server: it reveals the private scores."""
    quest, url = workers_server
    before = fresh_reads(url, "/api/leaderboard")  # both workers now hold a cached board
    token = quest.team("prober")
    answer = httpx.post(
        f"{url}/api/submissions", timeout=30, **kit.submission(token, quest.probe_csv())
    )
    assert answer.status_code == 201, answer.text
    submitted = answer.json()["id"]
    time.sleep(ServeOptions.board_settle_seconds)  # the bound: after it, every worker shows it

    for read in fresh_reads(url, "/api/leaderboard"):
        assert submitted in [entry["submission_id"] for entry in read.json()]
    assert all(read.headers["etag"] != before[0].headers["etag"] for read in fresh_reads(url, "/"))
    mine = {"headers": {"Authorization": f"Bearer {token}"}}
    for path, options in [("/", {}), ("/api/leaderboard", {}), ("/api/log", {}),
                          ("/api/submissions", mine)]:  # fmt: skip
        for read in fresh_reads(url, path, **options):
            assert read.status_code == 200
            assert kit.secret not in read.text, path

    organiser = {"Authorization": f"Bearer {quest.organiser_token}"}
    assert httpx.post(f"{url}/api/reveal", headers=organiser, timeout=30).status_code == 200
    for read in fresh_reads(url, "/api/leaderboard"):
        [probe] = [entry for entry in read.json() if entry["submission_id"] == submitted]
        assert probe["private_score"] == pytest.approx(0.7734375)
    assert all(kit.secret in read.text for read in fresh_reads(url, "/"))


# Run by its path, as the `cnnlab` console script is: a worker that ran it again would leave a mark.
SCRIPT = """
import sys
from pathlib import Path

if __name__ != "__main__":  # multiprocessing's spawn ran this script again in a worker
    Path(sys.argv[2]).write_text("run again")
else:
    from cnnlab.quest.workers import ServeOptions, serve_workers

    serve_workers(ServeOptions(sys.argv[1]), workers=2, host="127.0.0.1", port=int(sys.argv[3]))
"""


def test_workers_do_not_run_a_main_script_again(tmp_path, kit):
    """The `cnnlab` console script imports the whole CLI (torch too): its workers must not."""
    script, mark = tmp_path / "serve.py", tmp_path / "mark"
    script.write_text(SCRIPT)
    with kit.postgres_quest() as quest:
        command = [sys.executable, str(script), quest.db_url, str(mark)]  # then the port
        with kit.serve_subprocess(quest.db_url, tmp_path / "log", command=command) as (_, url):
            assert {read.status_code for read in fresh_reads(url, "/api/leaderboard")} == {200}
    assert not mark.exists()
