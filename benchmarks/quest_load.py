"""Load the quest leaderboard server: concurrent leaderboard reads and scored submissions.

    python benchmarks/quest_load.py [--readers 50] [--submitters 10] [--seconds 20]
                                    [--teams 200] [--labels 10000] [--db URL] [--out DIR]
    python benchmarks/quest_load.py --db postgresql+psycopg://... --workers 2 \
        --read-rate 300 --submit-rate 20 --open-seconds 30 --saturation
    python benchmarks/quest_load.py --dry-run [--out DIR]

The server runs in its own process on 127.0.0.1: ``--via cli`` (the default) runs it as users do,
``python -m cnnlab quest serve --workers N`` (uvicorn, access log off); ``--via uvicorn`` runs
``uvicorn.run(create_app(db))`` with the access log off. The database is a fresh SQLite file, or
with ``--db postgresql+psycopg://...`` an empty PostgreSQL database. The competition has
``--labels`` synthetic labels and ``--teams`` teams with a daily limit high enough that the limit
is not what is measured.

Clients are asyncio tasks, each with its own keep-alive connection (a minimal HTTP/1.1 client
on asyncio streams, ``Connection``: the generator runs on the server's cores, and httpx costs
more CPU per request than the server's cached read): ``--readers`` loop on
``GET /api/leaderboard``, ``--submitters`` loop on ``POST /api/submissions`` (a full CSV each
time, round-robin over the teams), ``--page-readers`` loop on ``GET /``. Each task waits for its
answer before sending the next request, so at most readers + submitters + page readers requests
are in flight; ``--think`` adds a pause after each answer (0: a closed loop, the worst case). The
first ``--warmup`` seconds are not counted.

Open loop (``--read-rate``, ``--submit-rate``, requests per second, for ``--open-seconds``): after
the closed loop, requests are sent at fixed times, ``1/rate`` apart per route, each whether or
not the earlier ones have been answered, and a request's latency is measured from the time it
was due, not from when the client got round to sending it: queueing in the client counts against
the server instead of hiding (a closed loop's clients wait, and send less, when the server
slows). ``--saturation``: then each route alone under a closed loop (``--readers`` readers, or
``--submitters`` submitters), whose answers per second are that route's saturation rate. The
machine's load average is recorded before and after each phase (the machine may be shared), and
each phase's CPU seconds: the load generator's own, the server's (supervisor and workers) and
the whole machine's (PostgreSQL and any other work included).

Prints requests/s, p50/p99 latency per route and the statuses other than success (429, the
intended daily-limit refusal, apart), and writes ``quest_load.json`` with the context (versions,
CPU, git commit, concurrency, duration, database). Targets on the 2-core reference machine:
leaderboard p99 under 50 ms with 50 readers, at least 50 scored submissions per second, no
errors other than 429.

``--dry-run`` runs the same code in seconds, so that CI keeps the script working: a few clients
on every route (the page too) for about a second, then the open loop at low rates and each
route's saturation as briefly, a small competition, and ``quest_load.json``
in a temporary folder (or ``--out``), never in benchmarks/results. Flags given with it still win.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np

from _dry_run import RESULTS, refuse_recorded_results  # benchmarks/ is on sys.path

NUM_CLASSES = 10
UVICORN_SERVER = """
import sys, uvicorn
from cnnlab.quest.server import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""


@dataclass(frozen=True)
class LoadConfig:
    readers: int = 50
    submitters: int = 10
    page_readers: int = 0
    seconds: float = 20.0
    warmup: float = 2.0
    think: float = 0.0
    teams: int = 200
    labels: int = 10_000
    daily_limit: int = 100_000
    db: str | None = None
    via: str = "cli"
    workers: int = 1
    read_rate: float = 0.0  # open loop: leaderboard reads per second (0: no open-loop phase)
    submit_rate: float = 0.0
    open_seconds: float = 30.0
    saturation: bool = False
    dry_run: bool = False


# A dry run: every route with a few clients, a small competition, about 3 s of load.
DRY_RUN = {
    "readers": 3,
    "submitters": 2,
    "page_readers": 1,
    "seconds": 1.5,
    "warmup": 0.5,
    "teams": 4,
    "labels": 1_000,
    "read_rate": 20.0,
    "submit_rate": 4.0,
    "open_seconds": 1.5,
    "saturation": True,
}


@dataclass
class Samples:
    """Latency in seconds and status of every counted request, per route."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redact(url: str) -> str:
    """``url`` without its password, to be written into the results."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def prediction_csvs(labels: np.ndarray, count: int = 16) -> list[bytes]:
    """``count`` submissions of varied accuracy, encoded once: the client spends no CPU on them."""
    rng = np.random.default_rng(1)
    files = []
    for accuracy in np.linspace(0.3, 0.95, count):
        predicted = labels.copy()
        wrong = rng.random(len(labels)) >= accuracy
        predicted[wrong] = (predicted[wrong] + 1) % NUM_CLASSES
        files.append(
            ("id,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(predicted))).encode()
        )
    return files


def start_server(
    via: str, db_url: str, port: int, log_path: Path, workers: int = 1
) -> subprocess.Popen:
    if via == "cli":
        command = [sys.executable, "-m", "cnnlab", "quest", "serve", "--db", db_url, "--host",
                   "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    else:
        command = [sys.executable, "-c", UVICORN_SERVER, db_url, str(port)]
    with log_path.open("wb") as log:  # the server holds its own descriptor
        process = subprocess.Popen(command, stdout=log, stderr=log)
    deadline = time.monotonic() + 120  # the CLI imports torch; a loaded machine is slower
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/leaderboard", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"the server did not answer within 120 s:\n{log_path.read_text()}")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and its running children, its workers
    (Linux), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu_seconds(int(child)) or 0.0 for child in children)


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of this machine's PostgreSQL processes (named ``postgres``), backends that
    have exited included (their postmaster's reaped children), or None where /proc is absent."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        stats = [path.read_text() for path in Path("/proc").glob("[0-9]*/stat")]
    except OSError:
        return None
    for stat in stats:
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name == "postgres":
            fields = rest.split()
            total += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine may be shared with other work)."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of this machine spent busy so far (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The CPU seconds a phase cost: the load generator (this process), the server (its
    supervisor and workers), PostgreSQL's processes, and the whole machine (whatever else ran
    too: ``other`` is the machine's less the three)."""

    NAMES = ("generator", "server", "postgres", "machine", "wall")

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.start = self._read()

    def _read(self) -> tuple[float | None, ...]:
        return (
            time.process_time(),
            process_cpu_seconds(self.server_pid),
            postgres_cpu_seconds(),
            machine_busy_seconds(),
            time.perf_counter(),
        )

    def stop(self) -> dict[str, float | None]:
        end = self._read()
        spent = {
            name: None if a is None or b is None else round(b - a, 2)
            for name, a, b in zip(self.NAMES, self.start, end, strict=True)
        }
        parts = [spent[name] for name in ("machine", "generator", "server", "postgres")]
        spent["other"] = None if None in parts else round(parts[0] - sum(parts[1:]), 2)
        return spent


DRY_RUN_GRACE_SECONDS = 60.0
REQUEST_TIMEOUT_S = 30.0
# uvicorn closes a connection idle for 5 s (its keep-alive timeout, ``http_limits``): the client
# reuses one only within this time, as HTTP clients do (httpx: keepalive_expiry).
IDLE_S = 4.0
BOUNDARY = "cnnlab-quest-load"


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared bytes and reads the answer.

    The load generator shares the server's two cores: httpx spends ~1 ms of CPU per request in
    its client machinery (more than the server spends answering a cached read), this a few tens
    of microseconds. It reads what uvicorn sends: a Content-Length body, or a chunked one.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        """Whether this idle connection may carry another request: the server has not closed
        it, and will not for being idle."""
        return not self.reader.at_eof() and time.monotonic() - self.idle_since < IDLE_S

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, message: bytes) -> int:
        """Send ``message`` (a whole request), read the whole answer, return its status."""
        self.writer.write(message)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:  # closed by the server before it answered anything
                raise ConnectionResetError("closed before an answer") from None
            raise
        status = int(head[9:12])
        headers = head.lower()
        if b"\r\nconnection: close" in headers:
            self.reusable = False
        length = headers.find(b"\r\ncontent-length:")
        if length >= 0:
            end = headers.index(b"\r\n", length + 2)
            await self.reader.readexactly(int(headers[length + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in headers:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")  # the empty trailer
        elif status not in (204, 304):
            self.reusable = False  # the body runs to the connection's end
            await self.reader.read()
        return status

    def close(self) -> None:
        self.writer.close()


class Client:
    """Keep-alive connections to one server, at most ``connections`` open; a request takes an
    idle one or opens one (waiting, when all are busy: the wait counts in its latency)."""

    def __init__(self, base_url: str, connections: int) -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.idle: list[Connection] = []
        self.free = asyncio.Semaphore(connections)

    async def send(self, message: bytes) -> int | str:
        """The answer's status, or the name of the error that stopped the exchange. A GET that a
        reused connection lost before any answer (the server closed it meanwhile) is sent again
        on a new one, once (RFC 9112 9.3.1: idempotent requests only)."""
        async with self.free:
            reused = self._idle_connection()
            status = await self._exchange(reused, message)
            if reused is not None and status == "ConnectionResetError" and message[:4] == b"GET ":
                status = await self._exchange(None, message)
            return status

    def _idle_connection(self) -> Connection | None:
        while self.idle:
            connection = self.idle.pop()  # the most recently used
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _exchange(self, connection: Connection | None, message: bytes) -> int | str:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                connection = connection or await Connection.open(self.host, self.port)
                status = await connection.request(message)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError) as error:  # fmt: skip
            if connection is not None:
                connection.close()
            return type(error).__name__
        if connection.reusable:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()
        return status

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: quest\r\n\r\n".encode()


def submission_requests(tokens: list[str], csvs: list[bytes]):
    """A function that returns the next submission's request (round-robin over teams and
    files): a multipart body built once per file, a head per team."""
    bodies = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nlenet-like\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="train_time"\r\n\r\n42.0\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="predictions.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        + csv
        + f"\r\n--{BOUNDARY}--\r\n".encode()
        for csv in csvs
    ]
    next_submission = iter(range(10**12))

    def request() -> bytes:
        n = next(next_submission)
        body = bodies[n % len(bodies)]
        head = (
            f"POST /api/submissions HTTP/1.1\r\nHost: quest\r\n"
            f"Authorization: Bearer {tokens[n % len(tokens)]}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return request


def route_requests(tokens: list[str], csvs: list[bytes]) -> dict:
    """Each route's function returning its next request."""
    board, page = get_request("/api/leaderboard"), get_request("/")
    return {
        "GET /api/leaderboard": lambda: board,
        "POST /api/submissions": submission_requests(tokens, csvs),
        "GET /": lambda: page,
    }


async def drive(
    config: LoadConfig, base_url: str, tokens: list[str], csvs: list[bytes]
) -> tuple[Samples, int]:
    """Run every client task until the deadline; the samples, and all requests answered.
    Each task owns one keep-alive connection."""
    samples = Samples()
    answered = 0
    counted_from = time.perf_counter() + config.warmup
    stop_at = counted_from + config.seconds
    requests = route_requests(tokens, csvs)

    async def loop(route: str) -> None:
        nonlocal answered
        client = Client(base_url, connections=1)
        # A dry run checks the script, not the speed: on a loaded machine a route may get no
        # answer inside its short window, so it goes on (60 s at most) until it has one.
        while time.perf_counter() < stop_at or (
            config.dry_run
            and not samples.latency[route]
            and time.perf_counter() < stop_at + DRY_RUN_GRACE_SECONDS
        ):
            began = time.perf_counter()
            status = await client.send(requests[route]())
            ended = time.perf_counter()
            answered += 1
            if config.think:
                await asyncio.sleep(config.think)
            if began >= counted_from and (ended <= stop_at or config.dry_run):
                samples.latency[route].append(ended - began)
                samples.status[route][status] += 1
        client.close()

    tasks = [loop("GET /api/leaderboard") for _ in range(config.readers)]
    tasks += [loop("POST /api/submissions") for _ in range(config.submitters)]
    tasks += [loop("GET /") for _ in range(config.page_readers)]
    await asyncio.gather(*tasks)
    return samples, answered


OPEN_LOOP_CONNECTIONS = 512  # at most this many requests of the open loop in flight at once


async def drive_open(
    config: LoadConfig, base_url: str, tokens: list[str], csvs: list[bytes]
) -> Samples:
    """Send each route's requests at fixed times (``1/rate`` apart) for ``open_seconds``; each
    request's latency runs from the time it was due to its answer, so that a request the
    generator sent late, or that waited for a connection, counts its delay."""
    samples = Samples()
    client = Client(base_url, OPEN_LOOP_CONNECTIONS)
    requests = route_requests(tokens, csvs)

    async def one(route: str, due: float) -> None:
        status = await client.send(requests[route]())
        samples.latency[route].append(time.perf_counter() - due)
        samples.status[route][status] += 1

    async def schedule(route: str, rate: float, start: float) -> None:
        sent = []
        for k in range(int(rate * config.open_seconds)):
            due = start + k / rate
            await asyncio.sleep(max(due - time.perf_counter(), 0))
            sent.append(asyncio.create_task(one(route, due)))
        await asyncio.gather(*sent)

    start = time.perf_counter() + 0.2
    rates = {"GET /api/leaderboard": config.read_rate, "POST /api/submissions": config.submit_rate}
    try:
        await asyncio.gather(
            *(schedule(route, rate, start) for route, rate in rates.items() if rate > 0)
        )
    finally:
        client.close()
    return samples


def summarise(samples: Samples, seconds: float) -> dict[str, dict]:
    rows = {}
    for route in sorted(samples.latency):
        latency_ms = np.array(samples.latency[route]) * 1e3
        statuses = samples.status[route]
        ok = sum(n for s, n in statuses.items() if isinstance(s, int) and 200 <= s < 300)
        rows[route] = {
            "requests": len(latency_ms),
            "requests_per_s": len(latency_ms) / seconds,
            "ok_per_s": ok / seconds,
            "p50_ms": float(np.percentile(latency_ms, 50)),
            "p99_ms": float(np.percentile(latency_ms, 99)),
            "max_ms": float(latency_ms.max()),
            "limit_refusals_429": statuses.get(429, 0),
            "errors": {
                str(s): n
                for s, n in statuses.items()
                if not (isinstance(s, int) and (200 <= s < 300 or s == 429))
            },
        }
    return rows


def versions() -> dict[str, str]:
    names = ("cnnlab", "fastapi", "starlette", "uvicorn", "sqlalchemy", "httpx", "numpy")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def context(config: LoadConfig, db_url: str) -> dict:
    from cnnlab.runtime.context import git_commit
    from cnnlab.runtime.devices import cpu_name

    return {
        "benchmark": "quest_load",
        "dry_run": config.dry_run,
        "versions": versions(),
        "git": git_commit(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "db": redact(db_url),
        "server": {
            "cli": f"cnnlab quest serve --workers {config.workers} (uvicorn, access log off)",
            "uvicorn": "uvicorn.run(create_app(db)), one worker, access log off",
        }[config.via]
        + "; same machine as the clients",
        "concurrency": {
            "readers": config.readers,
            "submitters": config.submitters,
            "page_readers": config.page_readers,
            "think_seconds": config.think,
        },
        "seconds_counted": config.seconds,
        "warmup_seconds_excluded": config.warmup,
        "workers": config.workers,
        "teams": config.teams,
        "labels": config.labels,
        "daily_limit": config.daily_limit,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(config: LoadConfig, workdir: Path) -> dict:
    from cnnlab.quest import db as quest_db

    load_at_start = load_average()  # before this script adds its own load
    db_url = config.db or f"sqlite:///{workdir / 'quest.db'}"
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, config.labels)
    quest_db.init_competition(
        db_url,
        data_name="synthetic",
        labels=labels.tolist(),
        num_classes=NUM_CLASSES,
        seed=0,
        daily_limit=config.daily_limit,
    )
    tokens = [quest_db.add_team(db_url, f"team-{i:04d}") for i in range(config.teams)]
    csvs = prediction_csvs(labels)

    port = free_port()
    server = start_server(config.via, db_url, port, workdir / "server.log", config.workers)
    base_url = f"http://127.0.0.1:{port}"
    try:
        loads = {"closed_loop": [load_average()]}
        cpu = CpuMeter(server.pid)
        samples, answered = asyncio.run(drive(config, base_url, tokens, csvs))
        closed_cpu = cpu.stop()
        loads["closed_loop"].append(load_average())
        phases = more_phases(config, base_url, tokens, csvs, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    server_log = (workdir / "server.log").read_text(errors="replace").splitlines()
    problems = [line for line in server_log if "ERROR" in line or "Traceback" in line]
    if problems:
        print(f"server log: {len(problems)} error lines, the first:", *problems[:5], sep="\n")
    routes = summarise(samples, config.seconds)
    server_cpu = closed_cpu["server"]
    return {
        "context": context(config, db_url),
        "load_average_at_start": load_at_start,
        "routes": routes,
        "load_average_before_after": loads["closed_loop"],
        "cpu_seconds": closed_cpu,
        **phases,
        "server_log_error_lines": len(problems),
        "server_cpu_seconds": server_cpu,
        "client_cpu_seconds": closed_cpu["generator"],
        "requests_answered_including_warmup": answered,
        "server_cpu_ms_per_request": None if not answered or server_cpu is None else
        1e3 * server_cpu / answered,
    }  # fmt: skip


def more_phases(
    config: LoadConfig, base_url: str, tokens: list[str], csvs: list[bytes], server_pid: int
) -> dict:
    """The open loop at fixed rates, and each route's saturation rate, when asked for."""
    phases: dict = {}
    if config.read_rate > 0 or config.submit_rate > 0:
        before = load_average()
        cpu = CpuMeter(server_pid)
        samples = asyncio.run(drive_open(config, base_url, tokens, csvs))
        phases["open_loop"] = {
            "rates_per_s": {
                "GET /api/leaderboard": config.read_rate,
                "POST /api/submissions": config.submit_rate,
            },
            "seconds": config.open_seconds,
            "latency_from": "the time each request was due",
            "routes": summarise(samples, config.open_seconds),
            "cpu_seconds": cpu.stop(),
            "load_average_before_after": [before, load_average()],
        }
    if config.saturation:
        phases["saturation"] = {}
        alone = {
            "GET /api/leaderboard": replace(config, submitters=0, page_readers=0),
            "POST /api/submissions": replace(config, readers=0, page_readers=0),
        }
        for route, route_config in alone.items():
            before = load_average()
            cpu = CpuMeter(server_pid)
            samples, _ = asyncio.run(drive(route_config, base_url, tokens, csvs))
            row = summarise(samples, config.seconds)[route]
            row["clients"] = route_config.readers or route_config.submitters
            row["cpu_seconds"] = cpu.stop()
            row["load_average_before_after"] = [before, load_average()]
            phases["saturation"][route] = row
    return phases


def print_cpu(cpu: dict[str, float | None]) -> None:
    shown = ", ".join(f"{name} {value:.1f} s" for name, value in cpu.items() if value is not None)
    print(f"CPU seconds: {shown} (other: the machine's less the generator, server, PostgreSQL)")


def print_table(result: dict) -> None:
    print(f"load average when the script started: {result['load_average_at_start']}")
    print(f"closed loop, load average {result['load_average_before_after']}")
    print_routes(result["routes"])
    print_cpu(result["cpu_seconds"])
    if "open_loop" in result:
        phase = result["open_loop"]
        rates = ", ".join(f"{route} {rate:g}/s" for route, rate in phase["rates_per_s"].items())
        print(f"open loop ({rates}; latency from the due time), load average "
              f"{phase['load_average_before_after']}")  # fmt: skip
        print_routes(phase["routes"])
        print_cpu(phase["cpu_seconds"])
    if "saturation" in result:
        print("saturation: each route alone, closed loop")
        print_routes(result["saturation"])
        for route, row in result["saturation"].items():
            print(f"{route}: ", end="")
            print_cpu(row["cpu_seconds"])
    if result["server_cpu_seconds"] is not None:
        print(
            f"closed loop: server CPU {result['server_cpu_seconds']:.1f} s over "
            f"{result['requests_answered_including_warmup']} requests (warmup included), "
            f"{result['server_cpu_ms_per_request']:.2f} ms per request; "
            f"load generator CPU: {result['client_cpu_seconds']:.1f} s"
        )


def print_routes(routes: dict[str, dict]) -> None:
    print(f"{'route':<24}{'req/s':>9}{'ok/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'429':>7}  errors")  # fmt: skip
    for route, row in routes.items():
        errors = ", ".join(f"{s}: {n}" for s, n in row["errors"].items()) or "0"
        print(
            f"{route:<24}{row['requests_per_s']:>9.1f}{row['ok_per_s']:>9.1f}{row['p50_ms']:>9.1f}"
            f"{row['p99_ms']:>9.1f}{row['max_ms']:>9.1f}{row['limit_refusals_429']:>7}  {errors}"
        )


def parse_args(argv: list[str] | None = None) -> tuple[LoadConfig, Path | None]:
    """The load's config and the --out folder (None: the default for a real or a dry run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = LoadConfig()
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="seconds, not minutes: "
        + ", ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in DRY_RUN.items()
        )
        + "; the JSON goes to a temporary folder unless --out is given",
    )
    parser.add_argument("--readers", type=int, default=defaults.readers)
    parser.add_argument("--submitters", type=int, default=defaults.submitters)
    parser.add_argument("--page-readers", type=int, default=defaults.page_readers)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument(
        "--think",
        type=float,
        default=defaults.think,
        help="seconds each client waits between requests",
    )
    parser.add_argument("--teams", type=int, default=defaults.teams)
    parser.add_argument("--labels", type=int, default=defaults.labels)
    parser.add_argument("--daily-limit", type=int, default=defaults.daily_limit)
    parser.add_argument("--via", choices=("cli", "uvicorn"), default=defaults.via)
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="quest serve --workers (--via cli)"
    )
    parser.add_argument(
        "--read-rate", type=float, default=defaults.read_rate, help="open loop: reads per second"
    )
    parser.add_argument(
        "--submit-rate",
        type=float,
        default=defaults.submit_rate,
        help="open loop: submissions per second",
    )
    parser.add_argument("--open-seconds", type=float, default=defaults.open_seconds)
    parser.add_argument(
        "--saturation",
        action="store_true",
        help="then each route alone under the closed loop: its saturation rate",
    )
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for quest_load.json (default benchmarks/results; dry run: a temp folder)",
    )
    if parser.parse_known_args(argv)[0].dry_run:
        parser.set_defaults(**DRY_RUN)  # the dry run's sizes, unless given
    args = parser.parse_args(argv)
    for name in ("readers", "submitters", "page_readers", "teams", "labels", "daily_limit"):
        if getattr(args, name) < 0:
            parser.error(
                f"--{name.replace('_', '-')} must be >= 0. Received: {getattr(args, name)}"
            )
    if args.seconds <= 0 or args.warmup < 0 or args.think < 0:
        parser.error(
            "--seconds must be > 0, --warmup and --think >= 0. "
            f"Received: {args.seconds}, {args.warmup}, {args.think}"
        )
    if args.read_rate < 0 or args.submit_rate < 0 or args.open_seconds <= 0 or args.workers < 1:
        parser.error(
            "--read-rate and --submit-rate must be >= 0, --open-seconds > 0, --workers >= 1. "
            f"Received: {args.read_rate}, {args.submit_rate}, {args.open_seconds}, {args.workers}"
        )
    if args.teams == 0 and args.submitters:
        parser.error("--teams must be >= 1 when --submitters > 0. Received: --teams 0")
    refuse_recorded_results(parser, args.dry_run, args.out)
    fields = {k: v for k, v in vars(args).items() if k != "out"}
    return LoadConfig(**fields), args.out


def main(argv: list[str] | None = None) -> None:
    config, out = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quest-load-") as workdir:
        result = run(config, Path(workdir))
    print_table(result)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="quest_load-dry-run-")) if config.dry_run else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / "quest_load.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
